import { io, type Socket } from 'socket.io-client';
import { Limits } from '@commune/protocol';
import { freePort, spawnScheduler, type RunningProcess } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment } from '../support/services.js';
import { connectClient, request } from '../support/sockets.js';

type Reply = { ok?: boolean; code?: string; message?: string; [key: string]: unknown };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** `[[[...]]]`, `depth` levels, as JSON text (built as text: nothing recursive on our side). */
const deepJson = (depth: number, leaf = '') => '['.repeat(depth) + leaf + ']'.repeat(depth);
/** Room left in a frame of Limits.maxMessageBytes for the payload of `prefix[...]`. */
const roomIn = (prefix: string) => Limits.maxMessageBytes - prefix.length - 64;

/**
 * socket.io's own parser facing hostile packets, over real sockets against a real scheduler process
 * (128 MB heap, as `pnpm start` runs it). Before the bounded parser, one 4 MiB packet of nested
 * brackets exhausted that heap inside JSON.parse (the process aborted), and a flat one
 * (`[[],[],...]`) held the event loop 6 to 8 s. Now nested ones are cut before JSON.parse and
 * answered ETOODEEP; ones with too many values, too many attachments, or brackets that never close
 * and binary packets nested too deep are refused before JSON.parse (the connection is closed) and counted. The scheduler's own
 * event-loop delay monitor says how long each attack held it.
 */
