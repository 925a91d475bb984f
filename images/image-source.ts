// Reading a dump's images from somewhere other than a directory: the members of a checkpoint
// archive held in memory (MemoryImages), behind the read side of ImageDir (ImageSource). The
// pages files are not held whole: only the byte ranges a reader asked for (a process's argv and
// environment, the pages a search went through) are kept, as PageRanges.
import { ImageError, MissingImageError } from './errors.js';
import { decodeImage, type Image } from './image.js';
import { PAGE_SIZE, pagesFileName, readPagemap, type Pagemap } from './pagemap.js';
import type { Message } from './wire.js';

/** What a reader of a dump needs: ImageDir has it for a directory, MemoryImages for members. */
export interface ImageSource {
  /** File names, sorted. */
  names(): Promise<string[]>;
  has(name: string): Promise<boolean>;
  isComplete(): Promise<boolean>;
  image(name: string): Promise<Image>;
  imageIfPresent(name: string): Promise<Image | undefined>;
  messages(name: string): Promise<Message[]>;
  message(name: string): Promise<Message>;
  inventory(): Promise<Message>;
  pagemap(name: string): Promise<Pagemap>;
  readMemory(pagemap: Pagemap, vaddr: bigint, length: number): Promise<Buffer>;
}

/** The messages of image `name` of `src`; [] when it is not there. */
export async function messagesOf(src: Pick<ImageSource, 'imageIfPresent'>, name: string): Promise<Message[]> {
  return ((await src.imageIfPresent(name))?.entries ?? []).map((e) => e.message);
}

/** The one entry of single-entry image `name` of `src` (core, mm, ids, fs, inventory...). */
export async function messageOf(src: Pick<ImageSource, 'image'>, name: string): Promise<Message> {
  const image = await src.image(name);
  if (image.entries.length !== 1) {
    throw new ImageError(name, image.offsets?.[1] ?? 0, `expected one entry, found ${image.entries.length}`);
  }
  return image.entries[0].message;
}

/**
 * `length` bytes of the dumped memory at `vaddr`, found through the runs of `pagemap`; `read`
 * gives `n` bytes at `offset` of its pages file (memory address `at`). Throws when part of the
 * range was not dumped here (never touched, a file page, or kept in a parent dump).
 */
export async function readDumpedMemory(pagemap: Pagemap, vaddr: bigint, length: number,
  read: (at: bigint, offset: number, n: number) => Buffer | Promise<Buffer>): Promise<Buffer> {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const at = vaddr + BigInt(done);
    const run = pagemap.runs.find((r) => r.vaddr <= at && at < r.vaddr + BigInt(r.nrPages * PAGE_SIZE));
    if (!run || run.offset === undefined) {
      throw new Error(`memory at 0x${at.toString(16)} is not in ${pagesFileName(pagemap.pagesId)}`);
    }
    const skip = Number(at - run.vaddr);
    const n = Math.min(length - done, run.nrPages * PAGE_SIZE - skip);
    (await read(at, run.offset + skip, n)).copy(out, done);
    done += n;
  }
  return out;
}

/** Byte ranges of one pages file, each kept with its bytes; the rest of the file is not here. */
export class PageRanges {
  private readonly ranges: { offset: number; data: Buffer }[] = [];

  add(offset: number, data: Buffer): void {
    this.ranges.push({ offset, data });
  }

  /** `length` bytes at `offset`, or undefined when some of them were not kept. */
  read(offset: number, length: number): Buffer | undefined {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const r = this.ranges.find((x) => x.offset <= at && at < x.offset + x.data.length);
      if (!r) return undefined;
      const n = Math.min(length - done, r.offset + r.data.length - at);
      r.data.copy(out, done, at - r.offset, at - r.offset + n);
      done += n;
    }
    return out;
  }
}

/**
 * The images of a dump held in memory: file name → bytes (no directory part), and for pages
 * files the ranges that were kept. Decoded on first use, then cached.
 */
export class MemoryImages implements ImageSource {
  private readonly cache = new Map<string, Image>();
  readonly pages = new Map<number, PageRanges>();

  constructor(readonly files: Map<string, Buffer>, readonly label = 'archive') {}

  async names(): Promise<string[]> {
    return [...this.files.keys()].sort();
  }

  async has(name: string): Promise<boolean> {
    return this.files.has(name);
  }

  async isComplete(): Promise<boolean> {
    return this.files.has('inventory.img');
  }

  async image(name: string): Promise<Image> {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const bytes = this.files.get(name);
    if (!bytes) throw new MissingImageError(name);
    const image = decodeImage(bytes, name);
    this.cache.set(name, image);
    return image;
  }

  async imageIfPresent(name: string): Promise<Image | undefined> {
    return this.files.has(name) ? this.image(name) : undefined;
  }

  async messages(name: string): Promise<Message[]> {
    return messagesOf(this, name);
  }

  async message(name: string): Promise<Message> {
    return messageOf(this, name);
  }

  async inventory(): Promise<Message> {
    return this.message('inventory.img');
  }

  async pagemap(name: string): Promise<Pagemap> {
    return readPagemap(await this.image(name));
  }

  /** Keeps `data`, found at `offset` of pages-<pagesId>.img. */
  addPages(pagesId: number, offset: number, data: Buffer): void {
    let r = this.pages.get(pagesId);
    if (!r) this.pages.set(pagesId, (r = new PageRanges()));
    r.add(offset, data);
  }

  async readMemory(pagemap: Pagemap, vaddr: bigint, length: number): Promise<Buffer> {
    return readDumpedMemory(pagemap, vaddr, length, (at, offset, n) => {
      const bytes = this.pages.get(pagemap.pagesId)?.read(offset, n);
      if (!bytes) throw new Error(`memory at 0x${at.toString(16)} was not read from ${pagesFileName(pagemap.pagesId)} of ${this.label}`);
      return bytes;
    });
  }
}
