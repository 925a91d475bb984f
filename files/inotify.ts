// inotify: an instance and its watches (fdinfo `inotify wd:` lines, fs/notify/fdinfo.c): watch
// descriptor, inode, device, event mask and a file handle of the watched inode. As criu does,
// the handle is turned into a path at dump time (open_by_handle_at on a descriptor of the
// mount that has the device) and kept in fh_entry.path; restore adds each watch on that path
// (or on what the handle opens to then) with the original wd. The kernel hands out wds
// cyclically (idr_alloc_cyclic), so a watch that gets a lower wd than it had is removed and
// added again until the number comes up — in wd order, as criu's restore_one_inotify. The
// IN_IGNORED events those removals queue are read away before the task sees the descriptor.
// Events queued at dump time are not kept (criu does not keep them either).
// In a tree with mount namespaces nested in it, a watch may be on a mount only another of them
// has (reached through a task there): the handle is opened through that namespace's mounts too,
// fh_entry.mnt_id names the mount, and restore watches the path through /proc/PID/root of a
// task of that namespace (the path alone: a tmpfs made again has new inode numbers).
// A watch on a removed file that is still open (so its handle opens to no path) is kept without
// a path, as criu keeps it: restore finds the ghost of the same inode (reg.ts), opens the
// description that holds it (handing it to the task's table) and watches through that.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import { addressOf, nativeBuffer, rawSyscall } from '../sys/native.js';
import { fdKind, kernelDev, readMountinfo } from '../sys/proc/index.js';
import type { DumpFilesContext, DumpedFile, FileKind, MountRoot, OpenFd, RestoreFilesTask } from './kind.js';
import { FD_TYPE_REG, REMAP_FPATH_IMAGE, REMAP_GHOST, ghostImageName, regFile, zeroFown } from './reg.js';
import { F_SETFL, O_CLOEXEC, O_NONBLOCK, O_PATH } from '../sys/fcntl.js';

export const FD_TYPE_INOTIFY = 8;
const IN_DONT_FOLLOW = 0x02000000;
/** fh_entry_sizes.min_entries: criu keeps handles as 16 u64 words (MAX_HANDLE_SZ bytes). */
const FH_WORDS = 16;
const EAGAIN = 11;

/** fh_entry words of a handle. */
export function handleWords(handle: Buffer): bigint[] {
  const b = Buffer.alloc(FH_WORDS * 8);
  handle.copy(b, 0, 0, Math.min(handle.length, b.length));
  return Array.from({ length: FH_WORDS }, (_, i) => b.readBigUInt64LE(i * 8));
}

function handleBytes(words: readonly (bigint | number)[], bytes: number): Buffer {
  const b = Buffer.alloc(Math.max(words.length * 8, bytes));
  words.forEach((w, i) => b.writeBigUInt64LE(BigInt(w), i * 8));
  return b.subarray(0, bytes);
}

/**
 * The path (in stasis's view) of the inode a file handle names on device `sdev` (kernel dev_t),
 * through open_by_handle_at on each mount of that device that task `pid` sees; undefined when
 * no mount opens it.
 */
export function pathOfHandle(pid: number, sdev: number, type: number, handle: Buffer,
  seen: { removed?: boolean; mntId?: number } = {}): string | undefined {
  const { major, minor } = kernelDev(sdev);
  const fh = nativeBuffer(8 + handle.length);
  fh.writeUInt32LE(handle.length, 0);
  fh.writeInt32LE(type, 4);
  handle.copy(fh, 8);
  for (const m of readMountinfo(pid).filter((x) => x.devMajor === major && x.devMinor === minor)) {
    let mountFd: number;
    try {
      mountFd = fs.openSync(`/proc/${pid}/root${m.mountPoint}`, fs.constants.O_RDONLY); // not O_PATH: the kernel refuses those here
    } catch {
      continue;
    }
    try {
      const r = rawSyscall(SYS.open_by_handle_at, mountFd, addressOf(fh), O_PATH | O_CLOEXEC);
      if (r < 0n) continue;
      try {
        const p = fs.readlinkSync(`/proc/self/fd/${r}`);
        seen.mntId = m.mntId;
        if (p.startsWith('/') && !p.endsWith(' (deleted)')) return p;
        if (p.endsWith(' (deleted)')) seen.removed = true;
      } finally {
        fs.closeSync(Number(r));
      }
    } finally {
      fs.closeSync(mountFd);
    }
  }
  return undefined;
}

