// Checkpoint archives and the tars inside them: a directory packed as a tar stream (tar-stream),
// compressed or not (compression.ts), read back member by member, unpacked safely.
//
// Reading (readMembers, streamMembers, listMembers): only what the caller asks for is read. Members are
// written with the process memory (pages-*.img) last, so a reader after metadata and images
// breaks out of the loop long before the pages; breaking out stops the reading (the file is
// read in 64 KiB pieces as the members are taken, no further ahead than the streams' buffers;
// zstd's output waits for its reader too). An uncompressed archive is walked header to header:
// the data of members not asked for is skipped by seeking, never read.
//
// Two ways to unpack, both refusing in one line (an Error naming the member and the reason) what
// they do not accept, never following a symlink while writing (every directory on the way is
// checked with lstat and made by us; files are opened O_EXCL|O_NOFOLLOW, directories'
// attributes set through an O_NOFOLLOW descriptor):
//  - extractArchive(archive, dest): a checkpoint archive (untrusted) into a fresh directory that
//    is removed whole on any failure. Refused: names with `..` or absolute; a member under a
//    symlink; a symlink that could lead outside `dest` (absolute, or ".." but leading, or more
//    of them than it is deep); a hard link to anything but an earlier regular
//    file of the archive; device nodes, fifos, sockets; setuid/setgid files; a name twice; a
//    truncated archive; a member larger than its header says (its surplus reads as a corrupt
//    header); more bytes than `maxBytes` (default: the free space of dest's filesystem); a
//    decompression bomb: more than `maxRatio` (default 1000) unpacked bytes per archive byte
//    once past `ratioFloor` (default 256 MiB) — gzip cannot exceed ~1030:1, zstd of zeros goes
//    past 8000:1; a checkpoint of mostly zero-filled memory may need a higher maxRatio.
//    Files are owned by the caller, modes without the setid bits.
//  - applyTar(tar, root, opts): a tree that legitimately holds symlinks and hard links (a
//    container's rootfs-diff.tar onto its rootfs, a /dev/shm tar) onto an existing directory.
//    Symlinks are made whatever they point at but never followed while writing later members;
//    hard links only to what is inside `root`; modes, ownership (as root) and mtimes as the tar
//    says; existing entries replaced (a directory by a directory is kept). Device nodes only
//    with `devices: true`. A failure stops it where it is: `root` is the caller's to discard.
//    The same limits as extractArchive apply (maxBytes, maxRatio).
// And their writers: packDirectory (a checkpoint archive, compressed, pages last, renamed into
// place when whole) and packTree (a tree with symlinks, hard links, devices, fifos kept, e.g. a
// rootfs or an overlay upper directory, to a plain tar; `filter` leaves entries out, such as
// overlay whiteouts (isWhiteout: a 0/0 character device) the caller records in deleted.files).
// walkTree is the walk packTree packs from (rootfs.ts compares two trees with it); removePaths
// takes deleted.files' paths out of a tree by applyTar's rule (never through a symlink).
//
// The tmpfs images of a dump (tmpfs-dev-N.tar.gz.img, a gzip'd tar criu reads and writes) come
// from tmpfsImage and go back with applyTmpfsImage: synchronous, as the mount restore runs
// inside the task creation, reading and writing tar headers with tar-stream's own header codec
// (its headers.js, which its pack and extract use; the package exports only those two, so it is
// loaded by path) and the contents with zlib (gzip members of 16 MiB of tar each, as it is
// made). Files with holes are written sparse in GNU's pax format 1.0 (GNU tar reads it); GNU's
// older sparse members (type 'S', what criu's `tar --sparse` writes) and format 1.0 are read
// back with their holes: the two things tar-stream does not know, decoded here.

import { chmodSync, closeSync, constants as C, createReadStream, createWriteStream, fchmodSync, fchownSync,
  futimesSync, fstatSync, ftruncateSync, linkSync, lstatSync, lchownSync, lutimesSync, mkdirSync, openSync,
  readdirSync, readlinkSync, readSync, rmSync, statfsSync, symlinkSync, unlinkSync, writeSync,
  type Stats } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import buffer from 'node:buffer';
