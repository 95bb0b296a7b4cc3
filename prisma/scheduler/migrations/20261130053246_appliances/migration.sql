-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "appliance" JSONB;

-- CreateTable
CREATE TABLE "appliances" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "publisher" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "appliances_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "appliance_versions" (
    "version_id" TEXT NOT NULL,
    "appliance_id" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "metadata" JSONB NOT NULL,
    "require_path" JSONB NOT NULL,
    "spec" JSONB NOT NULL,
    "signature" TEXT NOT NULL,
    "published_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "appliance_versions_pkey" PRIMARY KEY ("version_id")
);

-- CreateTable
CREATE TABLE "appliance_functions" (
    "version_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "work" TEXT NOT NULL,
    "work_hash" TEXT NOT NULL,
    "estimation" TEXT,
    "slice_profile" JSONB,
    "require_path" JSONB NOT NULL,
    "module_path" JSONB NOT NULL,

    CONSTRAINT "appliance_functions_pkey" PRIMARY KEY ("version_id","name")
);

-- CreateIndex
CREATE UNIQUE INDEX "appliances_name_key" ON "appliances"("name");

-- CreateIndex
CREATE UNIQUE INDEX "appliance_versions_appliance_id_version_key" ON "appliance_versions"("appliance_id", "version");

-- AddForeignKey
ALTER TABLE "appliance_versions" ADD CONSTRAINT "appliance_versions_appliance_id_fkey" FOREIGN KEY ("appliance_id") REFERENCES "appliances"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "appliance_functions" ADD CONSTRAINT "appliance_functions_version_id_fkey" FOREIGN KEY ("version_id") REFERENCES "appliance_versions"("version_id") ON DELETE CASCADE ON UPDATE CASCADE;
