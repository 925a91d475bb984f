// stasis-manifest.json: which files make up one dump. CRIU's images say nothing of the dump
// they belong to (but inventory.img's run id), so a directory mixing files of two dumps — an
// fdinfo or ids image copied from another workload's dump — reads as one, and restores into a
// wrong process. Beside its images stasis writes this file, just before inventory.img: the
// dump's run id (inventory.img's dump_criu_run_id) and the size and SHA-256 of every image
// file, inventory.img's included. A restore checks it before creating any process. CRIU and crit ignore a file they do not
// know; a dump without the file (CRIU's) is restored as before.
//
// Files up to WHOLE_LIMIT are hashed whole. A larger one (the pages of a big process) is
// hashed on its size and SAMPLE-byte blocks every STRIDE bytes, its last block included: hashing
// all of a GiB of pages would double the time of its dump and of its restore, while a pages file
// of another dump differs in those blocks all the same.
import { openImageFileSync, readImageFileSync } from './private-file.js';
import fs from 'node:fs';
import path from 'node:path';
import { ImageError, printable } from './errors.js';

export const MANIFEST_FILE = 'stasis-manifest.json';

const WHOLE_LIMIT = 4 << 20;
const SAMPLE = 4096;
const STRIDE = 1 << 20;

/** What the manifest holds of one file. */
export interface FileDigest {
  size: number;
  sha256: string;
  /** Hashed on samples (see above), not whole. */
  sampled?: true;
}

export interface Manifest {
  dump_criu_run_id: string;
  files: Record<string, FileDigest>;
}

/** node:crypto, loaded when first needed (loading it costs 0.4 ms, more as an ES module). */
const crypto = () => process.getBuiltinModule('node:crypto');

/** Whether a file of the directory is one of the dump's images (and so listed in the manifest). */
export function isListedImage(name: string): boolean {
  // Not stats-dump and stats-restore, written after the dump and by each restore; nor logs and
  // runc's descriptors.json: none ends in .img.
  return name.endsWith('.img') && !name.startsWith('.');
}

/** The digest of bytes held in memory (a file written whole). */
export function digestOf(data: Uint8Array): FileDigest {
  if (data.length > WHOLE_LIMIT) return sampledDigest(data.length, (at, len) => data.subarray(at, at + len));
  const c = crypto();
  // crypto.hash (Node ≥ 20.12): one call, no Hash object per file.
  return { size: data.length, sha256: c.hash ? c.hash('sha256', data, 'hex') : c.createHash('sha256').update(data).digest('hex') };
}

/**
 * The digest of a file on disk, and its bytes when it was read whole (one open, fstat, read and
 * close, as fs.readFileSync makes them).
 */
export function digestOfFile(file: string): { digest: FileDigest; data?: Buffer } {
  const fd = openImageFileSync(file); // a regular file, or refused
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= WHOLE_LIMIT) {
      const data = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const n = fs.readSync(fd, data, done, size - done, done);
        if (n === 0) break;
        done += n;
      }
      return { digest: digestOf(data.subarray(0, done)), data: data.subarray(0, done) };
    }
    const buf = Buffer.alloc(SAMPLE);
    return { digest: sampledDigest(size, (at, len) => buf.subarray(0, fs.readSync(fd, buf, 0, len, at))) };
  } finally {
    fs.closeSync(fd);
  }
}

function sampledDigest(size: number, read: (at: number, len: number) => Uint8Array): FileDigest {
  const hash = crypto().createHash('sha256');
  hash.update(`${size}\n`);
  const last = Math.max(0, size - SAMPLE);
  for (let at = 0; ; at += STRIDE) {
    const from = Math.min(at, last);
    hash.update(read(from, Math.min(SAMPLE, size - from)));
    if (from === last) break;
  }
  return { size, sha256: hash.digest('hex'), sampled: true };
}

/** The manifest as JSON, one file a line. */
export function encodeManifest(m: Manifest): string {
  const files = Object.entries(m.files).map(([name, d]) => `  ${JSON.stringify(name)}: ${JSON.stringify(d)}`);
  return `{\n "dump_criu_run_id": ${JSON.stringify(m.dump_criu_run_id)},\n "files": {\n${files.join(',\n')}\n }\n}\n`;
}

/** The manifest of directory `dir`, or undefined when it has none. Throws when it is not one. */
export function readManifest(dir: string): Manifest | undefined {
  let text: string;
  try {
    text = readImageFileSync(path.join(dir, MANIFEST_FILE)).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new ImageError(MANIFEST_FILE, 0, 'damaged', (e as Error).message);
  }
  const ok = (x: unknown): x is Manifest => {
    if (typeof x !== 'object' || x === null) return false;
    const { dump_criu_run_id: id, files } = x as Record<string, unknown>;
    if (typeof id !== 'string' || typeof files !== 'object' || files === null || Array.isArray(files)) return false;
    return Object.entries(files).every(([name, d]) => isListedImage(name) && !name.includes('/')
      && typeof d === 'object' && d !== null
      && Number.isSafeInteger((d as FileDigest).size) && (d as FileDigest).size >= 0
      && /^[0-9a-f]{64}$/.test(String((d as FileDigest).sha256)));
  };
  if (!ok(m)) throw new ImageError(MANIFEST_FILE, 0, 'damaged', 'not a stasis manifest');
  return m;
}

/**
 * Checks that directory `dir` holds exactly the images of the dump `m` lists, as written, and
 * that inventory.img (with run id `runId`) is that dump's. Throws naming the first file that is
 * missing, differs, or is not the dump's. The bytes of the files read whole go to `read`, for
 * the caller to decode without reading them again.
 */
export function checkManifest(dir: string, m: Manifest, runId: unknown, present: readonly string[],
  read: (name: string, data: Buffer) => void = () => {}): void {
  const dump = printable(m.dump_criu_run_id);
  if (runId !== m.dump_criu_run_id) {
    throw new Error(`inventory.img: of dump ${printable(String(runId))}, but the other images are of dump ${dump} (${MANIFEST_FILE}): files of two dumps`);
  }
  for (const name of present) {
    if (isListedImage(name) && !Object.hasOwn(m.files, name)) {
      throw new Error(`${printable(name)}: not an image of dump ${dump} (not in ${MANIFEST_FILE}): from another dump?`);
    }
  }
  for (const [name, want] of Object.entries(m.files)) {
    const file = path.join(dir, name);
    let have: FileDigest;
    try {
      const { digest, data } = digestOfFile(file);
      have = digest;
      if (data) read(name, data);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new Error(`${printable(name)}: missing (dump ${dump} wrote it)`);
      throw new Error(`${printable(name)}: cannot read: ${code ?? (e as Error).message}`);
    }
    if (have.size !== want.size) {
      throw new Error(`${printable(name)}: ${have.size} bytes, but dump ${dump} wrote ${want.size}: damaged, or from another dump`);
    }
    if (have.sha256 !== want.sha256) {
      throw new Error(`${printable(name)}: its SHA-256 is not the one dump ${dump} wrote: damaged, or from another dump`);
    }
  }
}
