import { CommuneError, ErrorCode, isCommuneError } from './errors.js';
import { binaryFields, isLittleEndian } from './kvin-binary.js';
import { CtrNumber, type KvinLimits, kvinPrefix, tooDeep, tooManyNodes, unserializable, type TypedArrayName } from './kvin-format.js';

/**
 * KVIN encoder (the format is described in kvin-format.ts). Two paths:
 *
 * - Plain data (strings, booleans, finite numbers other than -0, null, and arrays and plain
 *   objects of plain data, without cycles) is checked by one walk and written as
 *   `{"_serializeVerId":"v9","what":{"raw":<JSON.stringify(value)>}}`: JSON.stringify's own
 *   speed plus the walk.
 * - Anything else is prepared: a first walk refuses what cannot travel (saying where it is) and
 *   checks the limits; a second walk builds the prepared value, numbering objects in the order a
 *   kvin decoder makes them, so that meeting one again becomes `{seen: n}`. A plain-data subtree
 *   inside is still written as `{raw: ...}`.
 *
 * Plain data is written as JSON wherever it is, so plain data met twice arrives as two equal
 * copies, as with JSON and with kvin itself. Every other object (a Date, a Map, an object holding
 * undefined...) keeps its identity: shared references and cycles arrive shared. Telling the two
 * apart by identity would need a Set of every object, which costs more than JSON.stringify.
 */

/** The kinds of object that travel; everything else is refused (see refusal()). */
type Kind = 'object' | 'array' | 'typed' | 'dataview' | 'date' | 'regexp' | 'map' | 'set' | 'error' | 'url' | 'Number' | 'String' | 'Boolean';

/** A plain subtree written as JSON: `{raw: value}`. JSON.stringify writes the instance as {"raw": ...}. */
class Raw {
  constructor(readonly raw: unknown) {}
}
const rawNull = new Raw(null);
const undefinedValue = { undefined: true };

export function encode(value: unknown, limits: KvinLimits): string {
  try {
    let text: string;
    if (typeof value === 'number' && isJsonNumber(value)) text = kvinPrefix + JSON.stringify(value) + '}';
    else if (new PlainCheck(limits).isPlain(value, 0)) text = kvinPrefix + '{"raw":' + JSON.stringify(value) + '}}';
    else text = kvinPrefix + JSON.stringify(new Preparer(limits).run(value)) + '}';
    if (text.length > limits.maxBytes) {
      throw new CommuneError(ErrorCode.ETOOBIG, `the value's KVIN text is ${text.length} characters, more than ${limits.maxBytes}`);
    }
    return text;
  } catch (error) {
    if (isCommuneError(error)) throw error;
    // A getter or Proxy trap of the value threw (or JSON.stringify met something it refuses).
    throw unserializable(`the value could not be read: ${(error as Error)?.message ?? String(error)}`);
  }
}

/** A number JSON writes exactly: finite, and not -0 (JSON writes 0). */
function isJsonNumber(value: number): boolean {
  return value - value === 0 && (value !== 0 || 1 / value > 0);
}

/**
 * Is the value plain data, within the limits, without cycles (JSON.stringify would throw)? Returns
 * false rather than throwing: the prepared path then says precisely what is wrong, if anything is.
 * Every meeting counts against maxNodes, so shared subtrees cannot make JSON.stringify's output
 * (or this walk) grow past it.
 */
class PlainCheck {
  private nodes = 0;
  /** The objects from the root to here: a cycle is an object among its own ancestors. */
  private readonly ancestors: object[] = [];
  constructor(private readonly limits: KvinLimits) {}

