// The JSON that `crit decode --pretty` prints for an image, reproduced:
//   {"magic": NAME, "entries": [...]} with, per entry, only the fields that
//   were on the wire, in field-number order, shaped by the (criu).* field
//   options (hex, flags, dict, dev/odev, ipadd, conv), enums by name, bytes as
//   base64 (76-column lines, as Python's base64.encodebytes), and the payload
//   after an entry under "extra".
// The bit and value tables are crit's (lib/pycriu/images/pb2dict.py).
import { shmContents, semValues, tcpQueues, queuedMessages } from './extra.js';
import { entryShape, type Image } from './image.js';
import { criuOption, fieldsByNumber, isEnum, isMessage, messageType, type FieldInfo, type MessageType } from './schema.js';
import type { Message } from './wire.js';

export type CritValue = null | boolean | number | bigint | string | CritValue[] | { [key: string]: CritValue };

export type BitTable = readonly (readonly [string, number])[];

const flagTables: Record<string, BitTable> = {
  'mmap.prot': [
    ['PROT_READ', 0x1],
    ['PROT_WRITE', 0x2],
    ['PROT_EXEC', 0x4],
  ],
  'mmap.flags': [
    ['MAP_SHARED', 0x1],
    ['MAP_PRIVATE', 0x2],
    ['MAP_DROPPABLE', 0x8],
    ['MAP_ANON', 0x20],
    ['MAP_GROWSDOWN', 0x100],
  ],
  'mmap.status': [
    ['VMA_AREA_NONE', 0],
    ['VMA_AREA_REGULAR', 1 << 0],
    ['VMA_AREA_STACK', 1 << 1],
    ['VMA_AREA_VSYSCALL', 1 << 2],
    ['VMA_AREA_VDSO', 1 << 3],
    ['VMA_AREA_HEAP', 1 << 5],
    ['VMA_FILE_PRIVATE', 1 << 6],
    ['VMA_FILE_SHARED', 1 << 7],
    ['VMA_ANON_SHARED', 1 << 8],
    ['VMA_ANON_PRIVATE', 1 << 9],
    ['VMA_AREA_SYSVIPC', 1 << 10],
    ['VMA_AREA_SOCKET', 1 << 11],
    ['VMA_AREA_VVAR', 1 << 12],
    ['VMA_AREA_AIORING', 1 << 13],
    ['VMA_AREA_MEMFD', 1 << 14],
    ['VMA_AREA_SHSTK', 1 << 15],
    ['VMA_AREA_UPROBES', 1 << 17],
    ['VMA_UNSUPP', 2 ** 31],
  ],
  'rfile.flags': [
    ['O_WRONLY', 0o1],
    ['O_RDWR', 0o2],
    ['O_CREAT', 0o100],
    ['O_EXCL', 0o200],
    ['O_NOCTTY', 0o400],
    ['O_TRUNC', 0o1000],
    ['O_APPEND', 0o2000],
    ['O_NONBLOCK', 0o4000],
    ['O_DSYNC', 0o10000],
    ['FASYNC', 0o20000],
    ['O_DIRECT', 0o40000],
    ['O_LARGEFILE', 0o100000],
    ['O_DIRECTORY', 0o200000],
    ['O_NOFOLLOW', 0o400000],
    ['O_NOATIME', 0o1000000],
    ['O_CLOEXEC', 0o2000000],
  ],
  'pmap.flags': [
    ['PE_PARENT', 1 << 0],
    ['PE_LAZY', 1 << 1],
    ['PE_PRESENT', 1 << 2],
  ],
  'seals.flags': [
    ['F_SEAL_SEAL', 0x1],
    ['F_SEAL_SHRINK', 0x2],
    ['F_SEAL_GROW', 0x4],
    ['F_SEAL_WRITE', 0x8],
    ['F_SEAL_FUTURE_WRITE', 0x10],
  ],
};

/** O_* names of open flags, as crit shows reg_file_entry.flags. */
export const fileFlagTable = flagTables['rfile.flags'];

/** Number -> word tables, keyed by table name and then by field name. */
const valueTables: Record<string, Record<string, Record<number, string>>> = {
  gen: {
    task_state: { 1: 'Alive', 2: 'Dead', 3: 'Stopped', 6: 'Zombie' },
  },
  sk: {
    family: { 1: 'UNIX', 2: 'INET', 10: 'INET6', 16: 'NETLINK', 17: 'PACKET' },
    type: { 1: 'STREAM', 2: 'DGRAM', 3: 'RAW', 5: 'SEQPACKET', 10: 'PACKET' },
    state: {
      1: 'ESTABLISHED',
      2: 'SYN_SENT',
      3: 'SYN_RECV',
      4: 'FIN_WAIT1',
      5: 'FIN_WAIT2',
      6: 'TIME_WAIT',
      7: 'CLOSE',
      8: 'CLOSE_WAIT',
      9: 'LAST_ACK',
      10: 'LISTEN',
    },
    proto: { 0: 'IP', 6: 'TCP', 17: 'UDP', 136: 'UDPLITE' },
  },
};

