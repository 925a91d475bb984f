// Creating a task with a chosen PID, for restore. Node cannot fork itself safely, so a seed
// process (a pause()-ing copy of stasis started through glibc's clone) is traced and made to
// call clone3() with set_tid = [PID]. CLONE_PARENT makes the new task a child of the seed's
// parent: stasis itself, or, for runc's rst_sibling, stasis's own parent. The seed is then
// killed; the new task starts ptrace-stopped (auto-attached through PTRACE_O_TRACEFORK) and
// with PTRACE_O_EXITKILL, so it dies with stasis should stasis die before the restore ends.

import fs from 'node:fs';
import { PAGE_SIZE, SYS } from '../sys/arch.js';
import { SysError } from '../sys/errno.js';
import { Injector, ownVdsoStart } from '../sys/inject.js';
import { kill, nativeBuffer, rawSyscall, seedGone, spawnPausedSeed } from '../sys/native.js';
import {
  PTRACE_EVENT, PTRACE_O, SIGCHLD, SIGKILL, describeWaitStatus, seizeAndStop, waitTask,
} from '../sys/ptrace.js';

export const CLONE = {
  VM: 0x100, FS: 0x200, FILES: 0x400, SIGHAND: 0x800, PIDFD: 0x1000, PTRACE: 0x2000,
  VFORK: 0x4000, PARENT: 0x8000, THREAD: 0x10000, NEWNS: 0x20000, SYSVSEM: 0x40000,
  SETTLS: 0x80000, PARENT_SETTID: 0x100000, CHILD_CLEARTID: 0x200000, NEWCGROUP: 0x2000000,
  NEWUTS: 0x4000000, NEWIPC: 0x8000000, NEWUSER: 0x10000000, NEWPID: 0x20000000,
  NEWNET: 0x40000000, IO: 0x80000000,
} as const;

/** struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1). */
const CLONE_ARGS_SIZE = 80;

export const RESTORE_PTRACE_OPTIONS =
  PTRACE_O.TRACESYSGOOD | PTRACE_O.TRACEFORK | PTRACE_O.TRACECLONE | PTRACE_O.EXITKILL | PTRACE_O.SUSPEND_SECCOMP;

export interface CloneRequest {
  /** PIDs from the innermost pid namespace outwards (set_tid); one entry for no namespaces. */
  setTid: number[];
  /** Clone flags (CLONE_PARENT, CLONE_THREAD..., namespaces). */
  flags?: number;
}


/**
 * The last PID handed out in stasis's pid namespace (ns_last_pid): the next task made there takes
 * the one after, unless another task of the machine is made first. For a task that cannot give
 * clone3() a set_tid (no capability over the pid namespace's owner).
 */
export function setLastPid(pid: number): void {
  fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid));
}

/** The flags that make a thread of the calling task's process. */
export const THREAD_FLAGS = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD | CLONE.SYSVSEM;

function pidMax(): number {
  return Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
}

/**
 * Have an injected task clone3() a child; returns the child's PID (as stasis sees it), stopped
 * and traced. `setTid` empty: any PID (a new pid namespace makes it 1 there).
 */
export function cloneInto(inj: Injector, req: CloneRequest): number {
  const args = nativeBuffer(CLONE_ARGS_SIZE + req.setTid.length * 4);
  const tidsOffset = CLONE_ARGS_SIZE;
  const base = inj.scratch(args.length);
  const flags = req.flags ?? 0;
  args.writeBigUInt64LE(BigInt(flags), 0);
  // exit_signal: SIGCHLD for a child process; threads and CLONE_PARENT children take none (the
  // kernel uses the caller's for the latter).
  if (!(flags & (CLONE.THREAD | CLONE.PARENT))) args.writeBigUInt64LE(BigInt(SIGCHLD), 32);
  if (req.setTid.length) args.writeBigUInt64LE(base + BigInt(tidsOffset), 64); // set_tid
  args.writeBigUInt64LE(BigInt(req.setTid.length), 72); // set_tid_size
  req.setTid.forEach((t, i) => args.writeInt32LE(t, tidsOffset + i * 4));
  inj.writeScratch(args);
  inj.lastChild = undefined;
  const r = inj.call(SYS.clone3, base, CLONE_ARGS_SIZE);
  if (r < 0n) {
    const err = new SysError(Number(-r), `clone3(set_tid=[${req.setTid.join(', ')}])`);
    if (err.code === 'EEXIST') throw new Error(`PID ${req.setTid[0]} is already in use`);
    if (err.code === 'EINVAL' && req.setTid.some((t) => t >= pidMax())) {
      throw new Error(`PID ${req.setTid[0]} is above this machine's pid_max (${pidMax()})`);
    }
    throw err;
  }
  // The call answers in the caller's pid namespace; the fork event told stasis's view of it.
  const pid = inj.lastChild ?? Number(r);
  for (;;) {
    const w = waitTask(pid, { timeoutMs: 5000 })!;
    if (w.kind !== 'stopped') throw new Error(`new task ${pid} ${describeWaitStatus(w)}`);
    if (w.event === PTRACE_EVENT.STOP) return pid;
  }
}

/**
 * A seed of its own (a pause()-ing copy of stasis sharing its memory, traced, an injector on
 * it), for what must be done by a task that is not stasis (entering a namespace, unsharing one).
 * `siblingOfStasis`: a child of stasis's parent; `shareMemory` false: a copy of stasis's memory.
 * close() kills and reaps it.
 */
export function openSeed(siblingOfStasis = false, shareMemory = true): { inj: Injector; pid: number; close(): void } {
  // The seed runs in stasis's own memory: a task it clones gets the one copy of it. (One that
  // changes its credentials does not: that would make stasis's memory not dumpable.)
  const seed = spawnPausedSeed(siblingOfStasis ? CLONE.PARENT : 0, shareMemory);
  let inj: Injector | undefined;
  const close = () => {
    kill(seed, SIGKILL);
    try {
      waitTask(seed, { timeoutMs: 5000 });
    } catch {
      // already reaped
    }
    seedGone(seed);
    if (!shareMemory) return;
    // What was mapped in the seed is mapped in stasis: unmapped here.
    const scratch = inj?.ownScratch;
    if (scratch) rawSyscall(SYS.munmap, scratch.addr, scratch.len);
    const trampoline = inj?.trampolineAddress;
    if (trampoline !== undefined) rawSyscall(SYS.munmap, trampoline, PAGE_SIZE);
  };
  try {
    seizeAndStop(seed, RESTORE_PTRACE_OPTIONS);
    // The seed's vDSO is stasis's.
    inj = new Injector(seed, seed, { pin: false, vdsoStart: ownVdsoStart() });
  } catch (e) {
    close();
    throw e;
  }
  return { inj, pid: seed, close };
}

/**
 * Create a stopped, traced task with PID `pid` (must be free). `siblingOfStasis` makes it a child
 * of stasis's parent rather than of stasis.
 */
export function createTask(pid: number | undefined, opts: {
  siblingOfStasis?: boolean;
  /** Clone flags: the namespaces the task gets of its own (CLONE_NEWPID: pid undefined, it is 1 there). */
  flags?: number;
  /** Runs in the seed before the clone: what it opens, the new task inherits. */
  beforeClone?: (seed: Injector) => void;
} = {}): number {
  const seed = openSeed(opts.siblingOfStasis);
  try {
    opts.beforeClone?.(seed.inj);
    return cloneInto(seed.inj, { setTid: pid === undefined ? [] : [pid], flags: CLONE.PARENT | (opts.flags ?? 0) });
  } finally {
    seed.close();
  }
}
