import { z } from 'zod';

// How a job names the appliance function it runs (spec "Appliance Handles": appliance.for /
// appliance.do). Kept apart from appliances.ts so that schemas.ts (JobSpec, JobStatus) can use
// them without an import cycle.

/**
 * An appliance's name (spec: "a user-defined string, such as "ffmpeg-util""), unique on the
 * scheduler: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, as npm
 * package names, so that it reads the same in a URL and cannot be confused by case.
 */
export const ApplianceNameSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'an appliance name is lowercase letters, digits, ".", "_" and "-", starting with a letter or digit');

/** A function's name within an appliance: a JavaScript-like identifier (letters, digits, _, $, -, .). */
export const ApplianceFunctionNameSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z_$][A-Za-z0-9_$.-]*$/, 'a function name starts with a letter, _ or $ and has letters, digits, _, $, "." or "-"');

/**
 * spec publish(): "a unique hex string assigned by the scheduler which uniquely identifies this
 * version". Commune's is the keccak256 of the signed publication, 64 lowercase hex digits (no 0x);
 * `#` + it is a version argument of `new compute.Appliance(name, '#...')`.
 */
export const ApplianceVersionIdSchema = z.string().regex(/^[0-9a-f]{64}$/, 'not an appliance version id (64 hex digits)');

/** The appliance function a job runs, as the deploying client signs it (JobSpec.appliance). */
export const ApplianceJobRefSchema = z.object({
  versionId: ApplianceVersionIdSchema,
  function: ApplianceFunctionNameSchema,
});
export type ApplianceJobRef = z.infer<typeof ApplianceJobRefSchema>;

/** Where a job's work came from (JobStatus.appliance, job info): the appliance, its version and the function. */
export const JobApplianceSchema = ApplianceJobRefSchema.extend({
  applianceId: z.string().min(1).max(100),
  name: ApplianceNameSchema,
  version: z.string().min(1).max(256),
});
export type JobAppliance = z.infer<typeof JobApplianceSchema>;
