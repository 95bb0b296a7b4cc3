// A child process of bench/connections.mjs that holds many idle worker connections, so that the
// bench's own heap and file descriptors are not the limit. Each connection is what
// apps/worker/src/cli.ts opens: socket.io-client on the websocket transport to `/worker`, with the
// same hello as handshake auth (a fresh workerId each), the same two event listeners, and no work.
// Unlike the real worker it does not reconnect (a dropped connection must show in the count) and it
// binds each connection to a local source address given by the parent (127.0.x.y), because one
// source address has only ~28,000 ephemeral ports (net.ipv4.ip_local_port_range).
//
// Commands from the parent (IPC), each answered with one message:
//   open  {url, first, count, addressBase, perAddress, concurrency, sandboxes}  -> opened
//   poll  {pollMs, pollMaxMs, maxSlices, count}: `count` connections (default all) ask for work as an idle
//         real worker does (task:request; after an empty grant it asks again pollMs later, doubling with
//         each empty grant up to pollMaxMs, jittered: apps/worker/src/poll-backoff.ts) -> polling
//   quiet: stop asking, wait for the answers in flight                          -> polled (counts, latencies)
//   hint  {maxSlices}: each connection asks for work once (an empty grant: the scheduler now counts it
//         as waiting, as it does an idle real worker), then answers the next work:available with one
//         task:request                                                        -> hinting
//   hinted: how many of those were answered so far, and when                   -> hinted
//   stats                                                                       -> stats
//   close: disconnect everything and exit
import { io } from 'socket.io-client';
import { newId } from '@commune/protocol';

const sockets = [];
const disconnects = new Map();
let polling = null;

const capabilities = {
  engine: { es7: true, es2019: true, es2022: true, v8: true, spidermonkey: false },
  environment: { fdlibm: true, offscreenCanvas: false },
};

function openOne(url, localAddress, sandboxes) {
  return new Promise((resolve) => {
    const socket = io(`${url}/worker`, {
      transports: ['websocket'],
      auth: { workerId: newId('w'), sandboxes, capabilities, version: '0.1.0', minWage: '0', computeGroups: [], publicGroup: true },
      forceNew: true, // one connection each (socket.io-client would otherwise share one per URL)
      reconnection: false,
      timeout: 30_000,
      localAddress,
    });
    socket.on('work:available', () => undefined);
    socket.on('job:stop', () => undefined);
    socket.once('connect', () => {
      sockets.push(socket);
      socket.on('disconnect', (reason) => disconnects.set(reason, (disconnects.get(reason) ?? 0) + 1));
      resolve(null);
    });
    socket.once('connect_error', (error) => {
      socket.close();
      resolve(String(error?.message ?? error).slice(0, 120));
    });
  });
}

async function open({ url, first, count, addressBase, perAddress, concurrency, sandboxes }) {
  const started = performance.now();
  const errors = {};
  let failed = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const index = first + next++;
        const address = `${addressBase}.${2 + Math.floor(index / perAddress)}`;
        const error = await openOne(url, address, sandboxes);
        if (error !== null) {
          failed++;
          errors[error] = (errors[error] ?? 0) + 1;
        }
      }
    }),
  );
  return { type: 'opened', opened: count - failed, failed, errors, ms: performance.now() - started, connected: connectedCount() };
}

const connectedCount = () => sockets.reduce((n, socket) => n + (socket.connected ? 1 : 0), 0);