/**
 * pathOfHandle through the task's own mounts, then those of the tree's other mount namespaces
 * (`peers`, a process in each): a watch may be on a mount only a nested namespace has, reached
 * through a descriptor of a task there. `seen.mntId` says which mount opened it; the path is
 * as that mount's namespace sees it.
 */
export function pathOfHandleInTree(pid: number, peers: readonly number[], sdev: number, type: number, handle: Buffer,
  seen: { removed?: boolean; mntId?: number }): string | undefined {
  for (const p of [pid, ...peers.filter((x) => x !== pid)]) {
    const path = pathOfHandle(p, sdev, type, handle, seen);
    if (path !== undefined || seen.removed) return path;
  }
  return undefined;
}

export const inotifyFile: FileKind = {
  type: FD_TYPE_INOTIFY,
  field: 'ify',
  claims: ({ link }) => fdKind(link) === 'inotify',
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const wd = f.fdinfo.inotify.map((w) => {
      if (!w.fhandle) throw new Error(`inotify fd ${f.fd} of task ${f.pid}: watch ${w.wd} has no file handle (inode ${w.ino}), which stasis cannot dump`);
      const seen: { removed?: boolean; mntId?: number } = {};
      const path = pathOfHandleInTree(f.pid, ctx.mountNsPeers ?? [], w.sdev, w.fhandle.type, w.fhandle.handle, seen);
      if (path === undefined && !seen.removed) {
        throw new Error(`inotify fd ${f.fd} of task ${f.pid}: the file watch ${w.wd} is on (inode ${w.ino}) cannot be opened by its handle`);
      }
      return {
        id: 0, i_ino: BigInt(w.ino), mask: w.mask >>> 0, ignored_mask: w.ignoredMask >>> 0, s_dev: w.sdev, wd: w.wd,
        f_handle: {
          bytes: w.fhandle.bytes, type: w.fhandle.type, handle: handleWords(w.fhandle.handle), ...(path !== undefined ? { path } : {}),
          ...(seen.mntId !== undefined && ctx.mountNsPeers?.length ? { mnt_id: seen.mntId } : {}),
        },
      };
    });
    return {
      type: FD_TYPE_INOTIFY, field: 'ify',
      entry: { flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), wd },
      added: (id) => wd.forEach((w) => { w.id = id; }),
    };
  },
  inheritKey: (e) => `inotify:${Number(e.id)}`,
  open(e, task: RestoreFilesTask): number {
    const inj = task.inj;
    const fd = Number(inj.callChecked(SYS.inotify_init1, O_NONBLOCK));
    const watches = [...((e.wd ?? []) as Record<string, any>[])].sort((a, b) => Number(a.wd) - Number(b.wd));
    for (const w of watches) {
      const want = Number(w.wd);
      const removed = w.f_handle?.path ? undefined : removedFileFd(task, w);
      const via = w.f_handle?.path && w.f_handle.mnt_id !== undefined ? task.mountRoot?.(Number(w.f_handle.mnt_id)) : undefined;
      const path = removed !== undefined ? `/proc/self/fd/${removed}`
        : via ? watchedPathVia(via, w.f_handle as Record<string, any>, `inotify watch ${w.wd}`)
          : watchedPath(task.pid, BigInt(w.i_ino), Number(w.s_dev), w.f_handle as Record<string, any>, `inotify watch ${w.wd}`);
      const at = inj.writeScratch(Buffer.from(`${path}\0`), 0);
      // Through /proc/self/fd the link must be followed; any other path is the watched file's own.
      const mask = removed !== undefined ? Number(w.mask) & ~IN_DONT_FOLLOW : Number(w.mask) | IN_DONT_FOLLOW;
      for (;;) {
        const r = inj.call(SYS.inotify_add_watch, fd, at, mask >>> 0);
        if (r < 0n) throw new Error(`cannot watch ${path} with inotify in task ${task.pid} again: ${errnoName(Number(-r))}`);
        if (Number(r) === want) break;
        if (Number(r) > want) throw new Error(`inotify watch on ${path} came back as wd ${r}, not ${want}: the watches are out of order`);
        inj.callChecked(SYS.inotify_rm_watch, fd, r);
      }
    }
    // Read away the IN_IGNORED events of the removals above.
    const buf = inj.scratch(4096);
    let r: bigint;
    do r = inj.call(SYS.read, fd, buf, 4096); while (r > 0n);
    if (r !== -BigInt(EAGAIN)) throw new Error(`inotify fd in task ${task.pid}: reading its queue gave ${errnoName(Number(-r))}`);
    if (!(Number(e.flags) & O_NONBLOCK)) inj.callChecked(SYS.fcntl, fd, F_SETFL, 0);
    return fd;
  },
};

