// Resource limits (core.tc.rlimits): all RLIM_NLIMITS of them, read and set from outside the
// task with prlimit64 — no injection needed.

import { SYS } from '../sys/arch.js';
import { SysError } from '../sys/errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall } from '../sys/native.js';

export interface RlimitEntry { cur: bigint; max: bigint }
export interface TaskRlimitsEntry { rlimits: RlimitEntry[] }

export const RLIM_NLIMITS = 16;
export const RLIMIT_NAMES = ['CPU', 'FSIZE', 'DATA', 'STACK', 'CORE', 'RSS', 'NPROC', 'NOFILE',
  'MEMLOCK', 'AS', 'LOCKS', 'SIGPENDING', 'MSGQUEUE', 'NICE', 'RTPRIO', 'RTTIME'];

export function dumpRlimits(pid: number): TaskRlimitsEntry {
  const b = nativeBuffer(16);
  const rlimits: RlimitEntry[] = [];
  for (let r = 0; r < RLIM_NLIMITS; r++) {
    syscall(() => `prlimit64(${pid}, RLIMIT_${RLIMIT_NAMES[r]})`, SYS.prlimit64, pid, r, 0, addressOf(b));
    rlimits.push({ cur: b.readBigUInt64LE(0), max: b.readBigUInt64LE(8) });
  }
  return { rlimits };
}

export function restoreRlimits(pid: number, e: TaskRlimitsEntry | undefined): void {
  const b = nativeBuffer(16);
  (e?.rlimits ?? []).forEach((l, r) => {
    if (r >= RLIM_NLIMITS) return;
    b.writeBigUInt64LE(BigInt(l.cur), 0);
    b.writeBigUInt64LE(BigInt(l.max), 8);
    const ret = rawSyscall(SYS.prlimit64, pid, r, addressOf(b), 0);
    if (ret === -1n) {
      throw new Error(`cannot restore RLIMIT_${RLIMIT_NAMES[r]} (${l.cur}/${l.max}): its hard limit is above what this machine allows stasis to set`);
    }
    if (ret < 0n) throw new SysError(Number(-ret), `prlimit64(${pid}, RLIMIT_${RLIMIT_NAMES[r]})`);
  });
}
