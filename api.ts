// stasis as a library: `import { dump, restore } from 'stasis'`. What a Go program gets from
// go-criu, a Node program gets here, without a socket in between: the dump and the restore run in
// the calling process, with options shaped like criu's RPC options (criu_opts, camelCased) and a
// notify object with one method per notification criu sends.
//
// The calling process must be allowed to ptrace the tree (root, or CAP_SYS_PTRACE and
// CAP_CHECKPOINT_RESTORE), and a restore makes the restored root its child (or, with rstSibling,
// its parent's child): reap it (waitForExit), or run under a subreaper.
//
// Errors are typed: everything a call throws is a StasisError (`e instanceof StasisError`), one
// of the classes below saying what failed.

import { ImageDir } from './images/image-dir.js';
import { ImageError, MissingImageError, WireError } from './images/errors.js';
import { SysError } from './sys/errno.js';
import { ProcError } from './sys/proc/read.js';
import { RestoreError } from './task/errors.js';
import { CheckpointImageError } from './oci-spec/checkpoint-image.js';
import { ContainerError } from './oci-spec/container.js';
import { CheckpointError } from './oci-spec/checkpoint-reader.js';
import { SpecError } from './oci-spec/spec.js';
import { RuntimeStateError } from './oci-spec/runtime-state.js';
import { UsageError, joinNsFile, parseExternalNet } from './runtime-hook/options.js';
import type { DumpResult as TaskDumpResult } from './task/dump.js';
import type { JoinNs, RestoreResult as TaskRestoreResult } from './task/restore.js';

// ---------------------------------------------------------------------------------------------
// Errors

/** The classes stasis's own errors are made from (each keeps its own fields: errno, file, offset...). */
const OWN_ERRORS: readonly (abstract new (...args: never[]) => Error)[] = [
  SysError, ImageError, MissingImageError, WireError, ProcError, RestoreError, CheckpointImageError, UsageError,
  ContainerError, CheckpointError, SpecError, RuntimeStateError,
];

/**
 * Any error stasis throws: `e instanceof StasisError` holds for every class exported here
 * (SysError, ImageError, RestoreError, ...), which keep their own fields, and for a DumpError.
 */
export class StasisError extends Error {
  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses test their own prototype chain, as usual.
    if (this !== StasisError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return Function.prototype[Symbol.hasInstance].call(StasisError, value) || OWN_ERRORS.some((c) => value instanceof c);
  }
}

/** A dump that failed for a reason no narrower class says (`pid` is the tree's root). */
export class DumpError extends StasisError {
  constructor(readonly pid: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DumpError';
  }
}

/** UsageError: bad options given to a call (an unknown key, a malformed value). */
export { SysError, ImageError, MissingImageError, WireError, ProcError, RestoreError, CheckpointImageError, UsageError };

// ---------------------------------------------------------------------------------------------
// Options as criu's RPC has them

/**
 * criu's notifications (go-criu's Notify interface), called synchronously at the moment criu
 * would send each. Throwing from one fails the dump or restore: a dumped tree is let go untouched,
 * restored tasks are killed. Only postResume comes with the restored tree running: what it throws
 * is thrown from restore(), and the tree runs on.
 */
export interface Notify {
  preDump?(): void;
  /** The tree is frozen and about to be read (criu's query-ext-files). */
  queryExtFiles?(): void;
  /** Every image written, the tree still frozen: throw to have it resumed as it was. */
  postDump?(): void;
  preRestore?(): void;
  /** The restored root has its namespaces (a tree with its own): its PID. */
  setupNamespaces?(pid: number): void;
  postSetupNamespaces?(): void;
  /** The whole tree restored and stopped: its root's PID. Throw to have it killed. */
  postRestore?(pid: number): void;
  preResume?(): void;
  postResume?(): void;
  /** With orphanPtsMaster: the master of a pseudo-terminal made anew (a descriptor of this process). */
  orphanPtsMaster?(fd: number): void;
}

interface CommonOptions {
  /** The images directory. */
  imagesDir: string;
  /** Where stats-dump / stats-restore go (the images directory by default). */
  workDir?: string;
  shellJob?: boolean;
  orphanPtsMaster?: boolean;
  /** External mounts, as criu's ext_mnt {key, val}. */
  extMnt?: { key: string; val: string }[];
  /** criu's external: `mnt[KEY]:VAL`, `net[INODE]:NAME`. */
  external?: string[];
  notify?: Notify;
  /** stasis's log lines (criu's log at level 4). */
  log?: (msg: string) => void;
}

/** criu_opts for a DUMP. */
export interface DumpOptions extends CommonOptions {
  /** The root of the tree. */
  pid: number;
  leaveRunning?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
  linkRemap?: boolean;
  /** CLONE_NEW* flags of namespaces restored empty (only CLONE_NEWNET). */
  emptyNs?: number;
  /** A cgroup holding the tree, frozen while it is seized. */
  freezeCgroup?: string;
  /** Seconds collecting the tree may take. */
  timeout?: number;
  /** Established (and half-closed) TCP connections dumped through repair mode; the network locked meanwhile. */
  tcpEstablished?: boolean;
  /** Established TCP connections recorded without their state (restored closed). */
  tcpClose?: boolean;
  /** A TCP listener's connections not yet accepted are left out. */
  tcpSkipInFlight?: boolean;
  /** How connections are locked while away (default iptables). */
  networkLock?: 'iptables' | 'nftables' | 'skip';
}

