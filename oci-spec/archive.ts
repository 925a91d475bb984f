// Checkpoint archives: a directory packed as a tar stream (tar-stream), compressed or not
// (compression.ts), and read back member by member or unpacked into a fresh directory.
//
// Member order on writing: everything small first, process memory (pages-*.img) last, so that a
// reader after metadata and images stops long before the pages.

import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { compressor, decompressor, detectCompression, type Compression } from './compression.js';

export interface PackOptions {
  compression: Compression;
}

/** Members read late: the memory pages, whatever directory they sit in. */
export function isBulkMember(name: string): boolean {
  return /(^|\/)pages-\d+\.img$/.test(name);
}

async function walk(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const name = rel ? `${rel}/${e.name}` : e.name;
    out.push(name);
    if (e.isDirectory()) out.push(...(await walk(root, name)));
  }
  return out;
}

/**
 * Pack the directory `dir` into the archive `out` (written beside and renamed into place, so an
 * archive that exists is whole). Member names are relative to `dir`.
 */
export async function packDirectory(dir: string, out: string, opts: PackOptions): Promise<void> {
  const names = await walk(dir);
  const ordered = [...names.filter((n) => !isBulkMember(n)), ...names.filter(isBulkMember)];
  const pack = tar.pack();
  const tmp = `${out}.partial-${process.pid}`;
  const writing = pipeline(pack, compressor(opts.compression), createWriteStream(tmp));
  try {
    for (const name of ordered) {
      const full = path.join(dir, name);
      const st = await lstat(full);
      const common = { name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (st.isDirectory()) {
        pack.entry({ ...common, type: 'directory' });
      } else if (st.isSymbolicLink()) {
        pack.entry({ ...common, type: 'symlink', linkname: await readlink(full) });
      } else if (st.isFile()) {
        const entry = pack.entry({ ...common, type: 'file', size: st.size });
        await pipeline(createReadStream(full), entry);
      } else {
        throw new Error(`cannot archive ${full}: not a file, directory or symlink`);
      }
    }
    pack.finalize();
    await writing;
    await rename(tmp, out);
  } catch (e) {
    pack.destroy();
    await writing.catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

export interface Member {
  name: string;
  size: number;
  type: string;
  /** The member's bytes (files only; empty for others). */
  data: Buffer;
}

/** Member names as written: no leading "./" or "/". */
export function memberName(raw: string): string {
  return raw.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/**
 * The archive's members whose names `want` accepts, in archive order, with their bytes; the
 * others are skipped without being kept. Stop early by breaking out of the loop.
 */
export async function* readMembers(archive: string,
  want: (name: string, size: number, type: string) => boolean): AsyncGenerator<Member> {
  const kind = await detectCompression(archive);
  const extract = tar.extract();
  const source = createReadStream(archive);
  const feeding = pipeline(source, decompressor(kind), extract).catch((e: Error) => {
    extract.destroy(e);
  });
  try {
    for await (const entry of extract) {
      const name = memberName(entry.header.name);
      if (!want(name, entry.header.size ?? 0, entry.header.type ?? 'file')) {
        entry.resume();
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      yield { name, size: entry.header.size ?? 0, type: entry.header.type ?? 'file', data: Buffer.concat(chunks) };
    }
  } finally {
    source.destroy();
    extract.destroy();
    await feeding;
  }
}

/** Every member of the archive: name, size and type (no data). */
export async function listMembers(archive: string): Promise<Omit<Member, 'data'>[]> {
  const members: Omit<Member, 'data'>[] = [];
  await readMembers(archive, (name, size, type) => {
    members.push({ name, size, type });
    return false;
  }).next();
  return members;
}

/**
 * Unpack the archive into `dest`, which must not exist yet; on any failure `dest` is removed.
 * Entries leading outside `dest` are refused.
 */
export async function extractArchive(archive: string, dest: string): Promise<void> {
  await mkdir(dest);
  try {
    for await (const m of readMembers(archive, () => true)) {
      const full = path.resolve(dest, m.name);
      if (!full.startsWith(path.resolve(dest) + path.sep)) throw new Error(`archive member "${m.name}" leads outside the directory`);
      if (m.type === 'directory') await mkdir(full, { recursive: true });
      else if (m.type === 'file') {
        await mkdir(path.dirname(full), { recursive: true });
        await writeFile(full, m.data, { flag: 'wx' });
      } else throw new Error(`archive member "${m.name}" is a ${m.type}, which a checkpoint never holds`);
    }
  } catch (e) {
    await rm(dest, { recursive: true, force: true });
    throw e;
  }
}

