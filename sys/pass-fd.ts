// A descriptor of stasis's handed to a task that may not take it by pidfd_getfd (one in a user
// namespace of its own, which may not ptrace stasis): the task makes a socket pair, stasis takes
// one end (it may ptrace the task) and sends the descriptor over it, the task receives it.

import { SYS } from './arch.js';
import type { Injector } from './inject.js';
import { rawSyscall } from './native.js';
import { sendRecord } from './seqpacket.js';
import { msghdrBlock, parseCmsgs } from './socket.js';

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
/** One SCM_RIGHTS header and descriptor, CMSG_SPACE(4). */
const CONTROL = 24;

/** A copy of stasis's descriptor `fd` in the task (close-on-exec, as pidfd_getfd's); its number there. */
export function passFd(inj: Injector, fd: number): number {
  const sv = inj.scratch(64);
  inj.callChecked(SYS.socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
  const pair = inj.readScratch(8);
  const [mine, theirs] = [pair.readInt32LE(0), pair.readInt32LE(4)];
  try {
    const pidfd = Number(rawSyscall(SYS.pidfd_open, inj.tgid, 0));
    if (pidfd < 0) throw new Error(`pidfd_open(${inj.tgid}): errno ${-pidfd}`);
    let local: number;
    try {
      local = Number(rawSyscall(SYS.pidfd_getfd, pidfd, theirs, 0));
      if (local < 0) throw new Error(`pidfd_getfd(task ${inj.tgid}, ${theirs}): errno ${-local}`);
    } finally {
      rawSyscall(SYS.close, pidfd);
    }
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
    const rights = parseCmsgs(control).find((c) => c.level === SOL_SOCKET && c.type === SCM_RIGHTS);
    if (!rights) throw new Error(`task ${inj.tgid}: no descriptor came over its socket pair`);
    return rights.data.readInt32LE(0);
  } finally {
    inj.call(SYS.close, mine);
    inj.call(SYS.close, theirs);
  }
}