/** criu_opts for a RESTORE. */
export interface RestoreOptions extends CommonOptions {
  /** criu's inherit_fd: the dump's descriptor KEY (e.g. `pipe:[1234]`) becomes descriptor `fd` of this process. */
  inheritFd?: { key: string; fd: number }[];
  /** The restored root becomes a child of this process's parent, not of this process. */
  rstSibling?: boolean;
  /** For a tree with its own mount namespace: its root on the host. */
  root?: string;
  /** Namespaces to restore into instead of new ones: ns ipc|uts|net|time, nsFile a namespace file or a PID. */
  joinNs?: { ns: JoinNs['kind']; nsFile: string }[];
  /** The cgroup of each hierarchy the tree goes into (ctrl '' or absent: cgroup v2). */
  cgRoot?: { ctrl?: string; path: string }[];
  /** criu's "Warn" lines: something coped with. */
  warn?: (msg: string) => void;
  /** Established TCP connections of the dump are restored (the dump's lock lifted once they are live). */
  tcpEstablished?: boolean;
  /** Established TCP connections are restored closed. */
  tcpClose?: boolean;
}

export type DumpResult = TaskDumpResult;
export type RestoreResult = TaskRestoreResult;

const COMMON_KEYS = ['imagesDir', 'workDir', 'shellJob', 'orphanPtsMaster', 'extMnt', 'external', 'notify', 'log'];
const DUMP_KEYS = new Set([...COMMON_KEYS, 'pid', 'leaveRunning', 'extUnixSk', 'fileLocks', 'linkRemap', 'emptyNs', 'freezeCgroup', 'timeout',
  'tcpEstablished', 'tcpClose', 'tcpSkipInFlight', 'networkLock']);
const RESTORE_KEYS = new Set([...COMMON_KEYS, 'inheritFd', 'rstSibling', 'root', 'joinNs', 'cgRoot', 'warn', 'tcpEstablished', 'tcpClose']);

function checkKeys(opts: object, known: ReadonlySet<string>, call: string): void {
  if (typeof opts !== 'object' || opts === null) throw new UsageError(`${call}: options must be an object`);
  for (const k of Object.keys(opts)) {
    if (!known.has(k)) throw new UsageError(`${call}: unknown option '${k}' (stasis does not support it, or it is misspelt)`);
  }
  const dir = (opts as { imagesDir?: unknown }).imagesDir;
  if (typeof dir !== 'string' || !dir) throw new UsageError(`${call}: imagesDir (a directory path) is needed`);
}

