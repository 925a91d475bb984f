// How a container's root filesystem travels in a checkpoint archive, both ways.
//
// Checkpoint — three carriages, named in config.dump's `rootfsCarriage`:
//  - 'diff' of an overlay rootfs: its upper layer. Files there go into rootfs-diff.tar; what the
//    upper layer hides of the lower ones (whiteouts, and entries an opaque directory covers) is
//    listed in deleted.files (paths from the rootfs's root, as Podman writes them);
//  - 'diff' of a plain directory against a base the user names (--rootfs-diff-from): entries new
//    or changed (type, owner, mode, size, time or link target) into rootfs-diff.tar, entries of
//    the base gone from the rootfs into deleted.files;
//  - 'whole': a plain directory, all of it, in rootfs-diff.tar.
// Restore: the base (--rootfs, copied) if any, rootfs-diff.tar applied over it, then the
// deleted paths removed (Podman's order).

import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { readMountinfo } from '../sys/proc/index.js';
import { applyTar, packTree, removePaths, treeTar, walkTree } from './rootfs-tar.js';

export type RootfsCarriage = 'whole' | 'diff';

export const ROOTFS_DIFF = 'rootfs-diff.tar';
export const DELETED_FILES = 'deleted.files';

export interface OverlayLayers {
  upper: string;
  /** Absolute lower directories, topmost first (empty when the mount named them relatively). */
  lowers: string[];
}

/** Unescape a mount option value (the kernel writes `\` before `,` `:` and `\` in lowerdir). */
function optionValue(opts: string, key: string): string | undefined {
  const m = new RegExp(`(?:^|,)${key}=((?:[^,\\\\]|\\\\.)*)`).exec(opts);
  return m?.[1];
}

/** The layers of the overlay mounted at `rootfs`, or undefined when it is no overlay mount. */
export async function overlayOf(rootfs: string): Promise<OverlayLayers | undefined> {
  const real = await fs.realpath(rootfs);
  const m = readMountinfo(process.pid).filter((i) => i.mountPoint === real).pop();
  if (!m || m.fstype !== 'overlay') return undefined;
  const upper = optionValue(m.superOptions, 'upperdir');
  if (!upper) throw new Error(`the rootfs ${rootfs} is an overlay without an upper layer: nothing of the container's writes to carry`);
  const lowers = (optionValue(m.superOptions, 'lowerdir') ?? '').split(/(?<!\\):/).map((l) => l.replace(/\\(.)/g, '$1'));
  return { upper: upper.replace(/\\(.)/g, '$1'), lowers: lowers.every((l) => path.isAbsolute(l)) ? lowers : [] };
}

export interface RootfsChanges {
  carriage: RootfsCarriage;
  /** Paths (from the rootfs's root, "/etc/x") the restore removes. */
  deleted: string[];
  /** Entries not carried (device nodes, fifos, sockets). */
  skipped: string[];
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

/** An overlay whiteout: a character device 0/0. */
function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** Upper layer → tar of what it holds, list of what it hides. */
async function overlayChanges(rootfs: string, layers: OverlayLayers, tarFile: string): Promise<RootfsChanges> {
  const upper = await walkTree(layers.upper);
  const deleted: string[] = [];
  const carried: string[] = [];
  for (const { rel, st } of upper) {
    if (isWhiteout(st)) {
      deleted.push(`/${rel}`);
      continue;
    }
    carried.push(rel);
    // An opaque directory hides the lower layers' entries under it: what the merged view lacks.
    if (st.isDirectory() && layers.lowers.length) {
      const merged = new Set(await entries(path.join(rootfs, rel)));
      for (const lower of layers.lowers) {
        for (const name of await entries(path.join(lower, rel))) {
          if (!merged.has(name)) deleted.push(`/${rel}/${name}`);
        }
      }
    }
  }
  const skipped = await packTree(layers.upper, tarFile, carried);
  return { carriage: 'diff', deleted: [...new Set(deleted)].sort(), skipped };
}

function changed(a: Stats, b: Stats): boolean {
  const kind = (s: Stats) => (s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : 'o');
  if (kind(a) !== kind(b) || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return true;
  if (a.isDirectory()) return false;
  return a.size !== b.size || a.mtimeMs !== b.mtimeMs;
}

/** Plain directory against a base: what changed. */
async function directoryChanges(rootfs: string, base: string, tarFile: string): Promise<RootfsChanges> {
  const now = await walkTree(rootfs);
  const before = new Map((await walkTree(base)).map((e) => [e.rel, e.st]));
  const carried: string[] = [];
  for (const { rel, st } of now) {
    const old = before.get(rel);
    before.delete(rel);
    if (!old || changed(st, old)) carried.push(rel);
    else if (st.isSymbolicLink() && (await fs.readlink(path.join(rootfs, rel))) !== (await fs.readlink(path.join(base, rel)))) carried.push(rel);
  }
  // What is left of the base is gone: only the topmost of each gone subtree is listed.
  const gone = [...before.keys()].sort();
  const deleted = gone.filter((rel) => !gone.some((g) => rel.startsWith(`${g}/`))).map((rel) => `/${rel}`);
  const skipped = await packTree(rootfs, tarFile, carried);
  return { carriage: 'diff', deleted, skipped };
}

/**
 * Write the container's rootfs changes into the archive directory `out`: rootfs-diff.tar, and
 * deleted.files when something was deleted.
 */
export async function saveRootfs(rootfs: string, out: string, diffFrom?: string): Promise<RootfsChanges> {
  const tarFile = path.join(out, ROOTFS_DIFF);
  const overlay = await overlayOf(rootfs);
  let changes: RootfsChanges;
  if (overlay) changes = await overlayChanges(rootfs, overlay, tarFile);
  else if (diffFrom) changes = await directoryChanges(rootfs, diffFrom, tarFile);
  else changes = { carriage: 'whole', deleted: [], skipped: await packTree(rootfs, tarFile) };
  if (changes.deleted.length) await fs.writeFile(path.join(out, DELETED_FILES), JSON.stringify(changes.deleted), { mode: 0o600 });
  return changes;
}

/** deleted.files: a JSON array of paths. */
export function parseDeletedFiles(text: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${DELETED_FILES} is not JSON`);
  }
  if (!Array.isArray(v) || v.some((p) => typeof p !== 'string')) throw new Error(`${DELETED_FILES} is not a JSON array of paths`);
  return v as string[];
}

/**
 * Put a rootfs back at `dest` (made here): the base directory copied if given, then the
 * archive's rootfs-diff.tar (unpacked into `from`) applied, then its deleted paths removed.
 */
export async function restoreRootfs(dest: string, from: string, base?: string): Promise<void> {
  await fs.mkdir(dest, { mode: 0o755 });
  if (base) {
    const t = treeTar(base);
    await applyTar(t.stream, dest, `the base rootfs ${base}`);
    await t.done;
  }
  const diff = path.join(from, ROOTFS_DIFF);
  if (await fs.stat(diff).then(() => true, () => false)) await applyTar(createReadStream(diff), dest, ROOTFS_DIFF);
  const deletedFile = path.join(from, DELETED_FILES);
  const text = await fs.readFile(deletedFile, 'utf8').catch(() => undefined);
  if (text !== undefined) await removePaths(dest, parseDeletedFiles(text), DELETED_FILES);
}