describe('hostile packets for the socket.io parser (security, e2e)', () => {
  const env = isolatedEnvironment({ NODE_OPTIONS: '--max-old-space-size=128' });
  let scheduler: RunningProcess & { url: string };
  const sockets: Socket[] = [];
  /**
   * Receiving any 4 MiB message (a valid 4 MiB string) holds this scheduler's loop ~0.1-0.25 s on
   * this machine; before the bounded parser a flat 4 MiB bracket packet held it 6-8 s and a nested
   * one killed the process.
   */
  const stallBoundMs = 1000;

  beforeAll(async () => {
    scheduler = await spawnScheduler(env, await freePort());
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await scheduler?.stop();
    await dropIsolated(env);
  }, 30_000);

  async function worker(workerId: string): Promise<Socket> {
    const socket = io(`${scheduler.url}/worker`, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { workerId, sandboxes: 1, capabilities: {} } });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${workerId} did not connect`)), 5000);
      socket.once('connect', () => { clearTimeout(timer); resolve(); });
      socket.once('connect_error', (error) => { clearTimeout(timer); reject(error); });
    });
    return socket;
  }

  function dropped(socket: Socket, ms = 5000): Promise<boolean> {
    if (!socket.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      socket.once('disconnect', () => { clearTimeout(timer); resolve(true); });
    });
  }

  /** Writes `[event, <payloadJson>]` with ack id `ackId` on `nsp` and resolves with the ack, or 'closed'. */
  function rawEmit(socket: Socket, nsp: string, event: string, payloadJson: string, ackId: number, timeoutMs = 15_000): Promise<Reply | 'closed'> {
    const engine = socket.io.engine;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for raw ${event}`)), timeoutMs);
      const prefix = `3${nsp},${ackId}[`;
      const onMessage = (data: unknown) => {
        if (typeof data !== 'string' || !data.startsWith(prefix)) return;
        clearTimeout(timer);
        engine.off('message', onMessage);
        resolve((JSON.parse(data.slice(prefix.length - 1)) as Reply[])[0]!);
      };
      engine.on('message', onMessage);
      socket.once('disconnect', () => { clearTimeout(timer); resolve('closed'); });
      engine.write(`2${nsp},${ackId}[${JSON.stringify(event)},${payloadJson}]`);
    });
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${scheduler.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  async function expectServing(): Promise<void> {
    expect(scheduler.child.exitCode).toBeNull();
    expect(scheduler.child.signalCode).toBeNull();
    expect((await fetch(`${scheduler.url}/health`)).status).toBe(200);
  }

  /**
   * Runs `attack` and resolves with the longest the scheduler's event loop was held meanwhile, in
   * ms: its own perf_hooks.monitorEventLoopDelay maximum (served at /metrics, reset by each read),
   * read just before and 300 ms after the attack.
   */
  async function loopStallDuring<T>(attack: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
    await metric('commune_scheduler_nodejs_eventloop_lag_max_seconds');
    const result = await attack();
    await sleep(300);
    const stallMs = 1000 * await metric('commune_scheduler_nodejs_eventloop_lag_max_seconds');
    return { result, stallMs };
  }

  it('cuts a 4 MiB task:request nested ~2,000,000 deep before parsing: answered ETOODEEP at once, the connection kept, the event loop free', async () => {
    const socket = await worker('w_nested_000001');
    const cutBefore = await metric('commune_socket_containers_cut_total');
    const levels = Math.floor(roomIn('2/worker,1["task:request",]') / 2);
    const payload = deepJson(levels);
    const { result, stallMs } = await loopStallDuring(() => rawEmit(socket, '/worker', 'task:request', payload, 1));
    console.log(`4 MiB nested task:request (${levels} levels): the scheduler's event loop held at most ${stallMs.toFixed(1)} ms`);
    expect(result).toMatchObject({ ok: false, code: 'ETOODEEP' });
    expect(socket.connected).toBe(true);
    expect(stallMs).toBeLessThan(stallBoundMs);
    expect(await metric('commune_socket_containers_cut_total')).toBe(cutBefore + 1);
    // The connection still works for the next message.
    expect(await request<Reply>(socket, 'task:request', { maxSlices: 1 })).toMatchObject({ tasks: [] });
    await expectServing();
  }, 45_000);

  it('refuses a 4 MiB flat packet of empty arrays (over maxValueNodes values) before parsing: connection closed, counted, the event loop free', async () => {
    const socket = await worker('w_flat_0000001');
    const before = await metric('commune_socket_packets_refused_total{reason="nodes"}');
    const count = Math.floor(roomIn('2/worker,1["task:request",[]]') / 3);
    const payload = `[${Array(count).fill('[]').join(',')}]`;
    expect(count).toBeGreaterThan(Limits.maxValueNodes);
    const { result, stallMs } = await loopStallDuring(() => rawEmit(socket, '/worker', 'task:request', payload, 1));
    console.log(`4 MiB flat task:request (${count} empty arrays): the scheduler's event loop held at most ${stallMs.toFixed(1)} ms`);
    expect(result).toBe('closed');
    expect(stallMs).toBeLessThan(stallBoundMs);
    expect(await metric('commune_socket_packets_refused_total{reason="nodes"}')).toBe(before + 1);
    await expectServing();
  }, 45_000);

  it('a stream of 4 MiB bracket packets from several connections (nested on /client and /worker, flat, never closing) leaves the scheduler answering', async () => {
    const malformedBefore = await metric('commune_socket_packets_refused_total{reason="malformed"}');
    const clients = await Promise.all([0, 1].map(async () => { const c = await connectClient(scheduler.url); sockets.push(c); return c; }));
    const workers = await Promise.all([0, 1, 2].map((i) => worker(`w_stream_${String(i).padStart(6, '0')}`)));
    const levels = Math.floor(roomIn('2/client,1["deploy",]') / 2);
    const nested = deepJson(levels);
    const nestedEvents = `{"jobId":"j_0000000000aa","custom":[{"sliceIndex":0,"event":"x","value":${deepJson(levels - 40)}}]}`;
    const flat = `[${Array(Math.floor(roomIn('2/worker,1["task:request",[]]') / 3)).fill('[]').join(',')}]`;
    // Brackets that never close: refused by the scan (JSON.parse would have walked 4 MiB of them first).
    const unclosed = '['.repeat(roomIn('2/worker,1["task:request",]'));
    const { result, stallMs } = await loopStallDuring(async () => {
      const replies: (Reply | 'closed')[] = [];
      for (let round = 0; round < 2; round++) {
        replies.push(...await Promise.all([
          ...clients.map((client, i) => rawEmit(client, '/client', 'deploy', nested, 10 + round * 2 + i)),
          rawEmit(workers[0]!, '/worker', 'task:events', nestedEvents, 20 + round),
        ]));
      }
      replies.push(...await Promise.all([rawEmit(workers[1]!, '/worker', 'task:request', flat, 30), rawEmit(workers[2]!, '/worker', 'task:request', unclosed, 31)]));
      return replies;
    });
    console.log(`a stream of 8 x 4 MiB bracket packets: the scheduler's event loop held at most ${stallMs.toFixed(1)} ms`);
    expect(result.slice(0, 6)).toEqual(Array(6).fill(expect.objectContaining({ ok: false, code: 'ETOODEEP' })));
    expect(result.slice(6)).toEqual(['closed', 'closed']);
    expect(stallMs).toBeLessThan(stallBoundMs);
    expect(await metric('commune_socket_packets_refused_total{reason="malformed"}')).toBe(malformedBefore + 1);
    await expectServing();
  }, 60_000);

  it('refuses binary packets announcing more attachments than socket.io-parser allows, or nested too deep (placeholders socket.io-parser would rebuild recursively)', async () => {
    const before = await metric('commune_socket_packets_refused_total{reason="attachments"}');
    const many = await worker('w_attach_000001');
    many.io.engine.write('511-/worker,5["task:events",{"_placeholder":true,"num":0}]');
    expect(await dropped(many)).toBe(true);
    expect(await metric('commune_socket_packets_refused_total{reason="attachments"}')).toBe(before + 1);
    // 20,000 levels around a placeholder: refused before socket.io-parser rebuilds it (recursively, over all the data).
    const depthBefore = await metric('commune_socket_packets_refused_total{reason="depth"}');
    const deep = await worker('w_deep_binary_2');
    deep.io.engine.write(`51-/worker,6["task:events",{"jobId":"j_0000000000aa","custom":[{"sliceIndex":0,"event":"x","value":${deepJson(20_000, '{"_placeholder":true,"num":0}')}}]}]`);
    deep.io.engine.write(Buffer.from([1, 2, 3]));
    expect(await dropped(deep)).toBe(true);
    expect(await metric('commune_socket_packets_refused_total{reason="depth"}')).toBe(depthBefore + 1);
    await expectServing();
  }, 30_000);

  it('passes valid messages at the limits untouched: a payload nested Limits.maxValueDepth deep, and one of maxValueNodes values, reach their handler (one more: ETOOBIG from the handler)', async () => {
    const socket = await worker('w_valid_000001');
    const cutBefore = await metric('commune_socket_containers_cut_total');
    // task:events' values are bounded by the payload's depth: 128 levels below the payload is refused by the handler (ETOODEEP), not the parser.
    expect(await rawEmit(socket, '/worker', 'task:request', deepJson(Limits.maxValueDepth - 1, '{"maxSlices":1}'), 40)).toMatchObject({ ok: false, code: 'EINVAL' });
    expect(await rawEmit(socket, '/worker', 'task:request', deepJson(Limits.maxValueDepth + 1), 41)).toMatchObject({ ok: false, code: 'ETOODEEP' });
    expect(await metric('commune_socket_containers_cut_total')).toBe(cutBefore);
    // maxValueNodes values (the payload object, maxSlices, an array and its zeros) pass the parser and the handler's bound;
    // one more passes the parser (its bound has room for the packet's own values) and is refused by the handler (ETOOBIG).
    const wide = (values: number) => `{"maxSlices":1,"pad":[${Array(values - 3).fill('0').join(',')}]}`;
    const atLimit = await rawEmit(socket, '/worker', 'task:request', wide(Limits.maxValueNodes), 42);
    expect(atLimit).not.toBe('closed');
    expect((atLimit as Reply).code).not.toBe('ETOOBIG');
    expect(await rawEmit(socket, '/worker', 'task:request', wide(Limits.maxValueNodes + 1), 43)).toMatchObject({ ok: false, code: 'ETOOBIG' });
    expect(socket.connected).toBe(true);
    await expectServing();
  }, 30_000);
});
