-- CreateTable
CREATE TABLE "compute_groups" (
    "join_key" TEXT NOT NULL,
    "join_hash" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "description" TEXT NOT NULL DEFAULT '',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "compute_groups_pkey" PRIMARY KEY ("join_key")
);

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "compute_groups" TEXT[] DEFAULT ARRAY[]::TEXT[];
