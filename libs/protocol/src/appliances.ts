import { z } from 'zod';
import { Limits } from './limits.js';
import { AddressSchema, DecimalSchema, HashSchema, SliceProfileSchema } from './schemas.js';
import { ApplianceFunctionNameSchema, ApplianceNameSchema, ApplianceVersionIdSchema } from './appliance-refs.js';

export * from './appliance-refs.js';

// ---------------------------------------------------------------- appliances (spec "Appliance Handles")
// Publishing: the publisher signs the canonical JSON of an ApplianceSpec (with nonce and expiry)
// and POSTs it to /appliances. Using: GET /appliances/:name?version=<npm range | #versionId>
// resolves a version; GET /appliances/versions/:versionId/functions/:function gives a function's
// source, which the SDK deploys as a job's work with JobSpec.appliance naming where it came from.

/** spec "Properties": optional public metadata of an appliance, published with each version. */
export const ApplianceMetadataSchema = z.object({
  /** Human-readable name (the appliance's unique name is ApplianceSpec.name). */
  name: z.string().max(200).optional(),
  description: z.string().max(2000).optional(),
  author: z.string().max(200).optional(),
  organization: z.string().max(200).optional(),
  email: z.string().max(200).optional(),
  website: z.string().max(2000).optional(),
  /** Comma-separated tags. */
  hashTags: z.string().max(1000).optional(),
});
export type ApplianceMetadata = z.infer<typeof ApplianceMetadataSchema>;

const PathListSchema = z.array(z.string().min(1).max(1000)).max(100);

/** spec defineFunction(name, work, estimationFunction, sliceProfile): one function of an appliance. */
export const ApplianceFunctionSpecSchema = z.object({
  name: ApplianceFunctionNameSchema,
  /** The work function's source, with the semantics of a job's work. */
  work: z.string().min(1),
  /** The estimation function's source (spec "Estimation Functions"), when there is one. */
  estimation: z.string().min(1).optional(),
  /** The baseSliceProfile of the estimation function. */
  sliceProfile: SliceProfileSchema.partial().optional(),
  requirePath: PathListSchema.optional(),
  modulePath: PathListSchema.optional(),
});
export type ApplianceFunctionSpec = z.infer<typeof ApplianceFunctionSpecSchema>;

/**
 * What the publisher signs: one version of an appliance, all its properties (spec: "All
 * properties of an appliance must be redefined when a new version is published"). `version` must
 * be a valid semantic version (checked by the scheduler: EINVAL).
 */
export const ApplianceSpecSchema = z.object({
  name: ApplianceNameSchema,
  version: z.string().min(1).max(256),
  /** The publishKeystore's address: the first version's publisher reserves the name (ENAMESPACE for others). */
  publisher: AddressSchema,
  metadata: ApplianceMetadataSchema,
  /** spec requirePath of the appliance: pushed on to require.path before the function's own. */
  requirePath: PathListSchema.optional(),
  functions: z.array(ApplianceFunctionSpecSchema).min(1).max(Limits.maxFunctionsPerAppliance),
  nonce: z.string().min(8).max(100),
  issuedAt: z.number().int(),
  expiresAt: z.number().int(),
});
export type ApplianceSpec = z.infer<typeof ApplianceSpecSchema>;
export type ApplianceSpecInput = z.input<typeof ApplianceSpecSchema>;

/** POST /appliances. */
export const PublishApplianceRequestSchema = z.object({
  appliance: ApplianceSpecSchema,
  /** EIP-191 signature of the canonical JSON of `appliance` by `appliance.publisher`. */
  signature: z.string().regex(/^0x[0-9a-fA-F]+$/),
});
export type PublishApplianceRequest = z.infer<typeof PublishApplianceRequestSchema>;

/** spec publish() resolves {versionId, receipt, cost}; Commune adds the appliance id, name, version and time. */
export const PublishApplianceReplySchema = z.object({
  applianceId: z.string(),
  versionId: ApplianceVersionIdSchema,
  name: ApplianceNameSchema,
  version: z.string(),
  /** keccak256 of {versionId, signature}: the scheduler's acknowledgement of exactly what was signed. */
  receipt: HashSchema,
  /** DCC debited for publishing: publication is free in Commune. */
  cost: DecimalSchema,
  publishedAt: z.string(),
});
export type PublishApplianceReply = z.infer<typeof PublishApplianceReplySchema>;

/** A published function, without its source. */
export const ApplianceFunctionInfoSchema = z.object({
  name: ApplianceFunctionNameSchema,
  /** keccak256 of the work source: a job's work must hash to this to run as this function. */
  workHash: HashSchema,
  workBytes: z.number().int().nonnegative(),
  estimation: z.string().nullable(),
  sliceProfile: SliceProfileSchema.partial().nullable(),
  requirePath: z.array(z.string()),
  modulePath: z.array(z.string()),
});
export type ApplianceFunctionInfo = z.infer<typeof ApplianceFunctionInfoSchema>;

/** GET /appliances/:name?version=...: the resolved version. */
export const ApplianceVersionInfoSchema = z.object({
  applianceId: z.string(),
  versionId: ApplianceVersionIdSchema,
  name: ApplianceNameSchema,
  version: z.string(),
  publisher: AddressSchema,
  metadata: ApplianceMetadataSchema,
  requirePath: z.array(z.string()),
  functions: z.array(ApplianceFunctionInfoSchema),
  publishedAt: z.string(),
});
export type ApplianceVersionInfo = z.infer<typeof ApplianceVersionInfoSchema>;

/** Query of GET /appliances/:name: an npm version range ("^1.0.0", "~1.2", ">=1 <2", "*", "1.0.0") or "#" + versionId. */
export const ResolveApplianceQuerySchema = z.object({ version: z.string().max(256).default('*') });

/** GET /appliances/versions/:versionId/functions/:function: a function's source. */
export const ApplianceFunctionSourceSchema = z.object({
  versionId: ApplianceVersionIdSchema,
  function: ApplianceFunctionNameSchema,
  work: z.string(),
  workHash: HashSchema,
  estimation: z.string().nullable(),
});
export type ApplianceFunctionSource = z.infer<typeof ApplianceFunctionSourceSchema>;