import tar from 'tar-stream';
import { compressor, decompressor, detectCompression, type Compression } from './compression.js';
import { mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '../sys/mknod.js';

export interface PackOptions {
  compression: Compression;
}

/** Members read late: the memory pages, whatever directory they sit in. */
export function isBulkMember(name: string): boolean {
  return /(^|\/)pages-\d+\.img$/.test(name);
}

/**
 * Pack the directory `dir` into the archive `out` (written beside and renamed into place, so an
 * archive that exists is whole). Member names are relative to `dir`; the pages go last.
 */
export async function packDirectory(dir: string, out: string, opts: PackOptions): Promise<void> {
  const skipped: string[] = [];
  const all = [...treeEntries(dir, { hardlinks: false }, skipped)];
  const odd = [...all.filter((e) => !['file', 'directory', 'symlink'].includes(e.header.type!)).map((e) => e.rel), ...skipped];
  if (odd.length) throw new Error(`cannot archive ${path.join(dir, odd[0]!)}: not a file, directory or symlink`);
  await writeTar(dir, [...all.filter((e) => !isBulkMember(e.rel)), ...all.filter((e) => isBulkMember(e.rel))], out, opts.compression);
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface Member {
  name: string;
  size: number;
  type: string;
  /** The member's bytes (files only; empty for others). */
  data: Buffer;
}

/** Counts the bytes read from the archive file (what a partial read costs). */
export interface ReadCounter {
  bytes: number;
}

export interface ReadOptions {
  counter?: ReadCounter;
}

/** Member names as written: no leading "./" or "/". */
export function memberName(raw: string): string {
  return raw.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/** A tar header as tar-stream decodes it. */
interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  type: string | null;
  linkname: string | null;
  devmajor: number;
  devminor: number;
  pax: Record<string, string> | null;
}

/** tar-stream's header codec (headers.js). */
interface HeaderCodec {
  decode(block: Buffer, filenameEncoding: string, allowUnknownFormat: boolean): TarHeader | null;
  encode(h: object): Buffer | null;
  encodePax(o: { name?: string; linkname?: string | null; pax?: Record<string, string> }): Buffer;
  decodePax(data: Buffer): Record<string, string>;
  decodeLongPath(data: Buffer, encoding: string): string;
}

let codec: HeaderCodec | undefined;
function headers(): HeaderCodec {
  if (!codec) {
    const req = createRequire(import.meta.url);
    codec = req(path.join(path.dirname(req.resolve('tar-stream/package')), 'headers.js')) as HeaderCodec;
  }
  return codec;
}

const BLOCK = 512;
const CHUNK = 64 * 1024;
/** Longest pax or GNU long-name record accepted (tar-stream's own limit is 4 MiB). */
const MAX_LONG_HEADER = 1024 * 1024;
const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

/** One member as read: its header (long names and pax applied) and its data, read once. */
interface RawEntry {
  header: TarHeader;
  /** Its data, in pieces; not taking it skips it. */
  body(): AsyncIterable<Buffer>;
}

/**
 * The members of a tar reachable through `read(pos, len)` (a file or a buffer of `size` bytes),
 * header to header: the data is the caller's to read or skip. Ends at the end-of-archive block;
 * an archive that stops before it is truncated.
 */
function* walkTar(read: (pos: number, len: number) => Buffer, size: number, label: string):
  Generator<{ header: TarHeader; at: number; sparse?: SparseMap }> {
  let pos = 0;
  let last = '';
  let longPath: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> | undefined;
  let globalPax: Record<string, string> | undefined;
  const where = () => (last ? `after member ${last}` : 'at its start');
  for (;;) {
    if (pos + BLOCK > size) {
      throw new Error(`${label}: truncated ${where()} (${pos === size ? 'no end-of-archive block' : 'the archive ends inside a header'})`);
    }
    let h: TarHeader | null;
    const block = read(pos, BLOCK);
    try {
      h = headers().decode(block, 'utf-8', false);
    } catch (e) {
      throw new Error(`${label}: corrupt tar header ${where()} (a member larger than its header says, or a damaged archive): ${(e as Error).message}`);
    }
    if (!h) return;
    let at = pos + BLOCK;
    let sparse: SparseMap | undefined;
    if (block[156] === 0x53) {
      ({ sparse, at } = gnuSparseMap(block, read, at, size, `${label}: member ${h.name}`));
      if (sparse.pieces.reduce((n, [, len]) => n + len, 0) !== h.size) throw new Error(`${label}: member ${h.name}: its sparse map does not add up to its size`);
      h.type = 'file';
    }
    if (!(h.size >= 0)) throw new Error(`${label}: corrupt tar header ${where()}: bad size`);
    if (at + h.size > size) throw new Error(`${label}: member ${h.name}: truncated (its ${h.size} bytes run past the end of the archive)`);
    pos = at + padded(h.size);
    if (h.type === 'pax-header' || h.type === 'pax-global-header' || h.type === 'gnu-long-path' || h.type === 'gnu-long-link-path') {
      if (h.size > MAX_LONG_HEADER) throw new Error(`${label}: a ${h.type} of ${h.size} bytes ${where()}: refused`);
      const data = read(at, h.size);
      if (h.type === 'gnu-long-path') longPath = headers().decodeLongPath(data, 'utf-8');
      else if (h.type === 'gnu-long-link-path') longLink = headers().decodeLongPath(data, 'utf-8');
      else if (h.type === 'pax-global-header') globalPax = { ...globalPax, ...headers().decodePax(data) };
      else pax = { ...globalPax, ...headers().decodePax(data) };
      continue;
    }
    const p = pax ?? globalPax;
    if (longPath !== undefined) h.name = longPath;
    if (longLink !== undefined) h.linkname = longLink;
    if (p?.path) h.name = p.path;
    if (p?.linkpath) h.linkname = p.linkpath;
    if (p?.size) {
      h.size = parseInt(p.size, 10);
      if (!(h.size >= 0) || at + h.size > size) throw new Error(`${label}: member ${h.name}: truncated or bad pax size`);
      pos = at + padded(h.size);
    }
    if (p?.['GNU.sparse.major'] === '1' && p['GNU.sparse.minor'] === '0') {
      // GNU's pax sparse format 1.0 (what tmpfsImage writes): the map leads the data
      const m = paxSparseMap(read, at, h.size, p, `${label}: member ${p['GNU.sparse.name'] ?? h.name}`);
      sparse = m.sparse;
      at += m.length;
      h.size -= m.length;
      h.name = p['GNU.sparse.name'] ?? h.name;
    }
    h.pax = p ?? null;
    longPath = longLink = pax = undefined;
    last = h.name;
    yield { header: h, at, sparse };
  }
}

/** A GNU sparse file's stored pieces (offset, length in the file) and the file's whole size. */
interface SparseMap {
  pieces: [number, number][];
  realSize: number;
}

/**
 * The map of a GNU sparse member (type 'S', old GNU format, as criu's `tar --sparse` writes its
 * tmpfs images; tar-stream does not read it): four entries in the header, 21 in each extension
 * block after it. Returns where the data starts, after the extension blocks.
 */
function gnuSparseMap(block: Buffer, read: (pos: number, len: number) => Buffer, at: number, size: number, label: string):
  { sparse: SparseMap; at: number } {
  const num = (b: Buffer, off: number): number => {
    if (b[off]! & 0x80) return Number(b.readBigUInt64BE(off + 4)); // base-256, as GNU tar writes big numbers
    const text = b.toString('latin1', off, off + 12).replace(/\0.*$/s, '').trim();
    return text ? parseInt(text, 8) : NaN;
  };
  const pieces: [number, number][] = [];
  const take = (b: Buffer, off: number, count: number) => {
    for (let i = 0; i < count; i++) {
      const o = num(b, off + i * 24);
      const n = num(b, off + i * 24 + 12);
      if (Number.isNaN(o) || Number.isNaN(n)) break;
      pieces.push([o, n]);
    }
  };
  take(block, 386, 4);
  let extended = block[482];
  const realSize = num(block, 483);
  while (extended) {
    if (at + BLOCK > size) throw new Error(`${label}: truncated (in its sparse map)`);
    const ext = read(at, BLOCK);
    at += BLOCK;
    take(ext, 0, 21);
    extended = ext[504];
  }
  checkSparse(pieces, realSize, label);
  return { sparse: { pieces, realSize }, at };
}

function checkSparse(pieces: [number, number][], realSize: number, label: string): void {
  let end = 0;
  for (const [o, n] of pieces) {
    if (!(o >= end) || !(n >= 0) || o + n > realSize) throw new Error(`${label}: a bad sparse map`);
    end = o + n;
  }
  if (!(realSize >= end)) throw new Error(`${label}: a bad sparse map`);
}

/**
 * The map of a member in GNU's pax sparse format 1.0: the piece count, then each piece's offset
 * and length, decimal, one a line, at the start of the data (padded to a block); the file's size
 * in the pax record GNU.sparse.realsize. Returns the map and how long it is in the data.
 */
function paxSparseMap(read: (pos: number, len: number) => Buffer, at: number, size: number,
  pax: Record<string, string>, label: string): { sparse: SparseMap; length: number } {
  const numbers: number[] = [];
  let text = '';
  let length = 0;
  while (numbers.length === 0 || numbers.length < 1 + 2 * numbers[0]!) {
    if (length + BLOCK > Math.min(size, 64 * 1024 * 1024)) throw new Error(`${label}: a bad sparse map`);
    text += read(at + length, BLOCK).toString('latin1');
    length += BLOCK;
    const lines = text.split('\n');
    text = lines.pop()!;
    for (const l of lines) {
      if (!/^\d+$/.test(l)) throw new Error(`${label}: a bad sparse map`);
      numbers.push(Number(l));
    }
  }
  const pieces: [number, number][] = [];
  for (let i = 1; i + 1 < 1 + 2 * numbers[0]!; i += 2) pieces.push([numbers[i]!, numbers[i + 1]!]);
  const realSize = Number(pax['GNU.sparse.realsize']);
  checkSparse(pieces, realSize, label);
  if (pieces.reduce((n, [, len]) => n + len, 0) !== size - length) throw new Error(`${label}: its sparse map does not add up to its size`);
  return { sparse: { pieces, realSize }, length };
}

/** The members of an uncompressed tar file, the data of those not taken skipped by seeking. */
async function* fileEntries(archive: string, counter: ReadCounter | undefined): AsyncGenerator<RawEntry> {
  const fd = openSync(archive, 'r');
  try {
    const size = fstatSync(fd).size;
    const read = (pos: number, len: number): Buffer => {
      const b = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const n = readSync(fd, b, got, len - got, pos + got);
        if (n === 0) throw new Error(`${archive}: truncated (the file shrank while read)`);
        got += n;
      }
      if (counter) counter.bytes += len;
      return b;
    };
    for (const { header, at, sparse } of walkTar(read, size, archive)) {
      if (sparse) throw new Error(`${archive}: member ${header.name}: a GNU sparse file, which is not supported here`);
      yield {
        header,
        body: async function* body() {
          for (let off = 0; off < header.size; off += CHUNK) yield read(at + off, Math.min(CHUNK, header.size - off));
        },
      };
    }
  } finally {
    closeSync(fd);
  }
}

/** The members of a compressed tar file, through tar-stream; the file read as members are taken. */
async function* streamEntries(archive: string, kind: Compression, counter: ReadCounter | undefined): AsyncGenerator<RawEntry> {
  const source = createReadStream(archive, { highWaterMark: CHUNK });
  if (counter) source.on('data', (c) => { counter.bytes += c.length; });
  let total = 0;
  const counting = new Transform({ transform: (c: Buffer, _e, cb) => { total += c.length; cb(null, c); } });
  const extract = tar.extract();
  let failed: Error | undefined;
  const unpack = decompressor(kind);
  const feeding = pipeline(source, unpack, counting, extract).catch((e: Error) => {
    failed = e;
    extract.destroy(e);
  });
  let last = '';
  let end = 0;
  const why = (e: unknown) => {
    const err = failed ?? (e as Error);
    const msg = /Invalid tar header/.test(err.message)
      ? `corrupt tar header ${last ? `after member ${last}` : 'at its start'} (a member larger than its header says, or a damaged archive): ${err.message}`
      : /Unexpected end of data|unexpected end of file|truncated/i.test(err.message)
        ? `truncated${last ? ` in or after member ${last}` : ''}: ${err.message}`
        : `${last ? `after member ${last}: ` : ''}${err.message}`;
    return new Error(`${archive}: ${msg}`);
  };
  try {
    const it = extract[Symbol.asyncIterator]();
    for (;;) {
      let r: Awaited<ReturnType<typeof it.next>>;
      try {
        r = await it.next();
      } catch (e) {
        throw why(e);
      }
      if (r.done) break;
      const entry = r.value;
      const header = entry.header as unknown as TarHeader;
      last = header.name;
      end = (header as unknown as { byteOffset: number }).byteOffset + padded(header.size);
      let taken = false;
      yield {
        header,
        body: async function* body() {
          taken = true;
          try {
            for await (const c of entry) yield c as Buffer;
          } catch (e) {
            throw why(e);
          }
        },
      };
      if (!taken) entry.resume();
    }
    await feeding;
    if (failed) throw why(failed);
    if (total <= end) throw new Error(`${archive}: truncated after member ${last || '(none)'} (no end-of-archive block)`);
  } finally {
    // Every stage stopped: a zstd stage waiting for input would keep the pipeline from settling.
    source.destroy();
    unpack.destroy();
    counting.destroy();
    extract.destroy();
    await feeding;
  }
}

/** The archive's members as read, whatever its compression. */
async function* entries(archive: string, counter?: ReadCounter): AsyncGenerator<RawEntry> {
  const kind = await detectCompression(archive);
  yield* kind === 'none' ? fileEntries(archive, counter) : streamEntries(archive, kind, counter);
}

/** A member whose bytes are read as they are taken (a pages file of some GiB is never held whole). */
export interface StreamedMember extends Omit<Member, 'data'> {
  /** Its bytes in pieces, in order, to be taken before the next member (or never: then skipped). */
  body(): AsyncIterable<Buffer>;
}

/**
 * The archive's members whose names `want` accepts, in archive order; the others are skipped
 * without being kept (in an uncompressed archive, without being read). Stop early by breaking
 * out of the loop: nothing more is read.
 */
export async function* streamMembers(archive: string,
  want: (name: string, size: number, type: string) => boolean, opts: ReadOptions = {}): AsyncGenerator<StreamedMember> {
  for await (const e of entries(archive, opts.counter)) {
    const name = memberName(e.header.name);
    const type = e.header.type ?? 'unknown';
    if (want(name, e.header.size, type)) yield { name, size: e.header.size, type, body: e.body };
  }
}

/** streamMembers, each member's bytes read whole. */
export async function* readMembers(archive: string,
  want: (name: string, size: number, type: string) => boolean, opts: ReadOptions = {}): AsyncGenerator<Member> {
  for await (const { body, ...m } of streamMembers(archive, want, opts)) {
    const chunks: Buffer[] = [];
    for await (const c of body()) chunks.push(c);
    yield { ...m, data: Buffer.concat(chunks) };
  }
}

/** Every member of the archive: name, size and type (no data). */
export async function listMembers(archive: string, opts: ReadOptions = {}): Promise<Omit<Member, 'data'>[]> {
  const members: Omit<Member, 'data'>[] = [];
  await readMembers(archive, (name, size, type) => {
    members.push({ name, size, type });
    return false;
  }, opts).next();
  return members;
}

// ---------------------------------------------------------------------------------------------
// Unpacking

export interface UnpackLimits {
  /** Most bytes unpacked in all (default: the free space of the destination's filesystem). */
  maxBytes?: number;
  /** Most unpacked bytes per byte read from the archive file (default 1000)… */
  maxRatio?: number;
  /** …checked once this many bytes are unpacked (default 256 MiB). */
  ratioFloor?: number;
  counter?: ReadCounter;
}

export interface ExtractOptions extends UnpackLimits {
  /** Which members to unpack (member names as memberName gives them); the others are skipped. */
  filter?: (name: string) => boolean;
}

export interface ApplyOptions extends UnpackLimits {
  /** Make device nodes (default false: refused). */
  devices?: boolean;
  /** Give entries the tar's owners (default: when running as root). */
  owners?: boolean;
}

export interface ApplyResult {
  members: number;
  bytes: number;
}

/** What an unpacking accepts. */
interface Policy {
  /** A fresh directory of ours: names once, symlinks inside, hard links to earlier files. */
  strict: boolean;
  devices: boolean;
  owners: boolean;
}

const NOFOLLOW_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * Writes tar members under `root`, never through a symlink: every directory on a member's way is
 * one lstat found a directory (or one made here), the member itself is made anew (O_EXCL,
 * O_NOFOLLOW, mknod, symlink, link all refuse an existing name), after what was there is removed.
 */
class TreeWriter {
  /** Directories under root known to be real directories (relative paths; '' is root). */
  private readonly dirs = new Set<string>(['']);
  /** Members written so far (strict: a name twice is refused) and their kinds. */
  private readonly written = new Map<string, string>();
  /** Directories' modes, owners and times, set last (writing inside changes a directory's mtime). */
  private readonly dirAttrs = new Map<string, TarHeader>();

  /** `noun` names what the errors are about: tar members, or deleted.files' paths. */
  constructor(private readonly root: string, private readonly policy: Policy, private readonly noun = 'member') {}

  private fail(name: string, why: string): never {
    throw new Error(`${this.noun} ${name}: ${why}`);
  }

  /** A member's path relative to root, checked: '' for the root itself. */
  private relPath(name: string): string {
    if (name.startsWith('/')) this.fail(name, 'absolute path');
    if (name.includes('\0')) this.fail(name, 'NUL in its name');
    const parts = name.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) this.fail(name, '".." in its path');
    return parts.join('/');
  }

  /**
   * The directories leading to `rel`, checked. One missing is made ('make'), refused ('fail'), or
   * (`stop`) ends the check with false, as does one that is no directory: nothing is there to reach.
   */
  private parents(name: string, rel: string, missing: 'make' | 'fail' | 'stop' = 'make'): boolean {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (this.dirs.has(p)) continue;
      const full = path.join(this.root, p);
      let st: Stats | undefined;
      try {
        st = lstatSync(full);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (missing === 'stop' && !st?.isDirectory()) return false;
      if (!st) {
        if (missing === 'fail') this.fail(name, `${p} does not exist`);
        mkdirSync(full, 0o755);
      } else if (st.isSymbolicLink()) {
        this.fail(name, `${p} is a symlink (refusing to write through it)`);
      } else if (!st.isDirectory()) {
        this.fail(name, `${p} is not a directory`);
      }
      this.dirs.add(p);
    }
    return true;
  }

  /**
   * Remove what is at `name` (relative to root), reached through real directories only: a path
   * with a directory on its way gone, or replaced by a symlink or file, is gone already.
   */
  remove(name: string): void {
    const rel = this.relPath(name);
    if (rel === '') this.fail(name, 'the root itself');
    if (this.parents(name, rel, 'stop')) this.clear(name, rel, false);
  }

  /** Make way for a new entry at `rel`: what is there goes, unless it is a directory kept as one. */
  private clear(name: string, rel: string, isDir: boolean): boolean {
    const full = path.join(this.root, rel);
    let st: Stats;
    try {
      st = lstatSync(full);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    if (st.isDirectory() && isDir) return true;
    if (this.policy.strict) this.fail(name, `${st.isDirectory() ? 'a directory made for an earlier member' : 'an earlier member'} is in its place`);
    if (st.isDirectory()) {
      // rm does not follow the symlinks inside
      rmSync(full, { recursive: true, force: true });
      const gone = (d: string) => d === rel || d.startsWith(`${rel}/`);
      for (const d of [...this.dirs]) if (gone(d)) this.dirs.delete(d);
      for (const d of [...this.dirAttrs.keys()]) if (gone(d)) this.dirAttrs.delete(d);
    } else {
      unlinkSync(full);
    }
    return false;
  }

  /**
   * Begin a member: checked, its place made. Returns the descriptor to write a regular file's
   * data into (finish with endFile), or undefined when the member is complete.
   */
  begin(h: TarHeader): number | undefined {
    const name = h.name;
    const rel = this.relPath(name);
    const type = h.type === 'contiguous-file' ? 'file' : h.type;
    if (this.policy.strict) {
      if (rel && this.written.has(rel)) this.fail(name, 'appears twice in the archive');
      if (type === 'file' && h.mode & 0o6000) this.fail(name, `setuid/setgid file (mode ${(h.mode & 0o7777).toString(8)})`);
    }
    if (rel === '') {
      if (type !== 'directory') this.fail(name, `a ${type} in place of the root directory`);
      if (!this.policy.strict) this.dirAttrs.set('', h);
      return undefined;
    }
    this.parents(name, rel);
    const full = path.join(this.root, rel);
    switch (type) {
      case 'directory': {
        if (!this.clear(name, rel, true)) mkdirSync(full, 0o700);
        this.dirs.add(rel);
        this.dirAttrs.set(rel, h);
        break;
      }
      case 'file': {
        this.clear(name, rel, false);
        this.written.set(rel, 'file');
        return openSync(full, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (!target) this.fail(name, 'a symlink to nothing');
        if (this.policy.strict && !staysInside(rel, target)) this.fail(name, `a symlink to ${target}, outside the directory`);
        this.clear(name, rel, false);
        symlinkSync(target, full);
        if (this.policy.owners) lchownSync(full, h.uid, h.gid);
        lutimesSync(full, h.mtime, h.mtime);
        break;
      }
      case 'link': {
        const target = this.relPath(h.linkname ?? '');
        const what = `a hard link to ${h.linkname}`;
        if (!target) this.fail(name, `${what}: not a file`);
        if (this.policy.strict && this.written.get(target) !== 'file') this.fail(name, `${what}, which is not an earlier regular file of the archive`);
        this.parents(`${name} (${what})`, target, 'fail');
        let st: Stats | undefined;
        try {
          st = lstatSync(path.join(this.root, target));
        } catch { /* reported below */ }
        if (!st || st.isDirectory()) this.fail(name, `${what}: ${st ? 'a directory' : 'no such file'} inside the tree`);
        if (target === rel) break;
        this.clear(name, rel, false);
        linkSync(path.join(this.root, target), full);
        this.written.set(rel, 'link');
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        if (this.policy.strict) this.fail(name, `a ${type}, which a checkpoint archive never holds`);
        if (type !== 'fifo' && !this.policy.devices) this.fail(name, `a ${type} (device nodes are refused here)`);
        this.clear(name, rel, false);
        const kind = type === 'fifo' ? S_IFIFO : type === 'block-device' ? S_IFBLK : S_IFCHR;
        mknod(full, kind | 0o600, h.devmajor, h.devminor);
        this.attrsByPath(rel, h);
        break;
      }
      default:
        this.fail(name, `a ${type ?? 'member of unknown type'}, which is not supported`);
    }
    this.written.set(rel, this.written.get(rel) ?? type);
    return undefined;
  }

  /**
   * Mode, owner and times of a node made just now by mknod (it cannot be opened without side
   * effects: a fifo blocks, a device acts). Its directory is checked and the name is ours.
   */
  private attrsByPath(rel: string, h: TarHeader): void {
    const full = path.join(this.root, rel);
    if (this.policy.owners) lchownSync(full, h.uid, h.gid);
    chmodSync(full, h.mode & 0o7777);
    lutimesSync(full, h.mtime, h.mtime);
  }

  /** A regular file's data written: its attributes. */
  endFile(fd: number, h: TarHeader): void {
    this.setAttrs(fd, h);
  }

  private setAttrs(fd: number, h: TarHeader): void {
    if (this.policy.owners) fchownSync(fd, h.uid, h.gid);
    // after chown, which clears setuid/setgid
    fchmodSync(fd, h.mode & (this.policy.strict ? 0o1777 : 0o7777));
    futimesSync(fd, h.mtime, h.mtime);
  }

  /** Directories' attributes, deepest first, each opened without following a symlink. */
  finish(): void {
    const order = [...this.dirAttrs.keys()].sort((a, b) => b.length - a.length);
    for (const rel of order) {
      const h = this.dirAttrs.get(rel)!;
      const fd = openSync(path.join(this.root, rel), NOFOLLOW_DIR);
      try {
        if (this.policy.strict) {
          fchmodSync(fd, (h.mode & 0o1777) | 0o700);
          futimesSync(fd, h.mtime, h.mtime);
        } else {
          this.setAttrs(fd, h);
        }
      } finally {
        closeSync(fd);
      }
    }
  }
}

/**
 * Whether a symlink at `rel` to `target` leads inside the tree, whatever the other symlinks:
 * relative, its ".." only leading and no more than its directory is deep (every directory of a
 * member is a real one), then downwards only (through symlinks that keep to the same rule). A
 * lexical check alone is not enough: with `d -> .`, `d/d/..` is the tree's parent.
 */
function staysInside(rel: string, target: string): boolean {
  if (target.startsWith('/')) return false;
  const parts = target.split('/').filter((p) => p !== '' && p !== '.');
  let up = 0;
  while (parts[up] === '..') up++;
  return !parts.slice(up).includes('..') && up <= rel.split('/').length - 1;
}

/** The unpacked-bytes limits of one unpacking. */
class Budget {
  total = 0;
  constructor(private readonly maxBytes: number, private readonly maxRatio: number,
    private readonly ratioFloor: number, private readonly read: ReadCounter) {}

  declare(name: string, size: number): void {
    if (this.total + size > this.maxBytes) {
      throw new Error(`member ${name}: its ${size} bytes would take the unpacked total past ${this.maxBytes} bytes (maxBytes, by default the free space where it is unpacked)`);
    }
  }

  add(name: string, n: number): void {
    this.total += n;
    if (this.total > this.ratioFloor && this.total > this.maxRatio * Math.max(this.read.bytes, 1)) {
      throw new Error(`member ${name}: a decompression bomb? ${this.total} bytes unpacked from ${this.read.bytes} read (more than ${this.maxRatio}:1, maxRatio)`);
    }
  }
}

function budget(dir: string, opts: UnpackLimits, read: ReadCounter): Budget {
  let max = opts.maxBytes;
  if (max === undefined) {
    const s = statfsSync(dir);
    max = s.bavail * s.bsize;
  }
  return new Budget(max, opts.maxRatio ?? 1000, opts.ratioFloor ?? 256 * 1024 * 1024, read);
}

function writeAll(fd: number, b: Buffer): void {
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off);
}

/** Unpack `source`'s members (those `filter` accepts) with `w`, within `b`. */
async function unpack(source: AsyncIterable<RawEntry>, w: TreeWriter, b: Budget,
  filter?: (name: string) => boolean): Promise<ApplyResult> {
  let members = 0;
  for await (const e of source) {
    const h = e.header;
    if (filter && !filter(memberName(h.name))) continue;
    if (h.type === 'file' || h.type === 'contiguous-file') b.declare(h.name, h.size);
    const fd = w.begin(h);
    members++;
    if (fd === undefined) continue;
    try {
      let n = 0;
      for await (const c of e.body()) {
        n += c.length;
        b.add(h.name, c.length);
        writeAll(fd, c);
      }
      if (n !== h.size) throw new Error(`member ${h.name}: ${n} bytes of ${h.size}`);
      w.endFile(fd, h);
    } finally {
      closeSync(fd);
    }
  }
  w.finish();
  return { members, bytes: b.total };
}

/**
 * Unpack the archive into `dest`, which must not exist yet (its parent must); on any failure
 * `dest` is removed whole. What is refused is listed in the module's header.
 */
export async function extractArchive(archive: string, dest: string, opts: ExtractOptions = {}): Promise<void> {
  try {
    mkdirSync(dest, 0o700);
  } catch (e) {
    throw new Error(`cannot unpack ${archive} into ${dest}: ${(e as NodeJS.ErrnoException).code === 'EEXIST' ? 'it exists already' : (e as Error).message}`);
  }
  try {
    const counter = opts.counter ?? { bytes: 0 };
    const w = new TreeWriter(dest, { strict: true, devices: false, owners: false });
    await unpack(entries(archive, counter), w, budget(dest, opts, counter), opts.filter);
  } catch (e) {
    rmSync(dest, { recursive: true, force: true });
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(archive) ? msg : `${archive}: ${msg}`);
  }
}

