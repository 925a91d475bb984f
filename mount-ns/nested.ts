// Mount namespaces nested inside the dumped tree: a process whose mount namespace is not its
// parent's (it unshared CLONE_NEWNS, or was cloned with it). Each such namespace is saved as the
// tree's own is, mountpoints-N.img (every mount as its first task's mountinfo shows it, paths
// relative to that task's root), with the contents of the tmpfs mounts it has of its own.
//
// The kernel made the namespace as a copy of its parent's (its "base"): a mount of it at the
// same place, on the same filesystem and root as a mount of the base is that copy; any other was
// mounted in it since, and a mount of the base with no copy left was removed from it.
//
// Dump: a mount of its own must be one stasis can make again: a filesystem of the namespace's
// own (tmpfs, proc, ...), or a view of one it has; anything else refuses the dump, naming it.
//
// Restore: the first task of the namespace unshares CLONE_NEWNS, which copies its parent's
// restored namespace, then (injected into it)
//   - each copy gets the propagation the image gives it (a slave of the base's peer group,
//     private, ...) before anything is mounted or removed, so that nothing reaches the base,
//     and its per-mount flags (read-only...) where they changed;
//   - the base's mounts it had removed are detached;
//   - its own mounts are made, parents first: a filesystem anew (a tmpfs with its contents),
//     or a bind of the view it has; read-only and the other per-mount flags last.
// The namespace's other tasks enter it with setns (task/restore/namespaces.ts).

import path from 'node:path';
import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { readMountinfo } from '../sys/proc/index.js';
import { MNT_DETACH } from '../sys/mount.js';
import {
  FSNAMES, FSTYPES, MS, PER_MOUNT, cStrings, kernelDev, mountFlags, mountIn, setPropagation, tmpfsContents,
  tmpfsImageName, unpackTmpfs, type LaterMount, type MntEntry,
} from './mounts.js';

const AT_FDCWD = -100;
const TMPFS = FSTYPES.tmpfs!;
const DEVPTS = FSTYPES.devpts!;

/** The mounts of process `pid`'s namespace as mnt_entry's, read as it sees them. */
export function mountEntriesOf(pid: number): MntEntry[] {
  return readMountinfo(pid).map((m) => {
    const superOpts = m.superOptions.split(',').filter((o) => o && o !== 'rw' && o !== 'ro');
    return {
      fstype: FSTYPES[m.fstype.split('.')[0]!] ?? 0, mnt_id: m.mntId, root_dev: kernelDev(m), parent_mnt_id: m.parentId,
      flags: mountFlags(m), root: m.root, mountpoint: m.mountPoint, source: m.source, options: superOpts.join(','),
      shared_id: m.shared ?? 0, master_id: m.master ?? 0, sb_flags: m.superOptions.split(',').includes('ro') ? MS.RDONLY : 0,
    };
  });
}

/**
 * Whether mount `a` of one namespace and `b` of another are copies of one mount: the same place,
 * filesystem and root (a cgroup mount's root is as each side's cgroup namespace shows it).
 */
function sameMount(a: MntEntry, b: MntEntry): boolean {
  const cgroup = a.fstype === FSTYPES.cgroup || a.fstype === FSTYPES.cgroup2;
  return a.mountpoint === b.mountpoint && a.root_dev === b.root_dev && (cgroup || a.root === b.root);
}

/** A mount of its own a namespace has a view of already (a bind source): an earlier one covering its root. */
function viewOf(e: MntEntry, have: readonly MntEntry[]): MntEntry | undefined {
  return have.find((o) => o !== e && o.root_dev === e.root_dev && (o.root === '/' || e.root === o.root || e.root.startsWith(`${o.root}/`)));
}

export interface DumpedNestedMounts {
  entries: MntEntry[];
  /** tmpfs-dev-N.tar.gz.img of the tmpfs filesystems of the namespace's own. */
  tars: Map<string, Buffer>;
}

/**
 * The mount namespace of process `pid`, nested in the tree; `basePid`, its parent process, is
 * in the namespace it was copied from. Refuses a mount of its own that cannot be made again.
 */
export function dumpNestedMounts(pid: number, basePid: number): DumpedNestedMounts {
  const entries = mountEntriesOf(pid);
  const base = mountEntriesOf(basePid);
  const tars = new Map<string, Buffer>();
  const have: MntEntry[] = [];
  for (const e of entries) {
    if (base.some((b) => sameMount(e, b))) {
      have.push(e);
      continue;
    }
    const where = `mount ${e.mountpoint} of the mount namespace of process ${pid}`;
    if (!viewOf(e, have)) {
      if (!FSNAMES.has(e.fstype) || e.fstype === FSTYPES.overlay || e.root !== '/') {
        throw new Error(`${where} (${readMountinfo(pid).find((m) => m.mntId === e.mnt_id)?.fstype ?? e.fstype} ${e.source}${e.root !== '/' ? ` ${e.root}` : ''}) is neither its parent's nor one stasis can make again`);
      }
      if (e.fstype === TMPFS) tars.set(tmpfsImageName(e.root_dev), tmpfsContents(pid, e.mountpoint));
    }
    have.push(e);
  }
  return { entries, tars };
}

/**
 * Mounts in an order they can be made in: each after its parent (mount ids are reused, so they
 * tell nothing of it), and otherwise as listed (mountinfo lists them as made; criu's images,
 * children first).
 */
function parentsFirst<T extends { id: number; parent: number }>(list: readonly T[]): T[] {
  const pending = [...list];
  const out: T[] = [];
  while (pending.length) {
    const i = pending.findIndex((m) => !pending.some((o) => o !== m && o.id === m.parent));
    out.push(...pending.splice(i < 0 ? 0 : i, 1));
  }
  return out;
}

