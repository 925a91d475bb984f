// Threads and what is per thread. Threads are cloned into their process once its memory and
// files exist; then the process's POSIX timers are made (one may signal a thread of its own),
// and each thread gets its seccomp filters, credentials and the rest of its core (thread.ts),
// its own pending signals, FPU state and, last, registers and blocked mask. The process-wide
// pending signals are queued first. Then the whole tree is let go at once.

import fs from 'node:fs';
import { imageFileName } from '../../images/index.js';
import { applying } from '../errors.js';
import { PAGE_SIZE, SYS, setCpuidSource } from '../../sys/arch.js';
import { Injector, setAffinity } from '../../sys/inject.js';
import { tgkill } from '../../sys/native.js';
import { SIGCHLD, SIGSTOP, cont, detach, waitTask } from '../../sys/ptrace.js';
import { THREAD_FLAGS, cloneInto, setLastPid } from '../clone.js';
import { restoreFpregs, restoredRegs, type ThreadInfoX86 } from '../regs.js';
import { SECCOMP_IMAGE, restoreSeccomp } from '../seccomp.js';
import { restorePendingSignals } from '../signals.js';
import { restorePosixTimers } from '../timers.js';
import { restoreThreadCore, type ThreadCoreEntry } from '../thread.js';
import { TASK_DEAD, TASK_STOPPED } from '../tree.js';
import { vdsoOf } from './memory.js';
import type { Plan } from './plan.js';
import type { RestoreRun, Restoring } from './state.js';
import { ignoredBy } from './tree.js';

/** Every process's other threads, cloned into it, each with an injector sharing the process's code and scratch. */
export function cloneThreads(run: RestoreRun): void {
  for (const t of run.tasks.values()) {
    if (t.p.threads.length > 1) t.inj.scratch(PAGE_SIZE); // the threads use it too
    // Calls go to the process's trampoline, by turns (one stop each, several calls in one).
    const injector = (htid: number) => new Injector(htid, t.hpid, {
      pin: false, vdsoStart: vdsoOf(t.p), sharedScratch: t.inj.scratchRange, sigIgn: ignoredBy(t.p),
      sharedTrampoline: t.inj.trampolineAddress, sharedSequenceArea: t.inj.sequenceAreaAddress,
    });
    for (const tid of t.p.threads.slice(1)) {
      const htid = applying('pstree.img', `thread ${tid} of process ${t.p.pid}`,
        () => (t.credsNow && !t.bornInUserNs ? cloneAtLastPid(t, tid, injector) : cloneInto(t.inj, { setTid: [tid], flags: THREAD_FLAGS })));
      run.created.push(htid);
      t.threads.set(tid, injector(htid));
    }
  }
}

/** How many times a thread's TID may be taken by another task of the machine before giving up. */
const LAST_PID_TRIES = 50;

/**
 * A thread of a process in a user namespace of the tree's (which it entered before its threads
 * could be made: see task/userns.ts). Without a capability over the owner of the pid namespace
 * (the host's user namespace) it cannot choose the TID: stasis sets the namespace's last PID just
 * below it and the clone takes the next. Should another task of the machine be made in between,
 * the thread made with the wrong TID exits, and it is tried again.
 */
function cloneAtLastPid(t: Restoring, tid: number, injector: (htid: number) => Injector): number {
  for (let i = 0; i < LAST_PID_TRIES; i++) {
    setLastPid(tid - 1);
    const htid = cloneInto(t.inj, { setTid: [], flags: THREAD_FLAGS });
    if (htid === tid) return htid;
    injector(htid).callAndRelease(SYS.exit, 0);
    for (;;) {
      const w = waitTask(htid, { timeoutMs: 5000 });
      if (!w || w.kind !== 'stopped') break;
      cont(htid, 0);
    }
    if (fs.existsSync(`/proc/${tid}`)) throw new Error(`PID ${tid} is already in use`);
  }
  throw new Error(`TID ${tid} was taken by other tasks of the machine ${LAST_PID_TRIES} times in a row`);
}