  isPlain(value: unknown, depth: number): boolean {
    if (++this.nodes > this.limits.maxNodes) return false;
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return true;
      case 'number':
        return isJsonNumber(value);
      case 'object':
        break;
      default:
        return false;
    }
    if (value === null) return true;
    if (depth >= this.limits.maxDepth || this.ancestors.includes(value)) return false;
    const prototype = Object.getPrototypeOf(value);
    if (prototype === Array.prototype) {
      const array = value as unknown[];
      const length = array.length;
      this.ancestors.push(array);
      // A hole reads as undefined, which is not plain: so a plain array is dense, and then it has
      // named properties exactly when it has more keys than items.
      for (let i = 0; i < length; i++) if (!this.isPlain(array[i], depth + 1)) return false;
      this.ancestors.pop();
      return Object.keys(array).length === length;
    }
    if (prototype !== Object.prototype && prototype !== null) return false;
    const object = value as Record<string, unknown>;
    this.ancestors.push(object);
    // for-in is much faster than Object.keys here; an enumerable property inherited from
    // Object.prototype (which JSON.stringify skips) is only checked needlessly.
    for (const key in object) {
      if (key === '__proto__' || !this.isPlain(object[key], depth + 1)) return false;
    }
    this.ancestors.pop();
    return true;
  }
}

class Preparer {
  /** Values met by the first walk (an object met again counts once more, without its members). */
  private nodes = 0;
  /** Values written by the second walk, plain data met again counted with all of its members (it is written again). */
  private written = 0;
  private binaryBytes = 0;
  /** The objects the first walk met. */
  private readonly met = new Set<object>();
  /** Each object's number in the decoder's list of objects made (second walk). */
  private readonly numbers = new Map<object, number>();
  private nextNumber = 0;
  /** Where the first walk is (keys, indexes, or a description of a Map or Set member), for error messages. */
  private readonly path: Array<string | number> = [];

  constructor(private readonly limits: KvinLimits) {}

  run(value: unknown): unknown {
    this.count(value, 0);
    return this.prepare(value);
  }

  private where(): string {
    if (this.path.length === 0) return 'the value';
    const steps = this.path.map((step) =>
      typeof step === 'number' ? `[${step}]` : step.startsWith('<') ? ` ${step} ` : /^[A-Za-z_$][\w$]*$/.test(step) ? `.${step}` : `[${JSON.stringify(step)}]`,
    );
    return `the value at ${steps.join('').trim()}`;
  }

  private refuse(what: string): CommuneError {
    return unserializable(`${this.where()} is ${what}, which cannot travel as KVIN`);
  }

