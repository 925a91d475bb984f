// `stasis restore`: bring a dumped process tree back, every PID and TID as it was.
//
// Everything that can be checked is checked before any process exists. Then, top-down, each
// process is cloned with its PID by its parent (the root by a seed, task/clone.ts), and takes
// its session; once all exist, process groups are joined and zombies die with their exit
// status. Then each process gets its address space, descriptors (a description shared between
// processes is opened once and copied to the others), fs context and attributes; its threads
// are cloned into it and set up; pending signals are queued; last, every thread gets its
// registers and blocked mask and the whole tree is let go at once. If anything fails, every
// task created is killed: a restore leaves a running tree or nothing.

import fs from 'node:fs';
import { ImageDir, PE_PRESENT, decodeImage, imageFileName, INVENTORY_FILE, pagesFileName, printable, type Message } from '../images/index.js';
import { applying, applyingAsync } from './errors.js';
import { createMemfdInode, memfdInode } from '../files/memfd.js';
import { openInTask } from '../files/reg.js';
import { PAGE_SIZE, SYS, setCpuidSource, type SyscallSpec } from '../sys/arch.js';
import { Injector, getAffinity, pinSelf, setAffinity } from '../sys/inject.js';
import { kill, rawSyscall, tgkill } from '../sys/native.js';
import { SIGCHLD, SIGKILL, SIGSTOP, cont, detach, waitTask } from '../sys/ptrace.js';
import { readOomScoreAdj, readPersonality, readStatus, type VmaRange } from '../sys/proc/index.js';
import { checkFdTable, moveAbove, restoreFdTable, type FdinfoEntry } from '../files/fdtable.js';
import type { FileEntryMessage } from '../files/table.js';
import type { OrphanPts } from '../files/kind.js';
import { placeInCgroups, type CgRoot } from '../cgroup/cgroups.js';
import { CLONE, THREAD_FLAGS, cloneInto, createTask } from './clone.js';
import { restoreFs, type FsEntry } from './fs.js';
import {
  VMA, checkVmas, hasDumpablePages, restoreMmFields, restoreVmas, tightenProtections, vmaName, type MmEntry, type VmaEntry,
} from './mm.js';
import { DIRECT_FILL_LIMIT, checkPageRuns, fillBytes, fillPages, fillPagesDirect } from './pages.js';
import { restoreFpregs, restoredRegs, type ThreadInfoX86 } from './regs.js';
import { restoreRlimits } from './rlimits.js';
import { SIG_IGN, catchableSignals, restoreSigactions, type SaEntry } from './sigactions.js';
import { type SysvImages, restoreSysvIpc, sysvImageName } from './sysv-ipc.js';
import { netdevImageName, netnsImageName, restoreNetns } from '../net-ns/netns.js';
import { restorePendingSignals } from './signals.js';
import { restoreThreadCore, setComm, type ThreadCoreEntry } from './thread.js';
import { ownCreds } from './creds.js';
import { SECCOMP_IMAGE, restoreSeccomp, type SeccompFilterEntry } from './seccomp.js';
import { restoreItimers, restorePosixTimers } from './timers.js';
import { writeRestoreStats } from './stats.js';
import { TASK_ALIVE, TASK_DEAD, TASK_STOPPED } from './tree.js';
import { F_SETFD, O_RDONLY, O_RDWR } from '../sys/fcntl.js';
import { keepApartFromStdio } from '../sys/stdio.js';
import {
  checkMounts, finishMounts, restoreMounts, type LaterMount, type MntEntry, mountsImageName,
} from '../mount-ns/mounts.js';
import { bringUpLoopback } from '../net-ns/empty.js';
import type { TaskKobjIds } from './ids.js';
import {
  NEWTIME, ipcVarImageName, restoreIpc, restoreNamespaceFlags, restoreUts, timensImageName, timensOffsets,
  utsnsImageName, type IpcVarEntry, type TimensEntry, type UtsEntry,
} from './namespaces.js';

