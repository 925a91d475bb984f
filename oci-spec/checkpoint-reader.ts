// A checkpoint as inspect, memparse and diff read it: an archive (any of the three layouts, any
// compression) or a directory (an unpacked archive with checkpoint/, or a plain images directory),
// opened with only the members the caller needs. Nothing is unpacked to disk.
//
// Pages files are never kept whole. The first pass over an archive keeps the small members; it
// stops at the first pages-*.img once the process tree has been read (stasis's archives put every
// pages file last, so nothing needed follows), and otherwise skips over the pages (Podman's
// archives list checkpoint/ in name order: pstree.img comes after pages-*.img). Whoever needs
// memory then streams the pages files in a second pass (streamPages), keeping what it wants.

import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ImageDir } from '../images/image-dir.js';
import { MemoryImages, type ImageSource } from '../images/image-source.js';
import { PAGE_SIZE, PE_PRESENT, pagesFileName, type Pagemap } from '../images/pagemap.js';
import { readMembers, streamMembers } from './archive.js';

/** Files beside the images that inspection reads (all small JSON or stats files). */
export const META_FILES = [
  'config.dump', 'spec.dump', 'network.status', 'stats-dump', 'status.dump', 'status', 'bind.mounts', 'deleted.files',
] as const;

/** The biggest member kept in memory, and all of them together (images and metadata are far smaller). */
const MAX_KEPT = 256 << 20;
const MAX_KEPT_TOTAL = 1 << 30;

/** Which images a reader needs, by file name (without checkpoint/). */
export type ImageFilter = (name: string) => boolean;

/** The images of the process tree itself: always read. */
export const TREE_IMAGES: ImageFilter = (n) =>
  n === 'pstree.img' || n === 'inventory.img' || /^core-\d+\.img$/.test(n) || /^pagemap-.*\.img$/.test(n);

/** Sizes as checkpointctl counts them. */
export interface CheckpointSizes {
  /** Regular files under checkpoint/ (the images), pages included. */
  total: number;
  /** pages-*.img */
  pages: number;
  /** amdgpu-pages-* */
  amdgpuPages: number;
  /** rootfs-diff.tar */
  rootfsDiff: number;
}

