-- CreateTable
CREATE TABLE "job_read_tokens" (
    "token_hash" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "job_read_tokens_pkey" PRIMARY KEY ("token_hash")
);

-- CreateTable
CREATE TABLE "input_sets" (
    "hash" TEXT NOT NULL,
    "values_json" TEXT NOT NULL,
    "count" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "input_sets_pkey" PRIMARY KEY ("hash")
);

-- CreateIndex
CREATE INDEX "job_read_tokens_job_id_idx" ON "job_read_tokens"("job_id");

-- AddForeignKey
ALTER TABLE "job_read_tokens" ADD CONSTRAINT "job_read_tokens_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
