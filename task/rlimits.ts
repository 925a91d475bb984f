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

/** Limits seen so far, by their bytes: processes that have the same share one frozen entry. */
const seen = new Map<string, TaskRlimitsEntry>();
/** Every limit's (cur, max) pair side by side, as prlimit64 writes them. */
const got = nativeBuffer(RLIM_NLIMITS * 16);
const gotAt = addressOf(got);
const EPERM = 1n;

/**
 * Each limit with prlimit64 on the task (16 calls cost less than having /proc/PID/limits
 * formatted and parsing it); from /proc/PID/limits when prlimit64 is refused (it wants the
 * task's uids and gids, or CAP_SYS_RESOURCE, where /proc needs only ptrace access). The entry is
 * frozen and shared with every process whose limits are the same (encoded once).
 */
export function dumpRlimits(pid: number): TaskRlimitsEntry {
  for (let r = 0; r < RLIM_NLIMITS; r++) {
    const ret = rawSyscall(SYS.prlimit64, pid, r, 0, gotAt + BigInt(r * 16));
    if (ret === 0n) continue;
    if (ret !== -EPERM) throw new SysError(Number(-ret), `prlimit64(${pid}, RLIMIT_${RLIMIT_NAMES[r]})`);
    const listed = readLimits(pid);
    if (listed.length !== RLIM_NLIMITS) throw new Error(`/proc/${pid}/limits lists ${listed.length} limits, ${RLIM_NLIMITS} expected`);
    listed.forEach((l, i) => {
      got.writeBigUInt64LE(l.cur, i * 16);
      got.writeBigUInt64LE(l.max, i * 16 + 8);
    });
    break;
  }
  const key = got.toString('latin1');
  let entry = seen.get(key);
  if (!entry) {
    const rlimits: RlimitEntry[] = [];
    for (let r = 0; r < RLIM_NLIMITS; r++) {
      rlimits.push(Object.freeze({ cur: got.readBigUInt64LE(r * 16), max: got.readBigUInt64LE(r * 16 + 8) }));
    }
    entry = Object.freeze({ rlimits: Object.freeze(rlimits) as RlimitEntry[] });
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