  /** First walk: bounds, refusals, and how often each object is met. */
  private count(value: unknown, depth: number): void {
    if (++this.nodes > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the value');
    switch (typeof value) {
      case 'function':
        throw this.refuse('a function');
      case 'symbol':
        throw this.refuse('a symbol');
      case 'bigint':
        if (value.toString().length - (value < 0n ? 1 : 0) > this.limits.maxBigIntDigits) {
          throw new CommuneError(ErrorCode.ETOOBIG, `${this.where()} is a BigInt of more than ${this.limits.maxBigIntDigits} digits`);
        }
        return;
      case 'object':
        break;
      default:
        return;
    }
    if (value === null) return;
    if (this.met.has(value)) {
      // kvin 9's decoder never lists a Set among the objects it made (it lists the Set's items
      // array instead), so a second meeting of a Set, a cycle through it included, cannot be written.
      if (kindOf(value) === 'set') throw this.refuse('a Set met a second time (KVIN 9 cannot refer back to a Set)');
      return;
    }
    this.met.add(value);
    const kind = kindOf(value);
    if (typeof kind !== 'string') throw this.refuse(kind.refused);
    if (kind === 'typed' || kind === 'dataview') {
      this.binaryBytes += (value as ArrayBufferView).byteLength;
      if (this.binaryBytes > this.limits.maxBytes) {
        throw new CommuneError(ErrorCode.ETOOBIG, `the value's typed arrays hold more than ${this.limits.maxBytes} bytes`);
      }
      if (!isLittleEndian) throw this.refuse('a typed array on a big-endian machine');
      return;
    }
    if (depth >= this.limits.maxDepth) throw tooDeep(this.limits, 'the value');
    const inner = depth + 1;
    switch (kind) {
      case 'array': {
        const array = value as unknown[];
        const length = array.length;
        if (length > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the value');
        for (let i = 0; i < length; i++) {
          const item = array[i];
          if (item === undefined && !Object.prototype.hasOwnProperty.call(array, i)) continue; // a hole
          this.path.push(i);
          this.count(item, inner);
          this.path.pop();
        }
        // Named properties come after the indexes in key order.
        const keys = Object.keys(array);
        for (let i = keys.length - 1; i >= 0 && !isIndex(keys[i]); i--) this.countMember(keys[i], (array as unknown as Record<string, unknown>)[keys[i]], inner);
        return;
      }
      case 'map':
        for (const [key, item] of value as Map<unknown, unknown>) {
          this.path.push('<a Map key>');
          this.count(key, inner);
          this.path.pop();
          this.path.push('<a Map value>');
          this.count(item, inner);
          this.path.pop();
        }
        break;
      case 'set':
        for (const item of value as Set<unknown>) {
          this.path.push('<a Set item>');
          this.count(item, inner);
          this.path.pop();
        }
        return;
      case 'error':
        for (const [key, item] of errorMembers(value as Error)) this.countMember(key, item, inner);
        return;
      case 'Number':
      case 'String':
      case 'Boolean':
        return;
    }
    // Plain objects, and the own properties of a Map, Date, RegExp or URL.
    for (const key of Object.keys(value)) this.countMember(key, (value as Record<string, unknown>)[key], inner);
  }

  private countMember(key: string, item: unknown, depth: number): void {
    this.path.push(key);
    // kvin's decoder assigns members (o[key] = value), so a member named __proto__ would set the
    // prototype of the object instead of being a property of it.
    if (key === '__proto__') throw this.refuse('a property named __proto__');
    this.count(item, depth);
    this.path.pop();
  }

  /** Second walk: the prepared value (kvin's "prepared object"), which JSON.stringify then writes. */
  private prepare(value: unknown): unknown {
    if (++this.written > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the value (its plain data written once per meeting)');
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value;
      case 'number':
        if (isJsonNumber(value)) return value;
        return Number.isNaN(value) || !Number.isFinite(value) ? { number: String(value) } : { json: '-0' };
      case 'bigint':
        return { bigint: value.toString() };
      case 'undefined':
        return undefinedValue;
    }
    if (value === null) return rawNull;
    const object = value as object;
    const number = this.numbers.get(object);
    if (number !== undefined) return { seen: number };
    const kind = kindOf(object) as Kind;
    switch (kind) {
      case 'object':
        return this.prepareObject(object as Record<string, unknown>);
      case 'array':
        return this.prepareArray(object as unknown[]);
      case 'typed': {
        this.numbers.set(object, this.nextNumber++);
        const name = typedArrayName(object as ArrayBufferView) as TypedArrayName;
        return { ctr: (CtrNumber as Record<string, number>)[name] ?? name, ...binaryFields(object as ArrayBufferView) };
      }
      case 'dataview':
        this.numbers.set(object, this.nextNumber++);
        return { ctr: 'DataView', ...binaryFields(object as ArrayBufferView) };
      case 'map':
        return this.prepareMap(object as Map<unknown, unknown>);
      case 'set': {
        // The decoder lists the Set's items array, not the Set (see count()).
        this.nextNumber++;
        const arr: unknown[] = [];
        for (const item of object as Set<unknown>) arr.push(this.prepare(item));
        return { set: { arr } };
      }
      case 'error':
        return this.prepareError(object as Error);
    }
    // The rest are made by `new C(arg)` (or C(...args)): the decoder lists them before their properties.
    this.numbers.set(object, this.nextNumber++);
    let prepared: { ctr: number | string; arg?: unknown; args?: unknown[]; ps?: Record<string, unknown> };
    switch (kind) {
      case 'date': {
        const time = Date.prototype.getTime.call(object);
        prepared = { ctr: CtrNumber.Date, arg: Number.isNaN(time) ? 'Invalid Date' : Date.prototype.toISOString.call(object) };
        break;
      }
      case 'regexp':
        prepared = { ctr: CtrNumber.RegExp, args: [regExpSource.call(object), regExpFlags.call(object)] };
        break;
      case 'url':
        prepared = { ctr: CtrNumber.URL, arg: (object as URL).href };
        break;
      case 'Number': {
        const number = Number.prototype.valueOf.call(object);
        // kvin writes String(n), which loses -0; Number('-0') is -0.
        return { ctr: CtrNumber.Number, arg: Object.is(number, -0) ? '-0' : String(number) };
      }
      case 'String':
        return { ctr: CtrNumber.String, arg: String.prototype.valueOf.call(object) };
      default:
        // A JSON boolean: kvin writes "false", which its decoder turns into new Boolean("false"), true.
        return { ctr: CtrNumber.Boolean, arg: Boolean.prototype.valueOf.call(object) };
    }
    const ps = this.prepareMembers(Object.keys(object), (key) => (object as Record<string, unknown>)[key]);
    if (ps !== undefined) prepared.ps = ps;
    return prepared;
  }

  private prepareObject(object: Record<string, unknown>): unknown {
    const first = this.nextNumber;
    this.numbers.set(object, this.nextNumber++);
    const ps: Record<string, unknown> = {};
    let plain = true;
    const keys = Object.keys(object);
    for (let i = 0; i < keys.length; i++) {
      const prepared = this.prepare(object[keys[i]]);
      if (plain && !isWrittenAsJson(prepared)) plain = false;
      ps[keys[i]] = prepared;
    }
    if (plain) return this.writtenAsJson(object, first);
    return { ctr: CtrNumber.Object, ps };
  }

  private prepareArray(array: unknown[]): unknown {
    const first = this.nextNumber;
    this.numbers.set(array, this.nextNumber++);
    const length = array.length;
    const keys = Object.keys(array);
    // Keys come as indexes in ascending order, then names: n keys ending with index n - 1 are 0..n-1.
    if (keys.length === length && (length === 0 || keys[length - 1] === String(length - 1))) {
      const arr = new Array<unknown>(length);
      let plain = true;
      for (let i = 0; i < length; i++) {
        const prepared = this.prepare(array[i]);
        if (plain && !isWrittenAsJson(prepared)) plain = false;
        arr[i] = prepared;
      }
      if (plain) return this.writtenAsJson(array, first);
      return { arr };
    }
    // Sparse, or with named properties: the dense start in arr, the other items and the names in
    // ps (the decoder assigns them in key order: indexes first, as here), and the length.
    let dense = 0;
    while (dense < length && Object.prototype.hasOwnProperty.call(array, dense)) dense++;
    const arr = new Array<unknown>(dense);
    for (let i = 0; i < dense; i++) arr[i] = this.prepare(array[i]);
    // Keys 0..dense-1 come first in key order.
    const prepared: { arr: unknown[]; ps?: Record<string, unknown>; len?: number } = { arr };
    const ps = this.prepareMembers(keys.slice(dense), (key) => (array as unknown as Record<string, unknown>)[key]);
    if (ps !== undefined) prepared.ps = ps;
    if (length !== dense) prepared.len = length;
    return prepared;
  }

  /**
   * A plain-data object or array, written as JSON. The decoder lists nothing for a raw value, so
   * the numbers given to it and its members are taken back (its members gave theirs back already,
   * being plain data too), and it is forgotten: met again, it is written again.
   */
  private writtenAsJson(object: object, first: number): Raw {
    this.nextNumber = first;
    this.numbers.delete(object);
    return new Raw(object);
  }

  private prepareMap(map: Map<unknown, unknown>): unknown {
    this.numbers.set(map, this.nextNumber++);
    // The decoder lists the Map, then its keys array and the keys, then its values array and the values.
    this.nextNumber++;
    const keys: unknown[] = [];
    for (const key of map.keys()) keys.push(this.prepare(key));
    this.nextNumber++;
    const values: unknown[] = [];
    for (const item of map.values()) values.push(this.prepare(item));
    const prepared: { mapKeys: { arr: unknown[] }; mapVals: { arr: unknown[] }; ps?: Record<string, unknown> } = { mapKeys: { arr: keys }, mapVals: { arr: values } };
    const ps = this.prepareMembers(Object.keys(map), (key) => (map as unknown as Record<string, unknown>)[key]);
    if (ps !== undefined) prepared.ps = ps;
    return prepared;
  }

  private prepareError(error: Error): unknown {
    this.numbers.set(error, this.nextNumber++);
    const members = new Map(errorMembers(error));
    const ps = this.prepareMembers([...members.keys()], (key) => members.get(key));
    const message = error.message;
    // ctr "Error" by name, as kvin writes it: its decoder then drops the stack of the Error it makes.
    return { ctr: 'Error', arg: typeof message === 'string' ? message : String(message ?? ''), ps: ps ?? {} };
  }

  /**
   * Members prepared in the order the decoder will read them back: the key order of the object
   * JSON.parse makes of ps (indexes ascending, then names as added), which is Object.keys order.
   */
  private prepareMembers(keys: string[], read: (key: string) => unknown): Record<string, unknown> | undefined {
    if (keys.length === 0) return undefined;
    const ps: Record<string, unknown> = {};
    for (const key of keys) ps[key] = undefined;
    for (const key of Object.keys(ps)) ps[key] = this.prepare(read(key));
    return ps;
  }
}

/** Is the key an array index (a canonical integer below 2^32 - 1)? */
function isIndex(key: string): boolean {
  return /^(?:0|[1-9]\d{0,9})$/.test(key) && Number(key) < 4294967295;
}

/** Is a prepared value written as plain JSON (so that its parent may be written as JSON)? */
function isWrittenAsJson(prepared: unknown): boolean {
  const type = typeof prepared;
  return type === 'string' || type === 'number' || type === 'boolean' || prepared instanceof Raw;
}

/**
 * What an Error carries besides its message: its name when not "Error", its stack, code and
 * cause when it has them, and its other own enumerable properties. Its class does not travel:
 * the decoder makes one of the standard Error classes by name, or an Error carrying the name.
 */
function errorMembers(error: Error): Array<[string, unknown]> {
  const members: Array<[string, unknown]> = [];
  const has = (key: string) => Object.prototype.hasOwnProperty.call(error, key);
  if (typeof error.name === 'string' && error.name !== 'Error') members.push(['name', error.name]);
  if (has('stack') && typeof error.stack === 'string') members.push(['stack', error.stack]);
  if (has('code')) members.push(['code', (error as { code?: unknown }).code]);
  if (has('cause')) members.push(['cause', error.cause]);
  const listed = new Set(['name', 'message', 'stack', 'code', 'cause']);
  for (const key of Object.keys(error)) if (!listed.has(key)) members.push([key, (error as unknown as Record<string, unknown>)[key]]);
  return members;
}

const regExpSource = Object.getOwnPropertyDescriptor(RegExp.prototype, 'source')!.get!;
const regExpFlags = Object.getOwnPropertyDescriptor(RegExp.prototype, 'flags')!.get!;
const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag)!.get!;
const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, 'size')!.get!;
const setSize = Object.getOwnPropertyDescriptor(Set.prototype, 'size')!.get!;

