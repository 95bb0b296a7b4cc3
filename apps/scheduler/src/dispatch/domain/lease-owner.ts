import { createHash } from 'node:crypto';

/**
 * The lease owner of a worker: who its leases belong to in Redis, whose results are taken for
 * them, and what results and failures record as their worker.
 *
 * It is derived from the worker id of the hello, so it is the same on every connection of one
 * worker process: a worker whose replica drained or died reconnects (to any replica) still
 * holding its leases, and the results it computed meanwhile are taken there. That makes the
 * worker id a bearer credential for the worker's leases: the worker makes it at random (about
 * 100 bits, never shown to anyone else), and the scheduler keeps and logs only this hash of it,
 * so nothing it stores or prints lets another connection claim those leases.
 */
export function leaseOwnerOf(workerId: string): string {
  return `w${createHash('sha256').update(workerId, 'utf8').digest('hex').slice(0, 32)}`;
}
