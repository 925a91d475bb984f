// `stasis restore`: bring a dumped process back, with its PID, from an image directory.
//
// Everything that can be checked is checked before any process exists. Then: a task with the
// dumped PID is cloned (task/clone.ts), its address space rebuilt and filled, its descriptors,
// fs context and attributes set, pending signals queued; last, its registers and blocked mask
// are set and it is let go. If anything fails after the clone, the task is killed: a restore
// leaves a running process or nothing.

import fs from 'node:fs';
import { ImageDir, decodeImage, imageFileName, INVENTORY_FILE, pagesFileName, type Message } from '../images/index.js';
import { SYS } from '../sys/arch.js';
import { Injector } from '../sys/inject.js';
import { kill } from '../sys/native.js';
import { SIGKILL, detach, waitTask } from '../sys/ptrace.js';
import { checkFdTable, moveAbove, restoreFdTable, type FdinfoEntry } from '../files/fdtable.js';
import type { FileEntryMessage } from '../files/table.js';
import { createTask } from './clone.js';
import { restoreFs, type FsEntry } from './fs.js';
import { VMA, hasDumpablePages, restoreMmFields, restoreVmas, tightenProtections, type MmEntry } from './mm.js';
import { fillPages } from './pages.js';
import { restoreFpregs, restoredRegs, type ThreadInfoX86 } from './regs.js';
import { restoreRlimits } from './rlimits.js';
import { restoreSigactions } from './sigactions.js';
import { restorePendingSignals } from './signals.js';
import { restoreThreadCore, type ThreadCoreEntry } from './thread.js';
import { restoreItimers } from './timers.js';
import { writeRestoreStats } from './stats.js';

export interface RestoreOptions {
  imagesDir: string;
  workDir?: string;
  /** --inherit-fd fd[N]:KEY, as KEY → N. */
  inheritFds?: Map<string, number>;
  /** runc's rst_sibling: the restored task becomes a child of stasis's parent. */
  siblingOfStasis?: boolean;
  log?: (msg: string) => void;
}

export interface RestoreResult {
  pid: number;
  pages: number;
  timeMs: number;
}

const MARCH_X86_64 = 1;
const TASK_ALIVE = 1;
const PER_LINUX_MASK = 0xffffffff;
const CLOSE_RANGE_ALL = 0xffffffff;

interface LoadedImages {
  pid: number;
  core: Message;
  mm: MmEntry;
  pagemap: Awaited<ReturnType<ImageDir['pagemap']>>;
  pagesFile: string;
  fdinfos: FdinfoEntry[];
  files: Map<number, FileEntryMessage>;
  fs: FsEntry;
  /** Entries of an optional image (pipes-data, sk-queues...), read on demand. */
  extraImage(name: string): { message: Message; extra?: Uint8Array }[];
}