export interface Checkpoint {
  /** The path given. */
  path: string;
  kind: 'archive' | 'directory';
  /** META_FILES found, by name. */
  meta: Map<string, Buffer>;
  images: ImageSource;
  sizes: CheckpointSizes;
  /** The pages member an archive's reading stopped before (nothing after it was read). */
  stoppedBefore?: string;
  /** Where the images are: the directory, or the members' prefix ('checkpoint/' or ''). */
  imagesAt: string;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const isPagesName = (n: string) => /^pages-\d+\.img$/.test(n);
const pagesIdOf = (n: string) => Number(/^pages-(\d+)\.img$/.exec(n)?.[1]);

/** Thrown from the member filter to stop reading an archive. */
class StopReading extends Error {}

/** The name of an image member without its directory, and whether it is one. */
function imageName(member: string): { dir: string; name: string } | undefined {
  const m = /^(checkpoint\/)?([^/]+)$/.exec(member);
  if (!m) return undefined;
  const name = m[2]!;
  if (!m[1] && ((META_FILES as readonly string[]).includes(name) || !/\.img$|^descriptors\.json$/.test(name))) return undefined;
  return { dir: m[1] ?? '', name };
}

/** Present pages of each pages file, from the pagemaps (what the pages files must hold). */
async function pagesFromPagemaps(images: ImageSource): Promise<Map<number, number>> {
  const pages = new Map<number, number>();
  for (const name of await images.names()) {
    if (!name.startsWith('pagemap-')) continue;
    const pm = await images.pagemap(name);
    const n = pm.runs.reduce((s, r) => s + (r.flags & PE_PRESENT ? r.nrPages : 0), 0);
    pages.set(pm.pagesId, (pages.get(pm.pagesId) ?? 0) + n);
  }
  return pages;
}

async function openArchive(archive: string, want: ImageFilter): Promise<Checkpoint> {
  const meta = new Map<string, Buffer>();
  const files = new Map<string, Buffer>();
  const sizes: CheckpointSizes = { total: 0, pages: 0, amdgpuPages: 0, rootfsDiff: 0 };
  const pagesSeen = new Set<number>();
  let imagesAt: string | undefined;
  let stoppedBefore: string | undefined;
  let kept = 0;
  try {
    for await (const m of readMembers(archive, (name, size, type) => {
      if (type !== 'file') return false;
      if (name === 'rootfs-diff.tar') sizes.rootfsDiff = size;
      const img = imageName(name);
      if (img && img.dir === 'checkpoint/') {
        sizes.total += size;
        if (name.startsWith('checkpoint/amdgpu-pages-')) sizes.amdgpuPages += size;
      }
      if ((META_FILES as readonly string[]).includes(name)) return keep(name, size);
      if (!img) return false;
      imagesAt ??= img.dir;
      if (img.dir !== imagesAt) return false;
      if (img.dir === '') sizes.total += size;
      if (isPagesName(img.name)) {
        sizes.pages += size;
        pagesSeen.add(pagesIdOf(img.name));
        if (files.has('pstree.img')) {
          stoppedBefore = name;
          throw new StopReading();
        }
        return false;
      }
      return want(img.name) ? keep(name, size) : false;
    })) {
      if ((META_FILES as readonly string[]).includes(m.name)) meta.set(m.name, m.data);
      else files.set(imageName(m.name)!.name, m.data);
    }
  } catch (e) {
    if (!(e instanceof StopReading)) throw e;
  }
  const images = new MemoryImages(files, archive);
  if (!files.has('pstree.img')) {
    throw new CheckpointError(`${archive}: not a checkpoint (no pstree.img among its members${imagesAt === undefined ? ', no images at all' : ''})`);
  }
  // Pages files not reached: their size is what their pagemaps put in them.
  for (const [id, n] of await pagesFromPagemaps(images)) {
    if (pagesSeen.has(id)) continue;
    sizes.pages += n * PAGE_SIZE;
    sizes.total += n * PAGE_SIZE;
  }
  return { path: archive, kind: 'archive', meta, images, sizes, stoppedBefore, imagesAt: imagesAt ?? '' };

  function keep(name: string, size: number): boolean {
    if (size > MAX_KEPT) throw new CheckpointError(`${archive}: member ${name} is ${size} bytes, more than an image or metadata file can be`);
    kept += size;
    if (kept > MAX_KEPT_TOTAL) throw new CheckpointError(`${archive}: more than ${MAX_KEPT_TOTAL} bytes of images and metadata, more than a checkpoint holds`);
    return true;
  }
}

async function regularSize(file: string): Promise<number | undefined> {
  const st = await fsp.lstat(file).catch(() => undefined);
  return st?.isFile() ? st.size : undefined;
}

async function openDirectory(dir: string): Promise<Checkpoint> {
  const unpacked = (await fsp.stat(path.join(dir, 'checkpoint')).catch(() => undefined))?.isDirectory() ?? false;
  const imagesDir = unpacked ? path.join(dir, 'checkpoint') : dir;
  const images = await ImageDir.open(imagesDir);
  if (!(await images.has('pstree.img'))) {
    throw new CheckpointError(`${dir}: not a checkpoint (no pstree.img${unpacked ? ' in checkpoint/' : ''})`);
  }
  const meta = new Map<string, Buffer>();
  for (const name of META_FILES) {
    // A plain images directory has stasis's stats-dump beside the images; nothing else of these.
    if (!unpacked && name !== 'stats-dump') continue;
    const file = path.join(dir, name);
    if ((await regularSize(file)) !== undefined) meta.set(name, await fsp.readFile(file));
  }
  const sizes: CheckpointSizes = { total: 0, pages: 0, amdgpuPages: 0, rootfsDiff: 0 };
  for (const name of await fsp.readdir(imagesDir)) {
    if (!unpacked && !/\.img$|^descriptors\.json$/.test(name)) continue;
    const size = await regularSize(path.join(imagesDir, name));
    if (size === undefined) continue;
    sizes.total += size;
    if (isPagesName(name)) sizes.pages += size;
    else if (name.startsWith('amdgpu-pages-')) sizes.amdgpuPages += size;
  }
  if (unpacked) sizes.rootfsDiff = (await regularSize(path.join(dir, 'rootfs-diff.tar'))) ?? 0;
  return { path: dir, kind: 'directory', meta, images, sizes, imagesAt: imagesDir };
}

export interface OpenOptions {
  /** Images to read besides TREE_IMAGES. */
  images?: ImageFilter;
}

/** Open a checkpoint archive or directory, reading only what `opts` asks for. */
export async function openCheckpoint(where: string, opts: OpenOptions = {}): Promise<Checkpoint> {
  const st = await fsp.stat(where).catch((e: NodeJS.ErrnoException) => {
    throw new CheckpointError(`${where}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}`);
  });
  const want: ImageFilter = (n) => TREE_IMAGES(n) || (opts.images?.(n) ?? false);
  if (st.isDirectory()) return openDirectory(where);
  if (!st.isFile()) throw new CheckpointError(`${where}: neither an archive nor a directory`);
  return openArchive(where, want);
}

/** Called with the bytes of a pages file in order: `offset` is where `chunk` starts in it. */
export type PagesConsumer = (pagesId: number, offset: number, chunk: Buffer) => void | Promise<void>;

/**
 * Streams the pages files `ids` of a checkpoint through `consume`, each in file order; a file
 * that is not there is skipped. An archive is read once more, stopping after the last one wanted.
 */
export async function streamPages(ckpt: Checkpoint, ids: Iterable<number>, consume: PagesConsumer): Promise<void> {
  const wanted = new Set(ids);
  if (!wanted.size) return;
  if (ckpt.kind === 'directory') {
    for (const id of [...wanted].sort((a, b) => a - b)) {
      const file = path.join(ckpt.imagesAt, pagesFileName(id));
      if ((await regularSize(file)) === undefined) continue;
      let offset = 0;
      for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
        await consume(id, offset, chunk as Buffer);
        offset += (chunk as Buffer).length;
      }
    }
    return;
  }
  // The pages files under the images' directory, by id.
  const idOf = (name: string) => {
    const base = name.startsWith(ckpt.imagesAt) ? name.slice(ckpt.imagesAt.length) : undefined;
    return base !== undefined && isPagesName(base) ? pagesIdOf(base) : undefined;
  };
  for await (const m of streamMembers(ckpt.path, (name, _size, type) => type === 'file' && wanted.has(idOf(name) ?? -1))) {
    const id = idOf(m.name)!;
    let offset = 0;
    for await (const chunk of m.body()) {
      await consume(id, offset, chunk);
      offset += chunk.length;
    }
    wanted.delete(id);
    if (!wanted.size) break;
  }
}

