// Protobuf (proto2) wire codec driven by the reflected schema.
//
// protobufjs' generated codecs drop unknown fields and turn 64-bit numbers
// into Long objects; an image reader must reproduce CRIU's bytes exactly and
// keep register values intact, so this codec is our own:
//   * 64-bit integers are bigint, 32-bit integers and enums are numbers (the
//     encoder also takes an enum value's name, and numbers for 64-bit fields),
//     bool is boolean, bytes are Uint8Array, strings are string (or the raw
//     Uint8Array when the bytes are not valid UTF-8, so nothing is lost);
//   * a field is an own property of the message exactly when it was on the
//     wire (proto2 presence); an absent optional field is simply missing;
//   * repeated fields are arrays; packed and unpacked forms are both read,
//     and written the way the schema says (CRIU marks none packed);
//   * fields the schema does not know are kept, raw, under UNKNOWN_FIELDS
//     and written back in field-number order, where protobuf-c puts them;
//   * a message is written in field-number order, as protobuf-c does.
import { WireError } from './errors.js';
import { CODEC, fieldsByNumber, messageType, type FieldInfo, type MessageType } from './schema.js';

/** A decoded message: field name -> value (see the mapping above). */
export type Message = { [field: string]: any };

/** Where a message keeps the fields the schema does not describe. */
export const UNKNOWN_FIELDS = Symbol('unknownFields');

interface UnknownField {
  id: number;
  raw: Uint8Array; // tag and value, exactly as read
}

const WT_VARINT = 0;
const WT_FIXED64 = 1;
const WT_LEN = 2;
const WT_FIXED32 = 5;

/** Deeper nesting than any CRIU message; stops a crafted file from exhausting the stack. */
const MAX_DEPTH = 64;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Decoding

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    public end: number, // narrowed while a nested message or packed field is read (narrow())
    readonly base: number, // offset of buf[0] in the caller's view, for messages
  ) {
    this.pos = start;
  }

  fail(reason: string, at = this.pos): never {
    throw new WireError(reason, this.base + at);
  }

  varint(): bigint {
    // Gathered as two 32-bit halves in plain numbers, made a bigint once at the end: core
    // images are mostly 64-bit registers and addresses.
    const start = this.pos;
    // Zero, one byte: most of a core image's AVX-512 registers.
    if (start < this.end && this.buf[start] === 0) {
      this.pos++;
      return 0n;
    }
    let lo = 0;
    let hi = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) this.fail('truncated varint', start);
      const b = this.buf[this.pos++]! & 0x7f;
      if (shift < 28) {
        lo |= b << shift;
      } else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi |= b >>> 4;
      } else if (shift < 64) {
        hi |= b << (shift - 32);
      }
      if (!(this.buf[this.pos - 1]! & 0x80)) {
        // Below 2^53 (addresses, most registers) one conversion of a plain number does.
        if (hi >>> 0 < 0x200000) return BigInt((hi >>> 0) * 0x100000000 + (lo >>> 0));
        return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
      }
    }
    return this.fail('varint longer than 10 bytes', start);
  }

  /** The low 32 bits of a varint, as protobuf keeps for 32-bit fields (no bigint: the common case). */
  varint32(): number {
    const start = this.pos;
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) this.fail('truncated varint', start);
      const b = this.buf[this.pos++];
      if (shift < 32) result |= (b & 0x7f) << shift;
      if (!(b & 0x80)) return result >>> 0;
    }
    return this.fail('varint longer than 10 bytes', start);
  }

  /** A varint that must fit a JS number (tags, lengths). */
  smallVarint(): number {
    const start = this.pos;
    let result = 0;
    for (let scale = 1; scale < 2 ** 70; scale *= 128) {
      if (this.pos >= this.end) this.fail('truncated varint', start);
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (!(b & 0x80)) {
        if (result > Number.MAX_SAFE_INTEGER) this.fail('length or tag out of range', start);
        return result;
      }
    }
    return this.fail('varint longer than 10 bytes', start);
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private need(n: number): void {
    if (n > this.end - this.pos) {
      this.fail(`truncated field: need ${n} bytes, have ${this.end - this.pos}`);
    }
  }

  /**
   * Let the next `n` bytes be all there is to read (a nested message, a packed field), with no
   * reader of their own (a core image has a hundred submessages); returns the end to put back.
   */
  narrow(n: number): number {
    this.need(n);
    const outer = this.end;
    this.end = this.pos + n;
    return outer;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WT_VARINT:
        this.varint();
        return;
      case WT_FIXED64:
        this.take(8);
        return;
      case WT_FIXED32:
        this.take(4);
        return;
      case WT_LEN:
        this.take(this.smallVarint());
        return;
      default:
        this.fail(`unsupported wire type ${wireType}`);
    }
  }
}

