-- CreateTable
CREATE TABLE "job_states" (
    "job_id" TEXT NOT NULL,
    "version" BIGINT NOT NULL DEFAULT 0,
    "state" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "job_states_pkey" PRIMARY KEY ("job_id")
);

-- AddForeignKey
ALTER TABLE "job_states" ADD CONSTRAINT "job_states_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
