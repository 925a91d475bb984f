// `stasis dump`: checkpoint one process into an image directory.
//
// Order of work: check what can be checked without touching the task; seize it (it stops, still
// alive); read registers and ask it about itself through injected syscalls; put it back exactly
// as it was (it stays ptrace-stopped); copy its memory; write every image; write inventory.img
// last; then kill it, or with --leave-running let it go. Any failure before the end releases the
// task untouched and running, and leaves no inventory.img behind.

import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { ImageDir, imageFileName, pagemapImage, pagesFileName } from '../images/index.js';
import { SYS } from '../sys/arch.js';
import { Injector } from '../sys/inject.js';
import { kill } from '../sys/native.js';
import {
  SIGKILL, detach, getRegs, getSigmask, seizeAndStop, waitTask,
} from '../sys/ptrace.js';
import {
  ProcError, listThreads, readAuxv, readChildren, readLoginuid, readOomScoreAdj, readPersonality,
  readSmaps, readStat, readStatus,
} from '../sys/proc/index.js';
import { dumpFdTable } from '../files/fdtable.js';
import { FileTable } from '../files/table.js';
import { dumpFs } from './fs.js';
import { IdAllocator } from './ids.js';
import { dumpMm, dumpVmas } from './mm.js';
import { findDataPages, writePages } from './pages.js';
import { dumpThreadInfo } from './regs.js';
import { dumpRlimits } from './rlimits.js';
import { dumpSigactions } from './sigactions.js';
import { dumpPendingSignals } from './signals.js';
import { dumpThreadCore } from './thread.js';
import { dumpItimers } from './timers.js';
import { writeDumpStats, type DumpStats } from './stats.js';

export interface DumpOptions {
  pid: number;
  imagesDir: string;
  /** Where stats-dump goes (criu's work dir; the images dir by default). */
  workDir?: string;
  leaveRunning?: boolean;
  /** Progress messages (for -v and a terminal). */
  log?: (msg: string) => void;
}

export interface DumpResult {
  pid: number;
  stats: DumpStats;
  imageBytes: number;
}

const PR_GET_CHILD_SUBREAPER = 37;
const MARCH_X86_64 = 1;
const TASK_ALIVE = 1;
const NO_LSM = 0;
const NETWORK_LOCK_SKIP = 2;

/** Refusals that need no seizing: the task must exist and be of a shape stasis can dump. */
function precheck(pid: number): void {
  let status;
  try {
    status = readStatus(pid);
  } catch (e) {
    if (e instanceof ProcError && (e.code === 'ESRCH' || e.code === 'ENOENT')) {
      throw new Error(`process ${pid} does not exist`);
    }
    throw e;
  }
  if (status.tgid !== pid) throw new Error(`${pid} is a thread of process ${status.tgid}; dump the process`);
  if (status.state === 'Z') throw new Error(`process ${pid} is a zombie`);
  const threads = listThreads(pid);
  if (threads.length > 1) throw new Error(`process ${pid} has ${threads.length} threads, which stasis cannot dump yet`);
  const children = readChildren(pid);
  if (children.length) throw new Error(`process ${pid} has child processes (${children.join(', ')}), which stasis cannot dump yet`);
  if (status.seccomp) throw new Error(`process ${pid} runs under seccomp, which stasis cannot dump yet`);
}

/** mkdir -p without Node's recursive mkdir, which spins forever on some procfs paths. */
function makeDirs(dir: string): void {
  const abs = path.resolve(dir);
  if (fs.existsSync(abs)) return;
  makeDirs(path.dirname(abs));
  fs.mkdirSync(abs);
}