/** ext_mnt and external mnt[] as one map, KEY → VAL. */
function mountMap(o: CommonOptions): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, val } of o.extMnt ?? []) out.set(key, val);
  for (const x of o.external ?? []) {
    if (x.startsWith('net[')) continue;
    const m = /^mnt\[(.+)\]:(.*)$/.exec(x);
    if (!m) throw new UsageError(`external: only mnt[KEY]:VAL and net[INODE]:NAME are supported, got '${x}'`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

function netnsMap(o: CommonOptions): Map<number, string> {
  const out = new Map<number, string>();
  for (const x of o.external ?? []) {
    if (!x.startsWith('net[')) continue;
    const net = parseExternalNet(x);
    if (!net) throw new UsageError(`external: net wants net[INODE]:NAME, got '${x}'`);
    out.set(...net);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dump and restore

/** Checkpoint the process tree rooted at `opts.pid` into `opts.imagesDir` (killed after, unless leaveRunning). */
export async function dump(opts: DumpOptions): Promise<DumpResult> {
  checkKeys(opts, DUMP_KEYS, 'dump');
  if (!Number.isInteger(opts.pid) || opts.pid <= 0) throw new UsageError(`dump: pid must be a PID, got ${String(opts.pid)}`);
  const n = opts.notify ?? {};
  const { dump: dumpTree } = await import('./task/dump.js');
  try {
    n.preDump?.();
    return await dumpTree({
      pid: opts.pid, imagesDir: opts.imagesDir, workDir: opts.workDir, leaveRunning: opts.leaveRunning,
      fileLocks: opts.fileLocks, extUnixSk: opts.extUnixSk, shellJob: opts.shellJob, orphanPtsMaster: opts.orphanPtsMaster,
      extMnt: mountMap(opts), externalNetns: netnsMap(opts), emptyNs: opts.emptyNs, freezeCgroup: opts.freezeCgroup,
      linkRemap: opts.linkRemap, seizeTimeoutMs: opts.timeout ? opts.timeout * 1000 : undefined, log: opts.log,
      tcpEstablished: opts.tcpEstablished, tcpClose: opts.tcpClose, skipInFlight: opts.tcpSkipInFlight, networkLock: opts.networkLock,
      afterSeize: n.queryExtFiles && (() => n.queryExtFiles!()),
      beforeRelease: n.postDump && (() => n.postDump!()),
    });
  } catch (e) {
    if (e instanceof StasisError) throw e;
    throw new DumpError(opts.pid, `dump of ${opts.pid}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Restore the tree dumped in `opts.imagesDir`, every PID as it was; resolves once it runs. Its
 * root is a child of this process (with rstSibling, of this process's parent).
 */
export async function restore(opts: RestoreOptions): Promise<RestoreResult> {
  checkKeys(opts, RESTORE_KEYS, 'restore');
  const n = opts.notify ?? {};
  const inheritFds = new Map<string, number>();
  for (const { key, fd } of opts.inheritFd ?? []) {
    if (!Number.isInteger(fd) || fd < 0) throw new UsageError(`restore: inheritFd ${key}: fd must be a descriptor number, got ${String(fd)}`);
    inheritFds.set(key, fd);
  }
  const { restore: restoreTree } = await import('./task/restore.js');
  try {
    n.preRestore?.();
    const r = await restoreTree({
      imagesDir: opts.imagesDir, workDir: opts.workDir, inheritFds, siblingOfStasis: opts.rstSibling, shellJob: opts.shellJob,
      root: opts.root, extMnt: mountMap(opts), tcpEstablished: opts.tcpEstablished, tcpClose: opts.tcpClose,
      joinNs: (opts.joinNs ?? []).map((j) => ({ kind: j.ns, file: joinNsFile(j.ns, j.nsFile) })),
      cgRoots: opts.cgRoot?.map((c) => ({ ctrl: c.ctrl ?? '', path: c.path })),
      orphanPtsMaster: opts.orphanPtsMaster ? (fd) => n.orphanPtsMaster?.(fd) : undefined,
      namespacesReady: n.setupNamespaces || n.postSetupNamespaces ? (pid) => {
        n.setupNamespaces?.(pid);
        n.postSetupNamespaces?.();
      } : undefined,
      beforeResume: n.postRestore || n.preResume ? (pid) => {
        n.postRestore?.(pid);
        n.preResume?.();
      } : undefined,
      log: opts.log, warn: opts.warn,
    });
    n.postResume?.();
    return r;
  } catch (e) {
    if (e instanceof StasisError) throw e;
    throw new RestoreError(opts.imagesDir, '', e instanceof Error ? e.message : String(e), { cause: e });
  }
}

/**
 * Wait for a restored root that is this process's child to exit: its status, shell style
 * (128 + signal). Blocks the thread (and so the event loop) until then.
 */
export async function waitForExit(pid: number): Promise<number> {
  return (await import('./task/restore.js')).waitForExit(pid);
}

// ---------------------------------------------------------------------------------------------
// Images

/**
 * An images directory: `openImages(dir)` to read one (decoded images by file name, pagemaps,
 * memory), `openImages(dir, { create: true })` to write one (inventory.img last, by commit()).
 */
export async function openImages(dir: string, opts: { create?: boolean } = {}): Promise<ImageDir> {
  return opts.create ? ImageDir.create(dir) : ImageDir.open(dir);
}

export { ImageDir, RawWriter } from './images/image-dir.js';
/** The image codec: CRIU's on-disk format, byte for byte. */
export {
  decodeImage, encodeImage, imageOf, readHead, decodeMessage, encodeMessage, imageTypes, imageTypeByName, imageTypeByMagic,
  imageTypeForFile, imageFileName, readPagemap, pagesFileName, PAGE_SIZE, critJsonText, imageToCrit, messageToCrit, schema, messageType,
  type Image, type ImageEntry, type Message, type ImageType, type Pagemap, type PageRun, type CritValue,
} from './images/index.js';

// ---------------------------------------------------------------------------------------------
// Checkpoint archives and images

export { packDirectory, readMembers, listMembers, extractArchive, type Member, type PackOptions } from './oci-spec/archive.js';
export { type Compression } from './oci-spec/compression.js';
export {
  createCheckpointImage, readCheckpointImage, isImageLayout, checkpointArchiveOf, CHECKPOINT_NAME_ANNOTATIONS,
  type CheckpointImage, type CheckpointImageMeta, type CreateCheckpointImageOptions, type ReadCheckpointImageOptions,
} from './oci-spec/checkpoint-image.js';

// ---------------------------------------------------------------------------------------------
// Containers and inspection

export {
  checkpointContainer, restoreContainer, ContainerError, type CheckpointContainerOptions, type CheckpointContainerResult,
  type RestoreContainerOptions, type RestoreContainerResult,
} from './oci-spec/container.js';
export { inspect, listCheckpoints, type InspectOptions, type CheckpointInfo, type ListedCheckpoint } from './oci-spec/inspect.js';
export { searchMemory, memorySizes, type MemoryMatch } from './oci-spec/memparse.js';
export { diffCheckpoints, type CheckpointDiff } from './oci-spec/diff.js';
export { CheckpointError } from './oci-spec/checkpoint-reader.js';
export { SpecError } from './oci-spec/spec.js';
export { RuntimeStateError } from './oci-spec/runtime-state.js';
