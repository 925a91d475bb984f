// The process tree being dumped: every process below the root, every thread of each, frozen
// with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT on each thread). A process is fully stopped
// before its children are listed, so it cannot fork one we would miss; its threads are listed
// again until no new one appears. Zombies are recorded, not seized. Releasing the tree resumes
// every task as it was (a task that was stopped stays stopped).

import { PTRACE_O, SIGTRAP, cont, detach, interrupt, seize, sleepMicros, waitForInterrupt, waitTask } from '../sys/ptrace.js';
import { freezeCgroup, type FrozenCgroup } from '../cgroup/freezer.js';
import { kill } from '../sys/native.js';
import { type ProcStat, ProcError, listThreads, readChildren, readStat, readStatus } from '../sys/proc/index.js';

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

export interface SeizeOptions {
  /**
   * The tree's cgroup, frozen while its tasks are seized (so none can fork meanwhile); every
   * task in it must belong to the tree.
   */
  freezeCgroup?: string;
  /**
   * A bound on the whole collection (criu's --timeout), in ms: each wait gets what is left of
   * it. Without it, each task gets 5 s to stop and a cgroup 10 s to freeze.
   */
  timeoutMs?: number;
  /**
   * For tests, the windows in which a task may exit: called with a process's children once
   * they are listed and looked at, before they are seized; and with each task once it is
   * seized, before it is interrupted.
   */
  beforeChildSeize?: (children: readonly number[]) => void;
  beforeInterrupt?: (tid: number) => void;
}

