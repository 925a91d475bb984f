// An image directory: the files of one dump, opened lazily by name.
//
// Writing follows CRIU's rule that inventory.img is written last: write()
// and the raw writers refuse it, commit() writes it once everything else is
// in place, under a temporary name renamed into place, so an unfinished or
// half-written dump never has an inventory.img. Just before it, commit() writes
// stasis-manifest.json (images/manifest.ts): the size and hash of every image, under the dump's
// run id, which checkDump() checks before a restore.
//
// Every file is created as private-file.ts says (0600, a new inode, never through a link), and
// read only when it is a regular file.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ImageError, MissingImageError } from './errors.js';
import { decodeImage, encodeImage, type Image, type ImageEntry } from './image.js';
import { imageTypeByName, imageTypeForFile } from './magic.js';
import {
  MANIFEST_FILE, checkManifest, digestOf, digestOfFile, encodeManifest, isListedImage, readManifest, type FileDigest,
} from './manifest.js';
import { pagesFileName, readPagemap, type Pagemap } from './pagemap.js';
import {
  checkImageDirEntries, createPrivateFile, makePrivateDirs, openImageFile, readImageFile, readImageFileSync,
  writePrivateFile, writePrivateFileSync,
} from './private-file.js';
import type { Message } from './wire.js';
import { messageOf, messagesOf, readDumpedMemory } from './image-source.js';

export const INVENTORY_FILE = 'inventory.img';
export { MANIFEST_FILE };

let tmpCounter = 0;

