import { CommuneError, ErrorCode, isCommuneError } from './errors.js';
import { isLittleEndian, writeLatin1, writeUcs2 } from './kvin-binary.js';
import {
  ctrNames,
  errorConstructors,
  hasOwn,
  type KvinLimits,
  kvinPrefix,
  kvinReadableVersions,
  malformed,
  tooDeep,
  tooManyNodes,
  typedArrayConstructors,
  type TypedArrayName,
  unserializable,
} from './kvin-format.js';

/**
 * KVIN decoder (the format is described in kvin-format.ts), for hostile text: the text's length is
 * checked before JSON.parse; every object made counts against maxNodes, nesting against maxDepth
 * (so the recursion below is at most maxDepth deep), typed array bytes against maxBytes; only the
 * built-in kinds are made, never a class by name, never a function; members are defined, never
 * assigned through a setter (`__proto__` is an own property, not the prototype). Everything thrown
 * is a CommuneError: EINVAL for malformed text, EUNSERIALIZABLE for a kind that does not travel,
 * ETOOBIG / ETOODEEP for the limits.
 *
 * Objects are listed as kvin 9's decoder lists them, so that `{seen: n}` means what it means there.
 */

type Prepared = Record<string, unknown>;

export function decode(text: string, limits: KvinLimits): unknown {
  if (typeof text !== 'string') throw malformed(`expected a string, got ${text === null ? 'null' : typeof text}`);
  if (text.length > limits.maxBytes) {
    throw new CommuneError(ErrorCode.ETOOBIG, `KVIN text of ${text.length} characters is longer than ${limits.maxBytes}`);
  }
  try {
    const what = preparedValue(text);
    switch (typeof what) {
      case 'number':
      case 'string':
      case 'boolean':
        return what;
    }
    // Plain data, as encodeKvin writes it: {raw: JSON}. Only its bounds need checking.
    if (what !== null && typeof what === 'object' && !Array.isArray(what) && hasOwn(what, 'raw')) {
      const raw = (what as Prepared).raw;
      if (raw !== null && typeof raw === 'object') new Unpreparer(limits).countJson(raw, 0, false);
      return raw;
    }
    return new Unpreparer(limits).value(what, 0);
  } catch (error) {
    if (isCommuneError(error)) throw error;
    throw malformed((error as Error)?.message ?? String(error));
  }
}

/**
 * The prepared value of a text. What kvin (and encodeKvin) writes is exactly the prefix
 * `{"_serializeVerId":"v9","what":`, the value and `}`: parsing the value alone is the same and
 * skips an envelope object (a third of the time for a small value). Anything else is parsed whole.
 */
function preparedValue(text: string): unknown {
  // (slice and === is several times faster than startsWith here.)
  if (text.slice(0, kvinPrefix.length) === kvinPrefix && text.charCodeAt(text.length - 1) === 0x7d /* } */) {
    try {
      return JSON.parse(text.slice(kvinPrefix.length, -1));
    } catch {
      // Not a single value between them: read the text as a whole.
    }
  }
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    throw malformed('not JSON');
  }
  if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) throw malformed('not an object');
  const fields = envelope as Prepared;
  if (!hasOwn(fields, '_serializeVerId') || !kvinReadableVersions.has(fields._serializeVerId)) {
    throw malformed('no _serializeVerId of v4 to v9 (not KVIN, or a version this decoder does not read)');
  }
  if (!hasOwn(fields, 'what')) throw malformed('no "what"');
  return fields.what;
}

/** Why a member is defined rather than assigned: a setter (`__proto__`, a Map's `size`) must never run. */
function define(target: object, key: string, value: unknown, enumerable = true): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable, configurable: true });
}

const indexPattern = /^(?:0|[1-9]\d{0,9})$/;
const constructorNamePattern = /^[A-Za-z_0-9$]+$/;

class Unpreparer {
  /** The objects made so far, in kvin's order: `{seen: n}` is the n-th. */
  private readonly made: unknown[] = [];
  private nodes = 0;
  private binaryBytes = 0;
  /**
   * Raw values already handed out. `{lst: n}` repeats a prepared value; a raw value handed out
   * twice is copied the second time, so that equal items are not one shared object (kvin copies too).
   */
  private readonly handedOut = new Set<object>();

  constructor(private readonly limits: KvinLimits) {}

