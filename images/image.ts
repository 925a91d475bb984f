// One image file: its head (magic words), then size-prefixed protobuf
// entries, each possibly followed by a raw payload. Knows nothing about
// processes; see magic.ts for the kinds of files.
import { ImageError, WireError } from './errors.js';
import { payloadLength, expectedPayloadLength, type PayloadKind } from './extra.js';
import {
  IMG_COMMON_MAGIC,
  IMG_SERVICE_MAGIC,
  INVENTORY_MAGIC,
  imageTypeByMagic,
  imageTypeByName,
  type ImageType,
} from './magic.js';
import { decodeMessage, encodeMessageView, type Message } from './wire.js';

export interface ImageEntry {
  message: Message;
  /** The raw bytes that followed the entry (queued data, ghost contents, ...). */
  extra?: Uint8Array;
}

export interface Image {
  type: ImageType;
  entries: ImageEntry[];
  /** After decoding: the file offset of each entry's size word. */
  offsets?: number[];
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

function u32(buf: Uint8Array, at: number): number {
  return new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0, true);
}

/** What entry number `index` of an image of `type` is, given its first entry. */
export function entryShape(
  type: ImageType,
  index: number,
  first: Message | undefined,
): { message: string; extra?: PayloadKind } {
  switch (type.layout) {
    case 'pagemap':
      return { message: index === 0 ? 'pagemap_head' : 'pagemap_entry' };
    case 'ghost-file':
      if (index === 0) return { message: 'ghost_file_entry', extra: first?.chunks ? undefined : 'ghost-content' };
      return { message: 'ghost_chunk_entry', extra: 'ghost-chunk' };
    default:
      if (!type.message) throw new Error(`${type.name} files are raw, not made of entries`);
      return { message: type.message, extra: type.extra };
  }
}

/** Reads the head of an image file: which type it is and where entries start. */
export function readHead(bytes: Uint8Array, file: string): { type: ImageType; body: number } {
  if (bytes.length < 4) throw new ImageError(file, 0, 'truncated header', `need 4 bytes, have ${bytes.length}`);
  const first = u32(bytes, 0);
  if (first === INVENTORY_MAGIC) return { type: imageTypeByName('INVENTORY'), body: 4 };
  if (first !== IMG_COMMON_MAGIC && first !== IMG_SERVICE_MAGIC) {
    const why = imageTypeByMagic(first)
      ? `a ${imageTypeByMagic(first)!.name} magic without the common head: images v1 are not supported`
      : 'not a CRIU image, or a headerless one such as pages-N.img';
    throw new ImageError(file, 0, `bad magic ${hex(first)}`, why);
  }
  if (bytes.length < 8) throw new ImageError(file, 4, 'truncated header', `need 4 bytes, have ${bytes.length - 4}`);
  const second = u32(bytes, 4);
  const type = imageTypeByMagic(second);
  if (!type || type.head === 'inventory') throw new ImageError(file, 4, `unknown image magic ${hex(second)}`);
  const head = first === IMG_SERVICE_MAGIC ? 'service' : 'common';
  if (type.head !== head) {
    throw new ImageError(file, 0, `bad magic ${hex(first)}`, `${type.name} images have the ${type.head} head`);
  }
  return { type, body: 8 };
}

/** Decodes a whole image file. Errors name `file` and the byte offset. */
export function decodeImage(bytes: Uint8Array, file: string): Image {
  const { type, body } = readHead(bytes, file);
  const entries: ImageEntry[] = [];
  const offsets: number[] = [];
  let pos = body;
  while (pos < bytes.length) {
    const start = pos;
    const left = bytes.length - pos;
    if (left < 4) throw new ImageError(file, start, 'truncated entry size', `need 4 bytes, have ${left}`);
    const size = u32(bytes, pos);
    pos += 4;
    if (size > bytes.length - pos) {
      throw new ImageError(file, start, 'truncated entry', `need ${size} bytes, have ${bytes.length - pos}`);
    }
    const messageName = entryShape(type, entries.length, entries[0]?.message).message;
    let message: Message;
    try {
      message = decodeMessage(messageName, bytes.subarray(pos, pos + size), pos);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      throw new ImageError(file, start, `cannot decode ${messageName} (entry ${entries.length})`, e.message);
    }
    pos += size;
    // The first entry's own fields may decide its payload (ghost file chunks).
    const shape = entryShape(type, entries.length, entries[0]?.message ?? message);
    const entry: ImageEntry = { message };
    if (shape.extra) {
      let need: number;
      try {
        need = payloadLength(shape.extra, message, bytes, pos);
      } catch (e) {
        if (!(e instanceof WireError)) throw e;
        throw new ImageError(file, pos, `bad ${shape.extra} payload (entry ${entries.length})`, e.message);
      }
      if (need > bytes.length - pos) {
        throw new ImageError(file, pos, `truncated ${shape.extra} payload`, `need ${need} bytes, have ${bytes.length - pos}`);
      }
      entry.extra = Uint8Array.from(bytes.subarray(pos, pos + need));
      pos += need;
    }
    entries.push(entry);
    offsets.push(start);
  }
  return { type, entries, offsets };
}

/** The head words of a file of `type`. */
export function headBytes(type: ImageType): Uint8Array {
  const words =
    type.head === 'inventory'
      ? [type.magic]
      : type.head === 'common'
        ? [IMG_COMMON_MAGIC, type.magic]
        : type.head === 'service'
          ? [IMG_SERVICE_MAGIC, type.magic]
          : [];
  const out = new Uint8Array(4 * words.length);
  const dv = new DataView(out.buffer);
  words.forEach((w, i) => dv.setUint32(4 * i, w >>> 0, true));
  return out;
}

/**
 * Appends one entry (size word, message, payload) of an image of `type` to `out`; `first` is the
 * image's first message (it may decide the payloads of the others).
 */
function encodeEntry(out: ImageBytes, type: ImageType, index: number, entry: ImageEntry, first: Message | undefined): void {
  const shape = entryShape(type, index, first);
  const body = encodeMessageView(shape.message, entry.message);
  out.u32(body.length);
  out.put(body);
  if (!shape.extra) {
    if (entry.extra?.length) throw new Error(`${type.name} entry ${index}: ${shape.message} has no payload`);
    return;
  }
  const extra = entry.extra ?? new Uint8Array(0);
  const want = expectedPayloadLength(shape.extra, entry.message);
  if (want !== undefined && want !== extra.length) {
    throw new Error(`${type.name} entry ${index}: the entry announces ${want} payload bytes, ${extra.length} given`);
  }
  out.put(extra);
}

/** The bytes of an image being encoded, in one growing buffer. */
class ImageBytes {
  buf = Buffer.allocUnsafe(1024);
  len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  put(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
  }
}

/** Encodes a whole image file. */
export function encodeImage(image: Image): Uint8Array {
  const first = image.entries[0]?.message;
  const out = new ImageBytes();
  out.put(headBytes(image.type));
  for (let i = 0; i < image.entries.length; i++) encodeEntry(out, image.type, i, image.entries[i]!, first);
  return out.buf.subarray(0, out.len);
}

/** Shorthand for an image whose entries carry no payload. */
export function imageOf(typeName: string, messages: Message[]): Image {
  return { type: imageTypeByName(typeName), entries: messages.map((message) => ({ message })) };
}
