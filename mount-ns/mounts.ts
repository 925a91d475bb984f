// A container's mount namespace: mountpoints-N.img (one mnt_entry per mount, as the
// container's /proc/PID/mountinfo shows them, paths relative to the container's root) and the
// contents of its tmpfs filesystems (tmpfs-dev-DEV.tar.gz.img, a gzip'd tar, as criu writes).
//
// Dump: every mount is one of three kinds.
//  - the root mount ("/"): the runtime gives it back on restore (runc's `root`, criu's --root);
//  - external: its mountpoint is a key of ext_mnt (runc passes its cgroup bind mounts, masked
//    paths and device binds that way); saved as ext_key = the value given at dump;
//  - a filesystem of the container's own (proc, sysfs, tmpfs, devpts, mqueue, ...), or another
//    view (bind) of one of those.
// Anything else — a bind mount of a host directory nobody named — fails the dump, naming it.
//
// Restore, injected into the container's init right after it is created in its new mount
// namespace: make every inherited mount a slave (nothing propagates back to the host; what the
// host's shared mounts receive still reaches the container, as under runc's default rslave),
// bind the root onto itself and work from it (the root and the external mounts' sources reached
// through descriptors stasis opens: the task may not search the host's directories above them),
// mount each entry under it parents first (tmpfs contents unpacked from their tar), apply
// read-only and the other per-mount flags and each mount's propagation (shared peer groups,
// slaves of a group inside the container or of the host's), then pivot_root into it and detach
// the old root.

import { withFsIds } from '../sys/fsids.js';
import fs from 'node:fs';
import path from 'node:path';
import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { readMountinfo, type MountInfo } from '../sys/proc/index.js';
import { MNT_DETACH } from '../sys/mount.js';
import { O_CLOEXEC, O_DIRECTORY, O_PATH } from '../sys/fcntl.js';
import { readCgroupMembership } from '../cgroup/cgroups.js';
import { applyTmpfsImage, tmpfsImage } from '../oci-spec/archive.js';
import type { IdsInside } from '../task/userns.js';


export interface MntEntry {
  fstype: number;
  mnt_id: number;
  root_dev: number;
  parent_mnt_id: number;
  flags: number;
  root: string;
  mountpoint: string;
  source: string;
  options: string;
  shared_id?: number;
  master_id?: number;
  sb_flags?: number;
  ext_key?: string;
}

/** mnt_entry.fstype codes (proto/mnt.proto) and the kernel's filesystem names. */
export const FSTYPES: Record<string, number> = {
  proc: 1, sysfs: 2, devtmpfs: 3, binfmt_misc: 4, tmpfs: 5, devpts: 6, pstore: 8, securityfs: 9,
  fusectl: 10, debugfs: 11, cgroup: 12, mqueue: 14, overlay: 17, tracefs: 19, cgroup2: 23,
};
export const FSNAMES = new Map(Object.entries(FSTYPES).map(([k, v]) => [v, k]));
const TMPFS = FSTYPES.tmpfs!;
const DEVPTS = FSTYPES.devpts!;

export const MS = {
  RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8, REMOUNT: 0x20, NOSYMFOLLOW: 0x100,
  NOATIME: 0x400, NODIRATIME: 0x800, BIND: 0x1000, REC: 0x4000, PRIVATE: 0x40000, SLAVE: 0x80000,
  SHARED: 0x100000, RELATIME: 0x200000, STRICTATIME: 0x1000000,
} as const;
export const PER_MOUNT = MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.NOSYMFOLLOW | MS.NOATIME | MS.NODIRATIME
  | MS.RELATIME | MS.STRICTATIME;
const OPTION_FLAGS: Record<string, number> = {
  ro: MS.RDONLY, nosuid: MS.NOSUID, nodev: MS.NODEV, noexec: MS.NOEXEC, nosymfollow: MS.NOSYMFOLLOW,
  noatime: MS.NOATIME, nodiratime: MS.NODIRATIME, relatime: MS.RELATIME,
};
const AT_FDCWD = -100;

export function mountsImageName(nsId: number): string {
  return `mountpoints-${nsId}.img`;
}

