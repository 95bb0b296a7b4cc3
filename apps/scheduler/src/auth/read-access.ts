import { createHash, randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { CommuneError, ErrorCode, ReadTokenHeader, ReadTokenSchema, SignedKind, type JobReadAccess } from '@commune/protocol';
import { PrismaService } from '../database/prisma.service.js';
import { OwnerAuth, type SignedHttpRequest } from './owner-auth.service.js';
import { SignedRequests } from './signed-requests.js';

/** A new read token and the hash the scheduler keeps of it. */
export function newReadToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('hex');
  return { token, hash: readTokenHash(token) };
}

/** sha256 (hex) of a read token: what job_read_tokens holds. */
export function readTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

const denied = (jobId: string) =>
  new CommuneError(ErrorCode.EPERM, `reading job ${jobId} needs its read token (the deploy reply's readToken) or a request signed by its owner`);

/**
 * Who may read a job (its status, results, events and shared state): the holder of one of its
 * read tokens, or its owner by a signed request. The job id alone gives nothing; a stranger gets
 * EPERM whether the job exists or not.
 */
@Injectable()
export class ReadAccess {
  constructor(private readonly prisma: PrismaService, private readonly signed: SignedRequests, private readonly ownerAuth: OwnerAuth) {}

  /** Makes another read token of an existing job (a resent deploy, an owner's grant). */
  async issue(jobId: string): Promise<string> {
    const { token, hash } = newReadToken();
    await this.prisma.pool.query('INSERT INTO job_read_tokens (token_hash, job_id) VALUES ($1, $2)', [hash, jobId]);
    return token;
  }

  /**
   * Checks a socket read (subscribe, state:get, state:subscribe). A grant (the owner's signed
   * request, kind read-grant) is answered with a new read token when `mint` is set, so the client
   * reads with the token from then on (reconnects included).
   */
  async authorize(jobId: string, access: JobReadAccess, options: { mint: boolean }): Promise<{ readToken?: string }> {
    if (access.readToken !== undefined) {
      await this.checkToken(jobId, access.readToken);
      return {};
    }
    if (access.grant !== undefined) {
      const { request, signature } = access.grant;
      if (request.jobId !== jobId) throw new CommuneError(ErrorCode.EINVAL, `the read grant is for job ${request.jobId}, not ${jobId}`);
      const signer = await this.signed.verify({ kind: SignedKind.readGrant, payload: request, signature, signer: request.owner, expiresAt: request.expiresAt, nonce: request.nonce });
      await this.requireOwner(jobId, signer);
      return options.mint ? { readToken: await this.issue(jobId) } : {};
    }
    throw denied(jobId);
  }

  /** Checks a REST read: the read token header, or an owner-signed request (protocol OwnerRequestSchema). */
  async authorizeHttp(jobId: string, request: SignedHttpRequest): Promise<void> {
    const header = request.headers[ReadTokenHeader];
    const token = Array.isArray(header) ? header[0] : header;
    if (token !== undefined) return this.checkToken(jobId, token);
    if (OwnerAuth.isSigned(request)) return this.requireOwner(jobId, await this.ownerAuth.authenticate(request));
    throw denied(jobId);
  }

  private async checkToken(jobId: string, token: string): Promise<void> {
    if (!ReadTokenSchema.safeParse(token).success) throw denied(jobId);
    const rows = await this.prisma.pool.query('SELECT 1 FROM job_read_tokens WHERE token_hash = $1 AND job_id = $2', [readTokenHash(token), jobId]);
    if ((rows.rowCount ?? 0) === 0) throw denied(jobId);
  }

  private async requireOwner(jobId: string, signer: string): Promise<void> {
    const rows = await this.prisma.pool.query<{ owner: string }>('SELECT owner FROM jobs WHERE id = $1', [jobId]);
    const owner = rows.rows[0]?.owner;
    if (owner === undefined) throw new CommuneError(ErrorCode.ENOTFOUND, `no job ${jobId}`);
    OwnerAuth.requireOwner(signer, owner, 'read it');
  }
}