/** Read and check every image before any process is created. */
async function load(dir: string): Promise<LoadedImages> {
  let images: ImageDir;
  try {
    images = await ImageDir.open(dir);
  } catch {
    throw new Error(`${dir}: no such image directory`);
  }
  if (!(await images.isComplete())) {
    throw new Error(`${dir} holds no complete dump (no ${INVENTORY_FILE})`);
  }
  const inventory = await images.inventory();
  if (inventory.img_version !== 2) throw new Error(`${INVENTORY_FILE}: image version ${inventory.img_version} is not supported`);
  const pstree = await images.messages('pstree.img');
  if (pstree.length !== 1) throw new Error(`the dump holds ${pstree.length} processes; stasis restores single processes so far`);
  const [root] = pstree as [Message];
  const pid = Number(root.pid);
  if (root.threads?.length > 1) throw new Error(`process ${pid} has ${root.threads.length} threads, which stasis cannot restore yet`);
  const core = await images.message(imageFileName('CORE', pid));
  if (core.mtype !== MARCH_X86_64) throw new Error(`core-${pid}.img is not an x86_64 task`);
  if (core.tc?.task_state !== TASK_ALIVE) throw new Error(`process ${pid} was not running when dumped (state ${core.tc?.task_state})`);
  const ids = await images.message(imageFileName('IDS', pid));
  const mm = (await images.message(imageFileName('MM', pid))) as MmEntry;
  const pagemap = await images.pagemap(imageFileName('PAGEMAP', pid));
  const pagesFile = images.file(pagesFileName(pagemap.pagesId));
  const need = pagemap.runs.reduce((n, r) => (r.offset !== undefined ? Math.max(n, r.offset + r.nrPages * 4096) : n), 0);
  const have = fs.existsSync(pagesFile) ? fs.statSync(pagesFile).size : -1;
  if (have < need) {
    throw new Error(`${pagesFileName(pagemap.pagesId)}: ${have < 0 ? 'missing' : `truncated (${have} of ${need} bytes)`}`);
  }
  const files = new Map<number, FileEntryMessage>();
  for (const f of await images.messages('files.img')) files.set(Number(f.id), f as FileEntryMessage);
  const fdinfos = (await images.messages(imageFileName('FDINFO', ids.files_id))) as FdinfoEntry[];
  checkFdTable(fdinfos, files);
  const fsEntry = (await images.message(imageFileName('FS', pid))) as FsEntry;
  for (const id of [mm.exe_file_id, fsEntry.cwd_id, fsEntry.root_id, ...mm.vmas.filter((v) => v.status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)).map((v) => Number(v.shmid))]) {
    const f = files.get(id);
    if (!f?.reg) throw new Error(`files.img has no regular file ${id}, which the dump refers to`);
  }
  const extras = new Map<string, { message: Message; extra?: Uint8Array }[]>();
  const extraImage = (name: string) => {
    let e = extras.get(name);
    if (!e) {
      const file = images.file(name);
      e = fs.existsSync(file) ? decodeImage(fs.readFileSync(file), name).entries : [];
      extras.set(name, e);
    }
    return e;
  };
  return { pid, core, mm, pagemap, pagesFile, fdinfos, files, fs: fsEntry, extraImage };
}

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const log = opts.log ?? (() => {});
  const img = await load(opts.imagesDir);
  const { pid } = img;
  if (fs.existsSync(`/proc/${pid}`)) throw new Error(`PID ${pid} is already in use`);

  const t0 = performance.now();
  const task = createTask(pid, { siblingOfStasis: opts.siblingOfStasis });
  const tForked = performance.now();
  let pages = 0;
  try {
    const inj = new Injector(pid);
    const regFile = (id: number) => img.files.get(id)!.reg as Record<string, unknown>;
    const { tc, thread_core: threadCore, thread_info: threadInfo } = img.core as {
      tc: Message; thread_core: ThreadCoreEntry; thread_info: ThreadInfoX86;
    };

    log(`task ${pid} created in ${(tForked - t0).toFixed(1)} ms`);
    const space = restoreVmas(inj, img.mm.vmas, { regFile }, hasDumpablePages);
    log(`address space of ${pid} mapped at ${(performance.now() - t0).toFixed(1)} ms`);
    const kernelArea = img.mm.vmas.filter((v) => v.status & (VMA.VDSO | VMA.VVAR));
    pages = fillPages(inj, img.pagemap.runs, img.pagesFile,
      (a) => kernelArea.some((v) => a >= v.start && a < v.end));
    tightenProtections(inj, space);
    restoreMmFields(inj, img.mm, { regFile });
    log(`memory of ${pid} restored: ${pages} pages at ${(performance.now() - t0).toFixed(1)} ms`);

    // Descriptors: drop everything inherited from stasis, then open the dumped table.
    inj.callChecked(SYS.close_range, 0, CLOSE_RANGE_ALL, 0);
    let pidfd = -1;
    const floor = img.fdinfos.reduce((m, f) => Math.max(m, f.fd + 1), 3);
    restoreFdTable(pid, inj, img.fdinfos, img.files, {
      inherited: (key) => opts.inheritFds?.get(key),
      importFd(fd) {
        if (pidfd < 0) pidfd = moveAbove(inj, Number(inj.callChecked(SYS.pidfd_open, process.pid, 0)), floor);
        return Number(inj.callChecked(SYS.pidfd_getfd, pidfd, fd, 0));
      },
      imageEntries: (name) => img.extraImage(name),
    });
    if (pidfd >= 0) inj.callChecked(SYS.close, pidfd);
    restoreFs(inj, img.fs, regFile);

    restoreSigactions(inj, tc.sigactions ?? []);
    restoreItimers(inj, tc.timers);
    restoreRlimits(pid, tc.rlimits);
    inj.callChecked(SYS.personality, Number(tc.personality ?? 0) & PER_LINUX_MASK);
    if (tc.child_subreaper) inj.callChecked(SYS.prctl, 36 /* PR_SET_CHILD_SUBREAPER */, 1);
    if (tc.oom_score_adj !== undefined) fs.writeFileSync(`/proc/${pid}/oom_score_adj`, String(tc.oom_score_adj));
    restoreThreadCore(inj, threadCore, BigInt(threadInfo.clear_tid_addr ?? 0));
    restorePendingSignals(inj, pid, tc.signals_s, true);
    restorePendingSignals(inj, pid, threadCore.signals_p, false);

    restoreFpregs(pid, threadInfo);
    inj.finish({ regs: restoredRegs(threadInfo), sigmask: BigInt(threadCore.blk_sigset ?? tc.blk_sigset ?? 0) });
    detach(pid);
  } catch (e) {
    kill(task, SIGKILL);
    try {
      waitTask(task, { timeoutMs: 5000 });
    } catch {
      // reaped
    }
    throw e;
  }
  const tDone = performance.now();
  try {
    await writeRestoreStats(opts.workDir ?? opts.imagesDir, {
      pages_compared: 0, pages_skipped_cow: 0, forking_time: Math.round((tForked - t0) * 1000),
      restore_time: Math.round((tDone - t0) * 1000), pages_restored: pages,
    });
  } catch (e) {
    // The process runs already; a read-only images dir only costs the statistics.
    log(`stats-restore not written: ${(e as Error).message}`);
  }
  return { pid, pages, timeMs: tDone - t0 };
}

/** Wait for a restored task that is our child; its exit status, shell style (128+signal). */
export function waitForExit(pid: number): number {
  for (;;) {
    const w = waitTask(pid)!;
    if (w.kind === 'exited') return w.code;
    if (w.kind === 'killed') return 128 + w.signal;
  }
}
