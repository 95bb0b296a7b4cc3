/**
 * The in-sandbox runtime, as plain JavaScript source that depends on nothing but ECMAScript, so
 * the same text runs in an isolated-vm context (Node worker, localExec) and in a Web Worker
 * (browser worker). It is kept as a string rather than a compiled function so that no build
 * step (coverage instrumentation, downlevelling) can slip host references into it.
 *
 * Evaluating the source yields a bootstrap function:
 *
 *   bootstrap(report, limits) -> { install(work, args, jobPublic, spreadDatum), runChunk(seq, datums), wasmReserved() }
 *
 * `bootstrap` defines the sandbox globals (`progress`, `console`, `work`) on `globalThis`.
 * `install` makes `work` the function this context runs (one job per context).
 * `addModule(id, factory, requires)` and `setMain(requires)` (before `install`, for a job with
 * modules, spec job.requires()) give the context its CommonJS modules: `factory` is the module's
 * source compiled by the host as `function (exports, require, module, __filename, __dirname)`,
 * `requires` maps its require() specifiers to module ids; `setMain` says what the work function's
 * global `require` resolves. Only those modules load (each evaluated once per context, i.e. per
 * sandbox per job); anything else, Node built-ins included, throws MODULE_NOT_FOUND.
 * `runChunk(seq, datums)` runs the work function over each datum in turn, inside the sandbox,
 * and resolves with the number of slices it finished. As it goes it calls
 * `report(kind, seq, position, a, b, c)`, `position` being the datum's index in `datums`:
 *
 *   RuntimeReport.ok        a: result as JSON text (null for undefined), b: elapsed ms
 *   RuntimeReport.error     a: { code, name, message, stack? }, b: elapsed ms
 *   RuntimeReport.progress  a: 0..1 to six significant digits, or -1 when indeterminate
 *                           (the first call of a slice, then at most every progressReportIntervalMs),
 *                           b: the argument given to progress() (a number, a string cut to 100
 *                           characters, or null), c: calls not reported since the previous report
 *   RuntimeReport.console   a: level, b: message, c: same (identical messages folded, or undefined)
 *   RuntimeReport.custom    a: event name, b: value as JSON text
 *   RuntimeReport.memory    a: what went over the limit (text); the host ends the slice with
 *                           ESANDBOXMEMORY and disposes the sandbox (the job's code also gets a RangeError)
 *
 * WebAssembly memory lives outside the JS heap, where an isolate's heap limit does not see it. The
 * runtime wraps the WebAssembly namespace so that every memory (made with `new WebAssembly.Memory`
 * or defined by an instantiated module) reserves its largest size, min(its maximum, the budget),
 * against `limits.wasmMemoryPages` per context; a memory or instance that would go over it, or a
 * grow() past it, reports `memory`. Memories no longer reachable stop counting once collected (the
 * runtime asks for a collection, through a `gc` global if the host gives one, before refusing).
 * The host is expected to also cap any one memory at the budget (V8's --wasm-max-mem-pages), which
 * bounds growth from inside wasm code (memory.grow) the same way. `wasmReserved()` says how many
 * bytes the context's memories reserve, for a host that weighs what a context holds.
 *
 * Exactly one of ok/error is reported per datum, and every report about a datum comes before
 * its ok/error, so a host learns which datum is running from the count of outcomes so far.
 * The host is expected to call `report` asynchronously and cheaply (an ivm.Callback with
 * `ignored: true`, or postMessage).
 *
 * The host removes globals that are not ECMAScript before bootstrap if its environment has any
 * (isolated-vm contexts have none beyond V8's `console`, which bootstrap replaces).
 */
export const RuntimeReport = { ok: 0, error: 1, progress: 2, console: 3, custom: 4, memory: 5 } as const;
export type RuntimeReportKind = (typeof RuntimeReport)[keyof typeof RuntimeReport];