/**
 * Apply a tar (a file, compressed or not, or a stream of an uncompressed tar) onto the existing
 * directory `root`: see the module's header.
 */
export async function applyTar(source: string | Readable, root: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const label = typeof source === 'string' ? source : 'tar stream';
  const st = lstatSync(root);
  if (!st.isDirectory()) throw new Error(`${label}: cannot apply onto ${root}: not a directory`);
  const counter = opts.counter ?? { bytes: 0 };
  const w = new TreeWriter(root, {
    strict: false, devices: opts.devices ?? false, owners: opts.owners ?? process.getuid?.() === 0,
  });
  try {
    const list = typeof source === 'string' ? entries(source, counter) : streamTarEntries(source, counter);
    return await unpack(list, w, budget(root, opts, counter));
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(label) ? msg : `${label}: ${msg}`);
  }
}

/**
 * Remove `deleted` from the tree at `root`: paths from its top ("/etc/x", as deleted.files lists
 * them), each refused in one line when absolute once its leading "/" is dropped or with "..";
 * never followed through a symlink (a path whose way is gone, or no directory, is gone already).
 */
export function removePaths(root: string, deleted: readonly string[]): void {
  const w = new TreeWriter(root, { strict: false, devices: false, owners: false }, 'path');
  for (const p of deleted) w.remove(p.replace(/^\/+/, ''));
}

