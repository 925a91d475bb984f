// Root filesystem trees as tar streams (tar-stream), both ways: a directory tree (or a chosen part
// of it) packed with its owners, modes, times, symlinks and hard links; and a tar applied onto a
// directory, never writing outside it (no absolute or `..` names, no path through a symlink).
//
// This is the one place container.ts reads and writes rootfs tars: it is meant to be swapped
// for the archive layer's tree packer/applier once that exists (oci-spec/archive.ts).

import fsSync, { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';

/** A tree's entries, relative paths, parents before children, in name order. */
export async function walkTree(root: string): Promise<{ rel: string; st: Stats }[]> {
  const out: { rel: string; st: Stats }[] = [];
  // Synchronous calls: thousands of small ones, each cheaper than a trip through the thread pool.
  const walk = (rel: string) => {
    for (const name of fsSync.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fsSync.lstatSync(path.join(root, r));
      out.push({ rel: r, st });
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

export interface TreeTar {
  stream: Readable;
  /** Resolves when everything is packed: the entries left out (device nodes, fifos, sockets). */
  done: Promise<string[]>;
}

/**
 * A tar stream of the tree at `root`: every entry, or only those named in `only` (relative
 * paths; their parent directories are added).
 */
export function treeTar(root: string, only?: readonly string[]): TreeTar {
  const pack = tar.pack();
  const done = (async () => {
    const skipped: string[] = [];
    let rels: string[];
    if (only) {
      const set = new Set<string>();
      for (const r of only) {
        const parts = r.split('/');
        for (let i = 1; i <= parts.length; i++) set.add(parts.slice(0, i).join('/'));
      }
      rels = [...set].sort();
    } else {
      rels = (await walkTree(root)).map((e) => e.rel);
    }
    const firstOfInode = new Map<string, string>();
    try {
      for (const rel of rels) {
        const full = path.join(root, rel);
        const st = fsSync.lstatSync(full);
        const common = { name: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
        if (st.isDirectory()) {
          pack.entry({ ...common, type: 'directory' });
        } else if (st.isSymbolicLink()) {
          pack.entry({ ...common, type: 'symlink', linkname: fsSync.readlinkSync(full) });
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          const first = st.nlink > 1 ? firstOfInode.get(key) : undefined;
          if (first !== undefined) {
            pack.entry({ ...common, type: 'link', linkname: first });
            continue;
          }
          if (st.nlink > 1) firstOfInode.set(key, rel);
          const entry = pack.entry({ ...common, type: 'file', size: st.size });
          await pipeline(createReadStream(full), entry);
        } else {
          skipped.push(rel);
        }
      }
      pack.finalize();
    } catch (e) {
      pack.destroy(e as Error);
      throw e;
    }
    return skipped;
  })();
  done.catch(() => undefined);
  return { stream: pack as unknown as Readable, done };
}

/** Pack the tree at `root` (or the entries `only`) into the tar file `out`. */
export async function packTree(root: string, out: string, only?: readonly string[]): Promise<string[]> {
  const t = treeTar(root, only);
  await pipeline(t.stream, createWriteStream(out, { mode: 0o600 }));
  return t.done;
}

/** A member name made safe to join under a directory, or an error naming it. */
export function safeRelative(name: string, what: string): string {
  const rel = name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
  if (path.isAbsolute(rel) || rel.split('/').includes('..')) throw new Error(`${what} "${name}" leads outside the root filesystem`);
  return rel;
}

/**
 * Writes entries under `dest` only through real directories. The directories on the way are
 * checked once (lstat, made if missing) and remembered until an entry replaces one of them.
 * Metadata calls are synchronous: a rootfs is thousands of small entries, and each call through
 * the thread pool would cost more than the call itself.
 */
class TreeWriter {
  /** Relative paths known to be real directories under dest. */
  private readonly dirs = new Set<string>(['']);
  constructor(readonly dest: string) {}

  /** Every directory on the way to `rel` is a real directory (made if missing). */
  parents(rel: string, where: string): void {
    const parts = rel.split('/').slice(0, -1);
    let at = '';
    for (const p of parts) {
      at = at ? `${at}/${p}` : p;
      if (this.dirs.has(at)) continue;
      const st = fsSync.lstatSync(path.join(this.dest, at), { throwIfNoEntry: false });
      if (!st) fsSync.mkdirSync(path.join(this.dest, at), { mode: 0o755 });
      else if (!st.isDirectory()) throw new Error(`${where}: "${at}" on its way is not a directory`);
      this.dirs.add(at);
    }
  }

  /** Remove whatever is at `rel`, unless it is a directory and `keepDir`. */
  clear(rel: string, keepDir: boolean): void {
    const full = path.join(this.dest, rel);
    const st = fsSync.lstatSync(full, { throwIfNoEntry: false });
    if (!st || (st.isDirectory() && keepDir)) return;
    fsSync.rmSync(full, { recursive: true, force: true });
    for (const d of this.dirs) if (d === rel || d.startsWith(`${rel}/`)) this.dirs.delete(d);
  }

  madeDir(rel: string): void {
    this.dirs.add(rel);
  }
}

/**
 * Apply the tar stream `source` onto the directory `dest`: directories merged, anything else
 * replacing what was there; owners, modes and times as the tar says. Device nodes, fifos and
 * entries leading outside `dest` are refused. `what` names the tar in errors.
 */
export async function applyTar(source: Readable, dest: string, what: string): Promise<void> {
  const extract = tar.extract();
  const feeding = pipeline(source, extract).catch((e: Error) => extract.destroy(e));
  const dirs: { full: string; mode: number; uid: number; gid: number; mtime: Date }[] = [];
  const w = new TreeWriter(dest);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = safeRelative(h.name, `${what}: entry`);
      if (rel === '' || rel === '.') {
        entry.resume();
        continue;
      }
      const where = `${what}: entry "${rel}"`;
      w.parents(rel, where);
      const full = path.join(dest, rel);
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date();
      switch (h.type) {
        case 'directory':
          w.clear(rel, true);
          if (!fsSync.lstatSync(full, { throwIfNoEntry: false })) fsSync.mkdirSync(full, { mode: 0o700 });
          w.madeDir(rel);
          dirs.push({ full, mode, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime });
          entry.resume();
          continue;
        case 'file':
          w.clear(rel, false);
          await pipeline(entry, createWriteStream(full, { flags: 'wx', mode: 0o600 }));
          break;
        case 'symlink':
          w.clear(rel, false);
          fsSync.symlinkSync(h.linkname ?? '', full);
          entry.resume();
          break;
        case 'link': {
          const target = safeRelative(h.linkname ?? '', `${where}: hard link target`);
          w.parents(target, where);
          const st = fsSync.lstatSync(path.join(dest, target), { throwIfNoEntry: false });
          if (!st || st.isDirectory()) throw new Error(`${where}: hard link to "${h.linkname}", which is no file of this tree`);
          w.clear(rel, false);
          fsSync.linkSync(path.join(dest, target), full);
          entry.resume();
          continue; // shares the target's owner, mode and times
        }
        default:
          throw new Error(`${where} is a ${h.type}, which stasis does not put into a root filesystem`);
      }
      fsSync.lchownSync(full, h.uid ?? 0, h.gid ?? 0);
      if (h.type !== 'symlink') fsSync.chmodSync(full, mode);
      fsSync.lutimesSync(full, mtime, mtime);
    }
    // Directories last, deepest first: writing into them changed their times.
    for (const d of dirs.reverse()) {
      fsSync.chownSync(d.full, d.uid, d.gid);
      fsSync.chmodSync(d.full, d.mode);
      fsSync.utimesSync(d.full, d.mtime, d.mtime);
    }
  } catch (e) {
    extract.destroy();
    source.destroy();
    await feeding;
    throw e;
  }
  await feeding;
}

/** Remove the paths `deleted` (as deleted.files lists them) from the tree at `dest`. */
export async function removePaths(dest: string, deleted: readonly string[], what: string): Promise<void> {
  for (const p of deleted) {
    const rel = safeRelative(p.replace(/^\/+/, ''), `${what}: path`);
    if (rel === '') continue;
    // Only through real directories: a path whose parent is gone is gone already.
    let through = true;
    let at = dest;
    for (const part of rel.split('/').slice(0, -1)) {
      at = path.join(at, part);
      const st = await fs.lstat(at).catch(() => undefined);
      if (!st?.isDirectory()) {
        through = false;
        break;
      }
    }
    if (through) await fs.rm(path.join(dest, rel), { recursive: true, force: true });
  }
}