function tmpName(dir: string, name: string): string {
  return path.join(dir, `.${name}.${process.pid}.${++tmpCounter}.tmp`);
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/**
 * Writes inventory.img under a temporary name renamed into place: it is what marks a dump
 * complete, so it must never be seen half-written. (The other files of an unfinished dump are
 * harmless without it: ImageDir writes them straight to their names.)
 */
function writeAtomically(dir: string, name: string, data: Uint8Array): void {
  const tmp = tmpName(dir, name);
  try {
    writePrivateFileSync(tmp, data);
    fs.renameSync(tmp, path.join(dir, name)); // a link at the name is replaced, not followed
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * A file write that took longer than this (ms) was slow: the filesystem creates files slowly
 * just now (this machine's disk swings between 0.02 and 0.6 ms a file within minutes).
 */
const SLOW_WRITE_MS = 0.25;
/** Slow writes after which the rest go through the thread pool. */
const SLOW_WRITES = 4;
/** Bytes of raw files checkDump() keeps for their reader. */
const KEEP_RAW = 64 << 20;

/** Streams a large raw file (pages-N.img) into place. */
export class RawWriter {
  private closed = false;
  written = 0;

  constructor(
    private readonly owner: ImageDir,
    readonly name: string,
    private readonly tmp: string,
    private readonly handle: fsp.FileHandle,
  ) {}

  async write(data: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`${this.name}: write after close`);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done);
      done += bytesWritten;
    }
    this.written += data.length;
  }

  /** Finishes the file: it appears under its name only now. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
    await fsp.rename(this.tmp, path.join(this.owner.path, this.name)); // a link at the name is replaced, not followed
    this.owner.writerDone(this);
  }

  /** Drops the file. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
    await fsp.rm(this.tmp, { force: true });
    this.owner.writerDone(this);
  }
}

export class ImageDir {
  private readonly cache = new Map<string, Image>();
  private readonly writers = new Set<RawWriter>();
  /** Digests of the files written whole here (the others are hashed at commit). */
  private readonly digests = new Map<string, FileDigest>();
  /** Bytes checkDump() read, kept until image() decodes them. */
  private readonly checked = new Map<string, Buffer>();
  /** Writes that were slow so far (see writeFile). */
  private slowWrites = 0;

  private constructor(readonly path: string) {}

  /** An existing directory, to read (or add to); refused if an image file in it is not a regular file. */
  static async open(dir: string): Promise<ImageDir> {
    // Synchronously, as image() reads: a round trip through the thread pool costs more.
    const st = fs.statSync(dir);
    if (!st.isDirectory()) throw new Error(`${dir}: not a directory`);
    checkImageDirEntries(dir);
    return new ImageDir(dir);
  }

  /**
   * A directory to dump into, created if needed (0700). A stale inventory.img from
   * an earlier dump is removed first: until commit() the directory must not
   * look like a complete dump.
   */
  static async create(dir: string): Promise<ImageDir> {
    // Synchronously: two quick calls, where a round trip through the thread pool each costs more.
    makePrivateDirs(dir);
    fs.rmSync(path.join(dir, INVENTORY_FILE), { force: true });
    fs.rmSync(path.join(dir, MANIFEST_FILE), { force: true });
    return new ImageDir(dir);
  }

  /** Full path of a file in the directory. */
  file(name: string): string {
    return path.join(this.path, name);
  }

  /** File names in the directory, sorted (temporary files left out). */
  async names(): Promise<string[]> {
    return (await fsp.readdir(this.path)).filter((n) => !(n.startsWith('.') && n.endsWith('.tmp'))).sort();
  }

  async has(name: string): Promise<boolean> {
    return fs.existsSync(this.file(name));
  }

  /** A dump is complete once inventory.img exists. */
  async isComplete(): Promise<boolean> {
    return this.has(INVENTORY_FILE);
  }

  /** The decoded image `name`; read on first use, then cached. */
  async image(name: string): Promise<Image> {
    const cached = this.cache.get(name);
    if (cached) return cached;
    // Read synchronously: image files are small, and a restore reads hundreds of them one after
    // another, where a round trip through the thread pool each costs more than the read.
    let bytes = this.checked.get(name);
    this.checked.delete(name);
    try {
      bytes ??= readImageFileSync(this.file(name));
    } catch (e) {
      if (isMissing(e)) throw new MissingImageError(name);
      throw e;
    }
    const image = decodeImage(bytes, name);
    this.cache.set(name, image);
    return image;
  }

  /** Like image(), but a missing file is undefined: CRIU treats it as an empty image. */
  async imageIfPresent(name: string): Promise<Image | undefined> {
    try {
      return await this.image(name);
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  /** The messages of image `name`; [] when the file does not exist. */
  async messages(name: string): Promise<Message[]> {
    return messagesOf(this, name);
  }

  /** The one entry of a single-entry image (core, mm, ids, fs, inventory...). */
  async message(name: string): Promise<Message> {
    return messageOf(this, name);
  }

  /** inventory.img's entry. */
  async inventory(): Promise<Message> {
    return this.message(INVENTORY_FILE);
  }

  /** The runs of a pagemap image, with their offsets in the pages file. */
  async pagemap(name: string): Promise<Pagemap> {
    return readPagemap(await this.image(name));
  }

  /** `length` bytes at `offset` of pages-<pagesId>.img. */
  async readPages(pagesId: number, offset: number, length: number): Promise<Buffer> {
    const name = pagesFileName(pagesId);
    const handle = await openImageFile(this.file(name));
    try {
      const { size } = await handle.stat();
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new ImageError(name, offset, 'truncated pages', `need ${length} bytes, have ${Math.max(0, size - offset)}`);
      }
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new ImageError(name, offset + done, 'unexpected end of file');
        done += bytesRead;
      }
      return buf;
    } finally {
      await handle.close();
    }
  }

  /**
   * `length` bytes of the dumped memory at `vaddr`, found through the runs
   * of `pagemap`. Throws when part of the range was not dumped here (never
   * touched, a file page, or kept in a parent dump).
   */
  async readMemory(pagemap: Pagemap, vaddr: bigint, length: number): Promise<Buffer> {
    return readDumpedMemory(pagemap, vaddr, length, (_at, offset, n) => this.readPages(pagemap.pagesId, offset, n));
  }

  /** The raw bytes of a file (pages, tarballs, ip dumps, descriptors.json...). */
  async readRaw(name: string): Promise<Buffer> {
    return readImageFile(this.file(name));
  }

  private checkWritable(name: string): void {
    if (name === INVENTORY_FILE) throw new Error('inventory.img is written by commit(), after every other image');
    if (name.includes('/') || name.startsWith('.')) throw new Error(`${name}: not a plain file name`);
  }

  /**
   * Writes a whole file. Image files are small and a dump writes hundreds: written here, a file
   * costs 0.02 ms where the filesystem is quick, while through the thread pool it costs an open, a
   * write and a close round trip whose callbacks run on this thread (20-25 ms of a 50-process
   * dump). Where the filesystem turns out slow to create files (SLOW_WRITES writes over
   * SLOW_WRITE_MS), the rest go through the pool: created on another CPU meanwhile.
   */
  private async writeFile(name: string, data: Uint8Array): Promise<void> {
    const file = path.join(this.path, name);
    if (this.slowWrites >= SLOW_WRITES) {
      await writePrivateFile(file, data);
      return;
    }
    const t0 = performance.now();
    writePrivateFileSync(file, data);
    if (performance.now() - t0 > SLOW_WRITE_MS) this.slowWrites++;
  }

  /** writeFile(), remembering the digest for the manifest. */
  private async writeImageFile(name: string, data: Uint8Array): Promise<void> {
    this.digests.delete(name);
    await this.writeFile(name, data);
    this.digests.set(name, digestOf(data));
  }

  /** Writes protobuf image `name` (its type comes from the name) in one go. */
  async write(name: string, entries: ImageEntry[]): Promise<void> {
    this.checkWritable(name);
    const type = imageTypeForFile(name);
    if (!type) throw new Error(`${name}: not a CRIU image file name`);
    if (type.head === 'raw') throw new Error(`${name}: ${type.name} files are raw, use writeRaw()`);
    const image: Image = { type, entries };
    await this.writeImageFile(name, encodeImage(image));
    this.cache.set(name, image);
  }

  /** write() for entries without payloads. */
  async writeMessages(name: string, messages: Message[]): Promise<void> {
    await this.write(name, messages.map((message) => ({ message })));
  }

  /** Writes a raw file in one go. */
  async writeRaw(name: string, data: Uint8Array): Promise<void> {
    this.checkWritable(name);
    await this.writeImageFile(name, data);
  }

  /** Starts streaming a raw file; it appears under its name on close(). */
  async rawWriter(name: string): Promise<RawWriter> {
    this.checkWritable(name);
    const tmp = tmpName(this.path, name);
    this.digests.delete(name);
    const writer = new RawWriter(this, name, tmp, await createPrivateFile(tmp));
    this.writers.add(writer);
    return writer;
  }

  /** @internal called by RawWriter */
  writerDone(writer: RawWriter): void {
    this.writers.delete(writer);
  }

  /**
   * Marks the dump complete: the manifest of every image in the directory under the inventory's
   * run id, then inventory.img, last. Files written here are hashed as written; the others (the
   * pages the tasks wrote, files written by path) are read back.
   */
  async commit(inventory: Message): Promise<void> {
    if (this.writers.size) {
      throw new Error(`cannot commit: still writing ${[...this.writers].map((w) => w.name).join(', ')}`);
    }
    const image: Image = { type: imageTypeByName('INVENTORY'), entries: [{ message: inventory }] };
    const bytes = encodeImage(image);
    const files: Record<string, FileDigest> = {};
    for (const name of await this.names()) {
      if (isListedImage(name) && name !== INVENTORY_FILE) files[name] = this.digests.get(name) ?? digestOfFile(this.file(name)).digest;
    }
    files[INVENTORY_FILE] = digestOf(bytes);
    writeAtomically(this.path, MANIFEST_FILE,
      Buffer.from(encodeManifest({ dump_criu_run_id: String(inventory.dump_criu_run_id ?? ''), files })));
    writeAtomically(this.path, INVENTORY_FILE, bytes);
    this.cache.set(INVENTORY_FILE, image);
  }

  /**
   * Gives the dump's files (its images and manifest) to `owner`, their mode kept (0600): a
   * container's root, a host id of its user namespace, which reads them itself when CRIU
   * restores it (CRIU opens some from inside that namespace). `keep`: files left as they are.
   */
  async giveTo(owner: { uid: number; gid: number }, keep: (name: string) => boolean = () => false): Promise<void> {
    for (const name of await this.names()) {
      if ((isListedImage(name) || name === MANIFEST_FILE) && !keep(name)) await fsp.lchown(this.file(name), owner.uid, owner.gid);
    }
  }

  /**
   * Checks that the directory holds one dump, as written: when it has a manifest (stasis wrote
   * it), every image it lists is there with its size and hash, no other image is, and
   * inventory.img has its run id. A dump without one (CRIU's) passes. Throws naming the first
   * file that does not belong. Reads every listed file: the protobuf images are kept for image(),
   * raw files (the pages of small processes) for checkedRaw(), up to KEEP_RAW bytes of them.
   */
  async checkDump(): Promise<void> {
    const manifest = readManifest(this.path);
    if (!manifest) return;
    const runId = (await this.inventory()).dump_criu_run_id;
    let rawKept = 0;
    checkManifest(this.path, manifest, runId, await this.names(), (name, data) => {
      const type = imageTypeForFile(name);
      if (type && type.head !== 'raw') {
        if (!this.cache.has(name)) this.checked.set(name, data);
      } else if (rawKept + data.length <= KEEP_RAW) {
        this.checked.set(name, data);
        rawKept += data.length;
      }
    });
  }

  /** The bytes of raw file `name` as checkDump() read them, once; undefined if not kept. */
  checkedRaw(name: string): Buffer | undefined {
    const data = this.checked.get(name);
    this.checked.delete(name);
    return data;
  }
}
