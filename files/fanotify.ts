// fanotify: a notification group (fanotify_init's flags and the flags of the event files it
// opens) and its marks, from fdinfo's `fanotify` lines (fs/notify/fdinfo.c), as CRIU's
// fsnotify.c keeps them: an inode mark by inode, device and file handle (turned into a path at
// dump time, as for inotify), a mount mark by mount id and the mount's path in the task's view;
// each with its mark flags, event mask and ignored mask. Filesystem (superblock) marks are
// refused, as criu does. Events queued at dump time are not kept (nor answers pending to
// permission events).
//
// Restore: fanotify_init and fanotify_mark, injected into the task (its mount namespace names
// the paths; a mark on a mount of another mount namespace of the tree, one nested in it, is
// made through /proc/PID/root of a task there).

import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import { fdKind, readMountinfo } from '../sys/proc/index.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { handleWords, pathOfHandleInTree, watchedPath, watchedPathVia } from './inotify.js';
import { zeroFown } from './reg.js';
import { O_CLOEXEC } from '../sys/fcntl.js';

export const FD_TYPE_FANOTIFY = 12;
const FAN_CLOEXEC = 0x1;
const FAN_MARK = { ADD: 0x1, DONT_FOLLOW: 0x4, MOUNT: 0x10, IGNORED_MASK: 0x20, IGNORE: 0x400 } as const;
/** mark_type */
const MARK_INODE = 1;
const MARK_MOUNT = 2;
const AT_FDCWD = -100;

function dumpFanotify(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
  const info = f.fdinfo.fanotify ?? { flags: 0, eventFlags: 0, marks: [] };
  const where = `fanotify fd ${f.fd} of task ${f.pid}`;
  const mark = info.marks.map((m) => {
    const common = { id: 0, mflags: m.mflags >>> 0, mask: m.mask >>> 0, ignored_mask: m.ignoredMask >>> 0 };
    if (m.type === 'inode') {
      if (!m.fhandle) throw new Error(`${where}: the mark on inode ${m.ino} has no file handle, which stasis cannot dump`);
      // (on a mount of the task's namespace, or of another of the tree's: inotify.ts)
      const seen: { mntId?: number } = {};
      const path = pathOfHandleInTree(f.pid, ctx.mountNsPeers ?? [], m.sdev!, m.fhandle.type, m.fhandle.handle, seen);
      if (path === undefined) throw new Error(`${where}: the file marked (inode ${m.ino}) cannot be opened by its handle`);
      return {
        ...common, type: MARK_INODE, s_dev: m.sdev!,
        ie: {
          i_ino: BigInt(m.ino!),
          f_handle: {
            bytes: m.fhandle.bytes, type: m.fhandle.type, handle: handleWords(m.fhandle.handle), path,
            ...(seen.mntId !== undefined && ctx.mountNsPeers?.length ? { mnt_id: seen.mntId } : {}),
          },
        },
      };
    }
    if (m.type === 'mount') {
      const mount = [f.pid, ...(ctx.mountNsPeers ?? [])].map((pid) => readMountinfo(pid).find((x) => x.mntId === m.mntId)).find((x) => x);
      if (!mount) throw new Error(`${where}: the marked mount ${m.mntId} is in no mount namespace of the tree`);
      return { ...common, type: MARK_MOUNT, s_dev: 0, me: { mnt_id: m.mntId!, path: mount.mountPoint } };
    }
    throw new Error(`${where} has a filesystem-wide mark (device ${m.sdev}), which stasis cannot dump (nor can criu)`);
  });
  return {
    type: FD_TYPE_FANOTIFY, field: 'ffy',
    entry: { flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), faflags: info.flags, evflags: info.eventFlags, mark },
    added: (id) => mark.forEach((m) => { m.id = id; }),
  };
}

function openFanotify(e: Record<string, any>, task: RestoreFilesTask): number {
  const inj = task.inj;
  const fd = Number(inj.callChecked(SYS.fanotify_init, Number(e.faflags) & ~FAN_CLOEXEC, Number(e.evflags)));
  for (const m of (e.mark ?? []) as Record<string, any>[]) {
    const mount = Number(m.type) === MARK_MOUNT;
    // A mark on a mount of another mount namespace of the tree: through a task there.
    const mntId = mount ? m.me?.mnt_id : m.ie?.f_handle?.path ? m.ie.f_handle.mnt_id : undefined;
    const via = mntId !== undefined ? task.mountRoot?.(Number(mntId)) : undefined;
    // (criu keeps a mount mark by mount id alone: its mountpoint is in the mount images)
    const mountPath = mount ? m.me?.path ?? task.mountPoint?.(Number(m.me?.mnt_id)) : undefined;
    if (mount && mountPath === undefined) throw new Error(`the mount ${m.me?.mnt_id} a fanotify mark is on is in no mount image of the dump`);
    const path = mount ? `${via?.task ?? ''}${mountPath}`
      : via ? watchedPathVia(via, m.ie.f_handle, 'a fanotify mark')
        : watchedPath(task.pid, BigInt(m.ie?.i_ino ?? 0), Number(m.s_dev), m.ie?.f_handle ?? {}, 'a fanotify mark');
    const at = inj.writeScratch(Buffer.from(`${path}\0`), 0);
    const mflags = Number(m.mflags);
    const base = FAN_MARK.ADD | FAN_MARK.DONT_FOLLOW | (mount ? FAN_MARK.MOUNT : 0) | (mflags & ~FAN_MARK.IGNORE);
    const mark = (flags: number, mask: number, label: string) => {
      const r = inj.call(SYS.fanotify_mark, fd, flags, mask >>> 0, AT_FDCWD, at);
      if (r < 0n) throw new Error(`cannot mark ${path} (${label}) with fanotify in task ${task.pid} again: ${errnoName(Number(-r))}`);
    };
    if (Number(m.mask)) mark(base, Number(m.mask), `events 0x${Number(m.mask).toString(16)}`);
    if (Number(m.ignored_mask)) {
      mark(base | (mflags & FAN_MARK.IGNORE ? FAN_MARK.IGNORE : FAN_MARK.IGNORED_MASK), Number(m.ignored_mask),
        `ignored 0x${Number(m.ignored_mask).toString(16)}`);
    }
  }
  return fd;
}

export const fanotifyFile: FileKind = {
  type: FD_TYPE_FANOTIFY,
  field: 'ffy',
  claims: ({ link }) => fdKind(link) === 'fanotify',
  dump: dumpFanotify,
  inheritKey: (e) => `fanotify:${Number(e.id)}`,
  open: openFanotify,
};
