import BigNumber from 'bignumber.js';
import { ErrorCode } from '@commune/protocol';
import { RangeObject } from '@commune/ranges';
import { createCompute, workSourceOf } from './compute.js';
import { Job } from './job.js';
import { contextFor, FakeLink } from './test-support.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

function square(i: number) {
  return i * i;
}

describe('compute.for', () => {
  const compute = createCompute(contextFor(new FakeLink()));

  it('form 1: a plain range object travels as its description', () => {
    const job = compute.for({ start: 10, end: 13, step: 2 }, square);
    expect(job).toBeInstanceOf(Job);
    expect(job).toBeInstanceOf(compute.Job);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 10, end: 13, step: 2 } });
    expect(job.workSource).toBe(square.toString());
    expect(job.workArguments).toEqual([]);
  });

  it('form 1: a RangeObject with group, and arguments', () => {
    const job = compute.for(new RangeObject({ start: 10, end: 13, group: 2 }), (i: number[], k: number) => i[1] - i[0] + k, [5]);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 10, end: 13, group: 2 } });
    expect(job.workArguments).toEqual([5]);
  });

  it('form 1: a sparse range object', () => {
    const job = compute.for({ sparse: [{ start: 1, end: 2 }, { start: 10, end: 11 }] } as never, square);
    expect(job.inputSet.sliceCount).toBe(4);
    expect(job.inputSet.sliceDatum(2)).toBe(10);
  });

  it('form 2a: start, end, step, work, arguments', () => {
    const job = compute.for(0, 10, 5, square, ['a', 'b']);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 0, end: 10, step: 5 } });
    expect(job.inputSet.sliceCount).toBe(3);
    expect(job.workArguments).toEqual(['a', 'b']);
  });

  it('form 2b: start, end, work, arguments (spec example 1)', () => {
    const job = compute.for(1, 3, function (i: number) {
      return i * 10;
    });
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 1, end: 3 } });
    expect(job.workSource).toMatch(/^function ?\(i\) ?\{/);
  });

  it('form 2: bigint and BigNumber bounds stay exact as decimal strings', () => {
    const job = compute.for(new BigNumber('0.1'), 10n, new BigNumber('0.3'), square);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: '0.1', end: '10', step: '0.3' } });
  });

  it('form 4: an array travels as its values', () => {
    const job = compute.for([123, 456], square);
    expect(job.inputSet.describe()).toEqual({ kind: 'array', values: [123, 456] });
  });

  it('form 4: a generator, and a generator function, are read once into an array', () => {
    function* colours() {
      yield 'red';
      yield 'blue';
    }
    expect(compute.for(colours(), square).inputSet.describe()).toEqual({ kind: 'array', values: ['red', 'blue'] });
    expect(compute.for(colours, square).inputSet.describe()).toEqual({ kind: 'array', values: ['red', 'blue'] });
    expect(compute.for(new Set([1, 2]), square).inputSet.describe()).toEqual({ kind: 'array', values: [1, 2] });
  });

  it('form 3: {ranges: [...]} and an array of range objects both make a multi-range job (more in input-sets.spec.ts)', () => {
    expect(compute.for({ ranges: [{ start: 1, end: 2 }] }, square).inputSet.describe()).toEqual({ kind: 'multi', ranges: [{ kind: 'range', range: { start: 1, end: 2 } }] });
    expect(compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], square).inputSet.sliceCount).toBe(6);
  });

  it('a string work is sent as it is', () => {
    expect(compute.for([1], '(i) => i + 1').workSource).toBe('(i) => i + 1');
  });

  it('refuses what is not an input set', () => {
    expect(() => compute.for(42 as never, square)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => compute.for('abc' as never, square)).toThrow(codeMatching(ErrorCode.EINVAL));
  });

  it('refuses arguments that are not Array-like', () => {
    expect(() => compute.for([1], square, 7 as never)).toThrow(/Array-like/);
  });

  it('copies the arguments array, so later changes do not leak into the job', () => {
    const args = [1];
    const job = compute.for([1], square, args);
    args.push(2);
    expect(job.workArguments).toEqual([1]);
  });

  it('job handles start free, collating, unnamed and not deployed', () => {
    const job = compute.for([1], square);
    expect(job.collateResults).toBe(true);
    expect(job.slicePaymentOffer).toBe(0);
    expect(job.public).toEqual({});
    expect(job.requirements).toEqual({});
    expect(job.id).toBeUndefined();
    expect(job.status).toEqual({ runStatus: 'new', total: undefined, distributed: 0, computed: 0 });
  });
});