/** The members of an uncompressed tar stream. */
async function* streamTarEntries(stream: Readable, counter: ReadCounter): AsyncGenerator<RawEntry> {
  const extract = tar.extract();
  stream.on('data', (c: Buffer) => { counter.bytes += c.length; });
  const feeding = pipeline(stream, extract).catch((e: Error) => extract.destroy(e));
  try {
    for await (const entry of extract) {
      let taken = false;
      yield {
        header: entry.header as unknown as TarHeader,
        body: async function* body() {
          taken = true;
          for await (const c of entry) yield c as Buffer;
        },
      };
      if (!taken) entry.resume();
    }
  } finally {
    extract.destroy();
    await feeding;
  }
}

// ---------------------------------------------------------------------------------------------
// Packing a tree

/** An overlay whiteout: a character device 0/0 in an upper directory (a deleted path). */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

export interface WalkOptions {
  /** Whether to take `rel` (false: left out, and a directory's contents with it). */
  filter?: (rel: string, st: Stats) => boolean;
  /** Do not descend into directories of another filesystem (their own entry is kept). */
  oneFileSystem?: boolean;
}

/** An entry of a tree: its path relative to the tree's top and its lstat. */
export interface WalkEntry {
  rel: string;
  st: Stats;
}

/**
 * The entries of the tree at `root` (not root itself), never following a symlink, in tar order:
 * a directory before its contents, names sorted. What `filter` refuses goes to `skipped`.
 * Synchronous calls: a rootfs is thousands of small entries, each call through the thread pool
 * would cost more than the call itself.
 */