export interface RuntimeLimits {
  /** Longest result (and work.emit value), in bytes; JSON text longer than this many characters fails at once. */
  maxResultBytes: number;
  /** progress() reports the first call of a slice, then at most one per this interval. */
  progressReportIntervalMs: number;
  /** Console entries reported per slice; the rest are counted and summarised at the slice's end. */
  maxConsoleEntriesPerSlice: number;
  /** Longest console message, characters; longer ones are cut. */
  maxConsoleMessageChars: number;
  /** work.emit() events reported per slice; the rest are dropped and summarised. */
  maxCustomEventsPerSlice: number;
  /** Characters of console messages and work.emit() JSON reported per slice, together; the rest are dropped and summarised. Absent: no limit. */
  maxEventCharsPerSlice?: number;
  /** Deepest nesting of a work.emit() value; deeper ones throw a RangeError (code ETOODEEP) in the work function. */
  maxValueDepth: number;
  /** WebAssembly memory one context may hold, in 64 KiB pages; absent: not counted. */
  wasmMemoryPages?: number;
}

export const sandboxRuntimeSource: string = String.raw`(function communeSandboxRuntime(report, limits) {
  'use strict';
  var OK = 0, ERROR = 1, PROGRESS = 2, CONSOLE = 3, CUSTOM = 4, MEMORY = 5;
  var global = globalThis;
  var stringify = JSON.stringify;
  var dateNow = Date.now;
  var apply = Reflect.apply;
  var isArray = Array.isArray;
  var freeze = Object.freeze;
  var defineProperty = Object.defineProperty;
  var keysOf = Object.keys;
  var objectIs = Object.is;
  var String_ = String;
  var Number_ = Number;
  var TypeError_ = TypeError;
  var RangeError_ = RangeError;
  var ErrorProto = Error.prototype;
  var isPrototypeOf = Object.prototype.isPrototypeOf;
  var symbolToString = Symbol.prototype.toString;
  var WeakSet_ = WeakSet;
  var weakSetHas = WeakSet.prototype.has;
  var weakSetAdd = WeakSet.prototype.add;
  var MAX_RESULT = limits.maxResultBytes;
  var PROGRESS_INTERVAL = limits.progressReportIntervalMs;
  var MAX_CONSOLE = limits.maxConsoleEntriesPerSlice;
  var MAX_MESSAGE = limits.maxConsoleMessageChars;
  var MAX_CUSTOM = limits.maxCustomEventsPerSlice;
  var MAX_EVENT_CHARS = typeof limits.maxEventCharsPerSlice === 'number' ? limits.maxEventCharsPerSlice : Infinity;
  var MAX_DEPTH = limits.maxValueDepth;
  var charCodeAt = String.prototype.charCodeAt;
  var PERCENT = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*%\s*$/i;

  var current = null;
  var job = null;
  var hasOwn = Object.prototype.hasOwnProperty;
  var createObject = Object.create;
  var Error_ = Error;
  /** job.requires(): module id -> { factory, requires, module (null until loaded) }; specifier -> id for the work function. */
  var moduleFiles = createObject(null);
  var mainRequires = createObject(null);

  function safeString(value) {
    try { return String_(value); } catch (e) { return '[unprintable]'; }
  }

  function withoutRuntimeFrames(stack) {
    var lines = stack.split('\n'), kept = [];
    for (var i = 0; i < lines.length; i++) if (lines[i].indexOf('commune-runtime.js') < 0) kept.push(lines[i]);
    return kept.join('\n');
  }

  function describeError(error, code) {
    var name = 'Error', message, stack;
    try {
      if (error !== null && (typeof error === 'object' || typeof error === 'function')) {
        var n = error.name, m = error.message, s = error.stack;
        if (typeof n === 'string' && n) name = n;
        message = typeof m === 'string' ? m : safeString(error);
        if (typeof s === 'string') stack = withoutRuntimeFrames(s);
      } else {
        message = safeString(error);
      }
    } catch (e) {
      message = 'the work function threw a value that cannot be inspected';
    }
    var described = { code: code, name: name, message: message };
    if (stack !== undefined) described.stack = stack;
    return described;
  }

  function round6(ratio) { return Number_(ratio.toPrecision(6)); }

  function progress(value) {
    var ratio;
    if (value === undefined) {
      ratio = -1;
    } else if (typeof value === 'number') {
      if (!(value >= 0 && value <= 1)) throw new TypeError_('progress(): a number must be between 0 and 1, got ' + value);
      ratio = value;
    } else if (typeof value === 'string') {
      var match = PERCENT.exec(value);
      if (match === null) throw new TypeError_('progress(): a string must be a percentage such as "50%", got ' + stringify(value));
      ratio = Number_(match[1]) / 100;
      if (!(ratio >= 0 && ratio <= 1)) throw new TypeError_('progress(): a percentage must be between 0% and 100%, got ' + stringify(value));
    } else {
      throw new TypeError_('progress() accepts a number between 0 and 1, a percentage string such as "50%", or no argument');
    }
    var slice = current;
    if (slice !== null) {
      var now = dateNow();
      if (now - slice.progressReportedAt >= PROGRESS_INTERVAL) {
        slice.progressReportedAt = now;
        flushSame(slice);
        var throttled = slice.progressThrottled;
        slice.progressThrottled = 0;
        report(PROGRESS, slice.seq, slice.pos, ratio < 0 ? -1 : round6(ratio), typeof value === 'string' ? value.slice(0, 100) : value === undefined ? null : value, throttled);
      } else {
        slice.progressThrottled++;
      }
    }
    return true;
  }

  function formatValue(value) {
    switch (typeof value) {
      case 'string': return value;
      case 'number': return objectIs(value, -0) ? '-0' : String_(value);
      case 'bigint': return String_(value) + 'n';
      case 'boolean': case 'undefined': return String_(value);
      case 'symbol': return apply(symbolToString, value, []);
      case 'function': return '[Function' + (value.name ? ': ' + value.name : ' (anonymous)') + ']';
    }
    if (value === null) return 'null';
    try {
      if (apply(isPrototypeOf, ErrorProto, [value])) {
        var stack = value.stack;
        return typeof stack === 'string' && stack ? stack : safeString(value.name) + ': ' + safeString(value.message);
      }
      var seen = new WeakSet_();
      var text = stringify(value, function (key, item) {
        if (typeof item === 'bigint') return String_(item) + 'n';
        if (typeof item === 'function') return '[Function' + (item.name ? ': ' + item.name : ' (anonymous)') + ']';
        if (typeof item === 'symbol') return apply(symbolToString, item, []);
        if (item === undefined) return key === '' ? item : 'undefined';
        if (item !== null && typeof item === 'object') {
          if (apply(weakSetHas, seen, [item])) return '[Circular]';
          apply(weakSetAdd, seen, [item]);
        }
        return item;
      });
      return text === undefined ? safeString(value) : text;
    } catch (e) {
      return safeString(value);
    }
  }

  function emitConsole(slice, level, message, same) {
    if (typeof message !== 'string') return;
    if (slice.consoleCount >= MAX_CONSOLE || slice.eventChars + message.length > MAX_EVENT_CHARS) { slice.consoleDropped++; return; }
    slice.consoleCount++;
    slice.eventChars += message.length;
    report(CONSOLE, slice.seq, slice.pos, level, message, same);
  }

  function flushSame(slice) {
    if (slice.same > 0) {
      var same = slice.same;
      slice.same = 0;
      emitConsole(slice, slice.lastLevel, slice.lastMessage, same);
    }
  }

  function makeLogger(level) {
    return function () {
      var slice = current;
      if (slice === null) return;
      var message = '';
      for (var i = 0; i < arguments.length; i++) {
        if (i > 0) message += ' ';
        message += formatValue(arguments[i]);
        if (message.length > MAX_MESSAGE) break;
      }
      if (message.length > MAX_MESSAGE) message = message.slice(0, MAX_MESSAGE) + '... (cut at ' + MAX_MESSAGE + ' characters)';
      if (slice.lastMessage === message && slice.lastLevel === level) { slice.same++; return; }
      flushSame(slice);
      slice.lastLevel = level;
      slice.lastMessage = message;
      emitConsole(slice, level, message, undefined);
    };
  }

  function emit(name, value) {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
      throw new TypeError_('work.emit(name, value): name must be a string of 1 to 200 characters');
    }
    var json;
    try { json = stringify(value); } catch (e) { throw new TypeError_('work.emit(): the value is not JSON: ' + describeError(e, '').message); }
    if (json === undefined) {
      if (value !== undefined) throw new TypeError_('work.emit(): the value is not JSON (' + typeof value + ')');
      json = 'null';
    }
    if (json.length > MAX_RESULT) throw new RangeError_('work.emit(): the value is larger than ' + MAX_RESULT + ' bytes');
    if (nestingExceeds(json, MAX_DEPTH)) {
      var deep = new RangeError_('work.emit(): the value is nested deeper than ' + MAX_DEPTH + ' levels');
      deep.code = 'ETOODEEP';
      throw deep;
    }
    var slice = current;
    if (slice === null) return false;
    if (slice.customCount >= MAX_CUSTOM || slice.eventChars + json.length > MAX_EVENT_CHARS) { slice.customDropped++; return false; }
    slice.customCount++;
    slice.eventChars += json.length;
    report(CUSTOM, slice.seq, slice.pos, name, json);
    return true;
  }

  /** True when the JSON text nests arrays/objects more than max levels (brackets in strings do not count). */
  function nestingExceeds(text, max) {
    var length = text.length, depth = 0;
    if (length < 2 * (max + 1)) return false;
    for (var i = 0; i < length; i++) {
      var c = apply(charCodeAt, text, [i]);
      if (c === 34) {
        for (i++; i < length; i++) {
          var d = apply(charCodeAt, text, [i]);
          if (d === 92) i++;
          else if (d === 34) break;
        }
      } else if (c === 91 || c === 123) {
        if (++depth > max) return true;
      } else if (c === 93 || c === 125) {
        depth--;
      }
    }
    return false;
  }

  function endSlice(slice) {
    flushSame(slice);
    if (slice.consoleDropped > 0) {
      report(CONSOLE, slice.seq, slice.pos, 'warn', slice.consoleDropped + ' more console messages of this slice were dropped (at most ' + MAX_CONSOLE + ' per slice, and ' + MAX_EVENT_CHARS + ' characters of console and work.emit() together)', undefined);
    }
    if (slice.customDropped > 0) {
      report(CONSOLE, slice.seq, slice.pos, 'warn', slice.customDropped + ' more work.emit() events of this slice were dropped (at most ' + MAX_CUSTOM + ' per slice, and ' + MAX_EVENT_CHARS + ' characters of console and work.emit() together)', undefined);
    }
  }

  function define(name, value) {
    defineProperty(global, name, { value: value, writable: true, enumerable: false, configurable: true });
  }

  define('progress', progress);
  define('console', freeze({
    log: makeLogger('log'),
    debug: makeLogger('debug'),
    info: makeLogger('info'),
    warn: makeLogger('warn'),
    error: makeLogger('error'),
  }));

  function deepFreeze(value) {
    if (value !== null && typeof value === 'object') {
      freeze(value);
      var keys = keysOf(value);
      for (var i = 0; i < keys.length; i++) deepFreeze(value[keys[i]]);
    }
    return value;
  }

  // ---- modules (spec job.requires()): CommonJS semantics over the job's own modules only.

  function addModule(id, factory, requires) {
    if (typeof id !== 'string' || typeof factory !== 'function') throw new TypeError_('addModule(id, factory, requires)');
    moduleFiles[id] = { factory: factory, requires: requires || createObject(null), module: null };
  }

  function setMain(requires) {
    mainRequires = requires || createObject(null);
  }

  function dirnameOf(id) {
    var slash = id.lastIndexOf('/');
    return slash < 0 ? '' : id.slice(0, slash);
  }

  function normalizePath(path) {
    var parts = path.split('/'), kept = [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      if (part === '' || part === '.') continue;
      if (part === '..' && kept.length > 0 && kept[kept.length - 1] !== '..') kept.pop();
      else kept.push(part);
    }
    return kept.join('/');
  }

  var extensions = ['', '.js', '.json', '.cjs', '/index.js', '/index.json'];

  /** The id a require() from module fromId (null: the work function) names, or undefined. */
  function resolveModule(fromId, specifier) {
    var map = fromId === null ? mainRequires : moduleFiles[fromId].requires;
    if (apply(hasOwn, map, [specifier])) return map[specifier];
    // The work function sees only what job.requires() declared; a module may also reach its
    // bundled neighbours by relative path (e.g. a require() whose argument is computed).
    if (fromId === null || !(specifier.slice(0, 2) === './' || specifier.slice(0, 3) === '../')) return undefined;
    var base = normalizePath(dirnameOf(fromId) + '/' + specifier);
    for (var i = 0; i < extensions.length; i++) {
      if (apply(hasOwn, moduleFiles, [base + extensions[i]])) return base + extensions[i];
    }
    return undefined;
  }

  function moduleNotFound(specifier, fromId) {
    var message = "Cannot find module '" + specifier + "'";
    if (fromId === null) {
      var declared = keysOf(mainRequires), names = '';
      for (var i = 0; i < declared.length; i++) names += (i > 0 ? ', ' : '') + "'" + declared[i] + "'";
      message += declared.length === 0
        ? ': this job declared no modules (job.requires())'
        : ': the work function can require only the modules its job declared with job.requires(): ' + names;
    } else {
      message += " from module '" + fromId + "': it was not bundled with the job";
    }
    var error = new Error_(message + '; sandboxes have no Node built-ins, file system or network');
    error.code = 'MODULE_NOT_FOUND';
    return error;
  }

  function loadModule(id) {
    var file = moduleFiles[id];
    if (file.module !== null) return file.module.exports;
    var module = { id: id, filename: id, loaded: false, exports: {} };
    // Cached before it runs, as in Node: a require() cycle gets the exports so far.
    file.module = module;
    try {
      apply(file.factory, module.exports, [module.exports, makeRequire(id), module, id, dirnameOf(id)]);
    } catch (error) {
      file.module = null;
      throw error;
    }
    module.loaded = true;
    return module.exports;
  }

  function makeRequire(fromId) {
    return function require(specifier) {
      if (typeof specifier !== 'string' || specifier.length === 0) throw new TypeError_('require(id): id must be a non-empty string');
      var id = resolveModule(fromId, specifier);
      if (id === undefined) throw moduleNotFound(specifier, fromId);
      return loadModule(id);
    };
  }

  define('require', makeRequire(null));

  // ---- WebAssembly memory: counted against limits.wasmMemoryPages (see the header).

  var collectGarbage = typeof global.gc === 'function' ? global.gc : null;
  /** Bytes of WebAssembly memory this context reserves (memories not yet known to be collected included). */
  var wasmReservedBytes = function () { return 0; };
  // V8's gc global cannot be deleted (non-configurable) but can be emptied for good.
  if (collectGarbage !== null) defineProperty(global, 'gc', { value: undefined, writable: false });

  function memoryExceeded(what) {
    var slice = current;
    if (slice !== null) report(MEMORY, slice.seq, slice.pos, what);
    var error = new RangeError_(what + ": over the sandbox's memory limit");
    error.code = 'ESANDBOXMEMORY';
    throw error;
  }

  (function guardWebAssembly() {
    var WA = global.WebAssembly;
    var BUDGET = limits.wasmMemoryPages;
    if (typeof WA !== 'object' || WA === null || typeof BUDGET !== 'number' || !(BUDGET > 0)) return;
    var PAGE = 65536;
    var getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
    var construct = Reflect.construct;
    var Number_isNaN = Number.isNaN;
    var mathMin = Math.min, mathPow = Math.pow;
    var OrigMemory = WA.Memory, OrigInstance = WA.Instance, OrigModule = WA.Module;
    var origGrow = OrigMemory.prototype.grow;
    var memoryBuffer = getOwnPropertyDescriptor(OrigMemory.prototype, 'buffer').get;
    var origInstantiate = WA.instantiate, origCompile = WA.compile;
    var moduleImports = OrigModule.imports, moduleExports = OrigModule.exports;
    var abByteLength = getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get;
    var sabByteLength = typeof SharedArrayBuffer === 'function' ? getOwnPropertyDescriptor(SharedArrayBuffer.prototype, 'byteLength').get : null;
    var TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
    var taBuffer = getOwnPropertyDescriptor(TypedArrayProto, 'buffer').get;
    var taOffset = getOwnPropertyDescriptor(TypedArrayProto, 'byteOffset').get;
    var taLength = getOwnPropertyDescriptor(TypedArrayProto, 'byteLength').get;
    var taSet = TypedArrayProto.set;
    var dvBuffer = getOwnPropertyDescriptor(DataView.prototype, 'buffer').get;
    var dvOffset = getOwnPropertyDescriptor(DataView.prototype, 'byteOffset').get;
    var dvLength = getOwnPropertyDescriptor(DataView.prototype, 'byteLength').get;
    var isView = ArrayBuffer.isView;
    var Uint8Array_ = Uint8Array;
    var WeakMap_ = WeakMap, weakMapGet = WeakMap.prototype.get, weakMapSet = WeakMap.prototype.set, weakMapHas = WeakMap.prototype.has;
    var promiseThen = Promise.prototype.then;
    var registerFinalizer = FinalizationRegistry.prototype.register;
    var cleanupSome = typeof FinalizationRegistry.prototype.cleanupSome === 'function' ? FinalizationRegistry.prototype.cleanupSome : null;

    /** Pages reserved by the memories alive (or not yet known to be collected) in this context. */
    var reserved = 0;
    wasmReservedBytes = function () { return reserved * PAGE; };
    function released(pages) { reserved -= pages; }
    // Not a WeakRef: creating or reading one keeps its target alive until the current turn ends.
    var finalizers = new FinalizationRegistry(released);
    /** Module -> pages its own memory reserves (0: it has none or imports it). */
    var modulePages = new WeakMap_();

    function bufferLength(buffer) {
      try { return apply(abByteLength, buffer, []); } catch (e) { return apply(sabByteLength, buffer, []); }
    }

    /** Whether pages more fit the budget, collecting unreachable memories first when they do not. */
    function fits(pages) {
      if (reserved + pages <= BUDGET) return true;
      if (collectGarbage !== null) {
        collectGarbage();
        if (cleanupSome !== null) apply(cleanupSome, finalizers, [released]);
      }
      return reserved + pages <= BUDGET;
    }

    function track(holder, pages) {
      if (pages <= 0) return;
      apply(registerFinalizer, finalizers, [holder, pages]);
      reserved += pages;
    }

    function reservationOf(maximum) {
      return maximum === undefined ? BUDGET : mathMin(maximum, BUDGET);
    }

    function pagesOf(value, what) {
      if (value === undefined) return undefined;
      var n = Number_(value);
      if (Number_isNaN(n)) throw new TypeError_(what + ' must be a number');
      return n;
    }

    /** The bytes of a BufferSource, copied, so that what is checked is what is compiled. */
    function bytesOf(source) {
      var buffer, offset, length;
      if (isView(source)) {
        try {
          buffer = apply(taBuffer, source, []); offset = apply(taOffset, source, []); length = apply(taLength, source, []);
        } catch (e) {
          buffer = apply(dvBuffer, source, []); offset = apply(dvOffset, source, []); length = apply(dvLength, source, []);
        }
      } else {
        buffer = source; offset = 0; length = bufferLength(source);
      }
      var copy = new Uint8Array_(length);
      apply(taSet, copy, [new Uint8Array_(buffer, offset, length)]);
      return copy;
    }

    /**
     * The pages a module's own memory reserves, from its memory section (0 when it has none; the
     * whole budget when the section cannot be read, e.g. 64-bit memories).
     */
    function ownMemoryPages(bytes) {
      var length = bytes.length, pos = 8;
      function leb() {
        var result = 0, shift = 0, byte;
        do {
          if (pos >= length || shift > 28) throw 0;
          byte = bytes[pos++];
          result += (byte & 0x7f) * mathPow(2, shift);
          shift += 7;
        } while (byte & 0x80);
        return result;
      }
      try {
        while (pos < length) {
          var id = bytes[pos++];
          var size = leb();
          var end = pos + size;
          if (id === 5) {
            var count = leb();
            if (count === 0) return 0;
            if (count > 1) return BUDGET * count;
            var flags = bytes[pos++];
            if (flags & 4) return BUDGET;
            var minimum = leb();
            var maximum = flags & 1 ? leb() : undefined;
            return minimum > BUDGET ? minimum : reservationOf(maximum);
          }
          pos = end;
        }
        return 0;
      } catch (e) {
        return BUDGET;
      }
    }

    function remember(module, pages) {
      apply(weakMapSet, modulePages, [module, pages]);
      return module;
    }

    function pagesOfModule(module) {
      return apply(weakMapHas, modulePages, [module]) ? apply(weakMapGet, modulePages, [module]) : BUDGET;
    }

    /** After an instance is made: its own memory counts for as long as it (or its exported memory) lives. */
    function trackInstance(module, instance, pages) {
      if (pages <= 0) return instance;
      var holder = instance;
      var exportsList = moduleExports(module);
      for (var i = 0; i < exportsList.length; i++) {
        if (exportsList[i].kind === 'memory') { holder = instance.exports[exportsList[i].name]; break; }
      }
      track(holder, pages);
      if (reserved > BUDGET) memoryExceeded('WebAssembly instance');
      return instance;
    }

    function importsMemory(module) {
      var list = moduleImports(module);
      for (var i = 0; i < list.length; i++) if (list[i].kind === 'memory') return true;
      return false;
    }

    function admitInstance(module) {
      var pages = importsMemory(module) ? 0 : pagesOfModule(module);
      if (pages > BUDGET || !fits(pages)) memoryExceeded('WebAssembly instance memory');
      return pages;
    }

    function Memory(descriptor) {
      if (new.target === undefined) throw new TypeError_("WebAssembly.Memory must be invoked with 'new'");
      if (descriptor === null || typeof descriptor !== 'object') throw new TypeError_('WebAssembly.Memory(): Argument 0 must be a memory descriptor');
      var initial = pagesOf(descriptor.initial, 'initial');
      if (initial === undefined) initial = pagesOf(descriptor.minimum, 'minimum');
      var maximum = pagesOf(descriptor.maximum, 'maximum');
      // The maximum is clamped to the budget, so that V8 itself stops growth from inside wasm code.
      var plain = { initial: initial, maximum: reservationOf(maximum) };
      if (descriptor.shared !== undefined) plain.shared = !!descriptor.shared;
      var pages = reservationOf(maximum);
      if (initial > BUDGET || !fits(pages)) memoryExceeded('new WebAssembly.Memory()');
      var memory = construct(OrigMemory, [plain], new.target);
      track(memory, pages);
      return memory;
    }

    function grow(delta) {
      var current = apply(memoryBuffer, this, []);
      var n = Number_(delta);
      if (n >= 0 && bufferLength(current) / PAGE + n > BUDGET) memoryExceeded('WebAssembly.Memory grow()');
      return apply(origGrow, this, [n]);
    }

    function Module(bytes) {
      if (new.target === undefined) throw new TypeError_("WebAssembly.Module must be invoked with 'new'");
      var copy = bytesOf(bytes);
      return remember(construct(OrigModule, [copy], new.target), ownMemoryPages(copy));
    }

    function Instance(module, imports) {
      if (new.target === undefined) throw new TypeError_("WebAssembly.Instance must be invoked with 'new'");
      var pages = admitInstance(module);
      return trackInstance(module, construct(OrigInstance, [module, imports], new.target), pages);
    }

    function compile(bytes) {
      var copy = bytesOf(bytes);
      var pages = ownMemoryPages(copy);
      return apply(promiseThen, origCompile(copy), [function (module) { return remember(module, pages); }]);
    }

    function instantiate(source, imports) {
      if (apply(weakMapHas, modulePages, [source])) {
        var pages = admitInstance(source);
        return apply(promiseThen, origInstantiate(source, imports), [function (instance) { return trackInstance(source, instance, pages); }]);
      }
      var copy = bytesOf(source);
      var own = ownMemoryPages(copy);
      if (own > BUDGET || !fits(own)) memoryExceeded('WebAssembly instance memory');
      return apply(promiseThen, origInstantiate(copy, imports), [function (result) {
        remember(result.module, own);
        trackInstance(result.module, result.instance, importsMemory(result.module) ? 0 : own);
        return result;
      }]);
    }

    function replace(name, wrapper, original) {
      if (original.prototype !== undefined) {
        defineProperty(wrapper, 'prototype', { value: original.prototype, writable: false, enumerable: false, configurable: false });
        defineProperty(original.prototype, 'constructor', { value: wrapper, writable: true, enumerable: false, configurable: true });
      }
      defineProperty(WA, name, { value: wrapper, writable: true, enumerable: false, configurable: true });
    }

    replace('Memory', Memory, OrigMemory);
    replace('Module', Module, OrigModule);
    replace('Instance', Instance, OrigInstance);
    defineProperty(Module, 'imports', { value: moduleImports, writable: true, enumerable: false, configurable: true });
    defineProperty(Module, 'exports', { value: moduleExports, writable: true, enumerable: false, configurable: true });
    defineProperty(Module, 'customSections', { value: OrigModule.customSections, writable: true, enumerable: false, configurable: true });
    defineProperty(OrigMemory.prototype, 'grow', { value: grow, writable: true, enumerable: false, configurable: true });
    defineProperty(WA, 'compile', { value: compile, writable: true, enumerable: false, configurable: true });
    defineProperty(WA, 'instantiate', { value: instantiate, writable: true, enumerable: false, configurable: true });
    // The wrappers are the only way in: nothing may swap the originals back from the namespace or the prototypes.
    freeze(OrigMemory.prototype);
    freeze(OrigModule.prototype);
    freeze(OrigInstance.prototype);
    freeze(WA);
  })();

  function install(work, args, jobPublic, spreadDatum) {
    if (typeof work !== 'function') throw new TypeError_('work is not a function');
    job = { work: work, args: isArray(args) ? args : [], spread: spreadDatum === true };
    define('work', freeze({ emit: emit, job: freeze({ public: deepFreeze(jobPublic || {}) }) }));
  }

  async function runChunk(seq, datums) {
    var work = job.work, args = job.args, spread = job.spread, count = datums.length;
    for (var pos = 0; pos < count; pos++) {
      var slice = {
        seq: seq, pos: pos, startedAt: dateNow(), progressReportedAt: -Infinity, progressThrottled: 0,
        lastLevel: null, lastMessage: null, same: 0, consoleCount: 0, consoleDropped: 0,
        customCount: 0, customDropped: 0, eventChars: 0,
      };
      current = slice;
      var kind = OK, payload;
      try {
        var datum = datums[pos];
        var result;
        if (spread && isArray(datum)) result = apply(work, undefined, datum.concat(args));
        else if (args.length === 0) result = work(datum);
        else result = apply(work, undefined, [datum].concat(args));
        if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof result.then === 'function') {
          result = await result;
          current = slice;
        }
        var json;
        try {
          json = stringify(result);
        } catch (e) {
          throw new TypeError_('the result is not JSON-serialisable: ' + describeError(e, '').message);
        }
        if (json === undefined) {
          if (result !== undefined) throw new TypeError_('the result is not JSON-serialisable (' + typeof result + ')');
          json = 'null';
        }
        if (json.length > MAX_RESULT) {
          kind = ERROR;
          payload = { code: 'ERESULTTOOBIG', name: 'RangeError', message: 'the result is larger than ' + MAX_RESULT + ' bytes' };
        } else {
          payload = json;
        }
      } catch (error) {
        kind = ERROR;
        payload = describeError(error, 'EWORKFUNCTION');
      }
      current = slice;
      endSlice(slice);
      current = null;
      report(kind, seq, pos, payload, dateNow() - slice.startedAt);
    }
    return count;
  }

  return { install: install, runChunk: runChunk, addModule: addModule, setMain: setMain, wasmReserved: function () { return wasmReservedBytes(); } };
})`;
