// The process supervisor of `pnpm start`: it starts Node children and keeps them running.
import { spawn } from 'node:child_process';

function pipeLines(stream, label, out) {
  let buffer = '';
  stream.on('data', (chunk) => {
    buffer += chunk;
    const lines = buffer.split('\n');
    buffer = lines.pop();
    for (const line of lines) out.write(`${label.padEnd(10)}| ${line}\n`);
  });
}

/**
 * A supervisor for Node children. `run(label, args, env)` starts `node args` and keeps it running:
 * a child that exits is started again after a backoff (`firstBackoffMs`, doubling to
 * `maxBackoffMs`; back to the first once it has run for `healthyAfterMs`). The other children keep
 * running meanwhile. `stop()` sends SIGINT to every child and resolves when all have exited (or
 * after `stopTimeoutMs`). Output lines are prefixed with the child's label.
 */
export function createSupervisor({
  cwd = process.cwd(),
  stdout = process.stdout,
  stderr = process.stderr,
  firstBackoffMs = 1000,
  maxBackoffMs = 30_000,
  healthyAfterMs = 60_000,
  stopTimeoutMs = 5000,
} = {}) {
  const children = new Map();
  let stopping = false;

  function run(label, args, env = {}) {
    const entry = { child: null, backoffMs: firstBackoffMs, startedAt: 0, starts: 0 };
    const start = () => {
      const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      entry.child = child;
      entry.startedAt = Date.now();
      entry.starts++;
      pipeLines(child.stdout, label, stdout);
      pipeLines(child.stderr, label, stderr);
      child.on('exit', (code, signal) => {
        if (stopping) return;
        if (Date.now() - entry.startedAt > healthyAfterMs) entry.backoffMs = firstBackoffMs;
        stderr.write(`${label} exited (${signal ?? code}); restarting it in ${entry.backoffMs / 1000} s\n`);
        setTimeout(() => stopping || start(), entry.backoffMs);
        entry.backoffMs = Math.min(entry.backoffMs * 2, maxBackoffMs);
      });
    };
    start();
    children.set(label, entry);
    return entry;
  }

  function stop() {
    stopping = true;
    const running = [...children.values()].map((entry) => entry.child).filter((child) => child && child.exitCode === null && child.signalCode === null);
    for (const child of running) child.kill('SIGINT');
    const exited = Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))));
    return Promise.race([exited, new Promise((resolve) => setTimeout(resolve, stopTimeoutMs).unref())]);
  }

  return { run, stop, children, get stopping() { return stopping; } };
}
