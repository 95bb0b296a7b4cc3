import { describe, expect, it } from '@jest/globals';
import { WorkerNotifier, type WorkerNamespace } from './worker-notifier.js';

/**
 * A namespace double holding `count` sockets: which sockets the notifier wakes, and what it tells
 * the other replicas, is what is under test (delivery itself is socket.io's; the e2e tests use it).
 */
function namespaceOf(count: number) {
  const hinted: string[] = [];
  const published: string[] = [];
  const listeners = new Map<string, () => void>();
  const sockets = new Map<string, { emit(event: string): void }>();
  for (let i = 0; i < count; i++) sockets.set(`s${i}`, { emit: (event: string) => event === 'work:available' && hinted.push(`s${i}`) });
  const namespace = {
    sockets,
    on: (event: string, listener: () => void) => listeners.set(event, listener),
    serverSideEmit: (event: string) => published.push(event),
    emit: () => true,
  } as unknown as WorkerNamespace;
  const fromOtherReplica = () => [...listeners.values()].forEach((listener) => listener());
  return { namespace, sockets, hinted, published, fromOtherReplica };
}

const settle = (ms = WorkerNotifier.rehintMs + 10) => new Promise((resolve) => setTimeout(resolve, ms));

describe(WorkerNotifier.name, () => {
  it('wakes at most maxHintedPerReplica waiting sockets per hint, longest waiting first, and tells the other replicas', async () => {
    const max = WorkerNotifier.maxHintedPerReplica;
    const { namespace, hinted, published } = namespaceOf(max * 2 + 10);
    const notifier = new WorkerNotifier();
    notifier.attach(namespace);
    for (let i = 0; i < max * 2 + 10; i++) notifier.waitingForWork(`s${i}`);
    // Many hints within the coalescing window are one.
    for (let i = 0; i < 50; i++) notifier.workAvailable();
    await settle();
    expect(hinted).toEqual(Array.from({ length: max }, (_, i) => `s${i}`));
    expect(published).toHaveLength(1);
    // A grant that left work ready wakes the next ones; then the rest, never one twice while it waits.
    notifier.moreWorkReady();
    await settle();
    notifier.moreWorkReady();
    await settle();
    expect(hinted).toHaveLength(max * 2 + 10);
    expect(new Set(hinted).size).toBe(max * 2 + 10);
    expect(notifier.waitingCount).toBe(0);
    notifier.onModuleDestroy();
  });

  it('hints only sockets whose last grant was empty, and forgets those that got work or left', async () => {
    const { namespace, hinted } = namespaceOf(4);
    const notifier = new WorkerNotifier();
    notifier.attach(namespace);
    notifier.waitingForWork('s0');
    notifier.waitingForWork('s1');
    notifier.waitingForWork('s2');
    notifier.notWaiting('s1');
    notifier.workAvailable();
    await settle();
    expect(hinted.sort()).toEqual(['s0', 's2']);
    notifier.onModuleDestroy();
  });

  it("wakes this replica's waiting sockets on another replica's hint, without publishing it again", async () => {
    const { namespace, hinted, published, fromOtherReplica } = namespaceOf(3);
    const notifier = new WorkerNotifier();
    notifier.attach(namespace);
    notifier.waitingForWork('s1');
    notifier.waitingForWork('s2');
    fromOtherReplica();
    expect(hinted).toEqual(['s1', 's2']);
    expect(published).toEqual([]);
    notifier.onModuleDestroy();
  });

  it('sends nothing once shutting down', async () => {
    const { namespace, hinted, published } = namespaceOf(2);
    const notifier = new WorkerNotifier();
    notifier.attach(namespace);
    notifier.waitingForWork('s0');
    notifier.workAvailable();
    notifier.onModuleDestroy();
    notifier.workAvailable();
    await settle();
    expect(hinted).toEqual([]);
    expect(published).toEqual([]);
  });
});
