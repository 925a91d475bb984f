// Compression of checkpoint archives: zstd (libzstd through sys/zstd.ts), gzip (Node's zlib) or
// none, recognised on reading by the first bytes, as Podman's import does.

import { Duplex, Transform, type TransformCallback } from 'node:stream';
import { open } from 'node:fs/promises';
import zlib from 'node:zlib';
import { ZstdCompressor, ZstdDecompressor } from '../sys/zstd.js';

export type Compression = 'zstd' | 'gzip' | 'none';
export const COMPRESSIONS: readonly Compression[] = ['zstd', 'gzip', 'none'];

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const BZIP2_MAGIC = Buffer.from('BZh');
const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** What the first bytes of a file say about its compression. */
export function compressionOf(head: Buffer): Compression {
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.subarray(0, 3).equals(BZIP2_MAGIC)) throw new Error('bzip2-compressed archives are not supported (use zstd, gzip or none)');
  if (head.subarray(0, 6).equals(XZ_MAGIC)) throw new Error('xz-compressed archives are not supported (use zstd, gzip or none)');
  return 'none';
}

/** The compression of the file at `path`, from its first bytes. */
export async function detectCompression(path: string): Promise<Compression> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await fh.read(head, 0, 8, 0);
    return compressionOf(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Parse a --compress value. */
export function parseCompression(value: string): Compression {
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression;
  throw new Error(`unknown compression "${value}" (zstd, gzip or none)`);
}

class ZstdCompressStream extends Transform {
  private readonly z: ZstdCompressor;
  constructor(level: number) {
    super();
    this.z = new ZstdCompressor(level, 2);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      for (const p of this.z.push(chunk)) this.push(p);
      cb();
    } catch (e) {
      this.z.free();
      cb(e as Error);
    }
  }
  override _flush(cb: TransformCallback): void {
    try {
      for (const p of this.z.finish()) this.push(p);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }
  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.z.free();
    cb(err);
  }
}

function zstdDecompressStream(): Duplex {
  return new ZstdDecompressStream();
}

/**
 * zstd decompression whose output is handed on as the reader takes it: the pieces of one input
 * chunk are pushed one at a time, the next only once the reader wants more, so a small input
 * that stands for gigabytes (zeros) never sits in memory whole. Destroyed at any moment (a
 * reader that stopped early), it lets go at once.
 */
class ZstdDecompressStream extends Duplex {
  private readonly z = new ZstdDecompressor();
  private wanted?: () => void;

  override _read(): void {
    const go = this.wanted;
    this.wanted = undefined;
    go?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    void this.pump(chunk).then(() => cb(), (e: Error) => cb(e));
  }

  private async pump(chunk: Buffer): Promise<void> {
    const pieces = this.z.pieces(chunk);
    // Checked before each piece is made: once destroyed, the decompressor is freed.
    while (!this.destroyed) {
      const next = pieces.next();
      if (next.done) return;
      if (!this.push(next.value)) await new Promise<void>((r) => { this.wanted = r; });
    }
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (!this.z.frameDone) {
      cb(new Error('zstd: the compressed stream is truncated'));
      return;
    }
    this.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.wanted?.();
    this.z.free();
    cb(err);
  }
}

/** A stream that compresses what is written to it (a pass-through for 'none'). */
export function compressor(kind: Compression, level?: number): Transform {
  if (kind === 'zstd') return new ZstdCompressStream(level ?? 3);
  if (kind === 'gzip') return zlib.createGzip({ level: level ?? 6 });
  return new Transform({ transform: (c, _e, cb) => cb(null, c) });
}

/** A stream that decompresses what is written to it. */
export function decompressor(kind: Compression): Duplex {
  if (kind === 'zstd') return zstdDecompressStream();
  if (kind === 'gzip') return zlib.createGunzip();
  return new Transform({ transform: (c, _e, cb) => cb(null, c) });
}