export function* walkTree(root: string, opts: WalkOptions = {}, skipped: string[] = []): Generator<WalkEntry> {
  const rootSt = lstatSync(root);
  if (!rootSt.isDirectory()) throw new Error(`cannot walk ${root}: not a directory`);
  function* dir(rel: string): Generator<WalkEntry> {
    for (const n of readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(path.join(root, r));
      if (opts.filter && !opts.filter(r, st)) {
        skipped.push(r);
        continue;
      }
      yield { rel: r, st };
      if (st.isDirectory() && (!opts.oneFileSystem || st.dev === rootSt.dev)) yield* dir(r);
    }
  }
  yield* dir('');
}

export interface PackTreeOptions extends WalkOptions {
  compression?: Compression;
  /** Member names' prefix ('./' as tar writes for `tar -C DIR .`; default none). */
  prefix?: string;
  /** A file with several names packed once, its other names as hard links to it (default true). */
  hardlinks?: boolean;
}

export interface PackTreeResult {
  /** What was left out: by the filter, or sockets (a tar cannot hold them). */
  skipped: string[];
}

/** One entry of a tree as a tar header (without data), in tar order (a directory before its contents). */
interface TreeEntry extends WalkEntry {
  header: TarHeader;
}

function* treeEntries(root: string, opts: PackTreeOptions, skipped: string[]): Generator<TreeEntry> {
  const rootSt = lstatSync(root);
  if (!rootSt.isDirectory()) throw new Error(`cannot pack ${root}: not a directory`);
  const prefix = opts.prefix ?? '';
  const links = new Map<string, string>();
  const header = (rel: string, st: Stats, type: TarHeader['type'], extra: Partial<TarHeader> = {}): TarHeader => ({
    name: rel ? `${prefix}${rel}` : prefix || './', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0,
    mtime: st.mtime, type, linkname: null, devmajor: 0, devminor: 0, pax: null, ...extra,
  });
  if (prefix) yield { rel: '', st: rootSt, header: header('', rootSt, 'directory') };
  for (const { rel: r, st } of walkTree(root, opts, skipped)) {
    if (st.isDirectory()) {
      yield { rel: r, st, header: header(r, st, 'directory') };
      continue;
    }
    const id = `${st.dev}:${st.ino}`;
    const linked = st.nlink > 1 && opts.hardlinks !== false;
    const first = linked ? links.get(id) : undefined;
    if (first !== undefined) {
      yield { rel: r, st, header: header(r, st, 'link', { linkname: `${prefix}${first}` }) };
      continue;
    }
    if (linked) links.set(id, r);
    if (st.isFile()) yield { rel: r, st, header: header(r, st, 'file', { size: st.size }) };
    else if (st.isSymbolicLink()) yield { rel: r, st, header: header(r, st, 'symlink', { linkname: readlinkSync(path.join(root, r)) }) };
    else if (st.isFIFO()) yield { rel: r, st, header: header(r, st, 'fifo') };
    else if (st.isCharacterDevice() || st.isBlockDevice()) {
      // glibc's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31
      const dev = BigInt(st.rdev);
      const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n));
      const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
      yield { rel: r, st, header: header(r, st, st.isCharacterDevice() ? 'character-device' : 'block-device', { devmajor: major, devminor: minor }) };
    } else {
      skipped.push(r); // a socket
    }
  }
}

