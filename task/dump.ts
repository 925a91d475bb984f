// `stasis dump`: checkpoint a process tree into an image directory.
//
// Order of work: check what can be checked without touching anything; freeze the tree (every
// thread ptrace-stopped, task/tree.ts); per process, read registers and ask each thread about
// itself through injected syscalls, copy its memory, collect its descriptors; write every
// image, inventory.img last; then kill the tree as it stands, or with --leave-running put every
// thread back exactly as it was and let it go. Any failure before the end puts the threads back
// and releases the tree untouched and running, and leaves no inventory.img behind.

import fs from 'node:fs';
import path from 'node:path';
import { ImageDir, createPrivateFileSync, imageFileName, makePrivateDirs, pagemapImage, pagesFileName, schema } from '../images/index.js';
import { SYS } from '../sys/arch.js';
import { Injector, getAffinity, pinSelf } from '../sys/inject.js';
import { GuardedProcess, GuardedTask } from '../sys/guard.js';
import { getRegs, getSigmask } from '../sys/ptrace.js';
import {
  ProcError, readNamespaces, readTimers, readLoginuid, readOomScoreAdj, readSmaps, readStat, readStatus,
} from '../sys/proc/index.js';
import { dumpFdTable } from '../files/fdtable.js';
import { FileTable } from '../files/table.js';
import { dumpFs } from './fs.js';
import { IdAllocator, type TaskKobjIds } from './ids.js';
import { askMm, dumpMm, dumpVmas } from './mm.js';
import { dumpNetns, netdevImageName, netnsImageName } from '../net-ns/netns.js';
import { SYSV_KINDS, dumpSysvIpc, dumpedSegments, sysvImageName } from './sysv-ipc.js';
import { findDataPages, writePages } from './pages.js';
import { dumpThreadInfo } from './regs.js';
import { dumpRlimits } from './rlimits.js';
import { dumpSigactions } from './sigactions.js';
import { dumpPendingSignals } from './signals.js';
import { askThreadCore, dumpThreadCore } from './thread.js';
import { DumpedUserNamespaces, usernsImageName } from './userns.js';
import { dumpNestedIpc, nestedNamespaces, type NestedNs } from './nested-ns.js';
import { credsFromStatus, type CredsEntry } from './creds.js';
import { askItimers, dumpPosixTimers } from './timers.js';
import { BusyTime, micros, writeDumpStats, type DumpStats } from './stats.js';
import { dumpMounts, mountsImageName } from '../mount-ns/mounts.js';
import { dumpNestedMounts } from '../mount-ns/nested.js';
import { dumpCgroups } from '../cgroup/cgroups.js';
import { CLONE } from './clone.js';
import {
  checkDumpNamespaces, dumpIpc, dumpTimens, dumpUts, ipcVarImageName, timensImageName, utsnsImageName, type IpcVarEntry, type UtsEntry,
} from './namespaces.js';
import { ConnectionLock, LOCK_METHOD_CODE, lockTable, newRunId, type LockedConnection, type LockMethod } from '../net-ns/network-lock.js';
import { inetDiagAll } from '../sys/netlink.js';
import { AF, IPPROTO, TCP_STATE } from '../sys/socket.js';
import { NetworkWatchdog } from '../net-ns/watchdog.js';
import { RepairedSockets } from '../files/tcp-stream.js';
import { sameNamespace } from '../sys/setns.js';
import { pidNumbering, type PidNumbering } from './pidns.js';
import { SECCOMP_IMAGE, SeccompTable } from './seccomp.js';
import { SeizedTree, TASK_DEAD, TASK_STOPPED, type TreeProcess } from './tree.js';

