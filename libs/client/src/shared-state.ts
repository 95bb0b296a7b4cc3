import type { EventEmitter } from 'node:events';
import {
  CommuneError, decodeState, encodeState, ErrorCode, StateOperationSchema, StateSnapshotReplySchema,
  type StateCondition, type StateObject, type StateOperation, type StateOperationInput, type StateOperationReply,
} from '@commune/protocol';

export type StateOperationAnswer = Extract<StateOperationReply, { ok: true }>;

/** Who arbitrates a job's state: the scheduler (exec) or the client itself (localExec). */
export interface StateArbiter {
  operate(operation: StateOperation): Promise<StateOperationAnswer>;
}

/** The spec's methods, non-enumerable on job.state so that they never mix with its data. */
const methodNames = ['set', 'testAndSet', 'increment', 'on', 'addEventListener', 'off', 'removeEventListener'] as const;
type Listener = (...args: unknown[]) => void;

/** job.state: the job's data, plus set / testAndSet / increment and `change` listeners (delegated to the job handle). */
export interface JobState extends StateObject {
  set(condition?: StateCondition, property?: string): Promise<void>;
  testAndSet(condition?: StateCondition, property?: string): Promise<StateObject | false>;
  increment(property: string, n?: number): Promise<void>;
  on(event: 'change', listener: Listener): JobState;
  addEventListener(event: 'change', listener: Listener): JobState;
  off(event: 'change', listener: Listener): JobState;
  removeEventListener(event: 'change', listener: Listener): JobState;
}

/**
 * spec "Shared State" in the client: job.state is an object of data whose methods ask the arbiter
 * (the scheduler after exec(), the client during localExec()); the job handle is its EventEmitter
 * and emits `change` each time a state from the arbiter replaces the data.
 */
export class JobStateController {
  readonly state: JobState;
  /** The version the data holds; -1 while it is only what the program put there. */
  version = -1;

  constructor(private readonly job: EventEmitter, private readonly arbiter: () => StateArbiter) {
    const state = {} as JobState;
    const operate = async (input: StateOperationInput): Promise<StateOperationAnswer> => {
      const operation = StateOperationSchema.parse(input);
      const answer = await this.arbiter().operate(operation);
      this.apply(answer.version, answer.state);
      return answer;
    };
    const setInput = (test: boolean, condition?: StateCondition, property?: string): StateOperationInput => ({
      kind: 'set',
      test,
      state: this.text(),
      ...(condition !== undefined || property !== undefined ? { condition, property } : {}),
    });
    const methods: Record<(typeof methodNames)[number], unknown> = {
      set: async (condition?: StateCondition, property?: string) => {
        await operate(setInput(false, condition, property));
      },
      testAndSet: async (condition?: StateCondition, property?: string) => {
        const answer = await operate(setInput(true, condition, property));
        return answer.replaced && answer.previous !== undefined ? (decodeState(answer.previous) as StateObject) : false;
      },
      increment: async (property: string, n = 1) => {
        await operate({ kind: 'increment', property, by: n });
      },
      on: (event: string, listener: Listener) => (job.on(event, listener), state),
      addEventListener: (event: string, listener: Listener) => (job.on(event, listener), state),
      off: (event: string, listener: Listener) => (job.removeListener(event, listener), state),
      removeEventListener: (event: string, listener: Listener) => (job.removeListener(event, listener), state),
    };
    for (const name of methodNames) Object.defineProperty(state, name, { value: methods[name], enumerable: false, writable: false, configurable: false });
    this.state = state;
  }

  /** The data as state text (what exec() deploys, what set() sends). */
  text(): string {
    return encodeState(this.state);
  }

  /** A state from the arbiter: replaces the data and emits `change` when newer than what the data holds. */
  apply(version: number, text: string): boolean {
    if (version <= this.version) return false;
    this.version = version;
    const value = decodeState(text) as StateObject;
    for (const key of Object.keys(this.state)) delete this.state[key];
    for (const key of Object.keys(value)) {
      if ((methodNames as readonly string[]).includes(key)) continue;
      Object.defineProperty(this.state, key, { value: value[key], enumerable: true, writable: true, configurable: true });
    }
    this.job.emit('change', { version });
    return true;
  }

  /** A snapshot reply (state:get / state:subscribe) applied to the data; ESCHEDULER when malformed or refused. */
  applyReply(raw: unknown): void {
    const reply = StateSnapshotReplySchema.safeParse(raw);
    if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, 'malformed state reply');
    if (!reply.data.ok) throw new CommuneError(reply.data.code as ErrorCode, reply.data.message);
    this.apply(reply.data.version, reply.data.state);
  }
}

/** No arbiter: the job is not running anywhere yet. */
export const noStateArbiter: StateArbiter = {
  operate: () => Promise.reject(new CommuneError(ErrorCode.EJOBSTATE, 'job.state is synchronised only while the job runs (exec() or localExec()); set its properties before that')),
};