/** A word from one of crit's value tables, e.g. dictWord('sk', 'state', 1) is 'ESTABLISHED'. */
export function dictWord(table: string, field: string, n: number): string | undefined {
  return valueTables[table]?.[field]?.[n];
}

function hexText(v: number | bigint): string {
  const b = BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}

/** "A | B" for the known bits, the rest appended as hex; "" for 0. */
export function bitNames(value: number | bigint, table: BitTable): string {
  let v = BigInt(value);
  const names = table.filter(([, bit]) => (v & BigInt(bit)) !== 0n).map(([name]) => name);
  for (const [, bit] of table) v &= ~BigInt(bit);
  if (v) names.push(hexText(v));
  return names.join(' | ');
}

/** dev_t as "major:minor": the kernel's encoding, or glibc's with `odev`. */
function devText(value: number | bigint, old: boolean): string {
  const d = BigInt(value);
  if (!old) return `${d >> 20n}:${d & 0xfffffn}`;
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** An address kept as u32 words in network byte order. */
export function ipText(words: readonly number[]): string | undefined {
  const bytes = new Uint8Array(4 * words.length);
  const dv = new DataView(bytes.buffer);
  words.forEach((w, i) => dv.setUint32(4 * i, w, true)); // memory order of the host words
  if (words.length === 1) return Array.from(bytes).join('.');
  if (words.length < 4) return undefined;
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  // RFC 5952 as Python's ipaddress does it: drop the longest run (>1) of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const text = groups.map((g) => g.toString(16));
  if (bestLen < 2) return text.join(':');
  const head = text.slice(0, best).join(':');
  const tail = text.slice(best + bestLen).join(':');
  return `${head}::${tail}`;
}

const B64_LINE = 76;

/** Python's base64.encodebytes: 76-column lines, each ending in a newline. */
export function base64Lines(data: Uint8Array): string {
  const b64 = Buffer.from(data.buffer, data.byteOffset, data.length).toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += B64_LINE) out += `${b64.slice(i, i + B64_LINE)}\n`;
  return out;
}

/** Python's quopri.encodestring (binascii.b2a_qp, text mode), for unix socket names. */
export function quotedPrintable(data: Uint8Array): string {
  const MAX = 76;
  const out: number[] = [];
  const hexDigits = '0123456789ABCDEF';
  const escape = (c: number) => out.push(0x3d, hexDigits.charCodeAt(c >> 4), hexDigits.charCodeAt(c & 15));
  const nl = data.indexOf(0x0a);
  const crlf = nl > 0 && data[nl - 1] === 0x0d;
  let lineLen = 0;
  for (let i = 0; i < data.length; ) {
    const c = data[i];
    const last = i + 1 === data.length;
    const next = last ? -1 : data[i + 1];
    const mustEscape =
      c > 126 ||
      c === 0x3d ||
      (c === 0x2e && lineLen === 0 && (last || next === 0x0a || next === 0x0d || next === 0)) ||
      ((c === 0x09 || c === 0x20) && last) ||
      (c < 33 && c !== 0x0d && c !== 0x0a && c !== 0x09 && c !== 0x20);
    if (mustEscape) {
      if (lineLen + 3 >= MAX) {
        out.push(0x3d, 0x0a);
        lineLen = 0;
      }
      escape(c);
      lineLen += 3;
      i++;
    } else if (c === 0x0a || (c === 0x0d && next === 0x0a)) {
      lineLen = 0;
      const prev = out[out.length - 1];
      if (out.length && (prev === 0x20 || prev === 0x09)) {
        out.pop();
        escape(prev);
      }
      if (crlf) out.push(0x0d);
      out.push(0x0a);
      i += c === 0x0d ? 2 : 1;
    } else {
      if (!last && next !== 0x0a && lineLen + 1 >= MAX) {
        out.push(0x3d, 0x0a);
        lineLen = 0;
      }
      lineLen++;
      out.push(c);
      i++;
    }
  }
  return Buffer.from(out).toString('latin1');
}

const latin1Fallback = new TextDecoder('utf-8');