export interface DumpOptions {
  pid: number;
  imagesDir: string;
  /** Where stats-dump goes (criu's work dir; the images dir by default). */
  workDir?: string;
  leaveRunning?: boolean;
  /** --file-locks: save the locks held on open files (without it a held lock fails the dump). */
  fileLocks?: boolean;
  /** --ext-unix-sk: datagram sockets connected to a bound socket outside the tree are allowed. */
  extUnixSk?: boolean;
  /** --shell-job: the tree may use a terminal (restored onto stasis's terminal). */
  shellJob?: boolean;
  /** criu's orphan_pts_master: the tree may use a pseudo-terminal whose master is outside it. */
  orphanPtsMaster?: boolean;
  /** Mounts left to the runtime, mountpoint → key (criu's ext_mnt / --ext-mount-map). */
  extMnt?: ReadonlyMap<string, string>;
  /** CLONE_NEW* flags of namespaces restored empty (criu's empty_ns: only the network one). */
  emptyNs?: number;
  /**
   * Network namespaces left to whoever restores, by inode → the name the image keeps (criu's
   * external `net[INODE]:NAME`; runc's extRootNetNS for a namespace its config names by path).
   * Their contents are not dumped; the restore is handed the namespace to put the tree into.
   */
  externalNetns?: ReadonlyMap<number, string>;
  /** A cgroup (v1 freezer or v2) holding the tree, frozen while its tasks are seized. */
  freezeCgroup?: string;
  /**
   * criu's --timeout: how long collecting the tree (freezing it, every task reaching its stop)
   * may take in all, in ms; a task that does not stop by then fails the dump.
   */
  seizeTimeoutMs?: number;
  /**
   * criu's --link-remap: a file deleted while open may be linked back into its directory for the
   * restore to open (instead of its contents being saved).
   */
  linkRemap?: boolean;
  /** criu's --tcp-established: established TCP connections are dumped (through repair mode). */
  tcpEstablished?: boolean;
  /** criu's --tcp-close: established TCP connections are dumped without their state, restored closed. */
  tcpClose?: boolean;
  /** criu's --skip-in-flight: connections not yet accepted by a TCP listener are left out. */
  skipInFlight?: boolean;
  /** criu's --network-lock: how connections are locked while dumped (iptables by default). */
  networkLock?: LockMethod;
  /** Progress messages (for -v and a terminal). */
  log?: (msg: string) => void;
  /** Memory copied so far, per process (for a progress line on a terminal). */
  progress?: (what: string, done: number, total: number) => void;
  /** Called once the tree is frozen (the RPC's query-ext-files). Throwing fails the dump. */
  afterSeize?: () => void;
  /**
   * Called with every image written and the tree still frozen (the RPC's post-dump). Throwing
   * fails the dump: the tree is resumed as it was and inventory.img removed.
   */
  beforeRelease?: () => void;
}

export interface DumpResult {
  pid: number;
  processes: number;
  threads: number;
  stats: DumpStats;
  /** Bytes in the images directory (added up when first read: a stat of every file). */
  readonly imageBytes: number;
}

const PR_GET_CHILD_SUBREAPER = 37;
/** personality()'s argument that changes nothing and returns the current value. */
const PERSONALITY_QUERY = 0xffffffff;
const MARCH_X86_64 = 1;
const NO_LSM = 0;
const NETWORK_LOCK_SKIP = 2;

/** The established TCP connections (as sock_diag sees them here) whose sockets the processes hold. */
function treeConnections(pids: readonly number[]): LockedConnection[] {
  const inodes = new Set<number>();
  for (const p of pids) {
    for (const fd of fs.readdirSync(`/proc/${p}/fd`)) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${p}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m) inodes.add(Number(m[1]));
    }
  }
  if (!inodes.size) return [];
  return [AF.INET, AF.INET6].flatMap((f) => inetDiagAll(f, IPPROTO.TCP, 1 << TCP_STATE.ESTABLISHED))
    .filter((d) => inodes.has(d.ino)).map((d) => ({ family: d.family, src: d.src, sport: d.sport, dst: d.dst, dport: d.dport }));
}

/** Refusals that need no seizing. */
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
}

