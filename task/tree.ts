// The process tree being dumped: every process below the root, every thread of each, frozen
// with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT on each thread). A process is fully stopped
// before its children are listed, so it cannot fork one we would miss; its threads are listed
// again until no new one appears. Zombies are recorded, not seized. Releasing the tree resumes
// every task as it was (a task that was stopped stays stopped).

import { PTRACE_O, SIGTRAP, detach, interrupt, seize, waitForInterrupt, waitTask } from '../sys/ptrace.js';
import { freezeCgroup } from '../cgroup/freezer.js';
import { kill } from '../sys/native.js';
import { listThreads, readChildren, readStat, readStatus } from '../sys/proc/index.js';

/** Injected calls in a task under seccomp must not meet its filters while stasis works in it. */
const SEIZE_OPTIONS = PTRACE_O.TRACESYSGOOD | PTRACE_O.SUSPEND_SECCOMP;

export const TASK_ALIVE = 1;
export const TASK_DEAD = 2;
export const TASK_STOPPED = 3;

export interface TreeProcess {
  pid: number;
  /** 0 for the root. */
  ppid: number;
  pgid: number;
  sid: number;
  /** Thread ids, the leader first. */
  threads: number[];
  state: typeof TASK_ALIVE | typeof TASK_DEAD | typeof TASK_STOPPED;
  /** For zombies: the wait status the parent will collect (task exit_code). */
  exitCode: number;
  /** For stopped processes: the signal that stopped them. */
  stopSigno?: number;
  children: TreeProcess[];
}

export class SeizedTree {
  /** Parents before children (the order of pstree.img). */
  readonly processes: TreeProcess[] = [];
  private seized: number[] = [];
  private released = false;

  private constructor(readonly rootPid: number) {}

  /** Processes interrupted before their visit: whether each was in a job-control stop. */
  private stoppedAtSeize = new Map<number, boolean>();

  /** Tasks seized through the freezer, with the signal of their interrupt stop. */
  private preStopped = new Map<number, number>();

  /**
   * Freeze the tree rooted at `pid`. On failure everything seized so far is released.
   * `freezeCgroup`: the tree's cgroup, frozen while its tasks are seized (so none can fork
   * meanwhile); every task in it must belong to the tree.
   */
  static seize(pid: number, opts: { freezeCgroup?: string } = {}): SeizedTree {
    const tree = new SeizedTree(pid);
    try {
      if (opts.freezeCgroup) tree.seizeFrozen(opts.freezeCgroup);
      tree.visit(pid, 0);
      const strays = [...tree.preStopped.keys()].filter((t) => !tree.processes.some((p) => p.threads.includes(t)));
      if (strays.length) {
        throw new Error(`task ${strays[0]} is in cgroup ${opts.freezeCgroup} but not in the tree of ${pid}: stasis dumps one process tree`);
      }
    } catch (e) {
      tree.release();
      throw e;
    }
    return tree;
  }

  private seizeFrozen(dir: string): void {
    // A task in a job-control stop is seized only once the cgroup is thawed: attaching to a
    // stopped task waits for it to re-enter its stop as a traced one, which a frozen task never
    // does (ptrace_attach would wait forever). Stopped, it cannot fork meanwhile either.
    const later: number[] = [];
    const frozen = freezeCgroup(dir);
    try {
      for (const tid of frozen.tasks) {
        this.stoppedAtSeize.set(tid, frozen.stopped.has(tid));
        if (frozen.stopped.has(tid)) later.push(tid);
        else this.startSeize(tid); // false: exiting while frozen
      }
    } finally {
      frozen.thaw();
    }
    for (const tid of later) this.startSeize(tid);
    for (const tid of this.seized) this.preStopped.set(tid, waitForInterrupt(tid));
  }

  get root(): TreeProcess {
    return this.processes[0]!;
  }

