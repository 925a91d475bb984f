// Interval timers (core.tc.timers: ITIMER_REAL, _VIRTUAL, _PROF). A running timer is saved as
// the time left and its period, and re-armed with them on restore.

import { SYS } from '../sys/arch.js';
import type { Injector, Questions, TaskCalls } from '../sys/inject.js';
import type { PosixTimer } from '../sys/proc/index.js';

export interface ItimerEntry { isec: bigint; iusec: bigint; vsec: bigint; vusec: bigint }
export interface TaskTimersEntry { real: ItimerEntry; virt: ItimerEntry; prof: ItimerEntry; posix?: PosixTimerEntry[] }

const WHICH = { real: 0, virt: 1, prof: 2 } as const;
/** struct itimerval: it_interval {sec, usec}, it_value {sec, usec}. */
const ITIMERVAL_SIZE = 32;

/** The three itimers, asked through `questions` of the task's injector (there once they are run). */
export function askItimers(questions: Questions): () => TaskTimersEntry {
  // The three side by side in scratch memory.
  const room = questions.room(3 * ITIMERVAL_SIZE);
  for (const which of Object.values(WHICH)) questions.ask(SYS.getitimer, which, room.addr + BigInt(which * ITIMERVAL_SIZE));
  return () => {
    const b = questions.answer(room.offset, 3 * ITIMERVAL_SIZE);
    const entry = (which: number): ItimerEntry => {
      const o = which * ITIMERVAL_SIZE;
      return { isec: b.readBigInt64LE(o), iusec: b.readBigInt64LE(o + 8), vsec: b.readBigInt64LE(o + 16), vusec: b.readBigInt64LE(o + 24) };
    };
    return { real: entry(WHICH.real), virt: entry(WHICH.virt), prof: entry(WHICH.prof) };
  };
}

export function restoreItimers(inj: Injector, t: TaskTimersEntry | undefined): void {
  if (!t) return;
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

// ---------------------------------------------------------------------------------------------
// POSIX timers (timer_create): ids, clocks, how they notify, and their armed times. Restored with
// their original ids through prctl(PR_TIMER_CREATE_RESTORE_IDS) (the id to create is passed in
// *timerid), or, on kernels without it, by creating timers in order until the ids line up.

export interface PosixTimerEntry {
  it_id: number; clock_id: number; si_signo: number; it_sigev_notify: number; sival_ptr: bigint;
  overrun: number; isec: bigint; insec: bigint; vsec: bigint; vnsec: bigint; notify_thread_id?: number;
}

const SIGEV_BASE: Record<string, number> = { signal: 0, none: 1, thread: 2 };
const SIGEV_THREAD_ID = 4;
const PR_TIMER_CREATE_RESTORE_IDS = 77;
/** struct itimerspec: it_interval {sec, nsec}, it_value {sec, nsec}. */
const ITIMERSPEC_SIZE = 32;
/** struct sigevent is 64 bytes: sigev_value, sigev_signo, sigev_notify, then the tid. */
const SIGEVENT_SIZE = 64;

/** `tidOf`: a thread's id in the dumped tree's pid namespace, from stasis's (the signal's target). */
export function dumpPosixTimers(inj: TaskCalls, timers: readonly PosixTimer[], tidOf: (host: number) => number): PosixTimerEntry[] {
  const at = inj.scratch(ITIMERSPEC_SIZE);
  return timers.map((t) => {
    inj.callChecked(SYS.timer_gettime, t.id, at);
    const b = inj.readScratch(ITIMERSPEC_SIZE);
    const overrun = Number(inj.callChecked(SYS.timer_getoverrun, t.id));
    const base = SIGEV_BASE[t.notify];
    if (base === undefined) throw new Error(`POSIX timer ${t.id} of task ${inj.tgid} notifies '${t.notify}', which stasis does not know`);
    const entry: PosixTimerEntry = {
      it_id: t.id, clock_id: t.clockId, si_signo: t.signo,
      it_sigev_notify: base | (t.notifyTarget === 'tid' ? SIGEV_THREAD_ID : 0), sival_ptr: t.sigval,
      overrun, isec: b.readBigInt64LE(0), insec: b.readBigInt64LE(8), vsec: b.readBigInt64LE(16),
      vnsec: b.readBigInt64LE(24),
    };
    if (t.notifyTarget === 'tid') entry.notify_thread_id = tidOf(t.notifyPid);
    return entry;
  });
}

/**
 * A process's timers, made by its main thread (`inj`; `pid`, its id in its pid namespace). A
 * timer that signals one thread names it by its id in the process's pid namespace, and that
 * thread must exist: the process's threads are restored first.
 */
export function restorePosixTimers(inj: Injector, pid: number, timers: readonly PosixTimerEntry[] | undefined): void {
  if (!timers?.length) return;
  const byId = [...timers].sort((a, b) => a.it_id - b.it_id);
  const withIds = inj.call(SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) === 0n;
  try {
    for (const t of byId) {
      const ev = Buffer.alloc(SIGEVENT_SIZE);
      ev.writeBigUInt64LE(BigInt(t.sival_ptr), 0);
      ev.writeInt32LE(t.si_signo, 8);
      ev.writeInt32LE(t.it_sigev_notify, 12);
      if (t.it_sigev_notify & SIGEV_THREAD_ID) ev.writeInt32LE(t.notify_thread_id ?? pid, 16);
      const evAt = inj.writeScratch(ev, 0);
      const idAt = evAt + BigInt(SIGEVENT_SIZE);
      for (;;) {
        const idBuf = Buffer.alloc(4);
        idBuf.writeInt32LE(t.it_id);
        inj.writeScratch(idBuf, SIGEVENT_SIZE);
        inj.callChecked(SYS.timer_create, t.clock_id, evAt, idAt);
        const got = inj.readScratch(4, SIGEVENT_SIZE).readInt32LE(0);
        if (got === t.it_id) break;
        if (withIds || got > t.it_id) throw new Error(`POSIX timer ${t.it_id} came back as ${got}`);
        // Older kernels hand out ids in order: burn the ones below and delete them afterwards.
        inj.callChecked(SYS.timer_delete, got);
      }
      const spec = Buffer.alloc(ITIMERSPEC_SIZE);
      spec.writeBigInt64LE(BigInt(t.isec), 0);
      spec.writeBigInt64LE(BigInt(t.insec), 8);
      spec.writeBigInt64LE(BigInt(t.vsec), 16);
      spec.writeBigInt64LE(BigInt(t.vnsec), 24);
      if (BigInt(t.vsec) || BigInt(t.vnsec)) {
        inj.callChecked(SYS.timer_settime, t.it_id, 0, inj.writeScratch(spec, 128), 0);
      }
    }
  } finally {
    if (withIds) inj.call(SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
  }
}
