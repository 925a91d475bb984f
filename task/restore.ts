// `stasis restore`: bring a dumped process tree back, every PID and TID as it was.
//
// Everything that can be checked is checked before any process exists (restore/images.ts,
// restore/plan.ts). Then the phases, each a module of restore/:
//   tree.ts        processes cloned top-down with their PIDs, sessions and groups, helpers for
//                  leaders that are gone, zombies; each process's memory (memory.ts), files
//                  (files.ts), signal actions, cwd and name before its children are cloned
//   namespaces.ts  the tree's own namespaces, made with the first task and set up in it; user
//                  namespaces made once every process exists, each process entering its own
//                  before its threads are cloned and its credentials set (task/userns.ts)
//   attributes.ts  each process's fs context, interval timers, limits and the like
//   threads.ts     threads cloned, POSIX timers (which may signal one thread), per-thread state,
//                  pending signals, registers; all let go
// If anything fails, every task created is killed: a restore leaves a running tree or nothing.

import { RestoreLock } from '../net-ns/network-lock.js';
import { restoreStats, writeRestoreStats } from './stats.js';
import { pinSelf } from '../sys/inject.js';
import type { CgRoot } from '../cgroup/cgroups.js';
import { restoreAttributes } from './restore/attributes.js';
import { TreeFiles } from './restore/files.js';
import { dumpLockOf, load, type LoadedImages } from './restore/images.js';
import { TreeNamespaces } from './restore/namespaces.js';
import { makePlan, releasePlan, type Plan } from './restore/plan.js';
import { RestoreRun } from './restore/state.js';
import { cloneThreads, restoreThreads, resumeTree } from './restore/threads.js';
import { createTree, zombiesDie } from './restore/tree.js';
import { waitTask } from '../sys/ptrace.js';

export interface RestoreOptions {
  imagesDir: string;
  workDir?: string;
  /** --inherit-fd fd[N]:KEY, as KEY → N. */
  inheritFds?: Map<string, number>;
  /** runc's rst_sibling: the restored root becomes a child of stasis's parent. */
  siblingOfStasis?: boolean;
  /** --shell-job: terminals in the dump become stasis's own terminal. */
  shellJob?: boolean;
  /** criu's --tcp-established: established TCP connections in the dump are restored. */
  tcpEstablished?: boolean;
  /** criu's --tcp-close: established TCP connections are restored closed. */
  tcpClose?: boolean;
  /** For a dump with its own mount namespace: the container's root on the host (criu's --root). */
  root?: string;
  /** External mounts, key → host path (criu's ext_mnt / --ext-mount-map). */
  extMnt?: ReadonlyMap<string, string>;
  /**
   * Existing namespaces the tree is restored into instead of new ones (criu's join_ns, what
   * runc sends for namespaces its config names by path: a pod's ipc and uts). What the image
   * holds of those namespaces (names, SysV objects, sysctls, links) is theirs already.
   */
  joinNs?: readonly JoinNs[];
  /** criu's cg_root: the cgroup of each hierarchy the restored tree goes into. */
  cgRoots?: readonly CgRoot[];
  /**
   * Called once the root task has its namespaces and mounts, before anything else is restored
   * (the RPC's setup-namespaces and post-setup-namespaces), with its PID as stasis sees it.
   */
  namespacesReady?: (rootPid: number) => void;
  /**
   * criu's orphan_pts_master: pseudo-terminals whose master was outside the dump are made anew,
   * and the master of each is handed here (stasis's descriptor; the RPC's orphan-pts-master).
   */
  orphanPtsMaster?: (masterFd: number) => void;
  /**
   * Called with the whole tree restored and still stopped, just before it is let go (the RPC's
   * post-restore and pre-resume). Throwing fails the restore: every task is killed.
   */
  beforeResume?: (rootPid: number) => void;
  log?: (msg: string) => void;
  /** Something coped with that the user should know of (criu's "Warn" lines). */
  warn?: (msg: string) => void;
  /** Memory filled so far, per process (for a progress line on a terminal). */
  progress?: (what: string, done: number, total: number) => void;
}

export interface JoinNs {
  kind: 'ipc' | 'uts' | 'net' | 'time';
  /** A namespace file (/proc/PID/ns/KIND, a bind mount of one). */
  file: string;
}


export interface RestoreResult {
  pid: number;
  processes: number;
  pages: number;
  timeMs: number;
}

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const tStart = performance.now(); // stats-restore: restore_time is the whole restore
  let img: LoadedImages;
  try {
    img = await load(opts.imagesDir);
  } catch (e) {
    // Images that cannot be restored: a lock their dump left goes anyway (the peers see a reset,
    // not a connection hanging on).
    new RestoreLock(await dumpLockOf(opts.imagesDir)).release(opts.warn);
    throw e;
  }
  const run = new RestoreRun(opts, img);
  // Restored or not, the locks go: the peers see the connection carry on, or reset. A tree of
  // the host's namespace: the dump's lock of its connections (and the restore's, nftables); one
  // with a namespace of its own: the lock of that namespace (the restore's, and a dump's left
  // there when it is the same). See RestoreLock.
  let unlocked = false;
  const unlockNetwork = () => {
    if (unlocked) return;
    unlocked = true;
    run.netLock.release(opts.warn);
  };
  let plan: Plan;
  try {
    plan = makePlan(opts, img, run.ownSid);
    // Connections of stasis's namespace locked before any socket is made (see RestoreLock).
    if (opts.tcpEstablished) run.netLock.lockConnections();
  } catch (e) {
    unlockNetwork();
    throw e;
  }
  const ns = new TreeNamespaces(run, plan);
  const files = new TreeFiles(run, plan);
  let rootPid: number;
  // Tasks created from now on inherit stasis's pin (see RestoreRun.affinity).
  const unpin = pinSelf();
  try {
    createTree(run, plan, ns, files);
    zombiesDie(run);
    for (const t of run.tasks.values()) {
      if (!t.filesDone) files.restore(t);
      restoreAttributes(run, t);
    }
    files.finish();
    const root = run.tasks.get(img.procs[0]!.pid)!;
    ns.finish(root.inj, root.p.pid);
    if (opts.orphanPtsMaster) files.handOverOrphanPts();
    ns.enterUserNamespaces();
    files.closePidfds();
    cloneThreads(run);
    files.threadsMade();
    restoreThreads(run, plan);
    rootPid = root.hpid;
    opts.beforeResume?.(rootPid);
    unlockNetwork(); // then the connections go live, sending what they had not sent yet
    files.connectionsLive();
    resumeTree(run);
  } catch (e) {
    run.killCreated();
    throw e;
  } finally {
    unpin();
    files.release();
    releasePlan(plan);
    unlockNetwork();
  }
  const tDone = performance.now();
  try {
    await writeRestoreStats(opts.workDir ?? opts.imagesDir, restoreStats({
      startMs: tStart, forkingMs: (run.treeMadeAt ?? tDone) - run.t0, doneMs: tDone, pagesRestored: run.pages,
      pagesCompared: run.cow.compared, pagesSkippedCow: run.cow.skipped,
    }));
  } catch (e) {
    // The tree runs already; a read-only images dir only costs the statistics.
    run.log(`stats-restore not written: ${(e as Error).message}`);
  }
  return { pid: rootPid, processes: img.procs.length, pages: run.pages, timeMs: tDone - run.t0 };
}

/** Wait for a restored task that is our child; its exit status, shell style (128+signal). */
export function waitForExit(pid: number): number {
  for (;;) {
    const w = waitTask(pid)!;
    if (w.kind === 'exited') return w.code;
    if (w.kind === 'killed') return 128 + w.signal;
  }
}

