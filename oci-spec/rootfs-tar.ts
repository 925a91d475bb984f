// Root filesystem trees as tar streams (tar-stream), both ways: a directory tree (or a chosen part
// of it) packed with its owners, modes, times, symlinks and hard links; and a tar applied onto a
// directory, never writing outside it (no absolute or `..` names, no path through a symlink).
//
// This is the one place container.ts reads and writes rootfs tars: it is meant to be swapped
// for the archive layer's tree packer/applier once that exists (oci-spec/archive.ts).

import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';

/** A tree's entries, relative paths, parents before children, in name order. */
export async function walkTree(root: string, rel = ''): Promise<{ rel: string; st: Stats }[]> {
  const out: { rel: string; st: Stats }[] = [];
  const names = (await fs.readdir(path.join(root, rel))).sort();
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const st = await fs.lstat(path.join(root, r));
    out.push({ rel: r, st });
    if (st.isDirectory()) out.push(...(await walkTree(root, r)));
  }
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
        const st = await fs.lstat(full);
        const common = { name: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
        if (st.isDirectory()) {
          pack.entry({ ...common, type: 'directory' });
        } else if (st.isSymbolicLink()) {
          pack.entry({ ...common, type: 'symlink', linkname: await fs.readlink(full) });
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

function missing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Make sure every directory on the way to `rel` under `dest` is a real directory (made if
 * missing), so that nothing is written through a symlink.
 */
async function parentsOf(dest: string, rel: string, what: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let at = dest;
  for (const p of parts) {
    at = path.join(at, p);
    let st: Stats | undefined;
    try {
      st = await fs.lstat(at);
    } catch (e) {
      if (!missing(e)) throw e;
    }
    if (!st) await fs.mkdir(at, { mode: 0o755 });
    else if (!st.isDirectory()) throw new Error(`${what}: "${path.relative(dest, at)}" on its way is not a directory`);
  }
}

/** Remove whatever is at `full`, unless it is a directory and `keepDir`. */
async function clear(full: string, keepDir: boolean): Promise<void> {
  let st: Stats;
  try {
    st = await fs.lstat(full);
  } catch (e) {
    if (missing(e)) return;
    throw e;
  }
  if (st.isDirectory() && keepDir) return;
  await fs.rm(full, { recursive: true, force: true });
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
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = safeRelative(h.name, `${what}: entry`);
      if (rel === '' || rel === '.') {
        entry.resume();
        continue;
      }
      const where = `${what}: entry "${rel}"`;
      await parentsOf(dest, rel, where);
      const full = path.join(dest, rel);
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date();
      switch (h.type) {
        case 'directory':
          await clear(full, true);
          await fs.mkdir(full, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'EEXIST') throw e;
          });
          dirs.push({ full, mode, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime });
          entry.resume();
          continue;
        case 'file':
          await clear(full, false);
          await pipeline(entry, createWriteStream(full, { flags: 'wx', mode: 0o600 }));
          break;
        case 'symlink':
          await clear(full, false);
          await fs.symlink(h.linkname ?? '', full);
          entry.resume();
          break;
        case 'link': {
          const target = safeRelative(h.linkname ?? '', `${where}: hard link target`);
          await parentsOf(dest, target, where);
          const st = await fs.lstat(path.join(dest, target)).catch(() => undefined);
          if (!st || st.isDirectory()) throw new Error(`${where}: hard link to "${h.linkname}", which is no file of this tree`);
          await clear(full, false);
          await fs.link(path.join(dest, target), full);
          entry.resume();
          continue; // shares the target's owner, mode and times
        }
        default:
          throw new Error(`${where} is a ${h.type}, which stasis does not put into a root filesystem`);
      }
      await fs.lchown(full, h.uid ?? 0, h.gid ?? 0);
      if (h.type !== 'symlink') await fs.chmod(full, mode);
      await fs.lutimes(full, mtime, mtime);
    }
    // Directories last, deepest first: writing into them changed their times.
    for (const d of dirs.reverse()) {
      await fs.chown(d.full, d.uid, d.gid);
      await fs.chmod(d.full, d.mode);
      await fs.utimes(d.full, d.mtime, d.mtime);
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