function checkWritable(dir: string): void {
  try {
    makePrivateDirs(dir); // 0700: images are secrets (images/private-file.ts)
    fs.accessSync(dir, fs.constants.W_OK);
    const probe = path.join(dir, `.stasis-probe-${process.pid}`);
    fs.closeSync(createPrivateFileSync(probe));
    fs.rmSync(probe);
  } catch (e) {
    throw new Error(`cannot write images into ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

interface ProcessImages {
  cores: Map<number, Record<string, unknown>>;
  mm?: Record<string, unknown>;
  pagemap?: ReturnType<typeof pagemapImage>;
  fdinfos?: Record<string, unknown>[];
  fs?: Record<string, unknown>;
  ids: TaskKobjIds;
}

interface DumpState {
  files: FileTable;
  ids: IdAllocator;
  images: ImageDir;
  /** Private memory: pages scanned and written (stats-dump; shared memory is counted by `files`). */
  pagesScanned: number;
  pagesWritten: number;
  /**
   * Time spent on the processes' memory, and time spent writing pages into the images (the
   * writes stasis makes itself; where the filesystem is slow they go through the thread pool,
   * and only their start is stasis's: see ImageDir.writeFile).
   */
  memdumpMs: number;
  memwrite: BusyTime;
  fileLocks: boolean;
  extUnixSk: boolean;
  shellJob: boolean;
  orphanPts: boolean;
  log: (msg: string) => void;
  progress?: (what: string, done: number, total: number) => void;
  /** The process whose uts namespace is saved (the root of a tree with its own), and what was read. */
  utsOf?: number;
  uts?: UtsEntry;
  /** The same for the ipc namespace. */
  ipcOf?: number;
  ipc?: IpcVarEntry;
  /** The SysV segments of that namespace (id → size), for the VMAs that attach them. */
  segments?: ReadonlyMap<number, number>;
  /** The same for each ipc namespace nested in the tree, by inode. */
  nestedSegments: Map<number, ReadonlyMap<number, number>>;
  /** The first process of each uts namespace nested in the tree, and its names once read. */
  nestedUts: Map<number, { ns: NestedNs; uts?: UtsEntry }>;
  seccomp: SeccompTable;
  /** One process in each mount namespace of the tree but the root's (files on their mounts). */
  mountNsPeers: number[];
  /** Pids as the tree's own pid namespace numbers them (the same as ours on the host). */
  pids: PidNumbering;
  /** Hands over an image write; the dump checks all of them before inventory.img. */
  write: (pending: Promise<void>) => void;
  /**
   * Injectors whose tasks are handed back (finish(): scratch page unmapped, registers and mask
   * put back) only if the tree is to run on: after a failure, or with --leave-running. A tree
   * that is killed at the end is spared that work.
   */
  handBack: HandBack[];
  /** Processes injected into the guarded way (let go of once the dump is over). */
  guarded: GuardedProcess[];
  /** The CPU stasis runs on: each task is pinned there while stasis works in it. */
  pinTo: Buffer;
  /** A task's pid as the image numbers it (in the tree's own pid namespace). */
  imagePid: (host: number) => number;
}

/** A task stasis works in, to be handed back (or abandoned after a failure). */
interface HandBack {
  finish(): void;
  abandon(): void;
}

/**
 * SIGTERM, SIGINT and SIGHUP while a dump holds the tree: the dump stops at its next check and is
 * rolled back (every task handed back as it was, no inventory.img), then stasis fails in one
 * line. The dump runs synchronously between checks, which let the event loop run the signal's
 * handler once every few milliseconds. (A stasis that dies without rolling back — SIGKILL —
 * leaves the tasks to put themselves back: sys/guard.ts.)
 */
class StopSignals {
  private static readonly SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  private got?: NodeJS.Signals;
  private lastCheck = performance.now();
  private readonly handler = (sig: NodeJS.Signals) => {
    this.got ??= sig;
  };
  constructor() {
    for (const s of StopSignals.SIGNALS) process.on(s, this.handler);
  }
  /** Throws once a signal came; lets the event loop run when `now` or every few milliseconds. */
  async check(now = false): Promise<void> {
    if (now || performance.now() - this.lastCheck > 2) {
      await new Promise((r) => setImmediate(r));
      this.lastCheck = performance.now();
    }
    if (this.got) throw new Error(`dump stopped by ${this.got}: the tree runs on as it was, and no image set was completed`);
  }
  remove(): void {
    for (const s of StopSignals.SIGNALS) process.off(s, this.handler);
  }
}

/**
 * A zombie: only its exit status, pids, a minimal core and its credentials (ids, groups and
 * capability sets as /proc shows them; a parent's waitid() sees its uid), which CRIU's dump
 * leaves out (its restore ignores them: the zombie dies with the restorer's).
 */
function dumpZombie(p: TreeProcess, st: DumpState, userns: DumpedUserNamespaces): ProcessImages {
  let creds: CredsEntry | undefined = credsFromStatus(readStatus(p.pid), 0);
  if (userns.any) creds = userns.zombieCredsOf(p.pid, creds);
  const core = {
    mtype: MARCH_X86_64,
    tc: { task_state: TASK_DEAD, exit_code: p.exitCode, personality: 0, flags: 0, blk_sigset: 0n, comm: '' },
    ...(creds ? { thread_core: { futex_rla: 0n, futex_rla_len: 0, creds } } : {}),
  };
  return { cores: new Map([[p.pid, core]]), ids: st.ids.idsFor(p.pid, false) };
}

/** One live (running or stopped) process, all its threads. */
function dumpProcess(p: TreeProcess, st: DumpState): ProcessImages {
  const { pid } = p;
  const stat = readStat(pid);
  const status = readStatus(pid);
  const smaps = readSmaps(pid);
  const ids = st.ids.idsFor(pid);
  const out: ProcessImages = { cores: new Map(), ids };

  // Registers and masks first, before any injection touches them.
  const regs = new Map(p.threads.map((t) => [t, getRegs(t)]));
  const masks = new Map(p.threads.map((t) => [t, getSigmask(t)]));

  // Per-thread state, each thread asked through its own injector, all of them using the main
  // thread's scratch memory (one address space).
  const threadCores = new Map<number, ReturnType<typeof dumpThreadCore>>();
  const guarded = GuardedProcess.open(pid, { vmas: smaps, sigCgt: status.sigCgt, sigPnd: status.sigPnd, shdPnd: status.shdPnd });
  let inj: Injector | GuardedTask;
  if (guarded) {
    st.guarded.push(guarded);
    // Guarded: whenever stasis vanishes, every task puts itself back (sys/guard.ts). Threads are
    // handed back one by one: the guard has room for the main task and one other at a time.
    const main = new GuardedTask(guarded, pid, true, regs.get(pid)!, masks.get(pid)!, st.pinTo);
    st.handBack.push(main);
    main.mapScratch();
    inj = main;
    for (const tid of p.threads.slice(1)) {
      const t = new GuardedTask(guarded, tid, false, regs.get(tid)!, masks.get(tid)!, st.pinTo);
      st.handBack.push(t);
      threadCores.set(tid, dumpThreadCore(t, pid, tid, masks.get(tid)!));
      t.finish();
    }
  } else {
    st.log(`process ${pid}: its vDSO has no room for guarded injection; a stasis killed now would leave it broken`);
    const vdsoStart = smaps.find((v) => v.kind === 'vdso')?.start;
    const plain = new Injector(pid, pid, { pin: false, vdsoStart, sigIgn: status.sigIgn, regs: regs.get(pid), sigmask: masks.get(pid) });
    st.handBack.push(plain);
    // One page for the calls' arguments and results that holds the trampoline too.
    plain.scratchWithTrampoline();
    inj = plain;
    for (const tid of p.threads.slice(1)) {
      const tinj = new Injector(tid, pid, {
        pin: false, vdsoStart, sigIgn: status.sigIgn, regs: regs.get(tid), sigmask: masks.get(tid),
        sharedScratch: plain.scratchRange, sharedTrampoline: plain.trampolineAddress, sharedSequenceArea: plain.sequenceAreaAddress,
      });
      st.handBack.push(tinj);
      threadCores.set(tid, dumpThreadCore(tinj, pid, tid, masks.get(tid)!));
    }
  }

  // What only the process can tell, asked all at once (one stop).
  const questions = inj.questions();
  const askedThread = askThreadCore(questions, pid, pid, masks.get(pid)!, status);
  const askedTimers = askItimers(questions);
  const askedMm = askMm(questions, pid, status);
  const subreaperRoom = questions.room(4);
  questions.ask(SYS.prctl, PR_GET_CHILD_SUBREAPER, subreaperRoom.addr);
  const persona = questions.ask(SYS.personality, PERSONALITY_QUERY);
  questions.run();
  threadCores.set(pid, askedThread());
  const subreaper = questions.answer(subreaperRoom.offset, 4).readInt32LE(0) !== 0;

  const ipcIno = st.nestedSegments.size ? readNamespaces(pid, ['ipc']).ipc?.ino : undefined;
  const vmas = dumpVmas(pid, smaps, st.files, (ipcIno !== undefined && st.nestedSegments.get(ipcIno)) || st.segments);
  const mm = dumpMm(pid, askedMm(), stat, vmas, st.files);
  const sigactions = dumpSigactions(inj, status);
  const timers = askedTimers();
  const posix = dumpPosixTimers(inj, readTimers(pid), st.pids.pid);
  if (posix.length) timers.posix = posix;
  if (st.utsOf === pid) st.uts = dumpUts(inj);
  const nestedUts = st.nestedUts.get(pid);
  if (nestedUts) nestedUts.uts = dumpUts(inj);
  if (st.ipcOf === pid) st.ipc = dumpIpc(pid);
  out.fdinfos = dumpFdTable(pid, inj, st.files, {
    fileLocks: st.fileLocks, shellJob: st.shellJob, orphanPts: st.orphanPts, extUnixSk: st.extUnixSk, imagePid: st.imagePid(pid),
    mountNsPeers: st.mountNsPeers,
  }, p.ppid || undefined) as unknown as Record<string, unknown>[];

  const t0 = performance.now();
  const { runs, scanned } = findDataPages(pid, mm.vmas);
  const pagesId = st.files.allocPagesId();
  const written = writePages(pid, runs, st.images.file(pagesFileName(pagesId)), inj,
    st.progress && ((done, total) => st.progress!(`memory of ${pid}`, done, total)),
    (data) => st.write(st.memwrite.time(() => st.images.writeRaw(pagesFileName(pagesId), data))), st.memwrite);
  st.memdumpMs += performance.now() - t0;
  st.pagesScanned += scanned;
  st.pagesWritten += written;
  st.log(`process ${pid}: ${written} pages`);
  out.pagemap = pagemapImage(pagesId, runs);
  out.mm = mm as unknown as Record<string, unknown>;

  for (const tid of p.threads) {
    const tc = threadCores.get(tid)!;
    const core: Record<string, unknown> = {
      mtype: MARCH_X86_64,
      thread_info: dumpThreadInfo(tid, regs.get(tid)!, tc.clearTidAddr),
      thread_core: { ...tc.core, ...st.seccomp.dumpThread(tid, tc.seccompMode) },
    };
    if (tid === pid) {
      core.tc = {
        task_state: p.state, exit_code: 0, personality: Number(questions.result(persona)), flags: stat.flags,
        blk_sigset: masks.get(pid)!, comm: status.name, timers, rlimits: dumpRlimits(pid),
        signals_s: dumpPendingSignals(pid, true), loginuid: readLoginuid(pid),
        oom_score_adj: readOomScoreAdj(pid), sigactions, child_subreaper: subreaper,
        ...(p.state === TASK_STOPPED && p.stopSigno ? { stop_signo: p.stopSigno } : {}),
      };
    }
    out.cores.set(tid, core);
  }
  out.fs = dumpFs(pid, st.files, status.umask, st.mountNsPeers.length > 0) as unknown as Record<string, unknown>;
  return out;
}

export async function dump(opts: DumpOptions): Promise<DumpResult> {
  const { pid } = opts;
  const log = opts.log ?? (() => {});
  precheck(pid);
  checkWritable(opts.imagesDir);
  const images = await ImageDir.create(opts.imagesDir);
  const ids = new IdAllocator();
  const foreign = ids.foreignNamespaces(pid);
  checkDumpNamespaces(pid, foreign);
  const netKey = foreign.includes('net') ? opts.externalNetns?.get(readNamespaces(pid).net?.ino ?? -1) : undefined;
  const netContents = foreign.includes('net') && !((opts.emptyNs ?? 0) & CLONE.NEWNET) && netKey === undefined;

  schema(); // parse the protos now, not while the tree is frozen
  const stop = new StopSignals();
  const t0 = performance.now();
  const tree = SeizedTree.seize(pid, { freezeCgroup: opts.freezeCgroup, timeoutMs: opts.seizeTimeoutMs });
  const tFrozen = performance.now();
  // The clocks of a time namespace of its own, as they stand when the tree stops.
  let timens: ReturnType<typeof dumpTimens> | undefined;
  let userns: DumpedUserNamespaces;
  let nested: Map<number, NestedNs>;
  log(`froze ${tree.processes.length} processes in ${(tFrozen - t0).toFixed(1)} ms`);
  try {
    timens = foreign.includes('time') ? dumpTimens(pid) : undefined;
    const live = tree.processes.filter((p) => p.state !== TASK_DEAD);
    nested = nestedNamespaces(live.map((p) => p.pid));
    userns = DumpedUserNamespaces.read(live.map((p) => ({ pid: p.pid, threads: p.threads.length })), ids.hostNs.user ?? -1, ids.hostNs.pid ?? -1, new Set(nested.keys()),
      new Set(netKey !== undefined ? ['net'] : []));
    opts.afterSeize?.();
  } catch (e) {
    tree.release();
    stop.remove();
    throw e;
  }
  // Injected syscalls are round trips between stasis and a task: on one CPU they cost a
  // quarter. stasis stays on its CPU, and each task is pinned there while stasis works in it
  // (sys/guard.ts gives its own mask back, also when stasis dies).
  const unpinSelf = pinSelf();
  const pinTo = getAffinity(0);
  let unpinned = false;
  const unpin = () => {
    if (unpinned) return;
    unpinned = true;
    unpinSelf();
  };
  const handBack: HandBack[] = [];
  const guarded: GuardedProcess[] = [];
  const handBackAll = () => {
    // Threads before their process's main thread, whose finish() unmaps the page they share.
    for (const inj of handBack.splice(0).reverse()) {
      try {
        inj.finish();
      } catch {
        inj.abandon();
      }
    }
  };
  const files = Object.assign(new FileTable(), { linkRemap: opts.linkRemap ?? false, skipInFlight: opts.skipInFlight ?? false, ids: userns.container });
  const dumpRunId = newRunId();
  const lockMethod = opts.networkLock ?? 'iptables';
  // Locked in the tree's network namespace (a container's own, or the host's).
  // If stasis dies meanwhile, a process of its own puts connections and rules back (net-ns/watchdog.ts).
  const watchdog = new NetworkWatchdog();
  const hostNet = sameNamespace(pid, 'net');
  // (nftables: the table of this run, `inet CRIU-<run id>`, found by CRIU's restore as by ours)
  const netLock = new ConnectionLock(lockMethod, hostNet ? undefined : pid, watchdog, lockTable(dumpRunId));
  const repaired = new RepairedSockets(watchdog);
  if (opts.tcpEstablished || opts.tcpClose) {
    files.tcp = { established: opts.tcpEstablished ?? false, close: opts.tcpClose ?? false, repaired, lock: (c) => netLock.add(c) };
  }
  let succeeded = false;
  try {
    // Each process's images are written as soon as it is dumped (in place, or through the thread
    // pool where the filesystem is slow: see ImageDir); a failed write fails the dump below.
    const writes: Promise<void>[] = [];
    const write = (w: Promise<void>) => {
      w.catch(() => {}); // seen by Promise.all below, or moot once the dump failed
      writes.push(w);
    };
    // Pids as the tree's own pid namespace numbers them (the same as ours on the host).
    const v = pidNumbering(tree);
    // The first process of each mount namespace of the tree (the root's first).
    const mountNs = new Map<number, number>();
    for (const p of tree.processes) {
      const ino = p.state === TASK_DEAD ? undefined : readNamespaces(p.pid, ['mnt']).mnt?.ino;
      if (ino !== undefined && !mountNs.has(ino)) mountNs.set(ino, p.pid);
    }
    const st: DumpState = {
      files, ids, images, pagesScanned: 0, pagesWritten: 0,
      memdumpMs: 0, memwrite: new BusyTime(), log, fileLocks: opts.fileLocks ?? false, extUnixSk: opts.extUnixSk ?? false, shellJob: opts.shellJob ?? false,
      orphanPts: opts.orphanPtsMaster ?? false,
      progress: opts.progress, utsOf: foreign.includes('uts') ? pid : undefined,
      ipcOf: foreign.includes('ipc') ? pid : undefined, seccomp: new SeccompTable(),
      write, handBack, pinTo, guarded, pids: v, imagePid: v.pid, mountNsPeers: [...mountNs.values()].filter((x) => x !== pid),
      nestedSegments: new Map(), nestedUts: new Map([...nested.values()].filter((n) => n.kind === 'uts').map((n) => [n.pid, { ns: n }])),
    };
    const rootIpcIno = st.ipcOf ? readNamespaces(pid, ['ipc']).ipc?.ino : undefined;
    const sysv = st.ipcOf ? dumpSysvIpc(pid, rootIpcIno !== undefined ? userns.ownerOf(rootIpcIno) : undefined) : undefined;
    st.segments = sysv && dumpedSegments(sysv);
    // The ipc namespaces nested in the tree, their objects' ids as their owners see them.
    const nestedIpc = [...nested.values()].filter((n) => n.kind === 'ipc').map((n) => ({ ns: n, ...dumpNestedIpc(n, userns.ownerOf(n.ino)) }));
    for (const n of nestedIpc) st.nestedSegments.set(n.ns.ino, dumpedSegments(n.sysv));
    // The tree's connections in the host's namespace locked at once, before any is dumped.
    if (opts.tcpEstablished && !opts.tcpClose && lockMethod !== 'skip' && hostNet) {
      netLock.addAll(treeConnections(tree.processes.filter((p) => p.state !== TASK_DEAD).map((p) => p.pid)));
    }
    const dumped: ProcessImages[] = [];
    for (const p of tree.processes) {
      await stop.check();
      const d = p.state === TASK_DEAD ? dumpZombie(p, st, userns) : dumpProcess(p, st);
      // Credentials as the process sees them in its user namespace.
      if (userns.any && p.state !== TASK_DEAD) {
        for (const core of d.cores.values()) {
          const tc = core.thread_core as { creds?: CredsEntry } | undefined;
          if (tc?.creds) tc.creds = userns.credsOf(p.pid, tc.creds);
        }
      }
      const vp = v.pid(p.pid);
      for (const [tid, core] of d.cores) write(images.writeMessages(imageFileName('CORE', v.pid(tid)), [core]));
      // A zombie has no ids image (as with CRIU, whose restore would take its missing namespace ids as new ones).
      if (p.state !== TASK_DEAD) write(images.writeMessages(imageFileName('IDS', vp), [d.ids]));
      if (d.mm) write(images.writeMessages(imageFileName('MM', vp), [d.mm]));
      if (d.pagemap) write(images.write(imageFileName('PAGEMAP', vp), d.pagemap.entries));
      if (d.fs) write(images.writeMessages(imageFileName('FS', vp), [d.fs]));
      if (d.fdinfos) write(images.writeMessages(imageFileName('FDINFO', Number(d.ids.files_id)), d.fdinfos));
      dumped.push(d);
    }
    st.files.checkAtEnd();
    const rootIds = dumped[0]!.ids;
    const net = netContents ? dumpNetns(pid, rootIds.net_ns_id!) : undefined;
    const container = userns.container;
    const mounts = foreign.includes('mnt') ? dumpMounts(pid, opts.extMnt ?? new Map(), foreign.includes('cgroup'), container) : undefined;

    // The shared images once every process is seen; inventory.img after all of them.
    write(images.writeMessages('pstree.img', tree.processes.map((p) => ({
      pid: v.pid(p.pid), ppid: p.ppid ? v.pid(p.ppid) : 0, pgid: v.pgid(p), sid: v.sid(p), threads: p.threads.map(v.pid),
    }))));
    write(images.writeMessages('files.img', st.files.entries));
    for (const [name, entries] of st.files.images) write(images.write(name, entries));
    for (const [name, data] of st.files.rawImages) write(st.memwrite.time(() => images.writeRaw(name, data))); // pages files
    if (mounts) {
      write(images.writeMessages(mountsImageName(rootIds.mnt_ns_id!), mounts.entries as unknown as Record<string, unknown>[]));
      for (const [name, data] of mounts.tars) write(images.writeRaw(name, data));
    }
    // Each mount namespace nested in the tree, read through its first process, against its parent's.
    const nestedDone = new Set([rootIds.mnt_ns_id]);
    tree.processes.forEach((p, i) => {
      const nsId = dumped[i]!.ids.mnt_ns_id;
      if (p.state === TASK_DEAD || nestedDone.has(nsId)) return;
      nestedDone.add(nsId);
      const nested = dumpNestedMounts(p.pid, p.ppid);
      write(images.writeMessages(mountsImageName(Number(nsId)), nested.entries as unknown as Record<string, unknown>[]));
      for (const [name, data] of nested.tars) write(images.writeRaw(name, data));
    });
    for (const [id, e] of userns.entries((ino) => ids.namespaceId(ino)!)) {
      write(images.writeMessages(usernsImageName(id), [e as unknown as Record<string, unknown>]));
    }
    if (st.seccomp.filters.length) write(images.writeMessages(SECCOMP_IMAGE, [{ seccomp_filters: st.seccomp.filters }]));
    if (timens) write(images.writeMessages(timensImageName(rootIds.time_ns_id!), [timens as unknown as Record<string, unknown>]));
    if (st.ipc) write(images.writeMessages(ipcVarImageName(rootIds.ipc_ns_id!), [st.ipc as unknown as Record<string, unknown>]));
    if (netKey !== undefined) write(images.writeMessages(netnsImageName(rootIds.net_ns_id!), [{ ext_key: netKey }]));
    if (net) {
      write(images.writeMessages(netnsImageName(rootIds.net_ns_id!), [net.netns]));
      write(images.writeMessages(netdevImageName(rootIds.net_ns_id!), net.devices));
      for (const [name, data] of net.raw) write(images.writeRaw(name, data));
    }
    for (const kind of SYSV_KINDS) {
      if (sysv?.[kind].length) write(images.write(sysvImageName(kind, rootIds.ipc_ns_id!), sysv[kind]));
    }
    if (st.uts) write(images.writeMessages(utsnsImageName(rootIds.uts_ns_id!), [st.uts as unknown as Record<string, unknown>]));
    for (const n of nestedIpc) {
      const id = ids.namespaceId(n.ns.ino)!;
      write(images.writeMessages(ipcVarImageName(id), [n.vars as unknown as Record<string, unknown>]));
      for (const kind of SYSV_KINDS) if (n.sysv[kind].length) write(images.write(sysvImageName(kind, id), n.sysv[kind]));
    }
    for (const { ns, uts } of st.nestedUts.values()) {
      write(images.writeMessages(utsnsImageName(ids.namespaceId(ns.ino)!), [uts as unknown as Record<string, unknown>]));
    }
    if (foreign.length) write(images.writeMessages('cgroup.img', [dumpCgroups(pid)]));
    await Promise.all(writes);

    const threads = tree.processes.reduce((n, p) => n + (p.state === TASK_DEAD ? 0 : p.threads.length), 0);
    const stats: DumpStats = {
      freezing_time: micros(tFrozen - t0),
      frozen_time: micros(performance.now() - tFrozen),
      memdump_time: micros(st.memdumpMs),
      memwrite_time: micros(st.memwrite.ms),
      pages_scanned: st.pagesScanned, pages_skipped_parent: 0, pages_written: st.pagesWritten,
      irmap_resolve: 0, pages_lazy: 0, page_pipes: 0, page_pipe_bufs: 0,
      shpages_scanned: st.files.sharedPages.scanned, shpages_skipped_parent: 0, shpages_written: st.files.sharedPages.written,
    };
    await stop.check(true); // the last moment a dump can still be rolled back
    await images.commit({
      img_version: 2, fdinfo_per_id: true, root_ids: ids.rootIds, ns_per_id: true,
      root_cg_set: 1, lsmtype: NO_LSM, network_lock_method: netLock.locked ? LOCK_METHOD_CODE[lockMethod] : NETWORK_LOCK_SKIP,
      plugins_entry: {}, dump_criu_run_id: dumpRunId,
    });
    // (before stats-dump, which is no image of the dump)
    // (but timens-N.img: CRIU's root task opens it as soon as it is cloned into the new user
    // namespace, with the host's root's ids still, before its maps may be written; it can then
    // read a file of the host's root only)
    if (container) await images.giveTo(container.root, (name) => name.startsWith('timens-'));
    await writeDumpStats(opts.workDir ?? opts.imagesDir, stats);
    try {
      opts.beforeRelease?.();
    } catch (e) {
      fs.rmSync(path.join(opts.imagesDir, 'inventory.img'), { force: true });
      throw e;
    }

    if (opts.leaveRunning) {
      repaired.resume(); // connections go on, then the peers' packets are let through
      netLock.release(log);
      watchdog.done();
      handBackAll();
      unpin();
      tree.release();
    } else {
      handBack.length = 0; // killed as they are
      unpin(); // first: the dying tasks exit on every CPU
      tree.kill();
      repaired.drop(); // closed in repair mode: nothing sent; the lock stays for the restore
      watchdog.done();
    }
    const dir = opts.imagesDir;
    succeeded = true;
    return {
      pid, processes: tree.processes.length, threads, stats,
      get imageBytes() {
        return fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
      },
    };
  } finally {
    // Connections leave repair mode before their tasks run (a send in repair mode fails).
    if (!succeeded) repaired.resume();
    handBackAll();
    unpin();
    tree.release();
    for (const g of guarded) g.forget();
    stop.remove();
    if (!succeeded) {
      files.rollback(); // what the dump made outside the images (--link-remap's links)
      netLock.release(log);
      watchdog.done();
    }
  }
}
