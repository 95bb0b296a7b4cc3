-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "elapsed_ms_total" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "mean_input_bytes" DOUBLE PRECISION NOT NULL DEFAULT 0,
ADD COLUMN     "output_bytes_total" BIGINT NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "slice_results" ADD COLUMN     "deleted_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "slice_leases" (
    "id" BIGSERIAL NOT NULL,
    "job_id" TEXT NOT NULL,
    "first_slice" BIGINT NOT NULL,
    "last_slice" BIGINT NOT NULL,
    "leased_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "slice_leases_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "slice_leases_job_id_first_slice_idx" ON "slice_leases"("job_id", "first_slice");

-- AddForeignKey
ALTER TABLE "slice_leases" ADD CONSTRAINT "slice_leases_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