function checkWritable(dir: string): void {
  try {
    makeDirs(dir);
    fs.accessSync(dir, fs.constants.W_OK);
    const probe = path.join(dir, `.stasis-probe-${process.pid}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (e) {
    throw new Error(`cannot write images into ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export async function dump(opts: DumpOptions): Promise<DumpResult> {
  const { pid } = opts;
  const log = opts.log ?? (() => {});
  precheck(pid);
  checkWritable(opts.imagesDir);
  const images = await ImageDir.create(opts.imagesDir);
  const ids = new IdAllocator();
  const foreign = ids.foreignNamespaces(pid);
  if (foreign.length) {
    throw new Error(`process ${pid} is in its own ${foreign.join(', ')} namespace(s); dump containers through runc`);
  }

  const t0 = performance.now();
  seizeAndStop(pid);
  const tFrozen = performance.now();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      detach(pid);
    } catch {
      // the task died under us: nothing to resume
    }
  };
  try {
    log(`seized ${pid} in ${(tFrozen - t0).toFixed(1)} ms`);
    const regs = getRegs(pid);
    const blocked = getSigmask(pid);
    const stat = readStat(pid);
    const status = readStatus(pid);
    const smaps = readSmaps(pid);
    const auxv = readAuxv(pid);
    const files = new FileTable();
    const taskIds = ids.idsFor(pid);

    const inj = new Injector(pid);
    let core, mm, sigactions, timers, thread, subreaper, runs, scanned, written, tMem, tMemDone, fdinfos;
    const pagesId = 1;
    try {
      const vmas = dumpVmas(pid, smaps, files);
      mm = dumpMm(pid, inj, stat, auxv, vmas, files);
      sigactions = dumpSigactions(inj);
      timers = dumpItimers(inj);
      thread = dumpThreadCore(inj, pid, pid, blocked);
      subreaper = inj.callChecked(SYS.prctl, PR_GET_CHILD_SUBREAPER, inj.scratch(8)) === 0n
        && inj.readScratch(4).readInt32LE(0) !== 0;
      fdinfos = dumpFdTable(pid, inj, files);
      tMem = performance.now();
      ({ runs, scanned } = findDataPages(pid, mm.vmas));
      written = writePages(pid, runs, images.file(pagesFileName(pagesId)), inj);
      tMemDone = performance.now();
      log(`copied ${written} pages in ${(tMemDone - tMem).toFixed(1)} ms`);
    } finally {
      inj.finish();
    }
    const fsEntry = dumpFs(pid, files);
    core = {
      mtype: MARCH_X86_64,
      thread_info: dumpThreadInfo(pid, regs, thread.clearTidAddr),
      tc: {
        task_state: TASK_ALIVE, exit_code: 0, personality: readPersonality(pid), flags: stat.flags,
        blk_sigset: blocked, comm: status.name, timers, rlimits: dumpRlimits(pid),
        signals_s: dumpPendingSignals(pid, true), loginuid: readLoginuid(pid),
        oom_score_adj: readOomScoreAdj(pid), sigactions, child_subreaper: subreaper,
      },
      thread_core: thread.core,
    };

    await images.write(imageFileName('PAGEMAP', pid), pagemapImage(pagesId, runs).entries);
    await images.writeMessages('pstree.img', [{
      pid, ppid: 0, pgid: stat.pgrp, sid: stat.session, threads: [pid],
    }]);
    await images.writeMessages(imageFileName('CORE', pid), [core]);
    await images.writeMessages(imageFileName('IDS', pid), [taskIds]);
    await images.writeMessages(imageFileName('MM', pid), [mm]);
    await images.writeMessages(imageFileName('FS', pid), [fsEntry]);
    await images.writeMessages(imageFileName('FDINFO', taskIds.files_id), fdinfos);
    await images.writeMessages('files.img', files.entries);
    for (const [name, entries] of files.images) await images.write(name, entries);

    const stats: DumpStats = {
      freezing_time: Math.round((tFrozen - t0) * 1000),
      frozen_time: Math.round((performance.now() - tFrozen) * 1000),
      memdump_time: Math.round((tMemDone - tMem) * 1000),
      memwrite_time: Math.round((tMemDone - tMem) * 1000),
      pages_scanned: scanned, pages_skipped_parent: 0, pages_written: written,
      irmap_resolve: 0, pages_lazy: 0, page_pipes: 0, page_pipe_bufs: 0,
      shpages_scanned: 0, shpages_skipped_parent: 0, shpages_written: 0,
    };
    await images.commit({
      img_version: 2, fdinfo_per_id: true, root_ids: ids.rootIds, ns_per_id: true,
      root_cg_set: 1, lsmtype: NO_LSM, network_lock_method: NETWORK_LOCK_SKIP,
      plugins_entry: {}, dump_criu_run_id: randomUUID(),
    });
    await writeDumpStats(opts.workDir ?? opts.imagesDir, stats);

    if (opts.leaveRunning) {
      release();
    } else {
      released = true;
      kill(pid, SIGKILL);
      // Collect the exit as its tracer, so the task is gone when dump returns.
      try {
        waitTask(pid, { timeoutMs: 5000 });
      } catch {
        // reaped already
      }
    }
    const imageBytes = fs.readdirSync(opts.imagesDir)
      .reduce((n, f) => n + fs.statSync(path.join(opts.imagesDir, f)).size, 0);
    return { pid, stats, imageBytes };
  } finally {
    release();
  }
}