function scalarValue(field: FieldInfo, value: unknown, pretty: boolean, hex: boolean): CritValue {
  if (field.type === 'bytes') {
    const bytes = value as Uint8Array;
    return criuOption(field, 'conv') === 'unix_name' ? quotedPrintable(bytes) : base64Lines(bytes);
  }
  if (isEnum(field.resolvedType)) {
    const name = field.resolvedType.valuesById[value as number];
    return name ?? (value as number);
  }
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return latin1Fallback.decode(value); // a string that was not UTF-8
  const n = value as number | bigint;
  if (!pretty) return n;
  if (hex) return hexText(n);
  if (criuOption(field, 'dev')) return devText(n, Boolean(criuOption(field, 'odev')));
  const flags = criuOption(field, 'flags');
  if (typeof flags === 'string') {
    const table = flagTables[flags];
    return table ? bitNames(n, table) : hexText(n);
  }
  const dict = criuOption(field, 'dict');
  if (typeof dict === 'string') {
    return dictWord(dict, field.name, Number(n)) ?? n;
  }
  return n;
}

function fieldValue(field: FieldInfo, value: unknown, pretty: boolean, hex: boolean): CritValue {
  const resolved = field.resolvedType;
  if (isMessage(resolved)) return messageToCrit(resolved, value as Message, pretty, hex);
  return scalarValue(field, value, pretty, hex);
}

/** crit's pb2dict: one message as crit shows it. `hex` is inherited from a hex-marked parent field. */
export function messageToCrit(type: MessageType | string, msg: Message, pretty = true, hex = false): { [key: string]: CritValue } {
  const t = typeof type === 'string' ? messageType(type) : type;
  const out: { [key: string]: CritValue } = {};
  for (const field of fieldsByNumber(t)) {
    if (!Object.hasOwn(msg, field.name)) continue;
    const value = msg[field.name];
    const fieldHex = hex || Boolean(criuOption(field, 'hex'));
    if (field.repeated) {
      const list = value as unknown[];
      if (list.length === 0) continue; // not "present" for crit either
      if (pretty && criuOption(field, 'ipadd')) {
        const text = ipText(list as number[]);
        out[field.name] = text === undefined ? (list as number[]) : [text];
      } else {
        out[field.name] = list.map((v) => fieldValue(field, v, pretty, fieldHex));
      }
    } else {
      out[field.name] = fieldValue(field, value, pretty, fieldHex);
    }
  }
  return out;
}

/** crit's value for the payload after an entry. */
function extraToCrit(kind: string, msg: Message, extra: Uint8Array): CritValue {
  switch (kind) {
    case 'tcp-stream': {
      const { inq, outq } = tcpQueues(msg, extra);
      return { inq: base64Lines(inq), outq: base64Lines(outq) };
    }
    case 'ipc-shm':
      return base64Lines(shmContents(msg, extra));
    case 'ipc-sem':
      return semValues(msg, extra);
    case 'ipc-msg':
      // crit shows each message (not pretty-printed) followed by its text.
      return queuedMessages(msg, extra).flatMap(({ msg: m, data }) => [messageToCrit('ipc_msg', m, false), base64Lines(data)]);
    default:
      return base64Lines(extra);
  }
}

/** The whole image as crit's JSON value: {magic, entries}. */
export function imageToCrit(image: Image): { magic: string; entries: CritValue[] } {
  const first = image.entries[0]?.message;
  const entries = image.entries.map((entry, i) => {
    const shape = entryShape(image.type, i, first);
    const out = messageToCrit(shape.message, entry.message);
    if (shape.extra && entry.extra) out.extra = extraToCrit(shape.extra, entry.message, entry.extra);
    return out;
  });
  return { magic: image.type.name, entries };
}

function quote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (c < 0x20 || c > 0x7e) out += `\\u${c.toString(16).padStart(4, '0')}`; // UTF-16 units, as Python's ensure_ascii
    else out += s[i];
  }
  return `${out}"`;
}

/** Python's json.dumps(value, indent=4) (ensure_ascii on). */
export function pythonJson(value: CritValue, indent = 4, level = 0): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return quote(value);
  const pad = ' '.repeat(indent * (level + 1));
  const end = ' '.repeat(indent * level);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => pad + pythonJson(v, indent, level + 1)).join(',\n')}\n${end}]`;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${pad}${quote(k)}: ${pythonJson(value[k], indent, level + 1)}`).join(',\n')}\n${end}}`;
}

/** Exactly what `crit decode --pretty` prints for the image (with the final newline). */
export function critJsonText(image: Image): string {
  return `${pythonJson(imageToCrit(image))}\n`;
}