/**
 * Pack the tree at `root` (symlinks, hard links, devices and fifos as they are) into a tar: the
 * file `out` (written beside and renamed into place) or a stream. Uncompressed unless asked.
 */
export async function packTree(root: string, out: string | Writable, opts: PackTreeOptions = {}): Promise<PackTreeResult> {
  const skipped: string[] = [];
  await writeTar(root, treeEntries(root, opts, skipped), out, opts.compression ?? 'none');
  return { skipped };
}

/** Entries of the tree at `root` as a tar (tar-stream), to a file renamed into place when whole or to a stream. */
async function writeTar(root: string, list: Iterable<TreeEntry>, out: string | Writable, compression: Compression): Promise<void> {
  const pack = tar.pack();
  const tmp = typeof out === 'string' ? `${out}.partial-${process.pid}` : undefined;
  const writing = pipeline(pack, compressor(compression), tmp ? createWriteStream(tmp) : out as Writable);
  try {
    for (const e of list) {
      const h = { ...e.header, linkname: e.header.linkname ?? undefined, type: e.header.type as tar.Header['type'], pax: undefined };
      if (e.header.type === 'file') {
        const entry = pack.entry(h);
        await pipeline(createReadStream(path.join(root, e.rel)), entry);
      } else {
        pack.entry(h);
      }
    }
    pack.finalize();
    await writing;
    if (tmp) await rename(tmp, out as string);
  } catch (e) {
    pack.destroy(e as Error);
    await writing.catch(() => undefined);
    if (tmp) await rm(tmp, { force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// tmpfs images of a dump (synchronous)

/** One header block, or a pax record and its header when the names do not fit ustar. */
function encodeHeader(h: TarHeader): Buffer[] {
  const plain = headers().encode(h);
  if (plain) return [plain];
  const pax = headers().encodePax({ name: h.name, linkname: h.linkname });
  const paxHeader = headers().encode({
    name: 'PaxHeader', mode: h.mode, uid: h.uid, gid: h.gid, size: pax.length, mtime: h.mtime, type: 'pax-header',
    linkname: h.linkname && 'PaxHeader',
  })!;
  return [paxHeader, pax, Buffer.alloc(padded(pax.length) - pax.length),
    headers().encode({ ...h, name: 'PaxHeader', linkname: h.linkname && 'PaxHeader' })!];
}

/**
 * A tar gzip'd as it is made, in members of some MiB (gzip and GNU tar read concatenated
 * members as one stream): memory holds one piece of the tar at a time, not all of it.
 */
class GzipTar {
  private parts: Buffer[] = [];
  private pending = 0;
  private readonly out: Buffer[] = [];

  push(...bufs: Buffer[]): void {
    for (const b of bufs) {
      this.parts.push(b);
      this.pending += b.length;
    }
    if (this.pending >= 16 * 1024 * 1024) this.flush();
  }

  pad(n: number): void {
    if (padded(n) > n) this.push(Buffer.alloc(padded(n) - n));
  }

  private flush(): void {
    if (this.pending) this.out.push(zlib.gzipSync(Buffer.concat(this.parts)));
    this.parts = [];
    this.pending = 0;
  }

  end(): Buffer {
    this.push(Buffer.alloc(2 * BLOCK));
    this.flush();
    return Buffer.concat(this.out);
  }
}

const PIECE = 4096;

/** The pieces of a file that hold data (runs of 4 KiB blocks not all zeros): its holes left out. */
function dataPieces(fd: number, size: number): [number, number][] {
  const pieces: [number, number][] = [];
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  const zeros = Buffer.alloc(PIECE);
  for (let off = 0; off < size;) {
    const n = readSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    if (n === 0) break;
    for (let b = 0; b < n; b += PIECE) {
      const len = Math.min(PIECE, n - b);
      if (chunk.subarray(b, b + len).equals(zeros.subarray(0, len))) continue;
      const last = pieces[pieces.length - 1];
      if (last && last[0] + last[1] === off + b) last[1] += len;
      else pieces.push([off + b, len]);
    }
    off += n;
  }
  // A hole at the end: a last, empty piece at the end of the file (GNU tar sizes a file by its
  // last piece's end).
  const last = pieces[pieces.length - 1];
  if (!last || last[0] + last[1] < size) pieces.push([size, 0]);
  return pieces;
}

/** `len` bytes of the file at `from`, into the tar (zeros for what the file no longer holds). */
function copyInto(out: GzipTar, fd: number, from: number, len: number): void {
  for (let done = 0; done < len;) {
    const b = Buffer.alloc(Math.min(1024 * 1024, len - done));
    readSync(fd, b, 0, b.length, from + done);
    out.push(b);
    done += b.length;
  }
}

/**
 * A gzip'd tar of the tree at `dir` (criu's tmpfs image: names "./…", numeric owners, what is
 * mounted below it left out but its mountpoint kept, as `tar --one-file-system` does). A file
 * with holes (or zeros: they read the same) is stored sparse, in GNU's pax format 1.0, which
 * GNU tar and applyTmpfsImage read back with the holes.
 *
 * A mountpoint is what the tmpfs has there as far as can be seen from above the mount: an
 * empty directory, or an empty file (a device bound on a file is no device of the tmpfs), of
 * the mounted thing's mode and the tmpfs root's owner (CRIU's tar, made below the mounts, has
 * no device there either, and its restore could not make one in a user namespace). `ids`:
 * owners as a user namespace sees them (CRIU's restore untars inside it).
 */
export function tmpfsImage(dir: string, ids?: { uid(host: number): number; gid(host: number): number }): Buffer {
  const out = new GzipTar();
  const top = lstatSync(dir);
  for (const e of treeEntries(dir, { prefix: './', oneFileSystem: true }, [])) {
    let h = e.header;
    if (e.st.dev !== top.dev) {
      h = { ...h, type: e.st.isDirectory() ? 'directory' : 'file', size: 0, linkname: null, devmajor: 0, devminor: 0, uid: top.uid, gid: top.gid };
    }
    if (ids) h = { ...h, uid: ids.uid(h.uid), gid: ids.gid(h.gid) };
    if (h.type !== 'file' || !h.size) {
      out.push(...encodeHeader(h));
      continue;
    }
    const fd = openSync(path.join(dir, e.rel), C.O_RDONLY | C.O_NOFOLLOW);
    try {
      const pieces = dataPieces(fd, h.size);
      if (pieces.length === 1 && pieces[0]![0] === 0 && pieces[0]![1] === h.size) {
        out.push(...encodeHeader(h));
        copyInto(out, fd, 0, h.size);
        out.pad(h.size);
        continue;
      }
      const map = Buffer.from(`${pieces.length}\n${pieces.map(([o, n]) => `${o}\n${n}\n`).join('')}`);
      const stored = pieces.reduce((n, [, len]) => n + len, 0);
      const pax = headers().encodePax({ pax: {
        'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': h.name, 'GNU.sparse.realsize': String(h.size),
      } });
      out.push(headers().encode({ ...h, name: 'PaxHeader', size: pax.length, type: 'pax-header' })!, pax);
      out.pad(pax.length);
      out.push(headers().encode({ ...h, name: 'GNUSparseFile.0/sparse', size: padded(map.length) + stored })!, map);
      out.pad(map.length);
      for (const [o, n] of pieces) copyInto(out, fd, o, n);
      out.pad(stored);
    } finally {
      closeSync(fd);
    }
  }
  return out.end();
}

function readFile(file: string): Buffer {
  return process.getBuiltinModule('node:fs').readFileSync(file);
}

/**
 * Unpack a tmpfs image (gzip'd tar, ours or criu's) onto `dir`, the new tmpfs: devices, fifos,
 * symlinks and hard links as the tar holds them, owners and modes too, never through a symlink.
 * `owner`: the owner to give a member of the tar's owner (ids a user namespace wrote, to the
 * host's), default as they are.
 */
export function applyTmpfsImage(file: string, dir: string, owner?: (uid: number, gid: number) => { uid: number; gid: number }): void {
  let buf: Buffer;
  try {
    // No more than the new tmpfs can hold (and some room for the headers): a gzip bomb stops here.
    const s = statfsSync(dir);
    buf = zlib.gunzipSync(readFile(file), { maxOutputLength: Math.min(buffer.kMaxLength, s.bavail * s.bsize + 64 * 1024 * 1024) });
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const w = new TreeWriter(dir, { strict: false, devices: true, owners: true });
  try {
    for (const { header: h, at, sparse } of walkTar((pos, len) => buf.subarray(pos, pos + len), buf.length, file)) {
      const header = owner ? { ...h, ...owner(h.uid, h.gid) } : h;
      const fd = w.begin(header);
      if (fd === undefined) continue;
      try {
        if (sparse) {
          // the pieces where they belong, the holes left as holes
          let from = at;
          for (const [off, len] of sparse.pieces) {
            for (let done = 0; done < len;) done += writeSync(fd, buf, from + done, len - done, off + done);
            from += len;
          }
          ftruncateSync(fd, sparse.realSize);
        } else {
          writeAll(fd, buf.subarray(at, at + header.size));
        }
        w.endFile(fd, header);
      } finally {
        closeSync(fd);
      }
    }
    w.finish();
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(file) ? msg : `${file}: ${msg}`);
  }
}