export function tmpfsImageName(dev: number): string {
  return `tmpfs-dev-${dev}.tar.gz.img`;
}

export function kernelDev(m: MountInfo): number {
  return ((m.devMajor << 20) | m.devMinor) >>> 0;
}

export function mountFlags(m: MountInfo): number {
  let f = 0;
  for (const o of m.mountOptions) f |= OPTION_FLAGS[o] ?? 0;
  if (!(f & (MS.NOATIME | MS.RELATIME))) f |= MS.STRICTATIME;
  return f;
}

// ---------------------------------------------------------------------------------------------
// Dump

export interface DumpedMounts {
  entries: MntEntry[];
  /** Raw images: tmpfs contents. */
  tars: Map<string, Buffer>;
}

/**
 * The mount tree of process `pid`'s mount namespace. `extMnt`: mountpoint → key (runc's
 * ext_mnt); those mounts are left to whoever restores. In a namespace owned by a container's
 * user namespace (`ids`), the ids of the options and of the tmpfs contents are written as that
 * namespace sees them, as CRIU writes them (its restore mounts and untars them from inside).
 */
export function dumpMounts(pid: number, extMnt: ReadonlyMap<string, string>, ownCgroupNs = false, ids?: IdsInside): DumpedMounts {
  const infos = readMountinfo(pid);
  // In a cgroup namespace of its own, the container sees its cgroup as "/": cgroup mounts are
  // saved as it sees them (criu does the same) and mounted anew on restore, in the new namespace.
  const cgroupRoots = ownCgroupNs ? new Map(readCgroupMembership(pid).map((m) => [m.name, m.path])) : undefined;
  const root = infos.find((m) => m.mountPoint === '/');
  if (!root) throw new Error(`process ${pid} has no root mount in its mountinfo`);
  const entries: MntEntry[] = [];
  const tars = new Map<string, Buffer>();
  const firstOfSb = new Map<number, MntEntry>();
  for (const m of infos) {
    const fstype = FSTYPES[m.fstype.split('.')[0]!] ?? 0;
    const superOpts = m.superOptions.split(',').filter((o) => o && o !== 'rw' && o !== 'ro');
    let viewRoot = m.root;
    if (cgroupRoots && (m.fstype === 'cgroup' || m.fstype === 'cgroup2') && !extMnt.has(m.mountPoint)) {
      const ctrls = m.fstype === 'cgroup2' ? '' : superOpts.filter((o) => !o.includes('=') || o.startsWith('name=')).sort().join(',');
      const nsRoot = [...cgroupRoots].find(([name]) => name.split(',').sort().join(',') === ctrls)?.[1];
      if (nsRoot && nsRoot !== '/' && (m.root === nsRoot || m.root.startsWith(`${nsRoot}/`))) viewRoot = m.root.slice(nsRoot.length) || '/';
    }
    if (m.fstype === 'devpts' && !superOpts.includes('newinstance')) superOpts.push('newinstance');
    const e: MntEntry = {
      fstype, mnt_id: m.mntId, root_dev: kernelDev(m), parent_mnt_id: m.parentId, flags: mountFlags(m),
      root: viewRoot, mountpoint: m.mountPoint, source: m.source, options: ids ? optionsSeenBy(superOpts, ids) : superOpts.join(','),
      shared_id: m.shared ?? 0, master_id: m.master ?? 0,
      sb_flags: m.superOptions.split(',').includes('ro') ? MS.RDONLY : 0,
    };
    const ext = extMnt.get(m.mountPoint);
    const seen = firstOfSb.get(e.root_dev);
    if (m === root) {
      // given back by the runtime
    } else if (ext !== undefined) {
      e.ext_key = ext;
    } else if (seen && e.root.startsWith(seen.root === '/' ? '/' : `${seen.root}/`)) {
      // another view of a filesystem mounted earlier in the container
    } else if (!fstype || fstype === FSTYPES.overlay || (e.root !== '/' && !seen)) {
      throw new Error(`mount ${m.mountPoint} (${m.fstype} ${m.source}${e.root !== '/' ? ` ${e.root}` : ''}) comes from outside the container: name it with --ext-mount-map (ext_mnt) to dump it`);
    }
    if (!seen && m !== root && ext === undefined) firstOfSb.set(e.root_dev, e);
    if (m.fstype === 'mqueue' && ext === undefined && fs.readdirSync(`/proc/${pid}/root${m.mountPoint}`).length) {
      throw new Error(`the POSIX message queues in ${m.mountPoint} cannot be dumped yet`);
    }
    if (fstype === TMPFS && ext === undefined && !seen && e.root === '/') {
      tars.set(tmpfsImageName(e.root_dev), tarOfMount(pid, m.mountPoint, ids));
    }
    entries.push(e);
  }
  return { entries, tars };
}

