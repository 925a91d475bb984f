// Interval timers (core.tc.timers: ITIMER_REAL, _VIRTUAL, _PROF). A running timer is saved as
// the time left and its period, and re-armed with them on restore.

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';

export interface ItimerEntry { isec: bigint; iusec: bigint; vsec: bigint; vusec: bigint }
export interface TaskTimersEntry { real: ItimerEntry; virt: ItimerEntry; prof: ItimerEntry; posix?: unknown[] }

const WHICH = { real: 0, virt: 1, prof: 2 } as const;
/** struct itimerval: it_interval {sec, usec}, it_value {sec, usec}. */
const ITIMERVAL_SIZE = 32;

export function dumpItimers(inj: Injector): TaskTimersEntry {
  const at = inj.scratch(ITIMERVAL_SIZE);
  const get = (which: number): ItimerEntry => {
    inj.callChecked(SYS.getitimer, which, at);
    const b = inj.readScratch(ITIMERVAL_SIZE);
    return { isec: b.readBigInt64LE(0), iusec: b.readBigInt64LE(8), vsec: b.readBigInt64LE(16), vusec: b.readBigInt64LE(24) };
  };
  return { real: get(WHICH.real), virt: get(WHICH.virt), prof: get(WHICH.prof) };
}

export function restoreItimers(inj: Injector, t: TaskTimersEntry | undefined): void {
  if (!t) return;
  if (t.posix?.length) throw new Error('POSIX timers cannot be restored yet');
  for (const [name, which] of Object.entries(WHICH) as [keyof typeof WHICH, number][]) {
    const e = t[name];
    if (!e || (BigInt(e.vsec) === 0n && BigInt(e.vusec) === 0n)) continue;
    const b = Buffer.alloc(ITIMERVAL_SIZE);
    b.writeBigInt64LE(BigInt(e.isec), 0);
    b.writeBigInt64LE(BigInt(e.iusec), 8);
    b.writeBigInt64LE(BigInt(e.vsec), 16);
    b.writeBigInt64LE(BigInt(e.vusec), 24);
    inj.callChecked(SYS.setitimer, which, inj.writeScratch(b), 0);
  }
}
