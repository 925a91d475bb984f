// Resource limits (core.tc.rlimits): all RLIM_NLIMITS of them, read and set from outside the
// task with prlimit64 — no injection needed.

import { SYS } from '../sys/arch.js';
import { SysError } from '../sys/errno.js';
import { addressOf, nativeBuffer, rawSyscall } from '../sys/native.js';
import { readLimits } from '../sys/proc/index.js';

export interface RlimitEntry { cur: bigint; max: bigint }
export interface TaskRlimitsEntry { rlimits: RlimitEntry[] }

export const RLIM_NLIMITS = 16;
export const RLIMIT_NAMES = ['CPU', 'FSIZE', 'DATA', 'STACK', 'CORE', 'RSS', 'NPROC', 'NOFILE',
  'MEMLOCK', 'AS', 'LOCKS', 'SIGPENDING', 'MSGQUEUE', 'NICE', 'RTPRIO', 'RTTIME'];

/** Limits seen so far, by their values: processes that have the same share one frozen entry. */
const seen = new Map<string, TaskRlimitsEntry>();

/**
 * From /proc/PID/limits: prlimit() would need the task's credentials or CAP_SYS_RESOURCE. The
 * entry is frozen and shared with every process whose limits are the same (encoded once).
 */
export function dumpRlimits(pid: number): TaskRlimitsEntry {
  const rlimits = readLimits(pid);
  if (rlimits.length !== RLIM_NLIMITS) throw new Error(`/proc/${pid}/limits lists ${rlimits.length} limits, ${RLIM_NLIMITS} expected`);
  const key = rlimits.map((l) => `${l.cur}/${l.max}`).join(' ');
  let entry = seen.get(key);
  if (!entry) {
    entry = Object.freeze({ rlimits: Object.freeze(rlimits.map((l) => Object.freeze(l))) as RlimitEntry[] });
    seen.set(key, entry);
  }
  return entry;
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