/**
 * Per-thread state, pending signals, registers. The restore itself sent SIGCHLD only to the
 * parents of zombies and of helpers: those take it back before the image's pending signals.
 */
export function restoreThreads(run: RestoreRun, plan: Plan): void {
  const { img } = run;
  const sigchldTo = new Set([...img.procs.filter((q) => q.state === TASK_DEAD).map((q) => q.ppid), ...plan.helpers.map((h) => h.ppid)]);
  for (const t of run.tasks.values()) {
    const { p } = t;
    const tc = p.cores.get(p.pid)!.tc;
    if (sigchldTo.has(p.pid)) drainSigchld(t.inj); // the image says what was really pending
    applying(imageFileName('CORE', p.pid), `task ${p.pid}: POSIX timers`, () => restorePosixTimers(t.inj, p.pid, tc.timers?.posix));
    applying(imageFileName('CORE', p.pid), `task ${p.pid}: pending signals`, () => restorePendingSignals(t.inj, p.pid, tc.signals_s));
    for (const [tid, inj] of [...t.threads, [p.pid, t.inj] as const]) {
      const core = p.cores.get(tid)!;
      const coreFile = imageFileName('CORE', tid);
      const thread = `${tid === p.pid ? 'task' : 'thread'} ${tid}`;
      const ti = core.thread_info as ThreadInfoX86;
      const tcore = core.thread_core as ThreadCoreEntry;
      // Filters first, while the thread still has every capability (creds come next).
      applying(SECCOMP_IMAGE, `${thread}: seccomp filters`,
        () => restoreSeccomp(inj, img.seccomp, tcore.seccomp_mode, tcore.seccomp_filter));
      applying(coreFile, thread, () => {
        restoreThreadCore(inj, tcore, BigInt(ti.clear_tid_addr ?? 0), t.credsNow ?? run.own.creds, t.commNow); // threads are cloned with the main thread's name
        restorePendingSignals(inj, p.pid, tcore.signals_p, tid);
      });
      // The XSAVE layout comes from CPUID: inside a container's devices cgroup stasis cannot
      // open the cpuid device, so the task about to get its registers runs the instruction.
      setCpuidSource((leaf, sub) => inj.cpuid(leaf, sub));
      try {
        applying(coreFile, `${thread}: FPU and vector registers`, () => restoreFpregs(inj.pid, ti));
      } finally {
        setCpuidSource(undefined);
      }
      applying(coreFile, `${thread}: registers`,
        () => inj.finish({ regs: restoredRegs(ti), sigmask: BigInt(tcore.blk_sigset ?? tc.blk_sigset ?? 0) }));
    }
  }
}

/**
 * Everyone goes at once, with stasis's CPU mask back. A stopped process stops again as soon as
 * it is let go (detach cannot inject a signal from an event stop, so it is queued first).
 */
export function resumeTree(run: RestoreRun): void {
  for (const t of run.tasks.values()) {
    if (t.p.state === TASK_STOPPED) tgkill(t.hpid, t.hpid, SIGSTOP);
    for (const tid of [...[...t.threads.values()].map((i) => i.pid), t.hpid]) {
      setAffinity(tid, run.affinity);
      detach(tid, 0);
    }
  }
}

/** Take back SIGCHLDs the restore itself caused, before the dumped pending signals are queued. */
function drainSigchld(inj: Injector): void {
  const set = Buffer.alloc(8);
  set.writeBigUInt64LE(1n << BigInt(SIGCHLD - 1));
  const ts = Buffer.alloc(16);
  const at = inj.writeScratch(Buffer.concat([set, ts]));
  while (inj.call(SYS.rt_sigtimedwait, at, 0, at + 8n, 8) === BigInt(SIGCHLD)) {
    // consumed one
  }
}
