// A descriptor of stasis's handed to a task that may not take it by pidfd_getfd (one in a user
// namespace of its own, which may not ptrace stasis): the task makes a socket pair, stasis takes
// one end (it may ptrace the task) and sends the descriptor over it, the task receives it.

import { SYS } from './arch.js';
import { isErrorResult } from './errno.js';
import { injectedCallError, type Injector } from './inject.js';
import { rawSyscall, takeTaskFd } from './native.js';
import { sendRecord } from './seqpacket.js';
import { AF, SCM, SOCK, SOL_SOCKET, msghdrBlock, parseCmsgs } from './socket.js';

const MSG_CMSG_CLOEXEC = 0x40000000;
const EPERM = 1;
/** One SCM_RIGHTS header and descriptor, CMSG_SPACE(4). */
const CONTROL = 24;

/** A copy of stasis's descriptor `fd` in the task (close-on-exec, as pidfd_getfd's); its number there. */
export function passFd(inj: Injector, fd: number): number {
  const sv = inj.scratch(64);
  inj.callChecked(SYS.socketpair, AF.UNIX, SOCK.SEQPACKET | SOCK.CLOEXEC, 0, sv);
  const pair = inj.readScratch(8);
  const [mine, theirs] = [pair.readInt32LE(0), pair.readInt32LE(4)];
  try {
    const local = takeTaskFd(inj.tgid, theirs);
    try {
      sendRecord(local, Buffer.from([0]), [fd]);
    } finally {
      rawSyscall(SYS.close, local);
    }
    const probe = msghdrBlock(0n, { dataLen: 1, controlLen: CONTROL });
    const base = inj.scratch(probe.size);
    const block = msghdrBlock(base, { dataLen: 1, controlLen: CONTROL });
    inj.writeScratch(Buffer.concat([block.bytes, Buffer.alloc(probe.size - block.bytes.length)]));
    inj.callChecked(SYS.recvmsg, mine, base, MSG_CMSG_CLOEXEC);
    const control = inj.readScratch(CONTROL, block.controlOffset);
    const rights = parseCmsgs(control).find((c) => c.level === SOL_SOCKET && c.type === SCM.RIGHTS);
    if (!rights) throw new Error(`task ${inj.tgid}: no descriptor came over its socket pair`);
    return rights.data.readInt32LE(0);
  } finally {
    inj.call(SYS.close, mine);
    inj.call(SYS.close, theirs);
  }
}

/**
 * A copy of stasis's descriptor `fd` in the task, taken by the task through `stasisPidfd` (its
 * pidfd of stasis); one in a user namespace of its own, which may not (EPERM), is sent one.
 */
export function giveTaskFd(inj: Injector, stasisPidfd: number, fd: number): number {
  const r = inj.call(SYS.pidfd_getfd, stasisPidfd, fd, 0);
  if (r === BigInt(-EPERM)) return passFd(inj, fd);
  if (isErrorResult(r)) throw injectedCallError(inj.pid, r, SYS.pidfd_getfd, [stasisPidfd, fd, 0]);
  return Number(r);
}