/**
 * The descriptor, in the task, of the removed file watch `w` is on, when the dump kept that file
 * as a ghost (same device and inode): the description holding it is opened now (if the table
 * has not yet) and handed to the table for its turn.
 */
function removedFileFd(task: RestoreFilesTask, w: Record<string, any>): number | undefined {
  const remaps = task.imageEntries(REMAP_FPATH_IMAGE).filter((r) => Number(r.message.remap_type ?? 0) === REMAP_GHOST);
  const holder = remaps.find((r) => {
    const [g] = task.imageEntries(ghostImageName(Number(r.message.remap_id)));
    return g && Number(g.message.dev) === Number(w.s_dev) && BigInt(g.message.ino ?? -1) === BigInt(w.i_ino)
      && task.file(Number(r.message.orig_id))?.type === FD_TYPE_REG;
  });
  if (!holder) return undefined;
  const id = Number(holder.message.orig_id);
  const have = task.fdOf(id);
  if (have !== undefined) return have;
  const fd = regFile.open(task.file(id)!.reg as Record<string, unknown>, task);
  task.provide(id, fd);
  return task.fdOf(id);
}

/**
 * The path to watch when the watched file is on a mount of another mount namespace of the tree
 * (reached through a task there, `via`): its dumped path in that namespace. Its inode number is
 * not checked: a filesystem made again (a tmpfs of a nested namespace) numbers its inodes anew.
 */
export function watchedPathVia(via: MountRoot, fh: Record<string, any>, what: string): string {
  const path = String(fh.path);
  if (!fs.existsSync(`${via.stasis}${path}`)) throw new Error(`the file ${what} was on (${path}, in another mount namespace of the tree) no longer exists`);
  return `${via.task}${path}`;
}

/**
 * The path to watch (inotify's watch, fanotify's inode mark): the dumped one (fh_entry.path) if
 * it still names inode `ino`, else what the handle opens to. `what` names the watch in errors.
 */
export function watchedPath(pid: number, ino: bigint, sdev: number, fh: Record<string, any>, what: string): string {
  if (fh.path) {
    try {
      if (fs.lstatSync(String(fh.path), { bigint: true }).ino === ino) return String(fh.path);
    } catch {
      // gone or moved: try the handle
    }
  }
  const path = pathOfHandle(pid, sdev, Number(fh.type), handleBytes(fh.handle ?? [], Number(fh.bytes)));
  if (path === undefined) throw new Error(`the file ${what} was on (inode ${ino}) no longer exists`);
  return path;
}
