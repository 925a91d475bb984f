// epoll: an instance and the files it watches (fdinfo `tfd:` lines, fs/eventpoll.c): each
// target's descriptor number, registered events and data, and the target's dev, inode and
// position. A watch is keyed by the file and the number it was added through, and lives as
// long as the file does: the number may since have been closed, or now name another file.
//
// Dump: a target still open at its number is the usual case. Otherwise the task's descriptors
// with the target's inode are compared with the watched file by kcmp(KCMP_EPOLL_TFD), and the
// watch is written as criu writes it, naming the fd that holds the file. Where the set already
// watches the file through that fd, the old number stays, and the target is known by inode and
// position only: it must then be the first descriptor of the task, in fd order, with those
// (a description's inode as dumped is its pipe's or socket's in the image, else its file's).
// Restore adds the targets in finish(), once every descriptor exists; a target whose number is
// gone or taken is lent that number for the epoll_ctl() only, and the number given back.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import { addressOf, nativeBuffer, rawSyscall } from '../sys/native.js';
import { fdKind, listFds, readFdinfo, type EpollTarget } from '../sys/proc/index.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { kernelDevOf, zeroFown } from './reg.js';
import { F_DUPFD_CLOEXEC, F_GETFD, F_SETFL, O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_EVENTPOLL = 7;
const EPOLL_CTL_ADD = 1;
const KCMP_FILE = 0;
const KCMP_EPOLL_TFD = 7;
const FD_CLOEXEC = 1;

/** Inode of fd `fd` of `pid` (and its kernel dev); undefined when not open. */
function fileKey(pid: number, fd: number): { dev: number; ino: bigint } | undefined {
  try {
    const st = fs.statSync(`/proc/${pid}/fd/${fd}`, { bigint: true });
    return { dev: kernelDevOf(st.dev), ino: st.ino };
  } catch {
    return undefined;
  }
}

/** The task's descriptors, in fd order, whose file has the target's inode and position. */
function candidates(pid: number, ino: bigint, pos: bigint): number[] {
  return listFds(pid).filter((fd) => fileKey(pid, fd)?.ino === ino && readFdinfo(pid, fd).pos === pos);
}

/** Which descriptor of the task holds the file the epoll `epfd` watches as its `toff`-th `tfd`. */
function heldTarget(pid: number, epfd: number, t: EpollTarget, toff: number): number | undefined {
  const slot = nativeBuffer(12); // struct kcmp_epoll_slot { efd, tfd, toff }
  slot.writeUInt32LE(epfd, 0);
  slot.writeUInt32LE(t.tfd, 4);
  slot.writeUInt32LE(toff, 8);
  return candidates(pid, BigInt(t.ino), t.pos)
    .find((fd) => rawSyscall(SYS.kcmp, pid, pid, KCMP_EPOLL_TFD, fd, addressOf(slot)) === 0n);
}

/**
 * The inode a restored description had when dumped: the one its entry names (a pipe's, a
 * socket's), else its file's now (reopened by path, or an anonymous inode, the same as then).
 */
function dumpedInode(task: RestoreFilesTask, id: number, fd: number): bigint | undefined {
  const f = task.file(id);
  const e = (f && (f.pipe ?? f.usk ?? f.isk)) as Record<string, unknown> | undefined;
  const named = e?.pipe_id ?? e?.ino;
  return named !== undefined ? BigInt(named as number) : fileKey(task.pid, fd)?.ino;
}

/** The restored task's descriptions as (lowest fd, id), in fd order. */
function placedFiles(task: RestoreFilesTask): { fd: number; id: number }[] {
  const out: { fd: number; id: number }[] = [];
  for (const f of task.allFiles()) {
    const fd = task.fdOf(f.id);
    if (fd !== undefined) out.push({ fd, id: f.id });
  }
  return out.sort((a, b) => a.fd - b.fd);
}

export const epollFile: FileKind = {
  type: FD_TYPE_EVENTPOLL,
  field: 'epfd',
  claims: ({ link }) => fdKind(link) === 'eventpoll',
  dump(f: OpenFd): DumpedFile {
    const seen = new Map<number, number>();
    const tfd = f.fdinfo.epoll.map((t) => {
      const toff = seen.get(t.tfd) ?? 0;
      seen.set(t.tfd, toff + 1);
      const open = fileKey(f.pid, t.tfd);
      let tfdNow = t.tfd;
      if (open?.ino !== BigInt(t.ino) || open.dev !== t.sdev) {
        const what = `epoll fd ${f.fd} of task ${f.pid} watches a file through fd ${t.tfd}, since closed`;
        const held = heldTarget(f.pid, f.fd, t, toff);
        if (held === undefined) throw new Error(`${what}, that no descriptor of the task holds; stasis cannot dump it`);
        // As criu writes it: the watch names the fd that holds the file (criu's restore adds it
        // through that number), unless the set watches the file through that number already.
        if (!f.fdinfo.epoll.some((o) => o.tfd === held && o.ino === t.ino && o.sdev === t.sdev)) {
          tfdNow = held;
        } else if (candidates(f.pid, BigInt(t.ino), t.pos)[0] !== held) {
          throw new Error(`${what}, held at fd ${held}, which another fd with the same inode and position precedes; a restore could not tell them apart`);
        }
      }
      return { id: 0, tfd: tfdNow, events: t.events, data: t.data, dev: t.sdev, inode: BigInt(t.ino), pos: t.pos };
    });
    return {
      type: FD_TYPE_EVENTPOLL, field: 'epfd',
      entry: { flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), tfd },
      added: (id) => tfd.forEach((t) => { t.id = id; }),
    };
  },
  inheritKey: (e) => `eventpoll:${Number(e.id)}`,
  open(e, task: RestoreFilesTask): number {
    const fd = Number(task.inj.callChecked(SYS.epoll_create1, 0));
    if (Number(e.flags) & O_NONBLOCK) task.inj.callChecked(SYS.fcntl, fd, F_SETFL, O_NONBLOCK);
    return fd;
  },
  finish(e, fd, task: RestoreFilesTask): void {
    const inj = task.inj;
    let placed: { fd: number; id: number }[] | undefined;
    let byFd: Map<number, { fd: number; id: number }> | undefined;
    for (const t of (e.tfd ?? []) as Record<string, any>[]) {
      const tfd = Number(t.tfd);
      const ev = Buffer.alloc(12); // struct epoll_event is packed on x86_64
      ev.writeUInt32LE(Number(t.events) >>> 0, 0);
      ev.writeBigUInt64LE(BigInt(t.data), 4);
      const add = () => {
        const r = inj.call(SYS.epoll_ctl, fd, EPOLL_CTL_ADD, tfd, inj.writeScratch(ev, 0));
        if (r < 0n) throw new Error(`cannot watch fd ${tfd} with epoll fd ${fd} in task ${task.pid} again: ${errnoName(Number(-r))}`);
      };
      if (t.inode === undefined) {
        add();
        continue;
      }
      // The target as the dump saw it: its inode, and its position (restored by now).
      const ino = BigInt(t.inode);
      const pos = BigInt(t.pos ?? 0);
      placed ??= placedFiles(task);
      byFd ??= new Map(placed.map((p) => [p.fd, p]));
      const isTarget = (fdNow: number): boolean => {
        const at = byFd!.get(fdNow) ?? placed!.find((p) => rawSyscall(SYS.kcmp, task.pid, task.pid, KCMP_FILE, p.fd, fdNow) === 0n);
        return at !== undefined && dumpedInode(task, at.id, at.fd) === ino && readFdinfo(task.pid, fdNow).pos === pos;
      };
      const open = fileKey(task.pid, tfd) !== undefined;
      if (open && isTarget(tfd)) {
        add();
        continue;
      }
      // Watched through a number since closed or reused: the target is lent that number.
      const src = placed.find((p) => dumpedInode(task, p.id, p.fd) === ino && readFdinfo(task.pid, p.fd).pos === pos)?.fd;
      if (src === undefined) throw new Error(`epoll fd ${fd} in task ${task.pid}: no descriptor holds the file watched through fd ${tfd} (inode ${t.inode})`);
      const parked = open && Number(inj.callChecked(SYS.fcntl, tfd, F_DUPFD_CLOEXEC, tfd + 1));
      const cloexec = open && (Number(inj.callChecked(SYS.fcntl, tfd, F_GETFD)) & FD_CLOEXEC);
      inj.callChecked(SYS.dup2, src, tfd);
      try {
        add();
      } finally {
        if (parked) {
          inj.callChecked(SYS.dup3, parked, tfd, cloexec ? O_CLOEXEC : 0);
          inj.callChecked(SYS.close, parked);
        } else {
          inj.callChecked(SYS.close, tfd);
        }
      }
    }
  },
};