  /** `stat`: the process's stat as read just before it was interrupted (read here for the root). */
  private visit(pid: number, ppid: number, stat = readStat(pid)): TreeProcess {
    const proc: TreeProcess = {
      pid, ppid, pgid: stat.pgrp, sid: stat.session, threads: [], state: TASK_ALIVE,
      exitCode: 0, children: [],
    };
    this.processes.push(proc);
    if (stat.state === 'Z') {
      proc.state = TASK_DEAD;
      proc.exitCode = stat.exitCode;
      proc.threads = [pid];
      return proc;
    }
    // Whether it was stopped (job control) before stasis came: a child was looked at before it
    // was interrupted, when its parent was visited; an interrupted task shows as traced, 't'.
    const stoppedBefore = this.stoppedAtSeize.get(pid) ?? readStatus(pid).state === 'T';
    for (;;) {
      const fresh = listThreads(pid).filter((t) => !proc.threads.includes(t));
      if (!fresh.length) break;
      // Every new thread is interrupted before any is waited for: they reach their stops
      // together instead of one after another.
      const gone = new Set<number>();
      for (const tid of fresh) {
        if (this.startSeize(tid)) continue;
        if (tid === pid) throw new Error(`process ${pid} exited while being seized`);
        gone.add(tid); // the thread just exited
      }
      for (const tid of fresh) {
        if (gone.has(tid)) continue;
        let sig: number;
        try {
          sig = this.preStopped.get(tid) ?? waitForInterrupt(tid);
        } catch (e) {
          if (e instanceof Error && /exited|killed/.test(e.message) && tid !== pid) continue;
          throw e;
        }
        proc.threads.push(tid);
        if (stoppedBefore && sig !== SIGTRAP) proc.stopSigno = sig;
      }
    }
    proc.threads.sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
    if (stoppedBefore) proc.state = TASK_STOPPED;
    const children = readChildren(pid, proc.threads); // all stopped: no thread comes or goes
    // The children's leaders are interrupted all at once too (a child that is a zombie is not).
    const stats = children.map((child) => readStat(child));
    children.forEach((child, i) => {
      const { state } = stats[i]!;
      if (state === 'Z' || this.stoppedAtSeize.has(child)) return; // seized through the freezer
      this.stoppedAtSeize.set(child, state === 'T');
      this.startSeize(child);
    });
    children.forEach((child, i) => proc.children.push(this.visit(child, pid, stats[i])));
    return proc;
  }

  /**
   * PTRACE_SEIZE and PTRACE_INTERRUPT, without waiting for the stop (waitForInterrupt does).
   * False when the task is gone. A task seized already (through the freezer, or as a child
   * about to be visited) is left as it is.
   */
  private startSeize(tid: number): boolean {
    if (this.preStopped.has(tid) || this.seized.includes(tid)) return true;
    try {
      seize(tid, SEIZE_OPTIONS);
    } catch (e) {
      if (e instanceof Error && /ESRCH/.test(e.message)) return false;
      throw e;
    }
    this.seized.push(tid);
    interrupt(tid);
    return true;
  }

  /** Let every task go on as it was. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const tid of this.seized) {
      try {
        detach(tid);
      } catch {
        // gone
      }
    }
  }

  /** After a successful dump without --leave-running: kill every process, collect the exits. */
  kill(): void {
    this.released = true;
    for (const p of this.processes) {
      if (p.state === TASK_DEAD) continue;
      try {
        kill(p.pid, 9);
      } catch (e) {
        if (!(e instanceof Error && /ESRCH/.test(e.message))) throw e;
      }
    }
    // Non-leader threads first: a killed thread-group leader is reported only after the rest;
    // then processes children first: a pid namespace's init dies only after all the others.
    const leaders = this.processes.map((p) => p.pid).reverse();
    const seized = new Set(this.seized);
    const order = [...this.seized.filter((t) => !leaders.includes(t)), ...leaders.filter((t) => seized.has(t))];
    for (const tid of order) {
      try {
        waitTask(tid); // SIGKILL always ends a task; blocking is the fastest wait
      } catch {
        // reaped by someone else already
      }
    }
  }
}
