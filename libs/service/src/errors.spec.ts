import { jest } from '@jest/globals';
import { HttpException, HttpStatus, Logger } from '@nestjs/common';
import { CommuneError, ErrorCode } from '@commune/protocol';
import { z } from 'zod';
import { isInternal, ServiceExceptionFilter, toErrorReply, toHttpError, unavailableDependency } from './errors.js';

/** A node-postgres DatabaseError as pg 8 builds it from the server's ErrorResponse. */
const postgresError = (code: string, message: string, severity = 'FATAL'): Error =>
  Object.assign(new Error(message), { name: 'error', code, severity, detail: undefined, hint: undefined, length: 116 });

/** A socket error as Node raises it (pg passes it on as is). */
const socketError = (code: string, syscall = 'connect'): Error =>
  Object.assign(new Error(`${syscall} ${code} 127.0.0.1:5440`), { code, errno: -111, syscall, address: '127.0.0.1', port: 5440 });

/** A Prisma 7 error over @prisma/adapter-pg, shaped as the client throws it (code, meta.driverAdapterError). */
const prismaError = (code: string, cause: Record<string, unknown>): Error =>
  Object.assign(new Error('\nInvalid `prisma.job.findFirst()` invocation:\n\n...'), {
    name: 'PrismaClientKnownRequestError',
    code,
    clientVersion: '7.10.0',
    meta: { driverAdapterError: { name: 'DriverAdapterError', cause } },
  });

describe('unavailableDependency: a database that is down is told apart from a fault', () => {
  it.each([
    ['57P01 admin shutdown (a restart, pg_terminate_backend)', postgresError('57P01', 'terminating connection due to administrator command')],
    ['57P02 crash shutdown', postgresError('57P02', 'terminating connection because of crash of another server process')],
    ['57P03 cannot connect now (starting up)', postgresError('57P03', 'the database system is starting up')],
    ['57P03 cannot connect now (shutting down)', postgresError('57P03', 'the database system is shutting down')],
    ['08006 connection failure', postgresError('08006', 'connection failure', 'ERROR')],
    ['08P01 protocol violation', postgresError('08P01', 'protocol violation', 'ERROR')],
    ['53300 too many connections', postgresError('53300', 'sorry, too many clients already')],
    ['node-postgres: server hung up mid-query', new Error('Connection terminated unexpectedly')],
    ['node-postgres: connect timeout', new Error('Connection terminated due to connection timeout')],
    ['node-postgres: a client that lost its connection', new Error('Client has encountered a connection error and is not queryable')],
    ['pg-pool: connect timeout', new Error('timeout exceeded when trying to connect')],
    ['Prisma P1001 (model query, server not reachable)', prismaError('P1001', { kind: 'DatabaseNotReachable', host: '127.0.0.1', port: 5440 })],
    ['Prisma P2010 raw query, server not reachable', prismaError('P2010', { kind: 'DatabaseNotReachable', host: '127.0.0.1', port: 5440 })],
    [
      'Prisma P2010 raw query terminated by 57P01',
      prismaError('P2010', { originalCode: '57P01', originalMessage: 'terminating connection due to administrator command', kind: 'postgres', code: '57P01', severity: 'FATAL' }),
    ],
    ['Prisma P1017 server closed the connection', prismaError('P1017', { kind: 'ConnectionClosed' })],
    ['Prisma P2024 pool timeout', Object.assign(new Error('Timed out fetching a new connection from the connection pool.'), { name: 'PrismaClientKnownRequestError', code: 'P2024' })],
    ['a cause chain ending in 57P01', new Error('storing results failed', { cause: postgresError('57P01', 'terminating connection due to administrator command') })],
  ])('%s: the database', (_label, error) => {
    expect(unavailableDependency(error)).toBe('the database');
  });

  it.each([
    ['ECONNREFUSED', socketError('ECONNREFUSED')],
    ['ECONNRESET', socketError('ECONNRESET', 'read')],
    ['ETIMEDOUT', socketError('ETIMEDOUT')],
    ['EPIPE', socketError('EPIPE', 'write')],
  ])('a socket error %s: a dependency', (_label, error) => {
    expect(unavailableDependency(error)).toBe('a dependency');
  });

  it.each([
    ['a unique violation (23505)', postgresError('23505', 'duplicate key value violates unique constraint "x"', 'ERROR')],
    ['a syntax error (42601)', postgresError('42601', 'syntax error at or near "x"', 'ERROR')],
    ['a statement timeout (57014: the query, not the server)', postgresError('57014', 'canceling statement due to statement timeout', 'ERROR')],
    ['a Prisma unique violation P2002', prismaError('P2002', { kind: 'UniqueConstraintViolation' })],
    ['a Prisma raw query failing with 42P01', prismaError('P2010', { originalCode: '42P01', kind: 'postgres', code: '42P01', severity: 'ERROR' })],
    ['a plain TypeError', new TypeError('cannot read properties of undefined')],
    ['an error whose text merely mentions a connection', new Error('a Connection terminated unexpectedly somewhere')],
    ['a string', 'Connection terminated unexpectedly'],
    ['08006 without a severity (not from PostgreSQL)', Object.assign(new Error('x'), { code: '08006' })],
    ['null', null],
  ])('%s: not a dependency outage', (_label, error) => {
    expect(unavailableDependency(error)).toBeNull();
  });

  it('stops on a cause cycle', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(unavailableDependency(a)).toBeNull();
  });
});

