// The owner of a file description for SIGIO/SIGURG (F_SETOWN, F_SETOWN_EX, F_SETSIG: CRIU's
// fown_entry), which every kind of file may have. The kernel keeps the owner's pid and its type
// (thread, process, process group), the signal, and the uid/euid of whoever set the owner (they
// decide later whether the signal may be sent). Dumped by asking the task itself, so the pid is
// the one its pid namespace knows; restored the same way, under the euid the owner was set with.

import { SYS } from '../sys/arch.js';
import type { TaskCalls } from '../sys/inject.js';
import { F_GETOWNER_UIDS, F_GETOWN_EX, F_GETSIG, F_SETOWN_EX, F_SETSIG } from '../sys/fcntl.js';

export interface Fown { uid: number; euid: number; signum: number; pid_type: number; pid: number }

export function zeroFown(): Fown {
  return { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
}

/** The owner of fd `fd` of the task (all zero when none was set, as criu writes it). */
export function dumpFown(inj: TaskCalls, fd: number): Fown {
  // struct f_owner_ex { int type; pid_t pid; }
  if (inj.call(SYS.fcntl, fd, F_GETOWN_EX, inj.scratch(8)) < 0n) return zeroFown();
  const ex = inj.readScratch(8, 0);
  const pid = ex.readInt32LE(4);
  if (pid === 0) return zeroFown();
  inj.callChecked(SYS.fcntl, fd, F_GETOWNER_UIDS, inj.scratch(8));
  const uids = inj.readScratch(8, 0);
  const signum = Number(inj.callChecked(SYS.fcntl, fd, F_GETSIG));
  return { uid: uids.readUInt32LE(0), euid: uids.readUInt32LE(4), signum, pid_type: ex.readInt32LE(0), pid };
}

/** Give fd `fd` of the task the owner `fown` of the image (nothing when it has none). */
export function restoreFown(inj: TaskCalls, fd: number, fown: Partial<Fown> | undefined): void {
  const pid = Number(fown?.pid ?? 0);
  if (!pid) return;
  inj.callChecked(SYS.fcntl, fd, F_SETSIG, Number(fown!.signum ?? 0));
  // F_SETOWN_EX records the caller's uid and euid: take the euid the owner was set with for the
  // call (the task is still privileged here), then put its own back.
  const ids = inj.scratch(12);
  inj.callChecked(SYS.getresuid, ids, ids + 4n, ids + 8n);
  const euid = inj.readScratch(12).readUInt32LE(4);
  const want = Number(fown!.euid ?? euid);
  if (want !== euid) inj.callChecked(SYS.setresuid, -1, want, -1);
  try {
    const ex = Buffer.alloc(8);
    ex.writeInt32LE(Number(fown!.pid_type ?? 0), 0);
    ex.writeInt32LE(pid, 4);
    inj.callChecked(SYS.fcntl, fd, F_SETOWN_EX, inj.writeScratch(ex, 16));
  } finally {
    if (want !== euid) inj.callChecked(SYS.setresuid, -1, euid, -1);
  }
}