/** The typed array's own kind (Float64Array...), also for one from another realm; undefined for a DataView. */
function typedArrayName(view: ArrayBufferView): string | undefined {
  return typedArrayTag.call(view) as string | undefined;
}

const typedArrayNames: ReadonlySet<string> = new Set([
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
]);

/** Does `test(value)` not throw? (The built-ins' brand checks: a method of Date throws on anything but a Date.) */
function passes(test: () => unknown): boolean {
  try {
    test();
    return true;
  } catch {
    return false;
  }
}

/**
 * The kind of an object, or why it cannot travel. Built-ins are known by their prototype; one from
 * another realm (a vm context) by its tag, confirmed by a brand check; a subclass of Map, Set,
 * Date, RegExp or Array is a class of its own and refused. Errors of every class travel (as their
 * name, message and members), and a Buffer or other typed array subclass as its typed array.
 */
function kindOf(object: object): Kind | { refused: string } {
  const prototype = Object.getPrototypeOf(object);
  if (prototype === Object.prototype || prototype === null) return 'object';
  if (Array.isArray(object)) return prototype === Array.prototype || isForeignBuiltin(prototype, 'Array') ? 'array' : { refused: instanceOf(prototype) };
  if (ArrayBuffer.isView(object)) {
    const name = typedArrayName(object);
    if (name === undefined) return 'dataview';
    return typedArrayNames.has(name) ? 'typed' : { refused: `a ${name}` };
  }
  switch (prototype) {
    case Date.prototype:
      return 'date';
    case RegExp.prototype:
      return 'regexp';
    case Map.prototype:
      return 'map';
    case Set.prototype:
      return 'set';
    case Number.prototype:
      return 'Number';
    case String.prototype:
      return 'String';
    case Boolean.prototype:
      return 'Boolean';
  }
  if (typeof URL === 'function' && prototype === URL.prototype) return 'url';
  if (object instanceof Error) return 'error';
  const tag = Object.prototype.toString.call(object).slice(8, -1);
  if (tag === 'Error') return 'error';
  if (isForeignBuiltin(prototype, tag)) {
    switch (tag) {
      case 'Object':
        return 'object';
      case 'Date':
        if (passes(() => Date.prototype.getTime.call(object))) return 'date';
        break;
      case 'RegExp':
        if (passes(() => regExpSource.call(object))) return 'regexp';
        break;
      case 'Map':
        if (passes(() => mapSize.call(object))) return 'map';
        break;
      case 'Set':
        if (passes(() => setSize.call(object))) return 'set';
        break;
      case 'Number':
        if (passes(() => Number.prototype.valueOf.call(object))) return 'Number';
        break;
      case 'String':
        if (passes(() => String.prototype.valueOf.call(object))) return 'String';
        break;
      case 'Boolean':
        if (passes(() => Boolean.prototype.valueOf.call(object))) return 'Boolean';
        break;
    }
  }
  switch (tag) {
    case 'Promise':
      return { refused: 'a Promise (send the value it resolves to)' };
    case 'WeakMap':
    case 'WeakSet':
    case 'WeakRef':
      return { refused: `a ${tag} (its entries cannot be listed)` };
    case 'ArrayBuffer':
    case 'SharedArrayBuffer':
      return { refused: `an ${tag} (KVIN 9 cannot rebuild its bytes; send a typed array over it, such as new Uint8Array(buffer))` };
  }
  return { refused: instanceOf(prototype) };
}

/** Is `prototype` the prototype of the built-in `name` of another realm (not a subclass)? */
function isForeignBuiltin(prototype: object, name: string): boolean {
  if (!Object.prototype.hasOwnProperty.call(prototype, 'constructor')) return false;
  const constructor = (prototype as { constructor?: unknown }).constructor;
  if (typeof constructor !== 'function' || constructor.name !== name) return false;
  const above = Object.getPrototypeOf(prototype);
  return name === 'Object' ? above === null : above !== null && Object.getPrototypeOf(above) === null;
}

function instanceOf(prototype: object): string {
  const advice = 'a class cannot be rebuilt in another process; send a plain object, such as {...value}';
  const constructor = Object.prototype.hasOwnProperty.call(prototype, 'constructor') ? (prototype as { constructor?: unknown }).constructor : undefined;
  if (typeof constructor !== 'function') return `an object made with Object.create() of another object (${advice})`;
  return `an instance of ${constructor.name || 'an anonymous class'} (${advice})`;
}
