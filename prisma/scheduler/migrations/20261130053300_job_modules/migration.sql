-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "modules" JSONB;

-- CreateTable
CREATE TABLE "module_sources" (
    "hash" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "module_sources_pkey" PRIMARY KEY ("hash")
);