export interface RestoreOptions {
  imagesDir: string;
  workDir?: string;
  /** --inherit-fd fd[N]:KEY, as KEY → N. */
  inheritFds?: Map<string, number>;
  /** runc's rst_sibling: the restored root becomes a child of stasis's parent. */
  siblingOfStasis?: boolean;
  /** --shell-job: terminals in the dump become stasis's own terminal. */
  shellJob?: boolean;
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

/** setns() types, which are also the flags under which the image's namespace of that kind is made. */
const JOINABLE: Record<JoinNs['kind'], number> = {
  ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS, net: CLONE.NEWNET, time: NEWTIME,
};

export interface RestoreResult {
  pid: number;
  processes: number;
  pages: number;
  timeMs: number;
}

const MARCH_X86_64 = 1;
const PER_LINUX_MASK = 0xffffffff;
const CLOSE_RANGE_ALL = 0xffffffff;
const FD_CLOEXEC = 1;
const PR_SET_CHILD_SUBREAPER = 36;
const WALL = 0x40000000;

interface ProcessImages {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  state: number;
  cores: Map<number, Message>;
  mm?: MmEntry;
  pagemap?: Awaited<ReturnType<ImageDir['pagemap']>>;
  pagesFile?: string;
  /** The pages file's bytes, when checking the dump read them already. */
  pagesBytes?: Buffer;
  fdinfos?: FdinfoEntry[];
  /** fdinfo-N.img, where its descriptors are. */
  fdinfoFile?: string;
  fs?: FsEntry;
}

interface LoadedImages {
  procs: ProcessImages[];
  /** CLONE_NEW* flags of the namespaces the dumped tree had of its own. */
  nsFlags: number;
  mounts?: MntEntry[];
  uts?: UtsEntry;
  ipc?: IpcVarEntry;
  sysv?: SysvImages;
  /** The network namespace's links (netdev-N.img), when it was dumped with its contents. */
  net?: { nsId: number; devices: Message[] };
  /**
   * The name of the network namespace when it was left external at dump (netns-N.img's
   * ext_key): the restore is given it (--inherit-fd fd[N]:NAME) and puts the tree into it.
   */
  externalNet?: string;
  timens?: TimensEntry;
  /** The namespace ids of the root task (ids-PID.img), which name the namespace images. */
  rootIds?: TaskKobjIds;
  seccomp: SeccompFilterEntry[];
  /** Full path of a file of the dump. */
  file(name: string): string;
  files: Map<number, FileEntryMessage>;
  extraImage(name: string): { message: Message; extra?: Uint8Array }[];
}

/** The largest PID Linux hands out (PID_MAX_LIMIT on 64-bit). */
const PID_MAX = 4194304;

/** Refuses a core image a thread cannot be given (a damaged one), before any task exists. */
function checkCore(core: Message, main: boolean): void {
  if (core.mtype !== MARCH_X86_64) throw new Error('not an x86_64 task');
  if (main && !core.tc) throw new Error('no task part (tc)');
  if (Number(core.tc?.task_state) === TASK_DEAD) return; // a zombie: it only exits
  const ti = core.thread_info as ThreadInfoX86 | undefined;
  if (!ti?.gpregs || !ti.fpregs) throw new Error('no registers (thread_info)');
  restoredRegs(ti); // refuses a 32-bit task
}

/** Read and check every image before any process is created. */
async function load(dir: string): Promise<LoadedImages> {
  let images: ImageDir;
  try {
    images = await ImageDir.open(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${printable(dir)}: no such image directory`);
    throw e; // not a directory, or an image in it that is not a regular file: said as it is
  }
  if (!(await images.isComplete())) throw new Error(`${INVENTORY_FILE}: missing: ${printable(dir)} holds no complete dump`);
  await images.checkDump();
  const inventory = await images.inventory();
  if (inventory.img_version !== 2) throw new Error(`${INVENTORY_FILE}: image version ${inventory.img_version} is not supported`);
  const files = new Map<number, FileEntryMessage>();
  for (const f of await images.messages('files.img')) files.set(Number(f.id), f as FileEntryMessage);

  const procs: ProcessImages[] = [];
  let rootIds: TaskKobjIds | undefined;
  const pstree = (await images.image('pstree.img')).entries.map((e) => e.message);
  if (!pstree.length) throw new Error('pstree.img: no process');
  const seen = new Set<number>();
  for (const e of pstree) {
    const pid = Number(e.pid);
    // CRIU lists a zombie's one thread as 0 (it has no threads left to read): its core is core-PID.
    const threads = ((e.threads ?? []) as number[]).map(Number).filter((tid) => tid !== 0);
    if (!threads.length) threads.push(pid);
    applying('pstree.img', `process ${pid}`, () => {
      if (threads[0] !== pid) throw new Error(`its first thread is ${threads[0]}, not the process itself`);
      for (const tid of [pid, ...threads.slice(1)]) {
        if (!Number.isSafeInteger(tid) || tid < 1 || tid > PID_MAX) throw new Error(`PID ${tid} is out of range`);
        if (seen.has(tid)) throw new Error(`PID ${tid} is listed twice`);
        seen.add(tid);
      }
    });
    const cores = new Map<number, Message>();
    for (const tid of threads) {
      const name = imageFileName('CORE', tid);
      const core = await images.message(name);
      applying(name, `thread ${tid}`, () => checkCore(core, tid === pid));
      cores.set(tid, core);
    }
    const tc = cores.get(pid)!.tc;
    const p: ProcessImages = {
      pid, ppid: Number(e.ppid), pgid: Number(e.pgid), sid: Number(e.sid), threads, cores,
      state: Number(tc.task_state),
    };
    if (![TASK_ALIVE, TASK_DEAD, TASK_STOPPED].includes(p.state)) throw new Error(`core-${pid}.img: task ${pid}: unknown state ${p.state}`);
    if (p.ppid && !procs.some((q) => q.pid === p.ppid)) throw new Error(`pstree.img: process ${pid} comes before its parent ${p.ppid}`);
    if (!p.ppid && procs.length) throw new Error(`pstree.img: process ${pid} is a second root`);
    if (p.state !== TASK_DEAD) {
      const ids = await images.message(imageFileName('IDS', pid));
      rootIds ??= ids as unknown as TaskKobjIds;
      const mmFile = imageFileName('MM', pid);
      p.mm = (await images.message(mmFile)) as MmEntry;
      applying(mmFile, `task ${pid}`, () => checkVmas(p.mm!.vmas));
      const pagemapFile = imageFileName('PAGEMAP', pid);
      p.pagemap = await applyingAsync(pagemapFile, `task ${pid}`, () => images.pagemap(pagemapFile));
      applying(pagemapFile, `task ${pid}`, () => checkPageRuns(p.pagemap!.runs, p.mm!.vmas));
      p.pagesFile = images.file(pagesFileName(p.pagemap.pagesId));
      p.pagesBytes = images.checkedRaw(pagesFileName(p.pagemap.pagesId));
      const need = p.pagemap.runs.reduce((n, r) => (r.offset !== undefined ? Math.max(n, r.offset + r.nrPages * 4096) : n), 0);
      const have = fs.existsSync(p.pagesFile) ? fs.statSync(p.pagesFile).size : -1;
      if (have < need) {
        throw new Error(`${pagesFileName(p.pagemap.pagesId)}: ${have < 0 ? 'missing' : `truncated (${have} of ${need} bytes)`}`);
      }
      const fdinfoFile = imageFileName('FDINFO', ids.files_id);
      p.fdinfos = (await images.messages(fdinfoFile)) as FdinfoEntry[];
      p.fdinfoFile = fdinfoFile;
      applying(fdinfoFile, `task ${pid}`, () => checkFdTable(p.fdinfos!, files));
      const fsFile = imageFileName('FS', pid);
      p.fs = (await images.message(fsFile)) as FsEntry;
      const fileVmas = p.mm.vmas.filter((v) => v.status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED));
      const refs: [string, number][] = [
        [`${mmFile}: exe_file_id`, p.mm.exe_file_id], [`${fsFile}: cwd_id`, p.fs.cwd_id], [`${fsFile}: root_id`, p.fs.root_id],
        ...fileVmas.filter((v) => !(v.status & VMA.MEMFD)).map((v): [string, number] => [`${mmFile}: ${vmaName(v)}`, Number(v.shmid)]),
      ];
      for (const [by, id] of refs) {
        if (!files.get(id)?.reg) throw new Error(`${by} refers to regular file ${id}, which files.img does not have`);
      }
      for (const v of fileVmas.filter((x) => x.status & VMA.MEMFD)) {
        if (!files.get(Number(v.shmid))?.memfd) throw new Error(`${mmFile}: ${vmaName(v)} maps memfd ${v.shmid}, which files.img does not have`);
      }
    }
    procs.push(p);
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
  const nsFlags = rootIds ? restoreNamespaceFlags(rootIds, inventory.root_ids as TaskKobjIds) : 0;
  if ((nsFlags & CLONE.NEWPID) && procs[0]!.pid !== 1) throw new Error(`ids-${procs[0]!.pid}.img: task ${procs[0]!.pid}: in a pid namespace of the dump's own, but not its init (PID 1)`);
  const mounts = nsFlags & CLONE.NEWNS
    ? (await images.messages(mountsImageName(rootIds!.mnt_ns_id!))) as unknown as MntEntry[] : undefined;
  const uts = nsFlags & CLONE.NEWUTS
    ? (await images.message(utsnsImageName(rootIds!.uts_ns_id!))) as unknown as UtsEntry : undefined;
  const ipcFile = nsFlags & CLONE.NEWIPC ? ipcVarImageName(rootIds!.ipc_ns_id!) : undefined;
  const ipc = ipcFile && fs.existsSync(images.file(ipcFile))
    ? (await images.message(ipcFile)) as unknown as IpcVarEntry : undefined;
  const sysv = nsFlags & CLONE.NEWIPC ? {
    shm: extraImage(sysvImageName('shm', rootIds!.ipc_ns_id!)),
    sem: extraImage(sysvImageName('sem', rootIds!.ipc_ns_id!)),
    msg: extraImage(sysvImageName('msg', rootIds!.ipc_ns_id!)),
  } : undefined;
  const netdev = nsFlags & CLONE.NEWNET ? netdevImageName(rootIds!.net_ns_id!) : undefined;
  const netnsFile = nsFlags & CLONE.NEWNET ? netnsImageName(rootIds!.net_ns_id!) : undefined;
  const externalNet = netnsFile && fs.existsSync(images.file(netnsFile))
    ? (await images.message(netnsFile)).ext_key as string | undefined : undefined;
  const net = netdev && fs.existsSync(images.file(netdev))
    ? { nsId: rootIds!.net_ns_id!, devices: await images.messages(netdev) } : undefined;
  const timens = nsFlags & NEWTIME
    ? (await images.message(timensImageName(rootIds!.time_ns_id!))) as unknown as TimensEntry : undefined;
  const seccomp = fs.existsSync(images.file(SECCOMP_IMAGE))
    ? (((await images.messages(SECCOMP_IMAGE))[0]?.seccomp_filters ?? []) as SeccompFilterEntry[]) : [];
  return {
    procs, files, extraImage, file: (name) => images.file(name), nsFlags: externalNet === undefined ? nsFlags : nsFlags & ~CLONE.NEWNET,
    mounts, uts, ipc, sysv, net: externalNet === undefined ? net : undefined, externalNet, timens, seccomp, rootIds,
  };
}

/**
 * Sessions and groups whose leader is gone. fork() alone cannot put a process into such a
 * session or group; a helper task with the leader's PID stands in (setsid/setpgid), the real
 * processes are created from it with CLONE_PARENT (keeping their real parent but taking the
 * helper's session), join its group, and the helper exits and is reaped before anything runs.
 */
interface Helper {
  pid: number;
  /** Parent of the helper (and of the processes created through it); 0 = stasis. */
  ppid: number;
  sid: number;
  /** A session helper calls setsid(); a group helper setpgid(0, 0). */
  kind: 'session' | 'group';
}

function planHelpers(procs: readonly ProcessImages[], ownSid: number, external: ReadonlySet<number>): Helper[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const helpers: Helper[] = [];
  const sidOf = (pid: number) => (pid === 0 ? ownSid : byPid.get(pid)!.sid);
  for (const p of procs) {
    if (p.sid === p.pid || p.sid === sidOf(p.ppid) || external.has(p.sid)) continue;
    if (byPid.has(p.sid)) {
      throw new Error(`pstree.img: process ${p.pid} is in session ${p.sid}, which its parent is not in, led by another process of the dump: stasis cannot restore that yet`);
    }
    if (!helpers.some((h) => h.pid === p.sid && h.ppid === p.ppid)) {
      if (helpers.some((h) => h.pid === p.sid)) throw new Error(`pstree.img: session ${p.sid} spans processes with different parents: stasis cannot restore that yet`);
      helpers.push({ pid: p.sid, ppid: p.ppid, sid: p.sid, kind: 'session' });
    }
  }
  for (const p of procs) {
    if (p.pgid === p.pid || byPid.has(p.pgid) || helpers.some((h) => h.pid === p.pgid) || external.has(p.pgid)) continue;
    if (p.ppid === 0) continue; // the root's group, from outside the dump: stasis's own job
    helpers.push({ pid: p.pgid, ppid: p.ppid, sid: p.sid, kind: 'group' });
  }
  return helpers;
}

/** A task being restored: its injector, and what restore has to remember about it. */
interface Restoring {
  p: ProcessImages;
  /** The task's PID as stasis sees it (p.pid is the one in the tree's own pid namespace). */
  hpid: number;
  inj: Injector;
  threads: Map<number, Injector>;
  pidfds: Map<number, number>;
  /** Its descriptor table is restored already (before its children were cloned). */
  filesDone?: boolean;
  /** What of its fs image it has already (its cwd, set before its children were cloned). */
  fsHas: Partial<FsEntry>;
  /** Its address space once restored, for the children cloned from it (see MappedSpace.layout). */
  layout?: readonly VmaRange[];
  /** Its process group and its main thread's name as they stand (known from how it was made). */
  pgidNow?: number;
  commNow?: string;
}

export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  const log = opts.log ?? (() => {});
  const img = await load(opts.imagesDir);
  const ownSid = Number(rawSyscall(SYS.getsid, 0));
  // A shell job's session and group belong to the shell: the restored job joins stasis's.
  const first = img.procs[0]!;
  const external = new Set(opts.shellJob ? [first.sid, first.pgid].filter((x) => x !== first.pid) : []);
  const helpers = planHelpers(img.procs, ownSid, external);
  // In a pid namespace of its own, the tree's PIDs are all free.
  if (!(img.nsFlags & CLONE.NEWPID)) {
    for (const t of [...img.procs.flatMap((p) => p.threads), ...helpers.map((h) => h.pid)]) {
      if (fs.existsSync(`/proc/${t}`)) throw new Error(`pstree.img: PID ${t} is already in use`);
    }
  }
  // Pipes handed over that are stasis's stdio too: the tree gets them apart from what Node
  // does to its stdio (sys/stdio.ts).
  const given = keepApartFromStdio(opts.inheritFds ?? new Map());
  const mountSetup = img.mounts && {
    root: opts.root ?? '', extMnt: opts.extMnt ?? new Map(),
    imagePath: (name: string) => (fs.existsSync(img.file(name)) ? img.file(name) : undefined),
  };
  if (img.mounts) {
    if (!opts.root) throw new Error(`${mountsImageName(img.rootIds!.mnt_ns_id!)}: the dump has its own mount namespace (a container): restore with --root DIR`);
    applying(mountsImageName(img.rootIds!.mnt_ns_id!), 'mount namespace', () => checkMounts(img.mounts!, mountSetup!));
  }
  // An external network namespace: the descriptor the caller passed for it (stasis's own fd,
  // which the seed inherits and enters before it clones the root).
  let netnsFd: number | undefined;
  if (img.externalNet !== undefined && !opts.joinNs?.some((j) => j.kind === 'net')) {
    netnsFd = given.fds.get(img.externalNet);
    if (netnsFd === undefined) {
      throw new Error(`${netnsImageName(img.rootIds!.net_ns_id!)}: the network namespace was left external at dump (${printable(img.externalNet)}): give one with --inherit-fd fd[N]:${printable(img.externalNet)}`);
    }
  }
  // Namespaces to join: opened now (the seed inherits the descriptors and enters them before
  // it clones the root); what the image holds of them is left alone.
  const joined: { fd: number; type: number }[] = [];
  for (const j of opts.joinNs ?? []) {
    let fd: number;
    try {
      fd = fs.openSync(j.file, 'r');
    } catch (e) {
      for (const o of joined) fs.closeSync(o.fd);
      throw new Error(`join_ns ${j.kind}: cannot open ${j.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    joined.push({ fd, type: JOINABLE[j.kind] });
    img.nsFlags &= ~JOINABLE[j.kind];
    if (j.kind === 'ipc') [img.ipc, img.sysv] = [undefined, undefined];
    if (j.kind === 'uts') img.uts = undefined;
    if (j.kind === 'net') [img.net, img.externalNet] = [undefined, undefined];
    if (j.kind === 'time') img.timens = undefined;
  }
  const orphanPts: OrphanPts = new Map();
  let laterMounts: LaterMount[] = [];
  // A task in another pid namespace cannot name stasis: it inherits a pidfd of stasis instead.
  let stasisPidfd: number | undefined;
  // A task in another mount namespace cannot see the images: stasis opens them, the task
  // takes a copy of the descriptor through that pidfd.
  const openImage = (inj: Injector, file: string): number => {
    if (stasisPidfd === undefined) return openInTask(inj, file, O_RDONLY);
    const own = fs.openSync(file, 'r');
    try {
      return Number(inj.callChecked(SYS.pidfd_getfd, stasisPidfd, own, 0));
    } finally {
      fs.closeSync(own);
    }
  };
  const root = img.procs[0]!;
  let rootPid: number | undefined;
  const t0 = performance.now();
  const tasks = new Map<number, Restoring>();
  const created: number[] = [];
  let pages = 0;
  // Every injected syscall is a round trip between stasis and a task: with both on one CPU they
  // cost a quarter. Tasks created from now on inherit the pin; they get stasis's own mask back
  // before they go.
  const affinity = getAffinity(0);
  // What every task created has of stasis's until restored (it starts as a copy of stasis).
  const stasisCreds = ownCreds();
  const own = { personality: readPersonality('self'), oomScoreAdj: readOomScoreAdj('self') };
  const ownUmask = readStatus('self').umask;
  const regFile = (id: number) => img.files.get(id)!.reg as Record<string, unknown>;
  const unpin = pinSelf();
  try {
    // 1. The tree of processes, top-down, each cloned by its parent; sessions taken at birth so
    //    that children inherit them; helpers stand in for leaders that are gone.
    const helperInj = new Map<number, Injector>();
    const helperHpid = new Map<number, number>();
    const shared: SharedMemory = new Map();
    const parentInj = (ppid: number) => tasks.get(ppid)!.inj;
    // The first task created at the top (the root, or a helper standing in for the leader of
    // its session) gets the tree's own namespaces and cgroups; once the caller has an injector
    // on it, it sets the namespaces up (nsOwner). All other tasks inherit them.
    let topMade = false;
    let nsOwner: number | undefined;
    const createTop = (vpid: number): number => {
      const ns = topMade ? 0 : img.nsFlags;
      const first = !topMade;
      topMade = true;
      if ((ns & CLONE.NEWPID) && vpid !== 1) {
        throw new Error(`pstree.img: the dump has its own pid namespace, but its first task would be ${vpid}, not 1 (a session led from outside it)`);
      }
      const pid = createTask(ns & CLONE.NEWPID ? undefined : vpid, {
        siblingOfStasis: opts.siblingOfStasis, flags: ns & ~NEWTIME,
        beforeClone: (seed) => {
          if (first && netnsFd !== undefined) seed.callChecked(SYS.setns, netnsFd, CLONE.NEWNET);
          if (first) for (const j of joined) seed.callChecked(SYS.setns, j.fd, j.type);
          if (ns & CLONE.NEWPID) stasisPidfd = Number(seed.callChecked(SYS.pidfd_open, process.pid, 0));
          // A time namespace for the seed's children, its clocks set before the root enters.
          if (ns & NEWTIME) {
            seed.callChecked(SYS.unshare, NEWTIME);
            fs.writeFileSync(`/proc/${seed.pid}/timens_offsets`, timensOffsets(img.timens!));
          }
        },
      });
      // Into the runtime's cgroups before anything is forked or charged (a new cgroup
      // namespace made by the clone stays rooted where the seed was).
      if (first && opts.cgRoots?.length) placeInCgroups(pid, opts.cgRoots, opts.warn);
      if (ns) nsOwner = pid;
      return pid;
    };
    const setupNamespaces = (inj: Injector, pid: number) => {
      // The container's own world, before anything in it is opened: mounts, names, loopback.
      // The sysctls first: the objects' limits (a queue's byte limit above the default) may
      // depend on them.
      const ids = img.rootIds!;
      const ns = `namespaces of task ${pid}`;
      // through the host's /proc/sys, still mounted here
      if (img.ipc) applying(ipcVarImageName(ids.ipc_ns_id!), ns, () => restoreIpc(inj, img.ipc!));
      if (img.sysv) applying(`ipcns-*-${ids.ipc_ns_id}.img`, ns, () => restoreSysvIpc(pid, img.sysv!, img.ipc));
      if (img.mounts) laterMounts = applying(mountsImageName(ids.mnt_ns_id!), ns, () => restoreMounts(inj, pid, img.mounts!, mountSetup!));
      if (img.uts) applying(utsnsImageName(ids.uts_ns_id!), ns, () => restoreUts(inj, img.uts!));
      if (img.net) {
        applying(netdevImageName(img.net.nsId), ns, () => restoreNetns(pid, img.net!.devices, img.file, img.net!.nsId));
      } else if (img.nsFlags & CLONE.NEWNET) {
        bringUpLoopback(inj);
      }
      opts.namespacesReady?.(pid);
    };
    // Descriptor tables. Outside a pid namespace of the tree's own, each process gets its table
    // right after its memory, before its children are cloned: a child then inherits what it
    // shares with its parent (same number, same description) and only closes and opens the
    // rest. In a pid namespace tasks name stasis through a pidfd, and all tables wait for step 3.
    const openedElsewhere = new Map<number, { pid: number; fd: number }>();
    const spares: { t: Restoring; fd: number }[] = [];
    const afterTables: (() => void)[] = [];
    const afterThreads: (() => void)[] = []; // [kinds] what names a thread (an fd's F_OWNER_TID owner)
    const restoreFiles = (t: Restoring, parent?: ProcessImages) => applying(t.p.fdinfoFile!, `task ${t.p.pid}`, () => {
      const { inj, p } = t;
      const floor = p.fdinfos!.reduce((m, f) => Math.max(m, f.fd + 1), 3);
      const kept = parent ? inheritedFds(p.fdinfos!, parent.fdinfos!) : new Map<number, number>();
      if (stasisPidfd === undefined) {
        closeAllBut(inj, kept);
        // fdinfo flags hold FD_CLOEXEC (1), which a fork copies with each descriptor.
        for (const f of p.fdinfos!) {
          const theirs = kept.has(f.fd) && parent!.fdinfos!.find((x) => x.fd === f.fd)!;
          if (theirs && (theirs.flags & FD_CLOEXEC) !== (f.flags & FD_CLOEXEC)) inj.callChecked(SYS.fcntl, f.fd, F_SETFD, f.flags & FD_CLOEXEC);
        }
      } else {
        if (stasisPidfd > 0) inj.callChecked(SYS.close_range, 0, stasisPidfd - 1, 0);
        inj.callChecked(SYS.close_range, stasisPidfd + 1, CLOSE_RANGE_ALL, 0);
        t.pidfds.set(process.pid, moveAbove(inj, stasisPidfd, floor));
      }
      const pidfdOf = (pid: number) => {
        let pfd = t.pidfds.get(pid);
        if (pfd === undefined) {
          pfd = moveAbove(inj, Number(inj.callChecked(SYS.pidfd_open, pid, 0)), floor);
          t.pidfds.set(pid, pfd);
        }
        return pfd;
      };
      const { placed, spare } = restoreFdTable(t.hpid, inj, p.fdinfos!, img.files, {
        inherited: (key) => given.fds.get(key),
        shellJob: opts.shellJob, orphanPts: opts.orphanPtsMaster ? orphanPts : undefined,
        importFd: (fd) => Number(inj.callChecked(SYS.pidfd_getfd, pidfdOf(process.pid), fd, 0)),
        importFromTask: (pid, fd) => Number(inj.callChecked(SYS.pidfd_getfd, pidfdOf(pid), fd, 0)),
        openedElsewhere: (id) => openedElsewhere.get(id),
        imageEntries: (name) => img.extraImage(name),
        imagePath: (name) => img.file(name),
        later: (fn) => afterTables.push(() => applying(p.fdinfoFile!, `task ${p.pid}`, fn)),
        afterThreads: (fn) => afterThreads.push(() => applying(p.fdinfoFile!, `task ${p.pid}`, fn)), // [kinds]
        kept,
      });
      for (const [id, fd] of [...placed, ...spare]) if (!openedElsewhere.has(id)) openedElsewhere.set(id, { pid: p.pid, fd });
      for (const fd of spare.values()) spares.push({ t, fd });
      t.filesDone = true;
    });
    const makeHelper = (h: Helper): Injector => {
      let inj = helperInj.get(h.pid);
      if (inj) return inj;
      const viaSession = h.kind === 'group' && h.sid !== (h.ppid ? tasks.get(h.ppid)!.p.sid : ownSid)
        ? makeHelper(helpers.find((x) => x.kind === 'session' && x.pid === h.sid && x.ppid === h.ppid)!) : undefined;
      const what = `${h.kind} ${h.pid} (its leader is not in the dump)`;
      const pid = applying('pstree.img', what, () => (viaSession
        ? cloneInto(viaSession, { setTid: [h.pid], flags: CLONE.PARENT })
        : h.ppid === 0
          ? createTop(h.pid)
          : cloneInto(parentInj(h.ppid), { setTid: [h.pid] })));
      created.push(pid);
      inj = new Injector(pid, pid, { pin: false });
      if (pid === nsOwner) setupNamespaces(inj, pid);
      helperInj.set(h.pid, inj);
      helperHpid.set(h.pid, pid);
      applying('pstree.img', what, () => (h.kind === 'session' ? inj!.callChecked(SYS.setsid) : inj!.callChecked(SYS.setpgid, 0, 0)));
      return inj;
    };
    for (const p of img.procs) {
      const sessionHelper = helpers.find((h) => h.kind === 'session' && h.pid === p.sid && h.ppid === p.ppid);
      const core = imageFileName('CORE', p.pid);
      const task = `task ${p.pid}`;
      const pid = applying('pstree.img', `process ${p.pid}`, () => {
        if (sessionHelper) return cloneInto(makeHelper(sessionHelper), { setTid: [p.pid], flags: CLONE.PARENT });
        if (p.ppid === 0) return createTop(p.pid);
        return cloneInto(parentInj(p.ppid), { setTid: [p.pid] });
      });
      created.push(pid);
      // Cloned from its restored parent (not through a helper), it starts as a copy of it: the
      // vDSO where the parent's image puts it, the signals the parent's image ignores (SIGCHLD's
      // action aside, which is stasis's still), and below, its VMAs, actions and descriptors.
      const parent = p.ppid && !sessionHelper ? tasks.get(p.ppid)!.p : undefined;
      const live = parent && parent.state !== TASK_DEAD ? parent : undefined;
      const inj = new Injector(pid, pid, {
        pin: false, vdsoStart: parent && vdsoOf(parent), sigIgn: live && ignoredBy(live),
      });
      const from = parent && tasks.get(parent.pid);
      // A fork's group and name are its parent's.
      const t: Restoring = {
        p, hpid: pid, inj, threads: new Map(), pidfds: new Map(), fsHas: {}, pgidNow: from?.pgidNow, commNow: from?.commNow,
      };
      tasks.set(p.pid, t);
      if (pid === nsOwner) setupNamespaces(inj, pid);
      if (p.sid === p.pid) {
        applying('pstree.img', `process ${p.pid}: session`, () => inj.callChecked(SYS.setsid));
        t.pgidNow = p.pid;
      }
      // Its memory now, before it clones its children: they then copy this small address space
      // rather than the seed's copy of stasis, and have little to tear down.
      if (p.state !== TASK_DEAD) {
        pages += restoreMemory(t, img, shared, opts.progress, openImage, from);
        // Signal actions too, for its children to inherit; all but SIGCHLD's, which would
        // change how the zombies and helpers made below are reaped (set in step 3).
        applying(core, `${task}: signal actions`, () => restoreSigactions(inj, sigactionsOf(p), {
          only: (sig) => sig !== SIGCHLD, current: live && sigactionsOf(live),
        }));
        if (stasisPidfd === undefined) restoreFiles(t, live);
        // The cwd too, for the children to inherit (and not set again when it is theirs), where
        // no chroot and no mount yet to come can change what the path names.
        if (!img.mounts && regFile(p.fs!.root_id).name === '/') {
          const cwd = { cwd_id: p.fs!.cwd_id, root_id: p.fs!.root_id };
          applying(imageFileName('FS', p.pid), task, () => restoreFs(inj, cwd, regFile, live && from?.fsHas));
          t.fsHas = cwd;
        }
        // And its name (its children's until they have their own).
        const comm = (p.cores.get(p.pid)!.thread_core as ThreadCoreEntry).comm;
        if (comm !== undefined && comm !== t.commNow) {
          applying(core, `${task}: name`, () => setComm(inj, comm));
          t.commNow = comm;
        }
      }
    }
    for (const h of helpers) makeHelper(h);
    // Groups: leaders first, then members join (a session leader already leads its group;
    // a group led from outside the tree, the root's shell job, is inherited from stasis).
    // Where a fork left a task in its group already, nothing is called.
    for (const t of tasks.values()) {
      if (t.p.pgid === t.p.pid && t.p.sid !== t.p.pid && t.pgidNow !== t.p.pid) {
        applying('pstree.img', `process ${t.p.pid}: group ${t.p.pid}`, () => t.inj.callChecked(SYS.setpgid, 0, 0));
      }
    }
    for (const { p, inj, pgidNow } of tasks.values()) {
      if (p.pgid !== p.pid && pgidNow !== p.pgid && (tasks.has(p.pgid) || helperInj.has(p.pgid))) {
        applying('pstree.img', `process ${p.pid}: group ${p.pgid}`, () => inj.callChecked(SYS.setpgid, 0, p.pgid));
      }
    }
    // Helpers have done their part: they exit, and their parent reaps them at once.
    for (const h of helpers) {
      const inj = helperInj.get(h.pid)!;
      inj.callAndRelease(SYS.exit_group, 0);
      const hp = helperHpid.get(h.pid)!;
      for (;;) {
        const w = waitTask(hp, { timeoutMs: 5000 })!;
        if (w.kind !== 'stopped') break;
        cont(hp, 0);
      }
      if (h.ppid !== 0) tasks.get(h.ppid)!.inj.callChecked(SYS.wait4, h.pid, 0, WALL, 0);
    }
    log(`${tasks.size} processes created in ${(performance.now() - t0).toFixed(1)} ms`);

    // 2. Zombies die now, with the status their parent will collect.
    for (const t of tasks.values()) {
      if (t.p.state !== TASK_DEAD) continue;
      applying(imageFileName('CORE', t.p.pid), `task ${t.p.pid}: exit as a zombie`,
        () => becomeZombie(t, Number(t.p.cores.get(t.p.pid)!.tc.exit_code)));
      tasks.delete(t.p.pid);
    }

    // 3. Each live process: descriptors (unless done already), fs, attributes.
    for (const t of tasks.values()) {
      const { inj, p } = t;
      if (!t.filesDone) restoreFiles(t);
      const task = `task ${p.pid}`;
      // The umask last: what the restore creates for the task (a socket's file) is made under
      // stasis's, which every task has until then.
      applying(imageFileName('FS', p.pid), task, () => restoreFs(inj, p.fs!, regFile, { ...t.fsHas, umask: ownUmask }));
      const tc = p.cores.get(p.pid)!.tc;
      const core = imageFileName('CORE', p.pid);
      applying(core, `${task}: SIGCHLD action`,
        () => restoreSigactions(inj, sigactionsOf(p), { only: (sig) => sig === SIGCHLD, unconditionally: true }));
      applying(core, `${task}: interval timers`, () => restoreItimers(inj, tc.timers));
      applying(core, `${task}: POSIX timers`, () => restorePosixTimers(inj, tc.timers?.posix));
      applying(core, `${task}: resource limits`, () => restoreRlimits(t.hpid, tc.rlimits));
      // Personality and OOM score are stasis's (inherited through the seed) until set.
      const personality = Number(tc.personality ?? 0) & PER_LINUX_MASK;
      if (personality !== own.personality) {
        applying(core, `${task}: personality 0x${personality.toString(16)}`, () => inj.callChecked(SYS.personality, personality));
      }
      if (tc.child_subreaper) applying(core, `${task}: child subreaper`, () => inj.callChecked(SYS.prctl, PR_SET_CHILD_SUBREAPER, 1));
      if (tc.oom_score_adj !== undefined && Number(tc.oom_score_adj) !== own.oomScoreAdj) {
        applying(core, `${task}: oom_score_adj ${tc.oom_score_adj}`,
          () => fs.writeFileSync(`/proc/${t.hpid}/oom_score_adj`, String(tc.oom_score_adj)));
      }
    }
    for (const fn of afterTables) fn();
    for (const { t, fd } of spares) t.inj.call(SYS.close, fd);
    if (laterMounts.length) {
      applying(mountsImageName(img.rootIds!.mnt_ns_id!), `namespaces of task ${root.pid}`, () => finishMounts(tasks.get(root.pid)!.inj, laterMounts));
    }
    for (const { master } of orphanPts.values()) opts.orphanPtsMaster!(master);
    for (const t of tasks.values()) for (const pfd of t.pidfds.values()) t.inj.call(SYS.close, pfd);

    // 4. Threads, cloned into their process now that its memory and files exist.
    for (const t of tasks.values()) {
      if (t.p.threads.length > 1) t.inj.scratch(PAGE_SIZE); // the threads use it too
      for (const tid of t.p.threads.slice(1)) {
        const htid = applying('pstree.img', `thread ${tid} of process ${t.p.pid}`,
          () => cloneInto(t.inj, { setTid: [tid], flags: THREAD_FLAGS }));
        created.push(htid);
        // Calls go to the process's trampoline, by turns (one stop each, several calls in one).
        t.threads.set(tid, new Injector(htid, t.hpid, {
          pin: false, vdsoStart: vdsoOf(t.p), sharedScratch: t.inj.scratchRange, sigIgn: ignoredBy(t.p),
          sharedTrampoline: t.inj.trampolineAddress, sharedSequenceArea: t.inj.sequenceAreaAddress,
        }));
      }
    }

    for (const fn of afterThreads) fn(); // [kinds]

    // 5. Per-thread state, pending signals, registers; then everyone goes at once. The restore
    // itself sent SIGCHLD only to the parents of zombies and of helpers.
    const sigchldTo = new Set([...img.procs.filter((q) => q.state === TASK_DEAD).map((q) => q.ppid), ...helpers.map((h) => h.ppid)]);
    for (const t of tasks.values()) {
      const { p } = t;
      const tc = p.cores.get(p.pid)!.tc;
      if (sigchldTo.has(p.pid)) drainSigchld(t.inj); // the image says what was really pending
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
          restoreThreadCore(inj, tcore, BigInt(ti.clear_tid_addr ?? 0), stasisCreds, t.commNow); // threads are cloned with the main thread's name
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
    rootPid = tasks.get(root.pid)!.hpid;
    opts.beforeResume?.(rootPid);
    for (const t of tasks.values()) {
      // A stopped process stops again as soon as it is let go (detach cannot inject a signal
      // from an event stop, so it is queued first).
      if (t.p.state === TASK_STOPPED) tgkill(t.hpid, t.hpid, SIGSTOP);
      for (const tid of [...[...t.threads.values()].map((i) => i.pid), t.hpid]) {
        setAffinity(tid, affinity);
        detach(tid, 0);
      }
    }
  } catch (e) {
    for (const pid of created) {
      try {
        kill(pid, SIGKILL);
      } catch {
        // gone
      }
    }
    // Collected children first: a pid namespace's init does not finish dying until every other
    // task of it is reaped, and those are ours to reap (traced).
    for (const pid of [...created].reverse()) {
      try {
        waitTask(pid, { timeoutMs: 5000 });
      } catch {
        // reaped
      }
    }
    throw e;
  } finally {
    unpin();
    for (const { master } of orphanPts.values()) fs.closeSync(master); // handed over (or not needed)
    for (const j of joined) fs.closeSync(j.fd);
    given.close();
  }
  const tDone = performance.now();
  try {
    await writeRestoreStats(opts.workDir ?? opts.imagesDir, {
      pages_compared: 0, pages_skipped_cow: 0, forking_time: 0,
      restore_time: Math.round((tDone - t0) * 1000), pages_restored: pages,
    });
  } catch (e) {
    // The tree runs already; a read-only images dir only costs the statistics.
    log(`stats-restore not written: ${(e as Error).message}`);
  }
  return { pid: rootPid!, processes: img.procs.length, pages, timeMs: tDone - t0 };
}

/** Where each shared memory object lives once made: the first task mapping it, and where. */
type SharedMemory = Map<number, { pid: number; start: bigint; end: bigint }>;

function sigactionsOf(p: ProcessImages): SaEntry[] {
  return (p.cores.get(p.pid)!.tc.sigactions ?? []) as SaEntry[];
}

/** The signals a restored process ignores once its actions are set (SigIgn bits), SIGCHLD aside. */
function ignoredBy(p: ProcessImages): bigint {
  let bits = 0n;
  const entries = sigactionsOf(p);
  [...catchableSignals()].forEach((sig, i) => {
    if (sig !== SIGCHLD && entries[i] && BigInt(entries[i]!.sigaction) === SIG_IGN) bits |= 1n << BigInt(sig - 1);
  });
  return bits;
}

/**
 * The descriptors a child cloned from its restored parent keeps: those at a number where the
 * parent has the same description (fd → file id).
 */
function inheritedFds(mine: readonly FdinfoEntry[], parents: readonly FdinfoEntry[]): Map<number, number> {
  const theirs = new Map(parents.map((f) => [f.fd, f.id]));
  return new Map(mine.filter((f) => theirs.get(f.fd) === f.id).map((f) => [f.fd, f.id]));
}

/** Close every descriptor of the task but `kept`: one close_range per gap between them. */
function closeAllBut(inj: Injector, kept: ReadonlyMap<number, number>): void {
  const calls: SyscallSpec[] = [];
  let from = 0;
  for (const fd of [...kept.keys()].sort((a, b) => a - b)) {
    if (fd > from) calls.push([SYS.close_range, from, fd - 1, 0]);
    from = fd + 1;
  }
  calls.push([SYS.close_range, from, CLOSE_RANGE_ALL, 0]);
  inj.callAllChecked(calls);
}

/** Where a restored process's vDSO is: where its image had it. */
function vdsoOf(p: ProcessImages): bigint | undefined {
  return p.mm?.vmas.find((v) => v.status & VMA.VDSO)?.start;
}

/** Whether an address is in the vDSO or vvar of an image (pages other dumpers save there are not filled). */
function kernelAreaOf(p: ProcessImages): (a: bigint) => boolean {
  const kernelArea = p.mm!.vmas.filter((v) => v.status & (VMA.VDSO | VMA.VVAR));
  return (a: bigint) => kernelArea.some((v) => a >= v.start && a < v.end);
}

/** The pages an image fills (present runs outside the kernel's areas). */
function filledRuns(p: ProcessImages): { vaddr: bigint; len: number }[] {
  const skip = kernelAreaOf(p);
  return p.pagemap!.runs.filter((r) => r.flags & PE_PRESENT && !skip(r.vaddr))
    .map((r) => ({ vaddr: r.vaddr, len: r.nrPages * PAGE_SIZE }));
}

/**
 * Address space and its contents, and the mm fields. A task cloned from its restored parent
 * (`parent`) keeps what it shares with it.
 */
function restoreMemory(t: Restoring, img: LoadedImages, shared: SharedMemory,
  progress: RestoreOptions['progress'], openImage: (inj: Injector, file: string) => number,
  from?: Restoring): number {
  const parent = from?.p;
  const { inj, p } = t;
  const regFile = (id: number) => img.files.get(id)!.reg as Record<string, unknown>;
  const memfdFd = (tinj: Injector, id: number, v: VmaEntry): number => {
    const inodeId = Number((img.files.get(id)!.memfd as Record<string, unknown>).inode_id);
    const made = shared.get(inodeId);
    if (made) {
      // The object exists: reach it through the mapping of the task that made it.
      const path = `/proc/${made.pid}/map_files/${made.start.toString(16)}-${made.end.toString(16)}`;
      return openInTask(tinj, path, O_RDWR);
    }
    const fd = createMemfdInode(tinj, memfdInode({ imageEntries: (n) => img.extraImage(n), imagePath: (n) => img.file(n) }, inodeId));
    shared.set(inodeId, { pid: p.pid, start: v.start, end: v.end }); // as the tasks' /proc names it
    return fd;
  };
  const skip = kernelAreaOf(p);
  const direct = fillBytes(p.pagemap!.runs, skip) <= DIRECT_FILL_LIMIT;
  // Kept VMAs keep their final protections: only stasis's own writes can fill them.
  const inherited = direct && parent?.mm ? {
    vmas: parent.mm.vmas, filled: filledRuns(parent), ownFilled: filledRuns(p),
    scratch: from!.inj.ownScratch, trampoline: from!.inj.trampolineAddress, sequenceArea: from!.inj.sequenceAreaAddress,
    layout: from!.layout,
  } : undefined;
  const mmFile = imageFileName('MM', p.pid);
  const task = `task ${p.pid}`;
  const space = applying(mmFile, task,
    () => restoreVmas(inj, p.mm!.vmas, { regFile, memfdFd }, direct ? () => false : hasDumpablePages, inherited));
  t.layout = space.layout;
  const n = applying(pagesFileName(p.pagemap!.pagesId), task, () => (direct
    ? fillPagesDirect(t.hpid, p.pagemap!.runs, p.pagesFile!, skip, p.pagesBytes)
    : fillPages(inj, p.pagemap!.runs, p.pagesFile!, skip,
      progress && ((done, total) => progress(`memory of ${p.pid}`, done, total)), openImage)));
  applying(mmFile, `${task}: protections`, () => tightenProtections(inj, space));
  // A child cloned from its restored parent has the parent's mm fields already (fork copies
  // them): set again only where the images differ.
  if (!parent?.mm || !sameMmFields(parent.mm, p.mm!)) applying(mmFile, `${task}: mm fields`, () => restoreMmFields(inj, p.mm!, { regFile }));
  return n;
}

function sameMmFields(a: MmEntry, b: MmEntry): boolean {
  const same = (x: unknown, y: unknown): boolean => (Array.isArray(x) && Array.isArray(y)
    ? x.length === y.length && x.every((v, i) => v === y[i]) : x === y);
  const fields = (m: MmEntry) => Object.keys(m).filter((k) => k !== 'vmas');
  const mine = fields(a);
  return mine.length === fields(b).length
    && mine.every((k) => same((a as unknown as Record<string, unknown>)[k], (b as unknown as Record<string, unknown>)[k]));
}

/** Make a freshly cloned task exit the way the dumped zombie did; its parent will reap it. */
function becomeZombie(t: Restoring, status: number): void {
  const { inj, p } = t;
  const sig = status & 0x7f;
  if (sig) {
    // Killed by a signal: die of it, with its default action, unblocked.
    inj.callChecked(SYS.rt_sigaction, sig, inj.writeScratch(Buffer.alloc(32)), 0, 8);
    inj.finish({ sigmask: 0n });
    tgkill(t.hpid, t.hpid, sig);
    cont(t.hpid, 0);
  } else {
    inj.callAndRelease(SYS.exit_group, (status >> 8) & 0xff);
  }
  // Collect the exit as its tracer only: the zombie stays for its (restored) parent to reap.
  for (;;) {
    const w = waitTask(t.hpid, { timeoutMs: 5000 })!;
    if (w.kind !== 'stopped') return;
    cont(t.hpid, w.event ? 0 : w.signal);
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

/** Wait for a restored task that is our child; its exit status, shell style (128+signal). */
export function waitForExit(pid: number): number {
  for (;;) {
    const w = waitTask(pid)!;
    if (w.kind === 'exited') return w.code;
    if (w.kind === 'killed') return 128 + w.signal;
  }
}