/**
 * Reads the byte ranges `want` ([vaddr, length] per pagemap) from the pages files into an
 * archive's MemoryImages, so that readMemory() finds them. For a directory nothing is needed:
 * ImageDir reads the pages files in place.
 */
export async function loadMemory(ckpt: Checkpoint, want: { pagemap: Pagemap; vaddr: bigint; length: number }[]): Promise<void> {
  if (!(ckpt.images instanceof MemoryImages) || !want.length) return;
  const images = ckpt.images;
  // File ranges of each pages file, from the virtual ranges.
  const ranges = new Map<number, [number, number][]>();
  for (const w of want) {
    const end = w.vaddr + BigInt(w.length);
    for (const run of w.pagemap.runs) {
      if (run.offset === undefined) continue;
      const runEnd = run.vaddr + BigInt(run.nrPages * PAGE_SIZE);
      const lo = run.vaddr > w.vaddr ? run.vaddr : w.vaddr;
      const hi = runEnd < end ? runEnd : end;
      if (hi <= lo) continue;
      const from = run.offset + Number(lo - run.vaddr);
      const list = ranges.get(w.pagemap.pagesId) ?? [];
      list.push([from, from + Number(hi - lo)]);
      ranges.set(w.pagemap.pagesId, list);
    }
  }
  await streamPages(ckpt, ranges.keys(), (id, offset, chunk) => {
    for (const [from, to] of ranges.get(id)!) {
      const lo = Math.max(from, offset);
      const hi = Math.min(to, offset + chunk.length);
      if (hi > lo) images.addPages(id, lo, Buffer.from(chunk.subarray(lo - offset, hi - offset)));
    }
  });
}
