import { z } from 'zod';
import { AddressSchema, HashSchema } from './schemas.js';
import { ComputeGroupLimits, JoinKeySchema, publicComputeGroup } from './compute-group-credentials.js';

/** Creating and describing compute groups (the credentials jobs and workers present are in compute-group-credentials.ts). */
/** Signed by the creating account: the group belongs to it. */
export const CreateComputeGroupSchema = z.object({
  joinKey: JoinKeySchema.refine((key) => key !== publicComputeGroup, `"${publicComputeGroup}" is the public group's name`),
  joinHash: HashSchema,
  /** Optional, not defaulted: the signature covers exactly the fields sent. */
  description: z.string().max(ComputeGroupLimits.maxDescriptionBytes).optional(),
  owner: AddressSchema,
  nonce: z.string().min(8).max(100),
  expiresAt: z.number().int(),
});
export type CreateComputeGroup = z.infer<typeof CreateComputeGroupSchema>;
export type CreateComputeGroupInput = z.input<typeof CreateComputeGroupSchema>;

export const CreateComputeGroupRequestSchema = z.object({
  request: CreateComputeGroupSchema,
  signature: z.string().regex(/^0x[0-9a-fA-F]+$/),
});
export type CreateComputeGroupRequest = z.infer<typeof CreateComputeGroupRequestSchema>;

/** What anyone may know about a group (never its hash). */
export const ComputeGroupInfoSchema = z.object({
  joinKey: JoinKeySchema,
  owner: AddressSchema,
  description: z.string(),
  createdAt: z.string(),
});
export type ComputeGroupInfo = z.infer<typeof ComputeGroupInfoSchema>;