describe('compute.do', () => {
  const compute = createCompute(contextFor(new FakeLink()));

  it('form 1: one slice whose input is 0', () => {
    const job = compute.do(() => 42, ['x']);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 0, end: 0 } });
    expect(job.workArguments).toEqual(['x']);
  });

  it('form 2: n slices with inputs 0..n-1', () => {
    const job = compute.do(5, square, [1]);
    expect(job.inputSet.describe()).toEqual({ kind: 'range', range: { start: 0, end: 4 } });
    expect([...job.inputSet.slices()]).toEqual([0, 1, 2, 3, 4]);
    expect(job.workSource).toBe(square.toString());
  });

  it('form 2 refuses n that is not a positive integer', () => {
    expect(() => compute.do(0, square)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => compute.do(2.5, square)).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe(workSourceOf.name, () => {
  it('uses Function.prototype.toString for functions', () => {
    const arrow = (i: number) => i + 1;
    expect(workSourceOf(arrow)).toBe(arrow.toString());
    async function later(i: number) {
      return i;
    }
    expect(workSourceOf(later)).toBe(later.toString());
  });

  it('refuses bound and built-in functions, which have no source', () => {
    expect(() => workSourceOf(square.bind(null))).toThrow(/own source/);
    expect(() => workSourceOf(Math.max)).toThrow(/own source/);
  });

  it('refuses method shorthand, which does not evaluate to a function', () => {
    const holder = {
      work(i: number) {
        return i;
      },
    };
    expect(() => workSourceOf(holder.work)).toThrow(/method shorthand/);
  });

  it('refuses what is neither a function nor a string', () => {
    expect(() => workSourceOf(42)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => workSourceOf('  ')).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe("DCP's remote data is refused before anything is deployed (Commune does not fetch URLs yet)", () => {
  const compute = createCompute(contextFor(new FakeLink()));
  const remote = /remote data .* is not supported by Commune yet; pass the values themselves$/;

  it('an input set holding URLs (dcp-client examples/nodejs/remote-data/simple-job-remote-input.js)', () => {
    expect(() => compute.for([new URL('http://localhost:1234/'), new URL('http://localhost:2345/')], (d: unknown) => d)).toThrow(
      expect.objectContaining({ code: ErrorCode.EINVAL, message: expect.stringMatching(/^the input set: element 0 is a URL \(http:\/\/localhost:1234\/\): /) }),
    );
    expect(() => compute.for((function* () { yield 1; yield new URL('http://data.test/x'); })(), (d: unknown) => d)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^the input set: element 1 is a URL/) }),
    );
    expect(() => compute.for(new URL('http://data.test/') as never, (d: unknown) => d)).toThrow(expect.objectContaining({ message: expect.stringMatching(remote) }));
  });

  it('a work function or an argument given as a URL (simple-job-remote-function.js)', () => {
    expect(() => compute.for([1, 2], new URL('http://localhost:1234/') as never)).toThrow(
      expect.objectContaining({ code: ErrorCode.EINVAL, message: expect.stringMatching(/^the work function is a URL \(http:\/\/localhost:1234\/\): /) }),
    );
    expect(() => compute.for([1], (d: unknown) => d, [new URL('http://args.test/')])).toThrow(expect.objectContaining({ message: expect.stringMatching(/^the work arguments: element 0 is a URL/) }));
  });

  it('new compute.RemoteDataPattern(...) and new compute.RemoteDataSet(...) throw EINVAL (simple-job-remote-data-pattern.js)', () => {
    expect(() => new compute.RemoteDataPattern()).toThrow(
      expect.objectContaining({ code: ErrorCode.EINVAL, message: expect.stringMatching(/^new RemoteDataPattern\(\): remote data/) }),
    );
    expect(() => new compute.RemoteDataSet()).toThrow(expect.objectContaining({ message: expect.stringMatching(remote) }));
  });

  it('URLs nested inside values are not remote data: they travel as values (their JSON text)', () => {
    expect(compute.for([{ link: new URL('http://x.test/') }], (d: unknown) => d).inputSet.describe()).toEqual({ kind: 'array', values: [{ link: new URL('http://x.test/') }] });
  });
});
