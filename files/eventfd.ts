// eventfd: a 64-bit counter (fs/eventfd.c). fdinfo gives the counter and, since 6.4, whether the
// eventfd counts as a semaphore. eventfd_file_entry has no field for EFD_SEMAPHORE; it is kept
// in bit 0 of `flags`, which an eventfd's file flags never use (they are O_RDWR | O_NONBLOCK).
// Restore: eventfd2(0, flags), then the counter written in (eventfd2 takes only 32 bits).

import { SYS } from '../sys/arch.js';
import { fdKind } from '../sys/proc/index.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import { O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_EVENTFD = 6;
const EFD_SEMAPHORE = 1;

export const eventfdFile: FileKind = {
  type: FD_TYPE_EVENTFD,
  field: 'efd',
  claims: ({ link }) => fdKind(link) === 'eventfd',
  dump(f: OpenFd): DumpedFile {
    const info = f.fdinfo.eventfd;
    if (!info) throw new Error(`fd ${f.fd} of task ${f.pid}: its fdinfo shows no eventfd counter`);
    const flags = (f.fdinfo.flags & ~O_CLOEXEC) | (info.semaphore ? EFD_SEMAPHORE : 0);
    return { type: FD_TYPE_EVENTFD, field: 'efd', entry: { flags, fown: zeroFown(), counter: info.count } };
  },
  inheritKey: (e) => `eventfd:${Number(e.id)}`,
  open(e, task: RestoreFilesTask): number {
    const flags = Number(e.flags);
    const inj = task.inj;
    const fd = Number(inj.callChecked(SYS.eventfd2, 0, (flags & O_NONBLOCK) | (flags & EFD_SEMAPHORE)));
    const counter = BigInt(e.counter as bigint | number);
    if (counter !== 0n) {
      const v = Buffer.alloc(8);
      v.writeBigUInt64LE(counter);
      inj.callChecked(SYS.write, fd, inj.writeScratch(v, 0), 8);
    }
    return fd;
  },
};
