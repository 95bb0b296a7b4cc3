#!/usr/bin/env node
/**
 * commune-worker: connects to a scheduler's /worker namespace and runs its work in sandboxes.
 * Arguments and config are parsed in options.ts, the work loop lives in supervisor.ts.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { io } from 'socket.io-client';
import { Namespaces, newId, type WorkerHello } from '@commune/protocol';
import { SandboxPool } from '@commune/sandbox';
import { Earnings } from './earnings.js';
import { createLogger } from './log.js';
import { parseCommandLine } from './options.js';
import { Supervisor, type WorkerSocket } from './supervisor.js';

/** After the first signal the process exits by this time whatever happens (the spec promises < 30 s). */
const hardExitMs = 28_000;
/** Longest wait for the sandboxes to be disposed before exiting anyway. */
const closeWaitMs = 1000;

function version(): string {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version?: string }).version ?? '0';
  } catch {
    return '0';
  }
}

function main(): void {
  const parsed = parseCommandLine(process.argv.slice(2), {
    env: process.env,
    readFile: (path) => readFileSync(path, 'utf8'),
    defaultSandboxes: availableParallelism(),
  });
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    process.exit(0);
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`commune-worker: ${parsed.message}\nTry 'commune-worker --help'.\n`);
    process.exit(2);
  }
  const options = parsed.options;
  const log = createLogger({ json: options.json, quiet: options.quiet });
  const workerVersion = version();

  const hello: WorkerHello = {
    workerId: newId('w'),
    sandboxes: options.sandboxes,
    // What this Node.js worker truly has (spec "Requirements Object Properties"): V8 uses fdlibm; no OffscreenCanvas.
    capabilities: {
      engine: { es7: true, es2019: true, es2022: true, v8: true, spidermonkey: false },
      environment: { fdlibm: true, offscreenCanvas: false },
    },
    version: workerVersion,
    minWage: options.minWage,
    computeGroups: options.computeGroups,
    publicGroup: options.publicGroup,
  };
  if (options.earnings !== undefined) hello.earnings = options.earnings;
  // With a bank and an earnings account the worker shows the account's balance (at start and in its summaries).
  const earnings = options.bank !== undefined && options.earnings !== undefined ? new Earnings({ bank: options.bank, address: options.earnings }) : undefined;

  const pool = new SandboxPool(options.sandboxes);
  // The same hello (so the same worker id) on every connection: the scheduler keys this worker's
  // leases by it, so after its replica drains or dies the worker's results are taken by another.
  // With one URL socket.io reconnects to it by itself; with several the supervisor moves on to the next.
  const several = options.schedulers.length > 1;
  const socketFor = (url: string): WorkerSocket =>
    io(`${url}${Namespaces.worker}`, {
      transports: ['websocket'],
      auth: hello,
      autoConnect: false,
      forceNew: true,
      reconnection: !several,
      reconnectionAttempts: Infinity,
      reconnectionDelay: 500,
      reconnectionDelayMax: 10_000,
      randomizationFactor: 0.5,
    });
  const supervisor = new Supervisor({ schedulers: options.schedulers, socketFor, pool, log, workerId: hello.workerId, earnings });
  const schedulers = options.schedulers.join(', ');

  log.info(
    `commune-worker ${workerVersion}: worker ${hello.workerId}, ${options.sandboxes} sandboxes, scheduler${several ? 's' : ''} ${schedulers}, ` +
      `earnings ${options.earnings ?? 'none (free jobs only)'}, minimum wage ${options.minWage} DCC per slice`,
    {
      event: 'start',
      workerId: hello.workerId,
      sandboxes: options.sandboxes,
      schedulers: options.schedulers,
      earnings: options.earnings,
      minWage: options.minWage,
      bank: options.bank,
      version: workerVersion,
    },
  );

  // Exiting while an isolate still runs can crash V8's teardown: stop the sandboxes first.
  const exitNow = (code: number): void => {
    setTimeout(() => process.exit(code), closeWaitMs).unref();
    pool.close().finally(() => process.exit(code));
  };

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`, { event: 'exit_now', signal });
      exitNow(130);
      return;
    }
    stopping = true;
    log.info(`${signal}: finishing up (send ${signal} again to exit at once)`, { event: 'signal', signal });
    setTimeout(() => {
      log.error(`shutdown took longer than ${hardExitMs / 1000} s; exiting`, { event: 'exit_timeout' });
      exitNow(1);
    }, hardExitMs).unref();
    supervisor
      .stop()
      .then(() => pool.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log.error(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`, { event: 'exit_error' });
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  supervisor.start();
}

main();