describe('the one error mapping answers EUNAVAILABLE (503) for a database that is down', () => {
  it('socket replies: EUNAVAILABLE with a fixed text, not the internal code, not logged as internal', () => {
    const reply = toErrorReply(postgresError('57P01', 'terminating connection due to administrator command'), ErrorCode.ESCHEDULER);
    expect(reply).toEqual({ ok: false, code: ErrorCode.EUNAVAILABLE, message: 'the database is unavailable for now; retry' });
    expect(isInternal(reply)).toBe(false);
  });

  it('HTTP: 503 EUNAVAILABLE, for node-postgres and Prisma errors alike, in the scheduler and the bank', () => {
    for (const internal of [ErrorCode.ESCHEDULER, ErrorCode.EBANK]) {
      for (const error of [
        socketError('ECONNREFUSED'),
        new Error('Connection terminated unexpectedly'),
        postgresError('57P03', 'the database system is starting up'),
        prismaError('P1001', { kind: 'DatabaseNotReachable', host: '127.0.0.1', port: 5440 }),
      ]) {
        const { status, body } = toHttpError(error, internal);
        expect(status).toBe(503);
        expect(body).toMatchObject({ ok: false, code: ErrorCode.EUNAVAILABLE });
        // No host, port or driver text leaves the service.
        expect(JSON.stringify(body)).not.toMatch(/5440|127\.0\.0\.1|prisma|Connection terminated/i);
      }
    }
  });

  it('other failures keep their mapping: a CommuneError its code, a ZodError EINVAL, a fault the internal code', () => {
    expect(toErrorReply(new CommuneError(ErrorCode.ENOTFOUND, 'no such job'), ErrorCode.ESCHEDULER)).toMatchObject({ code: ErrorCode.ENOTFOUND });
    expect(toErrorReply(z.object({ a: z.number() }).safeParse({}).error, ErrorCode.ESCHEDULER)).toMatchObject({ code: ErrorCode.EINVAL });
    const fault = toHttpError(postgresError('23505', 'duplicate key value violates unique constraint "x"', 'ERROR'), ErrorCode.EBANK);
    expect(fault.status).toBe(500);
    expect(fault.body).toEqual({ ok: false, code: ErrorCode.EBANK, message: 'internal error (logged by the service)' });
  });
});

describe('ServiceExceptionFilter logs the service\'s own failures only', () => {
  /** Runs the filter on `exception`; returns the reply it sent and whether it logged an unexpected failure. */
  function filter(exception: unknown): { status: number; body: unknown; logged: boolean } {
    let logged = false;
    const spy = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => {
      logged = true;
    });
    const sent = { status: 0, body: undefined as unknown };
    const response = { status: (code: number) => ({ json: (body: unknown) => Object.assign(sent, { status: code, body }) }) };
    const host = { switchToHttp: () => ({ getResponse: () => response }) };
    try {
      new ServiceExceptionFilter(ErrorCode.ESCHEDULER).catch(exception, host as never);
    } finally {
      spy.mockRestore();
    }
    return { ...sent, logged };
  }

  it('a database outage: 503 EUNAVAILABLE, not logged as a failure', () => {
    expect(filter(new Error('Connection terminated unexpectedly'))).toMatchObject({ status: 503, body: { code: ErrorCode.EUNAVAILABLE }, logged: false });
  });

  it('a health check\'s own 503 body passes through unlogged', () => {
    const degraded = { status: 'degraded', postgres: 'unavailable (ECONNREFUSED)', redis: 'ok', down: ['postgres'] };
    expect(filter(new HttpException(degraded, HttpStatus.SERVICE_UNAVAILABLE))).toEqual({ status: 503, body: degraded, logged: false });
  });

  it('anything else: 500 with the internal code, logged', () => {
    expect(filter(new TypeError('x is undefined'))).toMatchObject({ status: 500, body: { code: ErrorCode.ESCHEDULER }, logged: true });
  });
});
