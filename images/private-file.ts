// Image files hold process memory (keys, tokens, passwords), so they are handled as secrets:
// directories created 0700 and files 0600 whatever the umask lets through (CRIU's 0644 leaves them
// readable by all), never written through a symbolic link or into a file that was already there
// (a link planted in a directory others can write would have the dump overwrite its target), and
// read only when they are regular files (a FIFO would hang the reader, a device feed it forever).

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
/** A new file, or failure: O_EXCL fails on anything at the name, a symbolic link included. */
const CREATE = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

/** What a non-regular file is, for messages. */
export function fileKind(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/**
 * Clears the way for creating `file` anew: what is at the name is removed if it is a regular
 * file (an earlier dump's, in a directory used again, as runc and Podman do) or a symbolic link
 * (the link itself: its target is never touched); anything else is refused.
 */
function makeRoom(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (e) {
    if (code(e) === 'ENOENT') return; // gone meanwhile
    throw e;
  }
  if (!st.isFile() && !st.isSymbolicLink()) throw new Error(`${file}: ${fileKind(st)} is in the way of the image file; refusing to replace it`);
  fs.unlinkSync(file);
}

function raced(file: string): Error {
  return new Error(`${file}: created again by someone else while it was being replaced; refusing to write it`);
}

/**
 * Creates `file` for writing, mode 0600, as a new inode (see makeRoom for what is there before).
 * `flags` adds to the open flags (O_APPEND...). The descriptor.
 */
export function createPrivateFileSync(file: string, flags = 0): number {
  try {
    return fs.openSync(file, CREATE | flags, PRIVATE_FILE_MODE);
  } catch (e) {
    if (code(e) !== 'EEXIST') throw e;
  }
  makeRoom(file);
  try {
    return fs.openSync(file, CREATE | flags, PRIVATE_FILE_MODE);
  } catch (e) {
    throw code(e) === 'EEXIST' ? raced(file) : e;
  }
}

/** createPrivateFileSync through the thread pool. */
export async function createPrivateFile(file: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(file, CREATE, PRIVATE_FILE_MODE);
  } catch (e) {
    if (code(e) !== 'EEXIST') throw e;
  }
  makeRoom(file);
  try {
    return await fsp.open(file, CREATE, PRIVATE_FILE_MODE);
  } catch (e) {
    throw code(e) === 'EEXIST' ? raced(file) : e;
  }
}

/** Writes all of `data` at the descriptor's position. */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done);
}

/** A whole private file (see createPrivateFileSync) written at once. */
export function writePrivateFileSync(file: string, data: Uint8Array): void {
  const fd = createPrivateFileSync(file);
  try {
    writeAllSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
}

/** writePrivateFileSync through the thread pool. */
export async function writePrivateFile(file: string, data: Uint8Array): Promise<void> {
  const handle = await createPrivateFile(file);
  try {
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

/**
 * mkdir -p, each directory it creates 0700 (those already there are left as they are). Not
 * Node's recursive mkdir, which spins forever on some procfs paths.
 */
export function makePrivateDirs(dir: string): void {
  const abs = path.resolve(dir);
  if (fs.existsSync(abs)) return;
  makePrivateDirs(path.dirname(abs));
  try {
    fs.mkdirSync(abs, PRIVATE_DIR_MODE);
  } catch (e) {
    if (code(e) !== 'EEXIST') throw e;
  }
}

function notRegular(file: string, st: fs.Stats): Error {
  return new Error(`${file}: ${fileKind(st)}, not a regular file; refusing to read it as an image`);
}

/**
 * Opens an image file to read: through a symbolic link if it is one (a reader harms nothing that
 * way, and image sets are linked together at times), but only if what it reaches is a regular
 * file. O_NONBLOCK keeps the open of a FIFO from waiting for a writer that never comes (it has no
 * effect on a regular file). The descriptor.
 */
export function openImageFileSync(file: string): number {
  const fd = fs.openSync(file, O_RDONLY | O_NONBLOCK);
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw notRegular(file, st);
  }
  return fd;
}

/** openImageFileSync through the thread pool. */
export async function openImageFile(file: string): Promise<fsp.FileHandle> {
  const handle = await fsp.open(file, O_RDONLY | O_NONBLOCK);
  const st = await handle.stat();
  if (!st.isFile()) {
    await handle.close();
    throw notRegular(file, st);
  }
  return handle;
}

/** The whole of a regular file (see openImageFileSync). */
export function readImageFileSync(file: string): Buffer {
  const fd = openImageFileSync(file);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** readImageFileSync through the thread pool. */
export async function readImageFile(file: string): Promise<Buffer> {
  const handle = await openImageFile(file);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Refuses a directory whose image files (every name ending in .img, raw ones included) include
 * something no image can be: a FIFO, a socket, a device, a directory, or a symbolic link to one. A
 * restore reads its images in many places; checked once, up front, none of them can hang on a
 * FIFO or read a device. (The types come with the directory's entries: only symbolic links cost a
 * stat.) Other files are not stasis's to judge.
 */
export function checkImageDirEntries(dir: string): void {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (d.isFile() || !d.name.endsWith('.img')) continue;
    const file = path.join(dir, d.name);
    let st: fs.Stats;
    try {
      st = d.isSymbolicLink() ? fs.statSync(file) : fs.lstatSync(file);
    } catch (e) {
      if (code(e) === 'ENOENT') continue; // a dangling link: read, it is a missing file
      throw e;
    }
    if (!st.isFile()) throw notRegular(file, st);
  }
}
