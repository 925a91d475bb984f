// zstd through Debian's libzstd1 (koffi): the streaming compressor and decompressor, chunk by
// chunk. Node 20's zlib has no zstd; oci-spec/compression.ts wraps these in Node streams.

import koffi from 'koffi';
import { addressOf, nativeBuffer } from './native.js';

let lib: ReturnType<typeof koffi.load> | undefined;
type Fn = (...a: unknown[]) => unknown;
let fns: Record<string, Fn> | undefined;

function zstd(): Record<string, Fn> {
  if (fns) return fns;
  try {
    lib = koffi.load('libzstd.so.1');
  } catch {
    throw new Error('zstd: libzstd.so.1 is not installed (Debian package libzstd1)');
  }
  // Buffers descriptors are passed by address (intptr_t): { pointer, size, pos } as three words.
  const f = (sig: string) => lib!.func(sig) as Fn;
  fns = {
    createC: f('void *ZSTD_createCCtx()'),
    freeC: f('size_t ZSTD_freeCCtx(void *)'),
    setC: f('size_t ZSTD_CCtx_setParameter(void *, int, int)'),
    compress: f('size_t ZSTD_compressStream2(void *, intptr_t, intptr_t, int)'),
    createD: f('void *ZSTD_createDCtx()'),
    freeD: f('size_t ZSTD_freeDCtx(void *)'),
    decompress: f('size_t ZSTD_decompressStream(void *, intptr_t, intptr_t)'),
    isError: f('unsigned int ZSTD_isError(size_t)'),
    errorName: f('const char *ZSTD_getErrorName(size_t)'),
  };
  return fns;
}

const C_LEVEL = 100;
const C_WORKERS = 400;
const C_CHECKSUM = 201;
const END_CONTINUE = 0;
const END_FINISH = 2;
const OUT_CHUNK = 128 * 1024;

function check(what: string, r: unknown): number {
  const z = zstd();
  if (z.isError!(r)) throw new Error(`zstd ${what}: ${z.errorName!(r) as string}`);
  return Number(r);
}

/** One zstd stream, either way; feed it chunks, take the output chunks it returns. */
abstract class ZstdStream {
  protected ctx: unknown;
  // { src/dst, size, pos } for input and output, in native memory.
  protected readonly inDesc = nativeBuffer(24);
  protected readonly outDesc = nativeBuffer(24);
  protected readonly out = nativeBuffer(OUT_CHUNK, false);
  protected input = nativeBuffer(0);

  protected setInput(chunk: Buffer): void {
    // Copied into native memory: the address must stay put during the call.
    if (this.input.length < chunk.length) this.input = nativeBuffer(chunk.length, false);
    chunk.copy(this.input);
    this.inDesc.writeBigUInt64LE(addressOf(this.input), 0);
    this.inDesc.writeBigUInt64LE(BigInt(chunk.length), 8);
    this.inDesc.writeBigUInt64LE(0n, 16);
  }

  protected resetOutput(): void {
    this.outDesc.writeBigUInt64LE(addressOf(this.out), 0);
    this.outDesc.writeBigUInt64LE(BigInt(OUT_CHUNK), 8);
    this.outDesc.writeBigUInt64LE(0n, 16);
  }

  protected inputLeft(): boolean {
    return this.inDesc.readBigUInt64LE(16) < this.inDesc.readBigUInt64LE(8);
  }

  protected produced(): Buffer {
    return Buffer.from(this.out.subarray(0, Number(this.outDesc.readBigUInt64LE(16))));
  }
}

export class ZstdCompressor extends ZstdStream {
  constructor(level = 3, workers = 0) {
    super();
    const z = zstd();
    this.ctx = z.createC!();
    if (!this.ctx) throw new Error('zstd: cannot create a compression context');
    check('level', z.setC!(this.ctx, C_LEVEL, level));
    check('checksum', z.setC!(this.ctx, C_CHECKSUM, 1));
    // Worker threads where the library was built with them; a plain stream otherwise.
    if (workers > 0 && z.isError!(z.setC!(this.ctx, C_WORKERS, workers))) { /* single-threaded */ }
  }

  /** Compress a chunk; returns what is ready (possibly nothing). */
  push(chunk: Buffer): Buffer[] {
    this.setInput(chunk);
    const parts: Buffer[] = [];
    do {
      this.resetOutput();
      check('compress', zstd().compress!(this.ctx, addressOf(this.outDesc), addressOf(this.inDesc), END_CONTINUE));
      const p = this.produced();
      if (p.length) parts.push(p);
    } while (this.inputLeft());
    return parts;
  }

  /** End the frame: the rest of the output. The compressor is freed. */
  finish(): Buffer[] {
    this.setInput(Buffer.alloc(0));
    const parts: Buffer[] = [];
    for (;;) {
      this.resetOutput();
      const left = check('finish', zstd().compress!(this.ctx, addressOf(this.outDesc), addressOf(this.inDesc), END_FINISH));
      const p = this.produced();
      if (p.length) parts.push(p);
      if (left === 0) break;
    }
    this.free();
    return parts;
  }

  free(): void {
    if (this.ctx) zstd().freeC!(this.ctx);
    this.ctx = null;
  }
}

export class ZstdDecompressor extends ZstdStream {
  /** Whether the last frame fed so far is complete (a truncated stream ends with this false). */
  frameDone = true;

  constructor() {
    super();
    this.ctx = zstd().createD!();
    if (!this.ctx) throw new Error('zstd: cannot create a decompression context');
  }

  push(chunk: Buffer): Buffer[] {
    return [...this.pieces(chunk)];
  }

  /**
   * Decompress a chunk one output buffer at a time, as the caller takes them: a small input
   * may stand for gigabytes (zeros), which must not all sit in memory at once. The chunk must
   * be used up before the next one is given.
   */
  *pieces(chunk: Buffer): Generator<Buffer> {
    this.setInput(chunk);
    for (;;) {
      this.resetOutput();
      const hint = check('decompress', zstd().decompress!(this.ctx, addressOf(this.outDesc), addressOf(this.inDesc)));
      const p = this.produced();
      this.frameDone = hint === 0;
      if (p.length) yield p;
      // Output full: more may be buffered inside, go round even if the input is used up.
      if (!this.inputLeft() && p.length < OUT_CHUNK) break;
    }
  }

  free(): void {
    if (this.ctx) zstd().freeD!(this.ctx);
    this.ctx = null;
  }
}