  private countNode(): void {
    if (++this.nodes > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
  }

  private enter(depth: number): void {
    if (depth >= this.limits.maxDepth) throw tooDeep(this.limits, 'the KVIN value');
  }

  /** A prepared value, checked in kvin's order of precedence between its forms. */
  value(prepared: unknown, depth: number): unknown {
    this.countNode();
    switch (typeof prepared) {
      case 'string':
      case 'number':
      case 'boolean':
        return prepared;
      case 'object':
        break;
      default:
        throw malformed(`a ${typeof prepared} where a value belongs`);
    }
    // kvin's own decoder fails on a bare null; null is unambiguous, so it is read as null.
    if (prepared === null) return null;
    if (Array.isArray(prepared)) throw malformed('an array where a prepared value belongs');
    const p = prepared as Prepared;
    if (hasOwn(p, 'raw')) return this.raw(p, p.raw, depth);
    if (hasOwn(p, 'ptv')) return this.raw(p, p.ptv, depth); // kvin 3 to 6
    if (hasOwn(p, 'number')) return parseNumber(p.number);
    if (hasOwn(p, 'bigint')) return this.bigint(p.bigint);
    if (hasOwn(p, 'fnName')) throw unserializable('KVIN text holds a function; functions do not travel');
    if (hasOwn(p, 'mapKeys') || hasOwn(p, 'mapVals')) return this.map(p, depth);
    if (hasOwn(p, 'ab16') || hasOwn(p, 'isl16')) return this.binary(p, 16);
    if (hasOwn(p, 'ab8') || hasOwn(p, 'isl8')) return this.binary(p, 8);
    if (hasOwn(p, 'arr')) return this.array(p, depth);
    if (hasOwn(p, 'ctr')) return this.constructed(p, depth);
    if (hasOwn(p, 'set')) {
      this.enter(depth);
      return new Set(this.array(object(p.set, 'set'), depth));
    }
    if (hasOwn(p, 'json')) return this.json(p.json, depth);
    if (hasOwn(p, 'undefined')) return undefined;
    if (hasOwn(p, 'symbol')) throw unserializable('KVIN text holds a symbol; symbols do not travel');
    if (hasOwn(p, 'resolve') || hasOwn(p, 'reject')) throw unserializable('KVIN text holds a Promise; promises do not travel');
    if (hasOwn(p, 'seen')) return this.reference(p.seen);
    throw malformed('an object in none of the KVIN forms');
  }

  /** JSON data as JSON.parse made it (plain objects with own members only), counted and bounded. */
  private raw(prepared: Prepared, raw: unknown, depth: number): unknown {
    if (raw === null || typeof raw !== 'object') return raw;
    this.countJson(raw, depth);
    if (this.handedOut.has(prepared)) return JSON.parse(JSON.stringify(raw));
    this.handedOut.add(prepared);
    return raw;
  }

  /**
   * Counts the values of JSON data (an object or array from JSON.parse) and checks its nesting.
   * It recurses, but only as deep as maxDepth allows (checked before each step down), which is
   * twice as fast as bounds.ts's explicit stack on plain data. `counted`: the first value is
   * counted already (as the prepared value holding it).
   */
  countJson(json: object, depth: number, counted = true): void {
    if (counted) this.nodes--;
    this.countJsonValue(json, depth);
  }

  private countJsonValue(json: unknown, depth: number): void {
    if (++this.nodes > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
    if (json === null || typeof json !== 'object') return;
    if (depth >= this.limits.maxDepth) throw tooDeep(this.limits, 'the KVIN value');
    if (Array.isArray(json)) {
      for (let i = 0; i < json.length; i++) this.countJsonValue(json[i], depth + 1);
    } else {
      // JSON.parse makes only own members; for-in is the fastest way through them.
      for (const key in json) this.countJsonValue((json as Prepared)[key], depth + 1);
    }
  }

  private json(text: unknown, depth: number): unknown {
    if (typeof text !== 'string') throw malformed('"json" is not a string');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw malformed('"json" is not JSON');
    }
    if (parsed !== null && typeof parsed === 'object') this.countJson(parsed, depth);
    return parsed;
  }

  private bigint(digits: unknown): bigint {
    if (typeof digits !== 'string' || !/^-?\d+$/.test(digits)) throw malformed('"bigint" is not a decimal integer');
    if (digits.replace('-', '').length > this.limits.maxBigIntDigits) {
      throw new CommuneError(ErrorCode.ETOOBIG, `KVIN text holds a BigInt of more than ${this.limits.maxBigIntDigits} digits`);
    }
    return BigInt(digits);
  }

  private reference(index: unknown): unknown {
    if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= this.made.length) {
      throw malformed(`"seen" refers to object ${String(index)}, which was not made (${this.made.length} were)`);
    }
    return this.made[index];
  }