/** A task's stat, or undefined once it is gone (reaped). */
function statIfThere(pid: number): ProcStat | undefined {
  try {
    return readStat(pid);
  } catch (e) {
    if (e instanceof ProcError && e.code === 'ESRCH') return undefined;
    throw e;
  }
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

  private hooks: Pick<SeizeOptions, 'beforeChildSeize' | 'beforeInterrupt'> = {};

  /** The tree's cgroup, when it was frozen to seize it: put back as it was found at the end. */
  private cgroup?: FrozenCgroup;

  /** When the collection must be over (performance.now()), under a timeout. */
  private deadline?: number;

  /** How long the next wait may take: what is left before the deadline, or `otherwise`. */
  private waitMs(otherwise?: number): number | undefined {
    return this.deadline === undefined ? otherwise : Math.max(0, Math.round(this.deadline - performance.now()));
  }

  /**
   * Freeze the tree rooted at `pid`. On failure everything seized so far is released. A
   * process below the root that exits while it is being seized is taken as the zombie it
   * became (its parent is stopped already and cannot have reaped it), or left out where its
   * parent lets the kernel reap its children.
   */
  static seize(pid: number, opts: SeizeOptions = {}): SeizedTree {
    const tree = new SeizedTree(pid);
    tree.hooks = opts;
    if (opts.timeoutMs !== undefined) tree.deadline = performance.now() + opts.timeoutMs;
    try {
      if (opts.freezeCgroup) tree.seizeFrozen(opts.freezeCgroup);
      tree.visit(pid, 0);
      const strays = [...tree.preStopped.keys()].filter((t) => !tree.processes.some((p) => p.threads.includes(t)));
      if (strays.length) {
        throw new Error(`task ${strays[0]} is in cgroup ${opts.freezeCgroup} but not in the tree of ${pid}: stasis dumps one process tree`);
      }
    } catch (e) {
      tree.release();
      if (tree.deadline !== undefined && performance.now() >= tree.deadline && e instanceof Error) {
        throw new Error(`the tree was not collected within the ${opts.timeoutMs! / 1000} s timeout: ${e.message}`);
      }
      throw e;
    }
    return tree;
  }

  private seizeFrozen(dir: string): void {
    // A task in a job-control stop is seized only once the cgroup is thawed: attaching to a
    // stopped task waits for it to re-enter its stop as a traced one, which a frozen task never
    // does (ptrace_attach would wait forever). Stopped, it cannot fork meanwhile either.
    const later: number[] = [];
    const frozen = freezeCgroup(dir, this.waitMs());
    this.cgroup = frozen;
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
    for (const tid of this.seized) this.preStopped.set(tid, waitForInterrupt(tid, this.waitMs(5000)));
  }

  get root(): TreeProcess {
    return this.processes[0]!;
  }

  /**
   * `stat`: the process's stat as read just before it was interrupted (read here for the root).
   * Undefined when the process exited while being seized and is gone (see exitedWhileSeized).
   */
  private visit(pid: number, ppid: number, stat = readStat(pid)): TreeProcess | undefined {
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
    const tried = new Set<number>();
    let leaderExited = false;
    while (!leaderExited) {
      const fresh = listThreads(pid).filter((t) => !tried.has(t));
      if (!fresh.length) break;
      for (const tid of fresh) tried.add(tid);
      // Every new thread is interrupted before any is waited for: they reach their stops
      // together instead of one after another.
      const gone = new Set<number>();
      for (const tid of fresh) {
        if (this.startSeize(tid)) continue;
        if (tid === pid) leaderExited = true;
        gone.add(tid); // the thread just exited
      }
      for (const tid of fresh) {
        if (gone.has(tid)) continue;
        let sig: number;
        try {
          sig = this.preStopped.get(tid) ?? waitForInterrupt(tid, this.waitMs(5000));
        } catch (e) {
          if (!(e instanceof Error && /exited|killed/.test(e.message))) throw e;
          if (tid === pid) leaderExited = true;
          continue;
        }
        proc.threads.push(tid);
        if (stoppedBefore && sig !== SIGTRAP) proc.stopSigno = sig;
      }
    }
    if (leaderExited) return this.exitedWhileSeized(proc);
    proc.threads.sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
    if (stoppedBefore) proc.state = TASK_STOPPED;
    const children = readChildren(pid, proc.threads); // all stopped: no thread comes or goes
    // The children's leaders are interrupted all at once too (a child that is a zombie is not).
    const stats: (ProcStat | undefined)[] = children.map((child) => readStat(child));
    this.hooks.beforeChildSeize?.(children);
    children.forEach((child, i) => {
      const { state } = stats[i]!;
      if (state === 'Z' || this.stoppedAtSeize.has(child)) return; // seized through the freezer
      this.stoppedAtSeize.set(child, state === 'T');
      // It exited since it was looked at: a zombie now, or gone (reaped by the kernel).
      if (!this.startSeize(child)) {
        const now = statIfThere(child);
        stats[i] = now?.state === 'X' ? undefined : now; // X: being reaped as we look
      }
    });
    children.forEach((child, i) => {
      const stat = stats[i];
      const visited = stat && this.visit(child, pid, stat);
      if (visited) proc.children.push(visited);
    });
    return proc;
  }

  /**
   * A process whose leader exited while it was being seized: the root is an error; a process
   * below it is the zombie it became, its other threads seized already gone with it (each
   * reported to us, as tracer, before the leader can be), or left out when already reaped.
   */
  private exitedWhileSeized(proc: TreeProcess): TreeProcess | undefined {
    const { pid } = proc;
    if (pid === this.rootPid) throw new Error(`process ${pid} exited while being seized`);
    for (const tid of proc.threads.splice(0)) {
      let w;
      try {
        w = waitTask(tid, { timeoutMs: 1000 });
      } catch {
        w = undefined;
      }
      if (w?.kind !== 'exited' && w?.kind !== 'killed') {
        throw new Error(`the main thread of process ${pid} exited while it was being seized, but thread ${tid} lives on`);
      }
    }
    this.processes.splice(this.processes.indexOf(proc), 1);
    const stat = statIfThere(pid);
    if (!stat) return undefined;
    if (stat.state !== 'Z') throw new Error(`process ${pid} exited while being seized, but is ${stat.state}, not a zombie`);
    return this.visit(pid, proc.ppid, stat);
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
      // A task that has exited cannot be attached to (EPERM) until its parent reaps it.
      if (e instanceof Error && /EPERM/.test(e.message)) {
        const now = statIfThere(tid);
        if (!now || now.state === 'Z' || now.state === 'X') return false;
      }
      throw e;
    }
    this.seized.push(tid);
    this.hooks.beforeInterrupt?.(tid);
    try {
      interrupt(tid);
    } catch (e) {
      // Exiting since it was seized: its exit comes to us (its tracer) instead of a stop.
      if (!(e instanceof Error && /ESRCH/.test(e.message))) throw e;
    }
    return true;
  }

  /**
   * Let every task go on as it was. Idempotent. A cgroup found frozen is frozen again first, so
   * its tasks stay where they are once let go.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    try {
      this.cgroup?.restore();
    } catch {
      // the tasks are let go all the same; the guardian puts the cgroup back
    }
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
    // Every killed task is collected, whichever exits first. Not one by one in a fixed order: a
    // pid namespace's init dies only after every other task of it is reaped — its own other
    // threads included, which stasis, their tracer, has to reap — so its last thread to exit
    // waits for whichever of its siblings is still a zombie (and a killed thread-group leader is
    // reported after the rest).
    const pending = new Set(this.seized);
    let pause = 20;
    while (pending.size) {
      let progressed = false;
      for (const tid of pending) {
        let w: ReturnType<typeof waitTask>;
        try {
          w = waitTask(tid, { nohang: true });
        } catch {
          pending.delete(tid); // reaped by someone else already
          continue;
        }
        if (!w) continue;
        progressed = true;
        if (w.kind === 'stopped') cont(tid, 0); // an event on its way out
        else pending.delete(tid);
      }
      if (progressed) {
        pause = 20;
      } else {
        sleepMicros(pause);
        pause = Math.min(pause * 2, 2000);
      }
    }
    this.cgroup?.restore();
  }
}
