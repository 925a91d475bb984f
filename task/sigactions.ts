// Signal dispositions (core.tc.sigactions): handler, flags, restorer and mask of every signal
// but SIGKILL and SIGSTOP, in signal order — 62 entries, as CRIU writes them.

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';

export interface SaEntry {
  sigaction: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
  compat_sigaction?: boolean;
}

const SIGKILL = 9;
const SIGSTOP = 19;
export const SIGMAX = 64;
/** struct sigaction as the kernel's rt_sigaction takes it on x86-64: 4 u64. */
const KSIGACTION_SIZE = 32;
const SIGSET_SIZE = 8;

export function* catchableSignals(): Generator<number> {
  for (let sig = 1; sig <= SIGMAX; sig++) if (sig !== SIGKILL && sig !== SIGSTOP) yield sig;
}

export function dumpSigactions(inj: Injector): SaEntry[] {
  const old = inj.scratch(KSIGACTION_SIZE);
  const out: SaEntry[] = [];
  for (const sig of catchableSignals()) {
    inj.callChecked(SYS.rt_sigaction, sig, 0, old, SIGSET_SIZE);
    const b = inj.readScratch(KSIGACTION_SIZE);
    out.push({
      sigaction: b.readBigUInt64LE(0), flags: b.readBigUInt64LE(8),
      restorer: b.readBigUInt64LE(16), mask: b.readBigUInt64LE(24), compat_sigaction: false,
    });
  }
  return out;
}

/** Set every disposition: the task inherited stasis's own, which must all be replaced. */
export function restoreSigactions(inj: Injector, entries: readonly SaEntry[]): void {
  const signals = [...catchableSignals()];
  if (entries.length !== signals.length) {
    throw new Error(`the image has ${entries.length} signal actions, ${signals.length} expected`);
  }
  const b = Buffer.alloc(KSIGACTION_SIZE);
  entries.forEach((e, i) => {
    if (e.compat_sigaction) throw new Error('32-bit signal handlers cannot be restored');
    b.writeBigUInt64LE(BigInt(e.sigaction), 0);
    b.writeBigUInt64LE(BigInt(e.flags), 8);
    b.writeBigUInt64LE(BigInt(e.restorer), 16);
    b.writeBigUInt64LE(BigInt(e.mask), 24);
    const at = inj.writeScratch(b);
    inj.callChecked(SYS.rt_sigaction, signals[i]!, at, 0, SIGSET_SIZE);
  });
}
