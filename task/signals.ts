// Pending signals: the process-wide queue (core.tc.signals_s) and each thread's own
// (thread_core.signals_p), each signal as its raw 128-byte siginfo. Restored by having the
// task queue them to itself (only a task signalling itself may set any si_code) while all
// signals are blocked; the blocked mask is set last, when the task resumes.

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { SIGINFO_SIZE, peekSiginfo } from '../sys/ptrace.js';

export interface SignalQueueEntry {
  signals?: { siginfo: Uint8Array }[];
}

export function dumpPendingSignals(tid: number, shared: boolean): SignalQueueEntry {
  return { signals: peekSiginfo(tid, shared).map((siginfo) => ({ siginfo })) };
}

/**
 * Queues `q` in the task `inj` drives: process-wide (`tid` undefined) or to thread `tid`. The
 * ids are the image's: the task names itself as its own pid namespace numbers it.
 */
export function restorePendingSignals(inj: Injector, tgid: number, q: SignalQueueEntry | undefined,
  tid?: number): void {
  for (const { siginfo } of q?.signals ?? []) {
    if (siginfo.length !== SIGINFO_SIZE) throw new Error(`a pending signal's siginfo has ${siginfo.length} bytes, not ${SIGINFO_SIZE}`);
    const info = Buffer.from(siginfo);
    const sig = info.readInt32LE(0);
    const at = inj.writeScratch(info);
    if (tid === undefined) inj.callChecked(SYS.rt_sigqueueinfo, tgid, sig, at);
    else inj.callChecked(SYS.rt_tgsigqueueinfo, tgid, tid, sig, at);
  }
}
