import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './services.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');
const schedulerMain = join(repoRoot, 'apps/scheduler/dist/main.js');
const workerCli = join(repoRoot, 'apps/worker/dist/cli.js');
const bankMain = join(repoRoot, 'apps/bank/dist/main.js');

export interface RunningProcess {
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  kill(signal: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string>, label: string): RunningProcess {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
    if (process.env.TEST_SHOW_OUTPUT) process.stderr.write(`[${label}] ${chunk}`);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    exited,
    kill: (signal) => child.kill(signal),
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A service process (built dist) on `port`, once its /health answers. One that exits first fails
 * at once; one that does not answer within 30 s is killed. Either failure carries its last output.
 */
async function startService(main: string, env: Record<string, string>, port: number, label: string): Promise<RunningProcess & { url: string }> {
  const proc = start([main], { ...env, PORT: String(port) }, `${label}:${port}`);
  const url = `http://127.0.0.1:${port}`;
  const exited = () => proc.child.exitCode !== null || proc.child.signalCode !== null;
  try {
    await waitFor(`${label} on ${port} to answer /health`, async () => exited() || (await fetch(`${url}/health`).catch(() => null))?.ok, 30_000, 100);
    if (exited()) throw new Error(`${label} on ${port} exited (${proc.child.exitCode ?? proc.child.signalCode}) before answering /health`);
  } catch (error) {
    proc.kill('SIGKILL');
    await Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    throw new Error(`${(error as Error).message}; its last output:\n${proc.output().split('\n').slice(-30).join('\n')}`);
  }
  return { ...proc, url };
}

/** A scheduler replica as a real process (built dist), on a free port; resolves once /health answers. */
export function spawnScheduler(env: Record<string, string>, port: number): Promise<RunningProcess & { url: string }> {
  return startService(schedulerMain, env, port, 'scheduler');
}

/** The bank as a real process (built dist), on `port`; resolves once /health answers. */
export function spawnBank(env: Record<string, string>, port: number): Promise<RunningProcess & { url: string }> {
  return startService(bankMain, env, port, 'bank');
}

/** A `commune-worker` process connected to `url`. */
export function spawnWorker(url: string, sandboxes: number, extraArgs: string[] = []): RunningProcess {
  return start([workerCli, '--scheduler', url, '--sandboxes', String(sandboxes), ...extraArgs], {}, `worker`);
}

/** Connected workers reported by one replica's /metrics. */
export async function connectedWorkers(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('commune_workers_connected '));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** A port that was free a moment ago (bound to 0, read, released). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A private Distributed Computer as real processes for e2e suites: two scheduler replicas on one
 * isolated deployment, and two `commune-worker` processes (2 sandboxes each) on replica B, so a
 * client on replica A sees results cross replicas on every job.
 */
export interface TwoReplicaCommune {
  env: Record<string, string>;
  replicaA: RunningProcess & { url: string };
  replicaB: RunningProcess & { url: string };
  workers: RunningProcess[];
  stop(): Promise<void>;
}

export async function startTwoReplicaCommune(env: Record<string, string>): Promise<TwoReplicaCommune> {
  const { dropIsolated } = await import('./services.js');
  const replicaA = await spawnScheduler(env, await freePort());
  const replicaB = await spawnScheduler(env, await freePort());
  const workers = [spawnWorker(replicaB.url, 2), spawnWorker(replicaB.url, 2)];
  await waitFor('two workers connected to replica B', async () => (await connectedWorkers(replicaB.url)) === 2, 20_000, 100);
  return {
    env, replicaA, replicaB, workers,
    async stop() {
      await Promise.all(workers.map((worker) => worker.stop()));
      await Promise.all([replicaA.stop(), replicaB.stop()]);
      await dropIsolated(env);
    },
  };
}

/**
 * One scheduler and `workers` `commune-worker` processes (`sandboxes` each), as the conformance
 * suites run them. `addWorker` starts one more and waits until the scheduler counts it;
 * `stopWorker` stops one and waits until the scheduler lets it go.
 */
export interface OneSchedulerCommune {
  env: Record<string, string>;
  scheduler: RunningProcess & { url: string };
  workers: RunningProcess[];
  addWorker(extraArgs?: string[], sandboxes?: number): Promise<RunningProcess>;
  stopWorker(worker: RunningProcess): Promise<void>;
  stop(): Promise<void>;
}

export async function startOneSchedulerCommune(env: Record<string, string>, workerCount = 2, sandboxes = 2): Promise<OneSchedulerCommune> {
  const { dropIsolated } = await import('./services.js');
  const scheduler = await spawnScheduler(env, await freePort());
  const workers: RunningProcess[] = [];
  const connected = (count: number, what: string) => waitFor(what, async () => (await connectedWorkers(scheduler.url)) === count, 20_000, 100);
  for (let i = 0; i < workerCount; i++) workers.push(spawnWorker(scheduler.url, sandboxes));
  await connected(workerCount, `${workerCount} workers connected`);
  return {
    env, scheduler, workers,
    async addWorker(extraArgs = [], workerSandboxes = sandboxes) {
      const worker = spawnWorker(scheduler.url, workerSandboxes, extraArgs);
      workers.push(worker);
      await connected(workers.length, `worker ${workers.length} connected`);
      return worker;
    },
    async stopWorker(worker) {
      workers.splice(workers.indexOf(worker), 1);
      await worker.stop();
      await connected(workers.length, `${workers.length} workers left`);
    },
    async stop() {
      await Promise.all(workers.map((worker) => worker.stop()));
      await scheduler.stop();
      await dropIsolated(env);
    },
  };
}
