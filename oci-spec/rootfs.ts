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
import { readdirSync, readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { readMountinfo } from '../sys/proc/index.js';
import { applyTar, isWhiteout, packTree, removePaths, walkTree } from './archive.js';

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
  /** Entries not carried (device nodes, sockets). */
  skipped: string[];
}

/**
 * Whether an entry of a rootfs (or a /dev/shm) travels in the archive: not a device node, which
 * the restore refuses to make from an archive (applyTar without `devices`), nor a socket.
 */
export function carried(_rel: string, st: Stats): boolean {
  return !st.isCharacterDevice() && !st.isBlockDevice();
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Upper layer → tar of what it holds, list of what it hides. One walk: whiteouts are left out of
 * the tar and listed, and an opaque directory's hidden lower entries listed as it is packed.
 */
async function overlayChanges(rootfs: string, layers: OverlayLayers, tarFile: string): Promise<RootfsChanges> {
  const deleted: string[] = [];
  const whiteouts = new Set<string>();
  const { skipped } = await packTree(layers.upper, tarFile, {
    filter: (rel, st) => {
      if (isWhiteout(st)) {
        deleted.push(`/${rel}`);
        whiteouts.add(rel);
        return false;
      }
      // An opaque directory hides the lower layers' entries under it: what the merged view lacks.
      if (st.isDirectory() && layers.lowers.length) {
        const merged = new Set(entries(path.join(rootfs, rel)));
        for (const lower of layers.lowers) {
          for (const name of entries(path.join(lower, rel))) {
            if (!merged.has(name)) deleted.push(`/${rel}/${name}`);
          }
        }
      }
      return carried(rel, st);
    },
  });
  return { carriage: 'diff', deleted: [...new Set(deleted)].sort(), skipped: skipped.filter((rel) => !whiteouts.has(rel)) };
}

function changed(a: Stats, b: Stats): boolean {
  const kind = (s: Stats) => (s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : 'o');
  if (kind(a) !== kind(b) || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return true;
  if (a.isDirectory()) return false;
  return a.size !== b.size || a.mtimeMs !== b.mtimeMs;
}

/** Plain directory against a base: what changed. */
async function directoryChanges(rootfs: string, base: string, tarFile: string): Promise<RootfsChanges> {
  const before = new Map([...walkTree(base)].map((e) => [e.rel, e.st]));
  /** The entries carried, and the directories on their way (packed too, as their parents). */
  const packed = new Set<string>();
  const carry = (rel: string) => {
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) packed.add(parts.slice(0, i).join('/'));
  };
  for (const { rel, st } of walkTree(rootfs)) {
    const old = before.get(rel);
    before.delete(rel);
    if (!old || changed(st, old)) carry(rel);
    else if (st.isSymbolicLink() && readlinkSync(path.join(rootfs, rel)) !== readlinkSync(path.join(base, rel))) carry(rel);
  }
  // What is left of the base is gone: only the topmost of each gone subtree is listed.
  const gone = [...before.keys()].sort();
  const deleted = gone.filter((rel) => !gone.some((g) => rel.startsWith(`${g}/`))).map((rel) => `/${rel}`);
  const { skipped } = await packTree(rootfs, tarFile, { filter: (rel, st) => packed.has(rel) && carried(rel, st) });
  return { carriage: 'diff', deleted, skipped: skipped.filter((rel) => packed.has(rel)) };
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
  else changes = { carriage: 'whole', deleted: [], skipped: (await packTree(rootfs, tarFile, { filter: carried })).skipped };
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
 * Copy the tree `base` (the user's own directory: device nodes too) onto `dest`, through a tar
 * stream packed and applied at once.
 */
async function copyTree(base: string, dest: string): Promise<void> {
  const pipe = new PassThrough();
  // Whichever side fails first says why (the other then sees its stream closed under it).
  let first: Error | undefined;
  const side = (p: Promise<unknown>) => p.catch((e: Error) => {
    first ??= e;
    pipe.destroy();
  });
  await Promise.all([side(packTree(base, pipe)), side(applyTar(pipe, dest, { devices: true }))]);
  if (first) throw new Error(`the base rootfs ${base}: ${first.message.replace(/^tar stream: /, '')}`);
}

/**
 * Put a rootfs back at `dest` (made here): the base directory copied if given, then the
 * archive's rootfs-diff.tar (unpacked into `from`) applied, then its deleted paths removed.
 */
export async function restoreRootfs(dest: string, from: string, base?: string): Promise<void> {
  await fs.mkdir(dest, { mode: 0o755 });
  if (base) await copyTree(base, dest);
  const diff = path.join(from, ROOTFS_DIFF);
  if (await fs.stat(diff).then(() => true, () => false)) await applyTar(diff, dest);
  const text = await fs.readFile(path.join(from, DELETED_FILES), 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const deleted = parseDeletedFiles(text);
  try {
    removePaths(dest, deleted);
  } catch (e) {
    throw new Error(`${DELETED_FILES}: ${(e as Error).message}`);
  }
}
