// Signal dispositions (core.tc.sigactions): handler, flags, restorer and mask of every signal
// but SIGKILL and SIGSTOP, in signal order — 62 entries, as CRIU writes them.

import { SYS, type SyscallSpec } from '../sys/arch.js';
import type { Injector, TaskCalls } from '../sys/inject.js';
import { SIGKILL, SIGSTOP, SIGTRAP } from '../sys/ptrace.js';
import { readStatus, type ProcStatus } from '../sys/proc/index.js';

export interface SaEntry {
  sigaction: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
  compat_sigaction?: boolean;
}

/** The handler value of an ignored signal. */
export const SIG_IGN = 1n;
export const SIGMAX = 64;
/** struct sigaction as the kernel's rt_sigaction takes it on x86-64: 4 u64. */
const KSIGACTION_SIZE = 32;
const SIGSET_SIZE = 8;

export function* catchableSignals(): Generator<number> {
  for (let sig = 1; sig <= SIGMAX; sig++) if (sig !== SIGKILL && sig !== SIGSTOP) yield sig;
}

/** One frozen object for every default action: encoded once (see wire.ts). */
const DEFAULT: SaEntry = Object.freeze({ sigaction: 0n, flags: 0n, restorer: 0n, mask: 0n, compat_sigaction: false });

/** Signals whose disposition is not SIG_DFL, from /proc/PID/status (SigCgt | SigIgn). */
function nonDefault(pid: number): bigint {
  const s = readStatus(pid);
  return s.sigCgt | s.sigIgn;
}

/**
 * Each signal's action. Only signals that are caught or ignored are asked about (rt_sigaction
 * injected for each, all in one sequence); the others are SIG_DFL and recorded as such — what a
 * default action's flags or mask might still say has no effect. A typical process asks about a
 * handful, not 62.
 */
export function dumpSigactions(inj: TaskCalls, status?: Pick<ProcStatus, 'sigCgt' | 'sigIgn'>): SaEntry[] {
  const set = status ? status.sigCgt | status.sigIgn : nonDefault(inj.tgid);
  const signals = [...catchableSignals()];
  const asked = signals.filter((sig) => set & (1n << BigInt(sig - 1)));
  if (!asked.length) return signals.map(() => DEFAULT);
  // The old actions side by side in scratch memory.
  const at = inj.scratch(KSIGACTION_SIZE * asked.length);
  inj.callAllChecked(asked.map((sig, i) => [SYS.rt_sigaction, sig, 0, at + BigInt(i * KSIGACTION_SIZE), SIGSET_SIZE]));
  const b = inj.readScratch(KSIGACTION_SIZE * asked.length);
  const found = new Map(asked.map((sig, i) => {
    const o = i * KSIGACTION_SIZE;
    return [sig, {
      sigaction: b.readBigUInt64LE(o), flags: b.readBigUInt64LE(o + 8),
      restorer: b.readBigUInt64LE(o + 16), mask: b.readBigUInt64LE(o + 24), compat_sigaction: false,
    }];
  }));
  return signals.map((sig) => found.get(sig) ?? DEFAULT);
}

function isDefault(e: SaEntry): boolean {
  return BigInt(e.sigaction) === 0n && BigInt(e.flags) === 0n && BigInt(e.restorer) === 0n && BigInt(e.mask) === 0n;
}

function same(a: SaEntry, b: SaEntry): boolean {
  return BigInt(a.sigaction) === BigInt(b.sigaction) && BigInt(a.flags) === BigInt(b.flags)
    && BigInt(a.restorer) === BigInt(b.restorer) && BigInt(a.mask) === BigInt(b.mask)
    && !a.compat_sigaction === !b.compat_sigaction;
}

export interface RestoreSigactionsOptions {
  /** Only these signals (the rest are left as they are). */
  only?: (sig: number) => boolean;
  /**
   * The actions the task has now when they are known: those of the restored parent it was
   * cloned from (a fork copies them). Signals whose action is already right are not set again.
   */
  current?: readonly SaEntry[];
  /**
   * Set the signals' actions without looking up what the task has (for one or two signals, one
   * injected call each costs less than reading its status).
   */
  unconditionally?: boolean;
}

/**
 * Set the dispositions: every signal the image gives a non-default action, and every signal
 * the new task inherited a non-default one for (it starts as a copy of stasis, or of its parent).
 */
export function restoreSigactions(inj: Injector, entries: readonly SaEntry[], opts: RestoreSigactionsOptions = {}): void {
  const signals = [...catchableSignals()];
  if (entries.length !== signals.length) {
    throw new Error(`the image has ${entries.length} signal actions, ${signals.length} expected`);
  }
  let inherited: bigint | undefined; // read when first needed (not at all when `current` says all)
  const set: { sig: number; e: SaEntry }[] = [];
  entries.forEach((e, i) => {
    const sig = signals[i]!;
    if (opts.only && !opts.only(sig)) return;
    const now = opts.current?.[i];
    if (!opts.unconditionally
      && (now ? same(now, e) : isDefault(e) && !((inherited ??= nonDefault(inj.tgid)) & (1n << BigInt(sig - 1))))) return;
    if (e.compat_sigaction) throw new Error('32-bit signal handlers cannot be restored');
    set.push({ sig, e });
  });
  if (!set.length) return;
  // Every action's struct in scratch memory at once, the calls made together.
  const b = Buffer.alloc(KSIGACTION_SIZE * set.length);
  set.forEach(({ e }, i) => {
    b.writeBigUInt64LE(BigInt(e.sigaction), i * KSIGACTION_SIZE);
    b.writeBigUInt64LE(BigInt(e.flags), i * KSIGACTION_SIZE + 8);
    b.writeBigUInt64LE(BigInt(e.restorer), i * KSIGACTION_SIZE + 16);
    b.writeBigUInt64LE(BigInt(e.mask), i * KSIGACTION_SIZE + 24);
  });
  const at = inj.writeScratch(b);
  let calls: SyscallSpec[] = [];
  set.forEach(({ sig, e }, i) => {
    if (sig === SIGTRAP && BigInt(e.sigaction) === SIG_IGN) {
      // The calls before it may still end in the trampoline's int3; from this one on, none.
      inj.callAllChecked(calls);
      calls = [];
      inj.noTraps();
    }
    calls.push([SYS.rt_sigaction, sig, at + BigInt(i * KSIGACTION_SIZE), 0, SIGSET_SIZE]);
  });
  inj.callAllChecked(calls);
}
