-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "escrowed_slices" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "funds_required" DECIMAL(78,0),
ADD COLUMN     "hold_id" TEXT,
ADD COLUMN     "hold_released_at" TIMESTAMPTZ(3),
ADD COLUMN     "offer_units" DECIMAL(78,0) NOT NULL DEFAULT 0,
ADD COLUMN     "paid_units" DECIMAL(78,0) NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "slice_results" ADD COLUMN     "payee" TEXT,
ADD COLUMN     "payment" DECIMAL(78,0),
ADD COLUMN     "settled_at" TIMESTAMPTZ(3);

-- CreateIndex
CREATE INDEX "slice_results_settled_at_job_id_idx" ON "slice_results"("settled_at", "job_id");
