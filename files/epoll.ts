// epoll: an instance and the files it watches (fdinfo `tfd:` lines, fs/eventpoll.c): each
// target's descriptor number, registered events and data. A target is named by its fd number,
// so it must still be open at that number when dumped (criu checks the same with
// kcmp(KCMP_EPOLL_TFD)); restore adds the targets in finish(), once every descriptor exists.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import { fdKind } from '../sys/proc/index.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import { F_SETFL, O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_EVENTPOLL = 7;
const EPOLL_CTL_ADD = 1;

export const epollFile: FileKind = {
  type: FD_TYPE_EVENTPOLL,
  field: 'epfd',
  claims: ({ link }) => fdKind(link) === 'eventpoll',
  dump(f: OpenFd): DumpedFile {
    const tfd = f.fdinfo.epoll.map((t) => {
      let ino: bigint | undefined;
      try {
        ino = fs.statSync(`/proc/${f.pid}/fd/${t.tfd}`, { bigint: true }).ino;
      } catch {
        // closed: reported below
      }
      if (ino !== BigInt(t.ino)) {
        throw new Error(`epoll fd ${f.fd} of task ${f.pid} watches a file that is no longer open at fd ${t.tfd}, which stasis cannot dump`);
      }
      return { id: 0, tfd: t.tfd, events: t.events, data: t.data, dev: t.sdev, inode: BigInt(t.ino), pos: t.pos };
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
    for (const t of (e.tfd ?? []) as Record<string, any>[]) {
      const ev = Buffer.alloc(12); // struct epoll_event is packed on x86_64
      ev.writeUInt32LE(Number(t.events) >>> 0, 0);
      ev.writeBigUInt64LE(BigInt(t.data), 4);
      const r = inj.call(SYS.epoll_ctl, fd, EPOLL_CTL_ADD, Number(t.tfd), inj.writeScratch(ev, 0));
      if (r < 0n) throw new Error(`cannot watch fd ${t.tfd} with epoll fd ${fd} in task ${task.pid} again: ${errnoName(Number(-r))}`);
    }
  },
};