function fromFixed(type: string, b: Uint8Array): unknown {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  switch (type) {
    case 'fixed64':
      return dv.getBigUint64(0, true);
    case 'sfixed64':
      return dv.getBigInt64(0, true);
    case 'double':
      return dv.getFloat64(0, true);
    case 'fixed32':
      return dv.getUint32(0, true);
    case 'sfixed32':
      return dv.getInt32(0, true);
    case 'float':
      return dv.getFloat32(0, true);
    default:
      throw new Error(`fixed value for field type ${type}`);
  }
}

function readScalar(r: Reader, field: FieldInfo, wireType: number): unknown {
  switch (field.codec) {
    case CODEC.UINT64:
      return r.varint();
    case CODEC.INT64:
      return BigInt.asIntN(64, r.varint());
    case CODEC.SINT64: {
      const v = r.varint();
      return (v >> 1n) ^ -(v & 1n);
    }
    case CODEC.UINT32:
      return r.varint32();
    case CODEC.INT32:
    case CODEC.ENUM:
      return r.varint32() | 0;
    case CODEC.SINT32: {
      const n = r.varint32();
      return (n >>> 1) ^ -(n & 1);
    }
    case CODEC.BOOL:
      return r.varint() !== 0n;
    case CODEC.FIXED:
      return fromFixed(field.type, r.take(wireType === WT_FIXED64 ? 8 : 4));
    case CODEC.BYTES:
      return Uint8Array.from(r.take(r.smallVarint()));
    case CODEC.STRING: {
      const bytes = r.take(r.smallVarint());
      try {
        return utf8.decode(bytes);
      } catch {
        return Uint8Array.from(bytes); // not UTF-8: keep the bytes so they round-trip
      }
    }
    default:
      throw new Error(`no codec for field type ${field.type}`);
  }
}

function decodeFields(type: MessageType, r: Reader, depth: number): Message {
  if (depth > MAX_DEPTH) r.fail(`messages nested deeper than ${MAX_DEPTH}`);
  const msg: Message = {};
  const msgStart = r.pos;
  let unknown: UnknownField[] | undefined;
  while (r.pos < r.end) {
    const fieldStart = r.pos;
    const tag = r.smallVarint();
    const id = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (id === 0) r.fail('field number 0', fieldStart);
    const field = type.fieldsById[id];
    const expected = field ? field.wire : -1;
    const packedForm = field?.repeated && wireType === WT_LEN && expected !== WT_LEN;
    if (!field || (wireType !== expected && !packedForm)) {
      // Unknown to us (or of an unexpected shape): keep it byte for byte.
      r.skip(wireType);
      (unknown ??= []).push({ id, raw: Uint8Array.from(r.buf.subarray(fieldStart, r.pos)) });
      continue;
    }
    if (field.codec === CODEC.MESSAGE) {
      const outer = r.narrow(r.smallVarint());
      const sub = decodeFields(field.resolvedType as MessageType, r, depth + 1);
      r.end = outer;
      if (field.repeated) (msg[field.name] ??= []).push(sub);
      else msg[field.name] = sub;
    } else if (packedForm) {
      const outer = r.narrow(r.smallVarint());
      const list: unknown[] = (msg[field.name] ??= []);
      while (r.pos < r.end) list.push(readScalar(r, field, expected));
      r.end = outer;
    } else {
      const value = readScalar(r, field, wireType);
      if (field.repeated) {
        const list: unknown[] = (msg[field.name] ??= []);
        list.push(value);
        // Unpacked repeated values come one after another under the same one-byte tag (a core
        // image's register arrays): read on here rather than through the loop above.
        if (tag < 0x80) {
          const buf = r.buf;
          const u32 = field.codec === CODEC.UINT32;
          while (r.pos < r.end && buf[r.pos] === tag) {
            r.pos++;
            list.push(u32 ? r.varint32() : readScalar(r, field, wireType));
          }
        }
      } else {
        msg[field.name] = value; // a repeated occurrence of a singular field: last one wins
      }
    }
  }
  const fields = type.fieldsArray;
  for (let f = 0; f < fields.length; f++) {
    const field = fields[f]!;
    if (field.required && !Object.hasOwn(msg, field.name)) {
      r.fail(`${type.name} lacks required field ${field.name}`, msgStart);
    }
  }
  if (unknown) Object.defineProperty(msg, UNKNOWN_FIELDS, { value: unknown, enumerable: false });
  return msg;
}