  /**
   * `{arr, isl?, ps?, len?}`. In arr, `{lst: n}` repeats the item before it n times; each island
   * `{"@": at, arr}` places items from index at (a JSON array is used as it is, as kvin does);
   * ps holds items by index and named properties; len is the length when it differs.
   */
  private array(p: Prepared, depth: number): unknown[] {
    this.enter(depth);
    const items = p.arr;
    if (!Array.isArray(items)) throw malformed('"arr" is not an array');
    const array: unknown[] = [];
    this.made.push(array);
    const none = array; // nothing before the first item
    let last: unknown = none;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (item !== null && typeof item === 'object') {
        const times = (item as Prepared).lst;
        if (!Array.isArray(item) && hasOwn(item, 'lst') && times) {
          if (typeof times !== 'number' || !Number.isSafeInteger(times) || times < 0 || last === none) throw malformed('a "lst" repeat that is not a count after an item');
          if (array.length + times > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
          for (let j = 0; j < times; j++) {
            if (last !== null && typeof last === 'object') array.push(this.value(last, depth + 1));
            else {
              this.countNode();
              array.push(last);
            }
          }
          continue;
        }
        array.push(this.value(item, depth + 1));
      } else {
        this.countNode();
        array.push(item);
      }
      last = item;
    }
    if (hasOwn(p, 'isl')) this.islands(array, p.isl, depth);
    if (hasOwn(p, 'ps')) {
      const ps = object(p.ps, 'ps');
      for (const key of Object.keys(ps)) {
        if (key === 'length') throw malformed('an array member named length');
        const item = this.value(ps[key], depth + 1);
        if (indexPattern.test(key)) {
          if (Number(key) >= this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
          array[Number(key)] = item;
        } else define(array, key, item);
      }
    }
    if (hasOwn(p, 'len') && p.len) {
      const length = p.len;
      if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw malformed('"len" is not a length');
      if (length > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
      array.length = length;
    }
    return array;
  }

  private islands(array: unknown[], islands: unknown, depth: number): void {
    if (!Array.isArray(islands)) throw malformed('"isl" is not an array');
    for (const island of islands) {
      const fields = object(island, 'an island');
      const at = fields['@'];
      if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) throw malformed('an island without an index');
      let items: unknown[];
      if (Array.isArray(fields.arr)) {
        // Items as JSON, not prepared values (as kvin reads them), counted like raw values.
        for (const item of fields.arr) {
          this.countNode();
          if (item !== null && typeof item === 'object') this.countJson(item, depth + 1);
        }
        items = this.handedOut.has(fields) ? JSON.parse(JSON.stringify(fields.arr)) : fields.arr;
        this.handedOut.add(fields);
      } else {
        items = this.array(object(fields.arr, 'an island'), depth);
      }
      if (at + items.length > this.limits.maxNodes) throw tooManyNodes(this.limits, 'the KVIN value');
      for (let k = 0; k < items.length; k++) array[at + k] = items[k];
    }
  }

  /** `{mapKeys: {arr}, mapVals: {arr}, ps?}`: kvin lists the Map, then its keys array, then its values array. */
  private map(p: Prepared, depth: number): Map<unknown, unknown> {
    this.enter(depth);
    const map = new Map<unknown, unknown>();
    this.made.push(map);
    const keys = this.array(object(p.mapKeys, '"mapKeys"'), depth);
    const values = this.array(object(p.mapVals, '"mapVals"'), depth);
    if (keys.length !== values.length) throw malformed('a Map with more keys than values, or fewer');
    for (let i = 0; i < keys.length; i++) map.set(keys[i], values[i]);
    this.members(map, p, depth);
    return map;
  }

  /** `{ctr, arg?, args?, ps?}`: one of the built-ins, by number or name; never anything else. */
  private constructed(p: Prepared, depth: number): unknown {
    const name = constructorName(p.ctr);
    const typed = typedArrayConstructors.get(name as TypedArrayName);
    if (typed !== undefined) {
      // kvin's "speed" tuning writes a typed array as its numbers: {ctr, arg: [n, ...]}.
      if (!Array.isArray(p.arg) || !p.arg.every((item) => typeof item === 'number')) throw malformed(`a ${name} without its bytes`);
      this.spendBinary(p.arg.length * typed.BYTES_PER_ELEMENT);
      if (name === 'BigInt64Array' || name === 'BigUint64Array') throw malformed(`a ${name} written as numbers`);
      const array = new (typed as Float64ArrayConstructor)(p.arg as number[]);
      this.made.push(array);
      return array;
    }
    this.enter(depth);
    const arg = p.arg;
    if (name !== 'RegExp' && hasOwn(p, 'args')) throw malformed(`a ${name} made with "args"`);
    let made: object;
    switch (name) {
      case 'Object':
        if (hasOwn(p, 'arg')) throw malformed('an Object made with "arg"');
        made = {};
        break;
      case 'Date':
        // kvin writes an invalid Date as null (and reads it back as 1970): it is an invalid Date.
        if (typeof arg !== 'string' && typeof arg !== 'number' && arg !== null) throw malformed('a Date without its time');
        made = new Date(arg === null ? NaN : arg);
        break;
      case 'RegExp': {
        const args = hasOwn(p, 'args') ? p.args : [arg];
        if (!Array.isArray(args) || args.length < 1 || args.length > 2 || !args.every((item) => typeof item === 'string')) {
          throw malformed('a RegExp without its source and flags');
        }
        try {
          made = new RegExp(args[0] as string, args[1] as string | undefined);
        } catch {
          throw malformed('a RegExp that does not compile');
        }
        break;
      }
      case 'URL':
        if (typeof URL !== 'function') throw unserializable('KVIN text holds a URL, and this runtime has no URL class');
        if (typeof arg !== 'string') throw malformed('a URL without its href');
        try {
          made = new URL(arg);
        } catch {
          throw malformed('a URL that does not parse');
        }
        break;
      case 'Number':
        if (typeof arg !== 'string' && typeof arg !== 'number') throw malformed('a Number without its value');
        made = new Number(arg === '-0' ? -0 : Number(arg));
        break;
      case 'String':
        if (typeof arg !== 'string') throw malformed('a String without its value');
        made = new String(arg);
        break;
      case 'Boolean':
        // kvin writes String(b): "false" is false (kvin's own decoder makes it true).
        if (arg !== true && arg !== false && arg !== 'true' && arg !== 'false') throw malformed('a Boolean without its value');
        made = new Boolean(arg === true || arg === 'true');
        break;
      case 'DataView':
        throw malformed('a DataView without its bytes');
      default:
        return this.error(p, name, depth);
    }
    this.made.push(made);
    this.members(made, p, depth);
    return made;
  }

  /** An Error: made with its message, then its name, stack and other members (never the decoder's own stack). */
  private error(p: Prepared, name: string, depth: number): Error {
    const message = p.arg === undefined ? '' : p.arg;
    if (typeof message !== 'string') throw malformed('an Error whose message is not a string');
    const ps = hasOwn(p, 'ps') ? object(p.ps, 'ps') : {};
    const claimed = hasOwn(ps, 'name') && typeof ps.name === 'string' ? ps.name : name;
    const Class = errorConstructors.get(claimed) ?? Error;
    const error = new Class(message);
    delete error.stack;
    this.made.push(error);
    for (const key of Object.keys(ps)) {
      const item = this.value(ps[key], depth + 1);
      if (key === 'name' && item === Class.prototype.name) continue;
      define(error, key, item, !(key === 'name' || key === 'message' || key === 'stack' || key === 'cause'));
    }
    return error;
  }

  /** ps: the object's own members, defined in key order. */
  private members(target: object, p: Prepared, depth: number): void {
    if (!hasOwn(p, 'ps')) return;
    const ps = object(p.ps, 'ps');
    const plain = Object.getPrototypeOf(target) === Object.prototype;
    for (const key of Object.keys(ps)) {
      const item = this.value(ps[key], depth + 1);
      if (plain && key !== '__proto__') (target as Prepared)[key] = item;
      else define(target, key, item);
    }
  }

  /** A typed array or DataView from `{ctr, ab8}` / `{ctr, isl8, len}` (or their 16-bit forms). */
  private binary(p: Prepared, bits: 8 | 16): ArrayBufferView {
    const name = constructorName(p.ctr);
    const typed = typedArrayConstructors.get(name as TypedArrayName);
    if (typed === undefined && name !== 'DataView') throw malformed(`bytes for a ${name}`);
    if (!isLittleEndian) throw unserializable('KVIN typed arrays need a little-endian machine');
    const whole = bits === 8 ? p.ab8 : p.ab16;
    const islands = bits === 8 ? p.isl8 : p.isl16;
    const hasWhole = hasOwn(p, bits === 8 ? 'ab8' : 'ab16');
    const extraByte = hasOwn(p, 'eb') ? byteOf(p.eb) : undefined;
    let length: number;
    if (hasWhole) {
      if (typeof whole !== 'string') throw malformed('typed array bytes that are not a string');
      length = (bits === 8 ? whole.length : 2 * whole.length) + (bits === 16 && extraByte !== undefined ? 1 : 0);
    } else {
      if (typeof p.len !== 'number' || !Number.isSafeInteger(p.len) || p.len < 0) throw malformed('typed array islands without a length');
      length = p.len;
    }
    this.spendBinary(length);
    const bytes = new Uint8Array(length);
    if (hasWhole) this.write(bytes, whole as string, 0, bits);
    else {
      if (!Array.isArray(islands)) throw malformed('typed array islands that are not an array');
      for (const island of islands) {
        const fields = object(island, 'an island');
        const text = fields[0];
        const at = fields['@'];
        if (typeof text !== 'string' || typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) throw malformed('an island without its bytes and offset');
        if ((bits === 8 ? at + text.length : 2 * (at + text.length) - 1) > length) throw malformed('an island past the end of its typed array');
        this.write(bytes, text, at, bits);
      }
    }
    if (bits === 16 && extraByte !== undefined && length > 0) bytes[length - 1] = extraByte;
    let view: ArrayBufferView;
    if (typed === undefined) view = new DataView(bytes.buffer);
    else {
      if (length % typed.BYTES_PER_ELEMENT !== 0) throw malformed(`${length} bytes are not a whole number of ${name} items`);
      view = new typed(bytes.buffer);
    }
    this.made.push(view);
    return view;
  }

  private write(bytes: Uint8Array, text: string, offset: number, bits: 8 | 16): void {
    if (bits === 16) writeUcs2(text, bytes, offset);
    else if (!writeLatin1(text, bytes, offset)) throw malformed('typed array bytes with a character above U+00FF');
  }

  private spendBinary(bytes: number): void {
    this.binaryBytes += bytes;
    if (this.binaryBytes > this.limits.maxBytes) {
      throw new CommuneError(ErrorCode.ETOOBIG, `the KVIN value's typed arrays hold more than ${this.limits.maxBytes} bytes`);
    }
  }
}

function object(value: unknown, what: string): Prepared {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw malformed(`${what} is not an object`);
  return value as Prepared;
}

/** kvin writes the odd last byte of a 16-bit encoding as a number (and reads it as a character): both are read. */
function byteOf(value: unknown): number {
  const byte = typeof value === 'string' && value.length === 1 ? value.charCodeAt(0) : value;
  if (typeof byte !== 'number' || !Number.isInteger(byte) || byte < 0 || byte > 0xff) throw malformed('"eb" is not a byte');
  return byte;
}

function parseNumber(text: unknown): number {
  if (text === 'NaN') return NaN;
  const number = typeof text === 'string' && text.trim() !== '' ? Number(text) : NaN;
  if (Number.isNaN(number)) throw malformed('"number" is not a number');
  return number;
}

/**
 * The built-in a `ctr` names: an index into kvin's table or a name from the allow-list. A class
 * by any other name is refused, whatever it is: the decoder rebuilds no user class.
 */
function constructorName(ctr: unknown): string {
  if (typeof ctr === 'number') {
    if (!Number.isInteger(ctr) || ctr < 0 || ctr >= ctrNames.length) throw malformed(`constructor number ${ctr}`);
    ctr = ctrNames[ctr];
  } else if (typeof ctr !== 'string' || !constructorNamePattern.test(ctr)) {
    throw malformed('a constructor that is neither a number nor a name');
  }
  const name = ctr as string;
  if (typedArrayConstructors.has(name as TypedArrayName) || errorConstructors.has(name)) return name;
  switch (name) {
    case 'Object':
    case 'Date':
    case 'RegExp':
    case 'URL':
    case 'Number':
    case 'String':
    case 'Boolean':
    case 'DataView':
      return name;
    case 'Buffer':
      return 'Uint8Array'; // kvin writes a Node.js Buffer by name; it arrives as its bytes
    case 'Function':
      throw unserializable('KVIN text holds a function; functions do not travel');
    case 'Promise':
      throw unserializable('KVIN text holds a Promise; promises do not travel');
    case 'Array':
    case 'Set':
    case 'Map':
      throw malformed(`a ${name} written as a constructor call`);
  }
  throw unserializable(`KVIN text holds an instance of class ${name.slice(0, 100)}; only plain objects and built-in kinds are rebuilt`);
}