/** Each connection asks for work the way an idle commune-worker does (Supervisor.request / waitForWork). */
function poll({ pollMs, pollMaxMs = pollMs, maxSlices, count = sockets.length }) {
  const state = { stopping: false, inFlight: 0, requests: 0, empty: 0, granted: 0, errors: {}, latencies: [], timers: new Set() };
  const steps = new Map();
  const ask = (socket) => {
    if (state.stopping || !socket.connected) return;
    state.inFlight++;
    state.requests++;
    const t0 = performance.now();
    socket.timeout(10_000).emitWithAck('task:request', { maxSlices }).then(
      (reply) => {
        state.latencies.push(performance.now() - t0);
        if (Array.isArray(reply?.tasks) && reply.tasks.length === 0) state.empty++;
        else if (Array.isArray(reply?.tasks)) state.granted++;
        else state.errors[reply?.code ?? 'malformed'] = (state.errors[reply?.code ?? 'malformed'] ?? 0) + 1;
      },
      (error) => {
        const key = String(error?.message ?? error).slice(0, 80);
        state.errors[key] = (state.errors[key] ?? 0) + 1;
      },
    ).finally(() => {
      state.inFlight--;
      // PollBackoff.next(): [half, all] of the step, which doubles up to pollMaxMs.
      const step = steps.get(socket) ?? pollMs;
      steps.set(socket, Math.min(pollMaxMs, step * 2));
      later(socket, step / 2 + (step / 2) * Math.random());
    });
  };
  const later = (socket, ms) => {
    if (state.stopping) return;
    const timer = setTimeout(() => {
      state.timers.delete(timer);
      ask(socket);
    }, ms);
    state.timers.add(timer);
  };
  // A fleet's workers are not in step: the first requests are spread over one poll interval.
  for (const socket of sockets.slice(0, count)) later(socket, Math.random() * pollMs);
  return state;
}

async function quiet(state) {
  state.stopping = true;
  for (const timer of state.timers) clearTimeout(timer);
  const deadline = Date.now() + 15_000;
  while (state.inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  const { requests, empty, granted, errors, inFlight } = state;
  return { type: 'polled', requests, empty, granted, errors, unanswered: inFlight, latencies: state.latencies.map((ms) => Math.round(ms * 10) / 10) };
}

/**
 * Every connection answers the next 'work:available' hint as an idle commune-worker does (it is
 * waiting for work, so Supervisor.onWorkAvailable asks at once): one task:request each.
 */
function answerHint({ maxSlices }) {
  const state = { requests: 0, empty: 0, granted: 0, errors: {}, latencies: [], firstHintAt: 0, lastAnswerAt: 0 };
  for (const socket of sockets) {
    socket.once('work:available', () => {
      const t0 = performance.now();
      state.firstHintAt ||= Date.now();
      state.requests++;
      socket.timeout(30_000).emitWithAck('task:request', { maxSlices }).then(
        (reply) => {
          state.latencies.push(performance.now() - t0);
          state.lastAnswerAt = Date.now();
          if (Array.isArray(reply?.tasks) && reply.tasks.length === 0) state.empty++;
          else if (Array.isArray(reply?.tasks)) state.granted++;
          else state.errors[reply?.code ?? 'malformed'] = (state.errors[reply?.code ?? 'malformed'] ?? 0) + 1;
        },
        (error) => {
          const key = String(error?.message ?? error).slice(0, 80);
          state.errors[key] = (state.errors[key] ?? 0) + 1;
        },
      );
    });
  }
  return state;
}
let hint = null;

process.on('message', async (message) => {
  try {
    if (message.cmd === 'open') process.send(await open(message));
    else if (message.cmd === 'poll') {
      polling = poll(message);
      process.send({ type: 'polling' });
    } else if (message.cmd === 'quiet') {
      const reply = polling ? await quiet(polling) : { type: 'polled', requests: 0, empty: 0, granted: 0, errors: {}, unanswered: 0, latencies: [] };
      polling = null;
      process.send(reply);
    } else if (message.cmd === 'hint') {
      await Promise.all(sockets.filter((socket) => socket.connected).map((socket) => socket.timeout(60_000).emitWithAck('task:request', { maxSlices: message.maxSlices }).catch(() => null)));
      hint = answerHint(message);
      process.send({ type: 'hinting' });
    } else if (message.cmd === 'hinted') {
      const { requests, empty, granted, errors, firstHintAt, lastAnswerAt } = hint;
      process.send({ type: 'hinted', requests, answered: empty + granted, empty, granted, errors, firstHintAt, lastAnswerAt, latencies: message.final ? hint.latencies.map((ms) => Math.round(ms * 10) / 10) : [] });
    } else if (message.cmd === 'stats') {
      process.send({ type: 'stats', connected: connectedCount(), disconnects: Object.fromEntries(disconnects), rssMb: process.memoryUsage().rss / 2 ** 20 });
    } else if (message.cmd === 'close') {
      for (const socket of sockets) socket.close();
      setTimeout(() => process.exit(0), 200);
    }
  } catch (error) {
    process.send({ type: 'error', message: String(error?.stack ?? error) });
  }
});
// The parent went away: nothing to hold connections for.
process.on('disconnect', () => process.exit(0));