/**
 * gzip'd tar of one tmpfs's contents, read through the task's root (oci-spec/archive.ts): what
 * is mounted below it is left out (its mountpoints stay, as empty directories).
 */
function tarOfMount(pid: number, mountPoint: string, ids?: IdsInside): Buffer {
  try {
    return tmpfsImage(`/proc/${pid}/root${mountPoint}`, ids);
  } catch (e) {
    throw new Error(`tar of the tmpfs at ${mountPoint} failed: ${(e as Error).message}`);
  }
}

/** A filesystem's options, their uid= and gid= as a user namespace sees them. */
function optionsSeenBy(options: readonly string[], ids: IdsInside): string {
  return options.map((o) => {
    const m = /^(uid|gid)=(\d+)$/.exec(o);
    return m ? `${m[1]}=${m[1] === 'uid' ? ids.uid(Number(m[2])) : ids.gid(Number(m[2]))}` : o;
  }).join(',');
}

/** A tmpfs's contents (and its root's owner, mode and times) back from its image onto the new tmpfs at `dir`. */
function untarOntoMount(tar: string, dir: string, mountPoint: string, ids?: MountRestore['ids']): void {
  try {
    applyTmpfsImage(tar, dir, ids && hostOwner(ids, mountPoint));
  } catch (e) {
    throw new Error(`restoring the tmpfs at ${mountPoint}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Restore

export interface MountRestore {
  /** The container's root on the host (criu's --root, runc's criu-root). */
  root: string;
  /** ext_key → host path to bind there. */
  extMnt: ReadonlyMap<string, string>;
  /** Full path of a file of the dump, if it exists. */
  imagePath(name: string): string | undefined;
  /**
   * For a mount namespace owned by a user namespace of the tree, whose ids the options (uid=,
   * gid=) and the tmpfs contents hold (as CRIU writes them, and stasis since): an id of it as
   * the host sees it (the tmpfs contents are written from the host), and the ids its mounts are
   * made by.
   */
  ids?: { uid(inner: number): number | undefined; gid(inner: number): number | undefined; maker: { uid: number; gid: number } };
}

/** The host's owner of a tmpfs image's member, whose owner a user namespace's ids name. */
function hostOwner(ids: NonNullable<MountRestore['ids']>, where: string): (uid: number, gid: number) => { uid: number; gid: number } {
  return (uid, gid) => {
    const u = ids.uid(uid);
    const g = ids.gid(gid);
    if (u === undefined || g === undefined) throw new Error(`the tmpfs at ${where}: an owner ${uid}:${gid} its user namespace does not map`);
    return { uid: u, gid: g };
  };
}

/**
 * Mounts in an order they can be made in: each after its parent, and a view of part of a
 * filesystem after the mount of its whole (the image's order is criu's, children first).
 */
function mountOrder(entries: readonly MntEntry[]): MntEntry[] {
  const byId = new Map(entries.map((e) => [e.mnt_id, e]));
  const done = new Set<number>();
  const pending = [...entries].sort((a, b) => a.mnt_id - b.mnt_id);
  const whole = (e: MntEntry) => entries.find((o) => o !== e && o.root_dev === e.root_dev && o.root === '/' && o.ext_key === undefined);
  const out: MntEntry[] = [];
  while (pending.length) {
    const i = pending.findIndex((e) => (!byId.has(e.parent_mnt_id) || done.has(e.parent_mnt_id))
      && (e.ext_key !== undefined || e.root === '/' || !whole(e) || done.has(whole(e)!.mnt_id)));
    const [e] = pending.splice(i < 0 ? 0 : i, 1);
    done.add(e!.mnt_id);
    out.push(e!);
  }
  return out;
}

/** A bind mount made once the tree's files exist (a pts the restore creates: /dev/console). */
export interface LaterMount { source: string; target: string; flags: number }

/** NUL-terminated strings in the task's scratch area; their addresses there. */
export function cStrings(inj: Injector, ...list: string[]): bigint[] {
  const bufs = list.map((s) => Buffer.from(`${s}\0`));
  const base = inj.writeScratch(Buffer.concat(bufs));
  let off = 0n;
  return bufs.map((b) => {
    const at = base + off;
    off += BigInt(b.length);
    return at;
  });
}

/** mount(2) injected into the task; null passes NULL. A failure names the mount being restored. */
export function mountIn(inj: Injector, what: string, src: string | null, target: string, fstype: string | null,
  flags: number, data: string | null): void {
  const [s, t, f, d] = cStrings(inj, src ?? '', target, fstype ?? '', data ?? '');
  const ret = inj.call(SYS.mount, src === null ? 0 : s!, t!, fstype === null ? 0 : f!, flags, data === null ? 0 : d!);
  if (ret < 0n) throw new Error(`restoring mount ${what}: mount(${src ?? 'NULL'}, ${target}, ${fstype ?? 'NULL'}, 0x${flags.toString(16)}) failed with errno ${-ret}`);
}

/** Check what a restore needs before any task exists. */
export function checkMounts(entries: readonly MntEntry[], r: MountRestore): void {
  if (!fs.existsSync(r.root)) throw new Error(`root ${r.root}: no such directory`);
  for (const e of entries) {
    if (e.ext_key !== undefined && !r.extMnt.has(e.ext_key)) {
      throw new Error(`mount ${e.mountpoint} is external (${e.ext_key}): give its host path with --ext-mount-map ${e.ext_key}:PATH (ext_mnt)`);
    }
    if (e.ext_key !== undefined && !fs.existsSync(r.extMnt.get(e.ext_key)!)) {
      throw new Error(`mount ${e.mountpoint} is external (${e.ext_key}): its host path ${r.extMnt.get(e.ext_key)} does not exist`);
    }
    if (e.mountpoint !== '/' && e.ext_key === undefined && !FSNAMES.has(e.fstype) && !entries.some((o) => o !== e && o.root_dev === e.root_dev)) {
      throw new Error(`mount ${e.mountpoint}: filesystem type ${e.fstype} cannot be restored`);
    }
  }
}

/**
 * Build the mount tree in the task's (new) mount namespace and pivot into it. Views of a
 * devpts (a terminal bound on /dev/console) need the terminal, which the files' restore makes:
 * they are returned, for finishMounts() then.
 */
export function restoreMounts(inj: Injector, hostPid: number, entries: readonly MntEntry[], r: MountRestore,
  giveFd: (fd: number) => number): LaterMount[] {
  const root = path.resolve(r.root);
  const str = (s: string) => cStrings(inj, s)[0]!;
  const mount = (what: string, src: string | null, target: string, fstype: string | null, flags: number, data: string | null) =>
    mountIn(inj, what, src, target, fstype, flags, data);
  // The task looks up no host path itself: in a user namespace of its own it may not search the
  // directories above the root or above an external mount's source (a runtime's state directory
  // is root's alone). stasis opens them through the task's root (/proc/PID/root, in the task's
  // mount namespace) and hands it the descriptor, which the task names /proc/self/fd/N.
  // (an error names the host path, not the descriptor)
  const viaFd = (what: string, hostPath: string, flags: number, use: (p: string) => void) => {
    let own: number;
    try {
      own = fs.openSync(`/proc/${hostPid}/root${hostPath}`, O_PATH | O_CLOEXEC | flags);
    } catch (e) {
      throw new Error(`restoring mount ${what}: ${hostPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let n: number;
    try {
      n = giveFd(own);
    } finally {
      fs.closeSync(own);
    }
    const p = `/proc/self/fd/${n}`;
    try {
      use(p);
    } catch (e) {
      throw new Error((e as Error).message.replaceAll(p, hostPath));
    } finally {
      inj.call(SYS.close, n);
    }
  };
  const ensureDir = (target: string) => {
    // Create the mountpoint (and its parents) if missing; existing entries are left as they are.
    let p = '.';
    for (const part of target.split('/').filter((x) => x && x !== '.')) {
      p += `/${part}`;
      inj.call(SYS.mkdirat, AT_FDCWD, str(p), 0o755);
    }
  };
  const ensureFile = (file: string) => {
    // A file to bind a terminal on (it exists when the tmpfs came back from its tar).
    const fd = inj.call(SYS.openat, AT_FDCWD, str(file), 0o100 /* O_CREAT */ | 0o2000000 /* O_CLOEXEC */, 0o644);
    if (fd >= 0n) inj.call(SYS.close, fd);
  };
  // Mounts are made under the task's working directory, the root (bound onto itself first); a
  // mountpoint as stasis reaches it is under /proc/PID/root then.
  const target = (e: MntEntry) => `.${e.mountpoint === '/' ? '' : e.mountpoint}`;
  const fromHost = (e: MntEntry) => `/proc/${hostPid}/root${root}${e.mountpoint === '/' ? '' : e.mountpoint}`;

  mount('/', null, '/', null, MS.REC | MS.SLAVE, null);
  viaFd('/', root, O_DIRECTORY, (p) => mount('/', p, p, null, MS.BIND | MS.REC, null));
  viaFd('/', root, O_DIRECTORY, (p) => inj.callChecked(SYS.chdir, str(p)));
  // Propagation is set on each mount as soon as it exists, so that a bind from a member of a
  // peer group (shared_id) joins it, or becomes a slave of it (master_id), as it should. The
  // root (after pivot_root) and the external binds always get theirs (their sources are the
  // host's: a copy of a shared host mount is a slave now); the container's own only when the
  // image has any.
  const tagged = entries.some((e) => e.shared_id || e.master_id);
  const made: MntEntry[] = [];
  const binds: MntEntry[] = [];
  const later: LaterMount[] = [];
  const early = new Set<MntEntry>();
  for (const e of mountOrder(entries)) {
    if (e.mountpoint === '/') continue;
    const t = target(e);
    if (e.ext_key !== undefined) {
      viaFd(e.mountpoint, r.extMnt.get(e.ext_key)!, 0, (src) => mount(e.mountpoint, src, t, null, MS.BIND | MS.REC, null));
      setPropagation(inj, e, t, false);
      binds.push(e);
      continue;
    }
    const covers = (o: MntEntry) => o.root_dev === e.root_dev && (o.root === '/' || e.root === o.root || e.root.startsWith(`${o.root}/`));
    const mine = [...made, ...binds].filter((o) => covers(o) && o.ext_key === undefined);
    const group = (e.shared_id ? mine.find((o) => o.shared_id === e.shared_id) : undefined)
      ?? (e.master_id ? mine.find((o) => o.shared_id === e.master_id) : undefined);
    const from = group ?? made.find(covers);
    if (from && from.fstype === DEVPTS && e.root !== '/') {
      ensureFile(t);
      later.push({ source: path.join(from.mountpoint, e.root), target: e.mountpoint, flags: e.flags & PER_MOUNT });
      continue;
    }
    if (from) {
      const rel = from.root === '/' ? e.root : e.root.slice(from.root.length);
      mount(e.mountpoint, path.join(target(from), rel), t, null, MS.BIND, null);
      if (tagged) setPropagation(inj, e, t, group !== undefined && group.shared_id === e.shared_id);
      binds.push(e);
      continue;
    }
    ensureDir(t);
    const fsname = FSNAMES.get(e.fstype)!;
    const options = e.options;
    const data = e.fstype === DEVPTS && !options.includes('newinstance') ? `${options},newinstance` : options;
    // In a user namespace's own mount namespace, a read-only superblock other than a tmpfs (to
    // be filled) is mounted so at once: its remount is refused where a copy of the host's makes
    // its flags locked (sysfs, proc); what is mounted below it exists in it already.
    const roNow = r.ids !== undefined && ((e.sb_flags ?? 0) & MS.RDONLY) !== 0 && e.fstype !== TMPFS;
    if (roNow) early.add(e);
    mount(e.mountpoint, e.source, t, fsname, (e.flags & PER_MOUNT & ~MS.RDONLY) | (roNow ? MS.RDONLY : 0), data);
    if (tagged) setPropagation(inj, e, t, false);
    made.push(e);
    const tar = e.fstype === TMPFS ? r.imagePath(tmpfsImageName(e.root_dev)) : undefined;
    // (on a filesystem of a user namespace's own, made by ids it maps)
    const maker = r.ids?.maker;
    if (tar) maker ? withFsIds(maker.uid, maker.gid, () => untarOntoMount(tar, fromHost(e), e.mountpoint, r.ids)) : untarOntoMount(tar, fromHost(e), e.mountpoint);
  }
  // Read-only, now that everything below exists: the superblock when it was (a filesystem of
  // the container's own), the mount alone otherwise (a cgroup hierarchy is the host's too).
  for (const e of made) {
    // (a remount of the superblock sets the mount's flags too: kept, some may be locked)
    if (((e.sb_flags ?? 0) & MS.RDONLY) && !early.has(e)) mount(e.mountpoint, null, target(e), null, MS.REMOUNT | MS.RDONLY | (e.flags & PER_MOUNT), e.options);
    if (e.flags & MS.RDONLY) mount(e.mountpoint, null, target(e), null, MS.REMOUNT | MS.BIND | (e.flags & PER_MOUNT), null);
  }
  for (const e of binds) mount(e.mountpoint, null, target(e), null, MS.REMOUNT | MS.BIND | (e.flags & PER_MOUNT), null);

  // Into the new root (the working directory); the old one (the host's tree, copied) is detached.
  const dot = str('.');
  inj.callChecked(SYS.pivot_root, dot, dot);
  inj.callChecked(SYS.umount2, dot, MNT_DETACH);
  inj.callChecked(SYS.chdir, str('/'));
  // The root's own propagation once it is the root (pivot_root refuses a shared one).
  const rootEntry = entries.find((e) => e.mountpoint === '/');
  if (rootEntry) setPropagation(inj, rootEntry, '/', false);
  return later;
}

/**
 * A mount's propagation as the image has it: master_id → a slave (of the group it was bound
 * from: a peer group inside the container, or the host's that its source receives from),
 * shared_id → shared (already, as a peer, when it was bound from a member of its group),
 * neither → private.
 */
export function setPropagation(inj: Injector, e: MntEntry, target: string, joinedPeer: boolean): void {
  if (joinedPeer) return;
  if (e.master_id) mountIn(inj, e.mountpoint, null, target, null, MS.SLAVE, null);
  if (e.shared_id) mountIn(inj, e.mountpoint, null, target, null, MS.SHARED, null);
  if (!e.shared_id && !e.master_id) mountIn(inj, e.mountpoint, null, target, null, MS.PRIVATE, null);
}

/** The mounts restoreMounts() left for later, made inside the (pivoted) container. */
export function finishMounts(inj: Injector, later: readonly LaterMount[]): void {
  for (const m of later) {
    mountIn(inj, m.target, m.source, m.target, null, MS.BIND, null);
    mountIn(inj, m.target, null, m.target, null, MS.REMOUNT | MS.BIND | m.flags, null);
  }
}

// ---------------------------------------------------------------------------------------------
// The tmpfs mounts of mount namespaces nested in the tree (nested.ts), saved as the tree's own.

/** The image of the tmpfs at `mountPoint` in task `pid`'s mount namespace. */
export function tmpfsContents(pid: number, mountPoint: string): Buffer {
  return tarOfMount(pid, mountPoint);
}

/** A tmpfs's contents back from its image `tar` onto the new tmpfs at `dir` (as stasis reaches it). */
export function unpackTmpfs(tar: string, dir: string, mountPoint: string): void {
  untarOntoMount(tar, dir, mountPoint);
}