/**
 * Decodes one message. Throws WireError with an offset counted from the
 * start of `bytes` plus `baseOffset` (so callers can report file offsets).
 */
export function decodeMessage(typeName: string | MessageType, bytes: Uint8Array, baseOffset = 0): Message {
  const type = typeof typeName === 'string' ? messageType(typeName) : typeName;
  return decodeFields(type, new Reader(bytes, 0, bytes.length, baseOffset), 0);
}

// ---------------------------------------------------------------------------
// Encoding

class Writer {
  buf = new Uint8Array(256);
  len = 0;

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  varint(value: bigint | number): void {
    if (typeof value === 'number' && value >= 0 && value <= 0xffffffff) {
      this.reserve(5);
      let v = value;
      while (v > 0x7f) {
        this.buf[this.len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.buf[this.len++] = v;
      return;
    }
    // Negatives take 10 bytes, as in every protobuf runtime. The 64 bits are split into two
    // 32-bit halves once, then shifted as numbers (BigInt arithmetic per byte is slow); below
    // 2^53 without any BigInt arithmetic.
    let lo: number;
    let hi: number;
    const n = typeof value === 'bigint' && value >= 0n && value < 0x20000000000000n ? Number(value) : value;
    if (typeof n === 'number' && n >= 0 && n < 2 ** 53) {
      lo = n >>> 0;
      hi = Math.floor(n / 0x100000000);
    } else {
      const v = BigInt.asUintN(64, BigInt(n));
      lo = Number(v & 0xffffffffn);
      hi = Number(v >> 32n);
    }
    this.reserve(10);
    while (hi > 0 || lo > 0x7f) {
      this.buf[this.len++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | ((hi & 0x7f) << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.len++] = lo;
  }

  tag(id: number, wireType: number): void {
    const t = id * 8 + wireType;
    if (t < 0x80 && this.len < this.buf.length) this.buf[this.len++] = t; // fields 1-15: one byte
    else this.varint(t);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

function where(type: MessageType, field: FieldInfo): string {
  return `${type.name}.${field.name}`;
}

function toBigInt(type: MessageType, field: FieldInfo, value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  throw new TypeError(`${where(type, field)}: expected an integer, got ${typeof value}`);
}

function toVarint(type: MessageType, field: FieldInfo, value: unknown): bigint | number {
  switch (field.codec) {
    case CODEC.ENUM: {
      if (typeof value === 'string') {
        const n = (field.resolvedType as { values: Record<string, number> }).values[value];
        if (n === undefined) throw new TypeError(`${where(type, field)}: no enum value named ${value}`);
        return n;
      }
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0x7fffffff) return value;
      return Number(toBigInt(type, field, value));
    }
    case CODEC.BOOL:
      if (typeof value !== 'boolean') throw new TypeError(`${where(type, field)}: expected a boolean`);
      return value ? 1 : 0;
    case CODEC.SINT32:
    case CODEC.SINT64: {
      const v = toBigInt(type, field, value);
      const bits = field.codec === CODEC.SINT32 ? 32 : 64;
      return BigInt.asUintN(bits, (v << 1n) ^ (v >> BigInt(bits - 1)));
    }
    default:
      break;
  }
  // Most values are small non-negative integers: keep them numbers, for the writer's fast path.
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0x7fffffff) return value;
  if (typeof value === 'bigint' && value >= 0n && value <= 0x7fffffffn) return Number(value);
  switch (field.codec) {
    case CODEC.UINT32:
      return BigInt.asUintN(32, toBigInt(type, field, value));
    case CODEC.INT32:
      return BigInt.asIntN(32, toBigInt(type, field, value));
    default:
      return toBigInt(type, field, value);
  }
}

function writeFixed(w: Writer, type: MessageType, field: FieldInfo, value: unknown): void {
  const wide = field.wire === WT_FIXED64;
  const b = new Uint8Array(wide ? 8 : 4);
  const dv = new DataView(b.buffer);
  switch (field.type) {
    case 'fixed64':
      dv.setBigUint64(0, BigInt.asUintN(64, toBigInt(type, field, value)), true);
      break;
    case 'sfixed64':
      dv.setBigInt64(0, BigInt.asIntN(64, toBigInt(type, field, value)), true);
      break;
    case 'double':
      dv.setFloat64(0, Number(value), true);
      break;
    case 'fixed32':
      dv.setUint32(0, Number(BigInt.asUintN(32, toBigInt(type, field, value))), true);
      break;
    case 'sfixed32':
      dv.setInt32(0, Number(BigInt.asIntN(32, toBigInt(type, field, value))), true);
      break;
    case 'float':
      dv.setFloat32(0, Number(value), true);
      break;
  }
  w.bytes(b);
}

function lengthDelimited(type: MessageType, field: FieldInfo, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string' && field.type === 'string') return utf8Encoder.encode(value);
  throw new TypeError(`${where(type, field)}: expected ${field.type === 'string' ? 'a string' : 'a Uint8Array'}`);
}

/**
 * Writers reused by nesting depth (and a second set for packed fields): a core image holds
 * a hundred small submessages, and a fresh buffer for each kept the garbage collector busy.
 * A nested message's bytes are copied into its parent before that depth is used again.
 */
const writers: Writer[] = [];
const packedWriters: Writer[] = [];
function writerAt(pool: Writer[], depth: number): Writer {
  const w = (pool[depth] ??= new Writer());
  w.len = 0;
  return w;
}

/** Writes one value of `field` without its tag. */
function writeValue(w: Writer, type: MessageType, field: FieldInfo, wireType: number, value: unknown, depth = 0): void {
  switch (wireType) {
    case WT_VARINT:
      w.varint(toVarint(type, field, value));
      return;
    case WT_FIXED64:
    case WT_FIXED32:
      writeFixed(w, type, field, value);
      return;
    default: {
      const body = field.codec === CODEC.MESSAGE
        ? encodeNested(field.resolvedType as MessageType, value as Message, depth + 1)
        : lengthDelimited(type, field, value);
      w.varint(body.length);
      w.bytes(body);
    }
  }
}

/**
 * The bytes of a frozen message, by identity: a dump shares one frozen object among all the
 * entries that are alike (the sixty-odd default signal actions of every process, the resource
 * limits processes have in common), and each is encoded once.
 */
const frozenBytes = new WeakMap<object, { type: MessageType; bytes: Uint8Array }>();

function encodeNested(type: MessageType, msg: Message, depth: number): Uint8Array {
  if (typeof msg !== 'object' || msg === null || !Object.isFrozen(msg)) return encodeFields(type, msg, depth);
  const known = frozenBytes.get(msg);
  if (known && known.type === type) return known.bytes;
  const bytes = encodeFields(type, msg, depth).slice();
  frozenBytes.set(msg, { type, bytes });
  return bytes;
}

/** The message's bytes: a view into the writer of `depth`, valid until that depth is used again. */
function encodeFields(type: MessageType, msg: Message, depth: number): Uint8Array {
  if (typeof msg !== 'object' || msg === null) throw new TypeError(`${type.name}: expected a message object`);
  if (depth > MAX_DEPTH) throw new TypeError(`${type.name}: messages nested deeper than ${MAX_DEPTH}`);
  const w = writerAt(writers, depth);
  const given = unknownFields(msg);
  const unknown = given.length ? [...given].sort((a, b) => a.id - b.id) : given; // stable
  let u = 0;
  // Index loops, not for-of: this runs cold in a one-shot process, where every for-of step
  // allocates an iterator result.
  const fields = fieldsByNumber(type);
  for (let f = 0; f < fields.length; f++) {
    const field = fields[f]!;
    while (u < unknown.length && unknown[u].id < field.id) w.bytes(unknown[u++].raw);
    // Most of a message's fields are absent: read, then checked to be its own only when there.
    let value = msg[field.name];
    if (value !== undefined && !Object.hasOwn(msg, field.name)) value = undefined; // Object.prototype's
    if (value === undefined || value === null) {
      if (field.required) throw new TypeError(`${where(type, field)} is required`);
      continue;
    }
    const wireType = field.wire;
    if (!field.repeated) {
      w.tag(field.id, wireType);
      writeValue(w, type, field, wireType, value, depth);
      continue;
    }
    if (!Array.isArray(value)) throw new TypeError(`${where(type, field)}: expected an array`);
    if (field.packed && wireType !== WT_LEN) {
      if (value.length === 0) continue;
      const inner = writerAt(packedWriters, depth);
      for (let i = 0; i < value.length; i++) writeValue(inner, type, field, wireType, value[i], depth);
      w.tag(field.id, WT_LEN);
      w.varint(inner.len);
      w.bytes(inner.buf.subarray(0, inner.len));
      continue;
    }
    const tag = field.id * 8 + wireType;
    if ((field.codec === CODEC.UINT32 || field.codec === CODEC.UINT64) && tag < 0x80) {
      // A register array (hundreds of values in a core image, mostly zero): a tight loop over
      // the writer's buffer for every value below 2^32, the general path for any other.
      for (let i = 0; i < value.length;) {
        w.reserve((value.length - i) * 6);
        const buf = w.buf;
        let at = w.len;
        for (; i < value.length; i++) {
          const x = value[i];
          if (x === 0) {
            buf[at++] = tag;
            buf[at++] = 0;
            continue;
          }
          let v: number;
          if (typeof x === 'number' && x >= 0 && x <= 0xffffffff && x === Math.floor(x)) v = x;
          else if (typeof x === 'bigint' && x >= 0n && x <= 0xffffffffn) v = Number(x);
          else break;
          buf[at++] = tag;
          while (v > 0x7f) {
            buf[at++] = (v & 0x7f) | 0x80;
            v >>>= 7;
          }
          buf[at++] = v;
        }
        w.len = at;
        if (i < value.length) {
          w.byte(tag);
          writeValue(w, type, field, wireType, value[i], depth);
          i++;
        }
      }
      continue;
    }
    for (let i = 0; i < value.length; i++) {
      w.tag(field.id, wireType);
      writeValue(w, type, field, wireType, value[i], depth);
    }
  }
  while (u < unknown.length) w.bytes(unknown[u++].raw);
  return w.buf.subarray(0, w.len);
}

/** Encodes one message (throws TypeError on a value that does not fit the schema). */
export function encodeMessage(typeName: string | MessageType, msg: Message): Uint8Array {
  return encodeMessageView(typeName, msg).slice();
}

/** encodeMessage() without the copy: a view that the next encoding overwrites. */
export function encodeMessageView(typeName: string | MessageType, msg: Message): Uint8Array {
  const type = typeof typeName === 'string' ? messageType(typeName) : typeName;
  return encodeFields(type, msg, 0);
}

/** Fields of `msg` the schema did not know, as raw tag+value bytes. */
export function unknownFields(msg: Message): readonly { id: number; raw: Uint8Array }[] {
  return (msg as { [UNKNOWN_FIELDS]?: UnknownField[] })[UNKNOWN_FIELDS] ?? [];
}
