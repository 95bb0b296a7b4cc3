-- CreateTable
CREATE TABLE "jobs" (
    "id" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "work_hash" TEXT NOT NULL,
    "work" TEXT NOT NULL,
    "arguments" JSONB NOT NULL,
    "input_set" JSONB NOT NULL,
    "requirements" JSONB NOT NULL,
    "public" JSONB NOT NULL,
    "slice_payment_offer" DECIMAL(78,18) NOT NULL,
    "collate_results" BOOLEAN NOT NULL,
    "total" BIGINT NOT NULL,
    "computed" BIGINT NOT NULL DEFAULT 0,
    "errors" INTEGER NOT NULL DEFAULT 0,
    "status" TEXT NOT NULL DEFAULT 'running',
    "failure_code" TEXT,
    "failure_message" TEXT,
    "nonce" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "jobs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "slice_results" (
    "job_id" TEXT NOT NULL,
    "slice_index" BIGINT NOT NULL,
    "value" TEXT,
    "worker_id" TEXT NOT NULL,
    "elapsed_ms" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "slice_results_pkey" PRIMARY KEY ("job_id","slice_index")
);

-- CreateTable
CREATE TABLE "slice_failures" (
    "id" BIGSERIAL NOT NULL,
    "job_id" TEXT NOT NULL,
    "slice_index" BIGINT NOT NULL,
    "worker_id" TEXT NOT NULL,
    "code" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "slice_failures_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "jobs_owner_created_at_idx" ON "jobs"("owner", "created_at");

-- CreateIndex
CREATE INDEX "jobs_status_idx" ON "jobs"("status");

-- CreateIndex
CREATE UNIQUE INDEX "jobs_owner_nonce_key" ON "jobs"("owner", "nonce");

-- CreateIndex
CREATE INDEX "slice_failures_job_id_slice_index_idx" ON "slice_failures"("job_id", "slice_index");

-- AddForeignKey
ALTER TABLE "slice_results" ADD CONSTRAINT "slice_results_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "slice_failures" ADD CONSTRAINT "slice_failures_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
