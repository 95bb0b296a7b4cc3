/**
 * The in-sandbox half of shared state (spec "Shared State", "Synchronization", "Events"): the
 * global `worker` with `worker.state`, as plain ECMAScript source (like runtime-source.ts, so the
 * same text can run in an isolated-vm context and in a Web Worker). One per job context.
 *
 * Evaluating the source yields a setup function:
 *
 *   setup(send, version, initial) -> { update(version, state), settle(id, ok, value) }
 *
 * `worker.state` holds the job's state as data (own enumerable properties) and, non-enumerable,
 * the spec's methods: set(), set(condition, property), testAndSet(...), increment(property, n = 1),
 * and addEventListener / on / removeEventListener / off for `change`. The methods send
 * `send(WorkerStateMessage.operation, id, {kind, test?, condition?, property?, state?, by?})`
 * (state: a JSON-rule copy of worker.state that keeps non-finite numbers) and return a Promise
 * settled by `settle(id, ok, value)`: testAndSet resolves with the snapshot before the replacement
 * or false, set and increment with undefined, and an error the arbiter gave rejects with an Error
 * carrying its `code`. The first `change` listener sends `send(WorkerStateMessage.listening, 0, true)`.
 * `update(version, state)` replaces the data when `version` is newer than what the object holds
 * and then calls the `change` listeners (with `this` = worker.state and {version}).
 */
export const WorkerStateMessage = { operation: 0, listening: 1 } as const;

export const workerStateSource: string = String.raw`(function communeWorkerState(send, version, initial) {
  'use strict';
  var OPERATION = 0, LISTENING = 1;
  var global = globalThis;
  var defineProperty = Object.defineProperty;
  var keysOf = Object.keys;
  var isArray = Array.isArray;
  var hasOwn = Object.prototype.hasOwnProperty;
  var apply = Reflect.apply;
  var freeze = Object.freeze;
  var Promise_ = Promise;
  var Error_ = Error;
  var TypeError_ = TypeError;
  var isFiniteNumber = Number.isFinite;
  var CONDITIONS = { max: 1, min: 1, '<': 1, '>': 1, '<=': 1, '>=': 1, '==': 1, '!=': 1 };
  var METHODS = { set: 1, testAndSet: 1, increment: 1, addEventListener: 1, on: 1, removeEventListener: 1, off: 1 };

  var state = {};
  var current = version;
  var listeners = [];
  var listening = false;
  var pending = {};
  var nextId = 1;

  function dataProperty(target, key, value) {
    defineProperty(target, key, { value: value, writable: true, enumerable: true, configurable: true });
  }

  // JSON.stringify's rules (toJSON, undefined and functions dropped, null in arrays), keeping
  // Infinity, -Infinity and NaN, which the spec's own example relies on.
  function copy(value, seen) {
    if (value === null) return null;
    var type = typeof value;
    if (type === 'number' || type === 'string' || type === 'boolean') return value;
    if (type === 'bigint') throw new TypeError_('worker.state: a BigInt is not JSON');
    if (type !== 'object') return undefined;
    if (typeof value.toJSON === 'function') return copy(value.toJSON(), seen);
    for (var s = 0; s < seen.length; s++) if (seen[s] === value) throw new TypeError_('worker.state: a cyclic structure is not JSON');
    seen.push(value);
    var out, i, item;
    if (isArray(value)) {
      out = [];
      for (i = 0; i < value.length; i++) {
        item = copy(value[i], seen);
        out.push(item === undefined ? null : item);
      }
    } else {
      out = {};
      var keys = keysOf(value);
      for (i = 0; i < keys.length; i++) {
        item = copy(value[keys[i]], seen);
        if (item !== undefined) dataProperty(out, keys[i], item);
      }
    }
    seen.pop();
    return out;
  }

  function replace(value) {
    var keys = keysOf(state), i;
    for (i = 0; i < keys.length; i++) delete state[keys[i]];
    keys = keysOf(value);
    for (i = 0; i < keys.length; i++) if (!hasOwn.call(METHODS, keys[i])) dataProperty(state, keys[i], value[keys[i]]);
  }

  function request(operation) {
    return new Promise_(function (resolve, reject) {
      var id = nextId++;
      pending[id] = { resolve: resolve, reject: reject };
      try {
        send(OPERATION, id, operation);
      } catch (error) {
        delete pending[id];
        reject(error);
      }
    });
  }

  function setOperation(name, test, condition, property) {
    var operation = { kind: 'set', test: test, state: copy(state, []) };
    if (condition === undefined && property === undefined) return operation;
    if (typeof condition !== 'string' || !hasOwn.call(CONDITIONS, condition)) {
      throw new TypeError_(name + '(condition, property): condition must be one of max, min, <, >, <=, >=, ==, !=');
    }
    if (typeof property !== 'string' || property.length === 0) throw new TypeError_(name + '(condition, property): property must be a non-empty string');
    operation.condition = condition;
    operation.property = property;
    return operation;
  }

  function nothing() { return undefined; }

  function set(condition, property) {
    return request(setOperation('set', false, condition, property)).then(nothing);
  }

  function testAndSet(condition, property) {
    try {
      return request(setOperation('testAndSet', true, condition, property));
    } catch (error) {
      return Promise_.reject(error);
    }
  }

  function increment(property, n) {
    if (n === undefined) n = 1;
    if (typeof property !== 'string' || property.length === 0) throw new TypeError_('increment(property, n): property must be a non-empty string');
    if (typeof n !== 'number' || !isFiniteNumber(n)) throw new TypeError_('increment(property, n): n must be a finite number');
    return request({ kind: 'increment', property: property, by: n }).then(nothing);
  }

  function on(event, listener) {
    if (event === 'change' && typeof listener === 'function') {
      listeners.push(listener);
      if (!listening) {
        listening = true;
        send(LISTENING, 0, true);
      }
    }
    return state;
  }

  function off(event, listener) {
    if (event === 'change') {
      for (var i = listeners.length - 1; i >= 0; i--) {
        if (listeners[i] === listener) {
          listeners.splice(i, 1);
          break;
        }
      }
    }
    return state;
  }

  function method(name, fn) {
    defineProperty(state, name, { value: fn, writable: false, enumerable: false, configurable: false });
  }
  method('set', set);
  method('testAndSet', testAndSet);
  method('increment', increment);
  method('addEventListener', on);
  method('on', on);
  method('removeEventListener', off);
  method('off', off);
  replace(initial || {});
  defineProperty(global, 'worker', { value: freeze({ state: state }), writable: true, enumerable: false, configurable: true });

  function update(newVersion, value) {
    if (!(newVersion > current)) return false;
    current = newVersion;
    replace(value || {});
    var called = listeners.slice();
    for (var i = 0; i < called.length; i++) {
      try {
        apply(called[i], state, [{ version: newVersion }]);
      } catch (error) {
        // a listener's error is its own; the others still hear about the change
      }
    }
    return true;
  }

  function settle(id, ok, value) {
    var waiting = pending[id];
    if (waiting === undefined) return;
    delete pending[id];
    if (ok) {
      waiting.resolve(value);
      return;
    }
    var error = new Error_(value && typeof value.message === 'string' ? value.message : 'the state operation failed');
    if (value && typeof value.code === 'string') error.code = value.code;
    waiting.reject(error);
  }

  return { update: update, settle: settle };
})`;
