// signalfd: the set of signals it reads (fdinfo `sigmask:`, fs/signalfd.c). The signals still
// pending are the task's and come back with it; the descriptor only needs its mask and flags.

import { SYS } from '../sys/arch.js';
import { fdKind } from '../sys/proc/index.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import { O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_SIGNALFD = 9;
const SIGSET_BYTES = 8;

export const signalfdFile: FileKind = {
  type: FD_TYPE_SIGNALFD,
  field: 'sgfd',
  claims: ({ link }) => fdKind(link) === 'signalfd',
  dump(f: OpenFd): DumpedFile {
    const info = f.fdinfo.signalfd;
    if (!info) throw new Error(`fd ${f.fd} of task ${f.pid}: its fdinfo shows no signalfd sigmask`);
    return {
      type: FD_TYPE_SIGNALFD, field: 'sgfd',
      entry: { flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), sigmask: info.sigmask },
    };
  },
  inheritKey: (e) => `signalfd:${Number(e.id)}`,
  open(e, task: RestoreFilesTask): number {
    const mask = Buffer.alloc(SIGSET_BYTES);
    mask.writeBigUInt64LE(BigInt(e.sigmask as bigint | number));
    const at = task.inj.writeScratch(mask, 0);
    return Number(task.inj.callChecked(SYS.signalfd4, -1, at, SIGSET_BYTES, Number(e.flags) & O_NONBLOCK));
  },
};