/** Mounts of the namespace at each mountpoint, lowest of a stack first. */
function byMountpoint<T extends { mountpoint: string; id: number; parent: number }>(list: readonly T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const m of parentsFirst(list)) out.set(m.mountpoint, [...(out.get(m.mountpoint) ?? []), m]);
  return out;
}

/**
 * Make the task's new mount namespace (just unshared: a copy of its base's, restored) what the
 * image has: `entries` its mounts, `base` its base's as dumped (or as they stand, for a base
 * outside the dump). `hostPid` is the task as stasis sees it; `imagePath` finds a tmpfs's tar.
 * A terminal bound from the base's devpts (/dev/console) is bound only once the files exist,
 * after the copy was made: it is returned, for finishMounts() in the task then.
 */
export function restoreNestedMounts(inj: Injector, hostPid: number, entries: readonly MntEntry[], base: readonly MntEntry[],
  imagePath: (name: string) => string | undefined): LaterMount[] {
  const later: LaterMount[] = [];
  const str = (s: string) => cStrings(inj, s)[0]!;
  const live = byMountpoint(readMountinfo(hostPid).map((m) => ({ mountpoint: m.mountPoint, id: m.mntId, parent: m.parentId, shared: m.shared ?? 0, master: m.master ?? 0 })));
  const baseAt = byMountpoint(base.map((b) => ({ ...b, id: b.mnt_id, parent: b.parent_mnt_id })));
  /** The copy (now) of a mount of the base: the one at its place in the same order. */
  const copyOf = (b: MntEntry) => live.get(b.mountpoint)?.[baseAt.get(b.mountpoint)!.findIndex((x) => x.mnt_id === b.mnt_id)];
  const kept = new Map<MntEntry, MntEntry>();
  for (const e of entries) {
    const b = base.find((x) => sameMount(e, x) && ![...kept.values()].includes(x));
    if (b) kept.set(e, b);
  }
  // Propagation first: a copy is still a peer of its base's mount, and would pass on what is
  // mounted or removed under it.
  for (const [e, b] of kept) {
    const now = copyOf(b);
    const pts = e.fstype === DEVPTS && e.root !== '/' ? entries.find((x) => x.fstype === DEVPTS && x.root === '/' && x.root_dev === e.root_dev) : undefined;
    if (!now && pts) {
      later.push({ source: path.join(pts.mountpoint, e.root), target: e.mountpoint, flags: e.flags & PER_MOUNT });
      continue;
    }
    if (!now) throw new Error(`restoring mount ${e.mountpoint}: its parent's namespace has no such mount to copy`);
    if (e.shared_id && e.shared_id === b.shared_id) continue; // peers still
    if (e.master_id && now.shared && (e.master_id === b.shared_id || e.master_id === b.master_id)) {
      mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.SLAVE, null);
    } else if (!e.master_id && (now.shared || now.master)) {
      mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.PRIVATE, null);
    }
    if (e.shared_id) mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.SHARED, null);
    // A copy it made read-only (or noexec, ...) since.
    if ((e.flags & PER_MOUNT) !== (b.flags & PER_MOUNT)) {
      mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.REMOUNT | MS.BIND | (e.flags & PER_MOUNT), null);
    }
  }
  // The base's mounts it had removed, deepest first (of those the copy has: a terminal's bind is
  // made later in the base, and in this namespace only if it has one).
  const removed = base.filter((b) => ![...kept.values()].includes(b) && b.mountpoint !== '/' && copyOf(b));
  for (const b of removed.sort((x, y) => y.mountpoint.length - x.mountpoint.length)) {
    mountIn(inj, b.mountpoint, null, b.mountpoint, null, MS.PRIVATE, null);
    inj.callChecked(SYS.umount2, str(b.mountpoint), MNT_DETACH);
  }
  // Its own mounts, parents first.
  const have = [...kept.keys()];
  const made: MntEntry[] = [];
  for (const { e } of parentsFirst(entries.map((x) => ({ e: x, id: x.mnt_id, parent: x.parent_mnt_id })))) {
    if (kept.has(e)) continue;
    const from = viewOf(e, have);
    if (from) {
      const rel = from.root === '/' ? e.root : e.root.slice(from.root.length);
      mountIn(inj, e.mountpoint, path.join(from.mountpoint, rel), e.mountpoint, null, MS.BIND, null);
    } else {
      let p = '';
      for (const part of e.mountpoint.split('/').filter(Boolean)) {
        p += `/${part}`;
        inj.call(SYS.mkdirat, AT_FDCWD, str(p), 0o755);
      }
      mountIn(inj, e.mountpoint, e.source, e.mountpoint, FSNAMES.get(e.fstype)!, e.flags & PER_MOUNT & ~MS.RDONLY, e.options);
      const tar = e.fstype === TMPFS ? imagePath(tmpfsImageName(e.root_dev)) : undefined;
      if (tar) unpackTmpfs(tar, `/proc/${hostPid}/root${e.mountpoint}`, e.mountpoint);
    }
    setPropagation(inj, e, e.mountpoint, false);
    have.push(e);
    made.push(e);
  }
  for (const e of made) {
    if ((e.sb_flags ?? 0) & MS.RDONLY) mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.REMOUNT | MS.RDONLY, e.options);
    if (e.flags & PER_MOUNT) mountIn(inj, e.mountpoint, null, e.mountpoint, null, MS.REMOUNT | MS.BIND | (e.flags & PER_MOUNT), null);
  }
  return later;
}
