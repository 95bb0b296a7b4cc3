import { createCompute } from '../compute.js';
import type { AcceptedEvent, Job } from '../job.js';
import { contextFor, FakeLink, jobStatus } from '../test-support.js';

const jobId = 'j_0000000001';

describe('the accepted event', () => {
  it("is the job handle (dcp-client's `({ id })`) with `job`, the deployed spec (the spec's `{ job }`)", async () => {
    const link = new FakeLink();
    const compute = createCompute(contextFor(link));
    const job = compute.for([1, 2], (x: number) => x * 2);
    job.public = { name: 'doubles' };
    const seen: Array<{ id: unknown; destructured: unknown; job: unknown; keys: string[]; self: unknown; listeners: number; isJob: boolean }> = [];
    job.on('accepted', function (this: Job, event: AcceptedEvent) {
      const { id } = event;
      seen.push({
        id: event.id,
        destructured: id,
        job: event.job,
        keys: Object.keys({ ...event }),
        self: this,
        // A method called on the event runs on the handle (its private fields included).
        listeners: event.listenerCount('accepted'),
        isJob: event instanceof compute.Job,
      });
    });
    const running = job.exec();
    const sink = await link.nextAttach();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ id: jobId, destructured: jobId, self: job, listeners: 1, isJob: true });
    expect(seen[0]!.job).toBe(link.deploys[0]!.job);
    expect(seen[0]!.job).toMatchObject({ public: { name: 'doubles' }, slicePaymentOffer: '0', inputSet: { kind: 'array' } });
    expect(seen[0]!.keys).toEqual(expect.arrayContaining(['id', 'public', 'status', 'job']));
    sink.onResults([{ sliceIndex: 0, value: 2 }, { sliceIndex: 1, value: 4 }]);
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 2, distributed: 2, computed: 2 }));
    expect(Array.from(await running)).toEqual([2, 4]);
  });

  it('reads the handle live and cannot replace `job`', async () => {
    const link = new FakeLink();
    const job = createCompute(contextFor(link)).for([1], (x: number) => x);
    let event: AcceptedEvent | undefined;
    job.on('accepted', (accepted: AcceptedEvent) => (event = accepted));
    const running = job.exec();
    const sink = await link.nextAttach();
    sink.onResults([{ sliceIndex: 0, value: 1 }]);
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, distributed: 1, computed: 1 }));
    await running;
    expect(event!.status.runStatus).toBe('finished');
    expect(() => {
      (event as { job: unknown }).job = {};
    }).toThrow(TypeError);
  });
});
