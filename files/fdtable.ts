// A task's descriptor table: which fd numbers name which file descriptions (fdinfo-N.img), with
// close-on-exec. The descriptions themselves are dumped and opened by the kinds in index.ts.

import { SYS } from '../sys/arch.js';
import type { Injector, TaskCalls } from '../sys/inject.js';
import { listFds, readFdLink, readFdinfo } from '../sys/proc/index.js';
import { kindFor, kindForType } from './index.js';
import type { DumpFilesContext, MountRoot, OrphanPts, RestoreFilesTask } from './kind.js';
import { dumpFileLocks, restoreFileLocks } from './locks.js';
import { dumpFown, restoreFown, type Fown } from './fown.js';
import type { FileEntryMessage, FileTable } from './table.js';
import { F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_SETFD, F_SETFL, O_ASYNC, O_CLOEXEC, SETFL_MASK } from '../sys/fcntl.js';
import type { MemfdInodes } from './memfd.js';

const FD_CLOEXEC = 1;

export interface FdinfoEntry {
  id: number;
  flags: number;
  type: number;
  fd: number;
}

/** What criu takes as options for dumping files. */
export interface DumpFdTableOptions {
  /** --file-locks */
  fileLocks?: boolean;
  /** --shell-job */
  shellJob?: boolean;
  /** orphan_pts_master */
  orphanPts?: boolean;
  /** --ext-unix-sk */
  extUnixSk?: boolean;
  /** The task's pid as the image numbers it (in the tree's pid namespace); `pid` if not given. */
  imagePid?: number;
  /** One process of each other mount namespace of the tree (DumpFilesContext.mountNsPeers). */
  mountNsPeers?: readonly number[];
}

/**
 * The task's descriptors as fdinfo entries; new descriptions go into `table`. `parent`: the
 * task's parent, dumped before it (its fds are compared with the task's first).
 */
export function dumpFdTable(pid: number, inj: TaskCalls, table: FileTable,
  opts: DumpFdTableOptions = {}, parent?: number): FdinfoEntry[] {
  const out: FdinfoEntry[] = [];
  const ctx: DumpFilesContext = {
    pid, inj, addFile: (f) => table.add(f), memo: table.memo, linkRemap: table.linkRemap, ids: table.ids, tcp: table.tcp, skipInFlight: table.skipInFlight, onRollback: (fn) => table.onRollback(fn), fileLocks: opts.fileLocks ?? false, shellJob: opts.shellJob ?? false,
    orphanPts: opts.orphanPts ?? false, extUnixSk: opts.extUnixSk ?? false, mountNsPeers: opts.mountNsPeers,
    addImageEntry: (image, message, extra) => table.addImageEntry(image, message, extra),
    writeImage: (image, entries) => table.setImage(image, entries),
    writeSharedPages: (shmid, runs, data, objectPages) => table.writeSharedPages(shmid, runs, data, objectPages),
    atEnd: (check) => table.atEnd(check),
    dumpFd: (fd) => {
      const { id, link } = dumpFd(pid, fd, table, ctx, opts.imagePid ?? pid);
      table.rememberInFlight(pid, fd, link, id);
      return id;
    },
  };
  const unread: FdinfoEntry[] = [];
  for (const fd of listFds(pid)) {
    const inherited = parent === undefined ? undefined : table.inherited(pid, parent, fd);
    const known: FdKnown = inherited ?? dumpFd(pid, fd, table, ctx, opts.imagePid ?? pid);
    const { id, link, type, flags } = known;
    // A description dumped before: the POSIX locks this task took through it are its own.
    if (flags === undefined && ctx.fileLocks) dumpFileLocks({ pid, fd, link, fdinfo: readFdinfo(pid, fd) }, ctx, opts.imagePid ?? pid, false);
    table.recordFd(pid, fd, id, link, type);
    const entry = { id, flags: flags !== undefined && flags & O_CLOEXEC ? FD_CLOEXEC : 0, type, fd };
    if (flags === undefined) unread.push(entry);
    out.push(entry);
  }
  // A description dumped already has only the fd's close-on-exec left to know: asked of the
  // task for all such fds at once (F_GETFD), rather than an fdinfo file read for each.
  if (unread.length) {
    const got = inj.callAllChecked(unread.map((e) => [SYS.fcntl, e.fd, F_GETFD] as const));
    unread.forEach((e, i) => { e.flags = Number(got[i]!) & FD_CLOEXEC; });
  }
  return out;
}

/** An fd of a task: its description's id, /proc link and type; its fdinfo flags if read. */
interface FdKnown { id: number; link: string; type: number; flags?: number }

/**
 * Fd `fd` of `pid`, known by its link: its description's id (dumped now, unless an earlier fd
 * shares it), its type, and its fdinfo flags when fdinfo was read for the dump.
 */
function dumpFd(pid: number, fd: number, table: FileTable, ctx: DumpFilesContext, imagePid: number): FdKnown {
  const link = readFdLink(pid, fd);
  const kind = kindFor({ pid, fd, link });
  if (!kind) throw new Error(`fd ${fd} of task ${pid} is ${link}, which stasis cannot dump yet`);
  const shared = table.sharedWith(pid, fd, link);
  if (shared !== undefined) return { id: shared, link, type: kind.type };
  const fdinfo = readFdinfo(pid, fd);
  const dumped = kind.dump({ pid, fd, link, fdinfo }, ctx);
  if (dumped.entry.fown) dumped.entry.fown = dumpFown(ctx.inj, fd);
  const id = table.add(dumped);
  table.remember(pid, fd, link, id);
  dumpFileLocks({ pid, fd, link, fdinfo }, ctx, imagePid, true);
  return { id, link, type: kind.type, flags: fdinfo.flags };
}

/** Check, before touching anything, that every description in the table can be opened by some kind. */
export function checkFdTable(fdinfos: readonly FdinfoEntry[], files: ReadonlyMap<number, FileEntryMessage>): void {
  for (const f of fdinfos) {
    const file = files.get(f.id);
    if (!file) throw new Error(`fd ${f.fd} refers to file ${f.id}, which files.img does not have`);
    if (!kindForType(file.type)) throw new Error(`fd ${f.fd} is of file type ${file.type}, which stasis cannot restore yet`);
  }
}

export interface RestoreFdTableOptions {
  inherited(key: string): number | undefined;
  /** --shell-job */
  shellJob?: boolean;
  orphanPts?: OrphanPts;
  /** Copy a descriptor of stasis into the task. */
  importFd(fd: number): number;
  /** Copy descriptor `fd` of another (already restored) task of the tree into this one. */
  importFromTask?(pid: number, fd: number): number;
  /** Where a description shared with an earlier task of the tree lives: that task and its fd. */
  openedElsewhere?(fileId: number): { pid: number; fd: number } | undefined;
  imageEntries(image: string): { message: Record<string, any>; extra?: Uint8Array }[];
  imagePath(image: string): string;
  /** Keeps work for after every task's table (RestoreFilesTask.later). */
  later(fn: () => void): void;
  /** Keeps work for once every task and thread of the tree exists (default: later). */
  afterThreads?(fn: () => void): void;
  /**
   * Descriptors the task already holds as they should be (fd → file id), inherited from a
   * restored parent: their descriptions are not opened again nor finished a second time.
   */
  kept?: ReadonlyMap<number, number>;
  /** The task's pid as the image numbers it (its locks are recorded under it); `pid` if not given. */
  imagePid?: number;
  /** The memfd inodes of the restore (RestoreFilesTask.memfds). */
  memfds?: MemfdInodes;
  /** Established connections of the restore (RestoreFilesTask.tcp). */
  tcp?: RestoreFilesTask['tcp'];
  /** RestoreFilesTask.mountRoot and mountPoint. */
  mountRoot?(mntId: number): MountRoot | undefined;
  mountPoint?(mntId: number): string | undefined;
}

export interface RestoredFdTable {
  /** The fd of each description this task holds, by file id. */
  placed: Map<number, number>;
  /**
   * Descriptors made here for descriptions this task does not hold (the far end of a pipe whose
   * near end it has): other tasks of the tree take them from here; the caller closes them once
   * every task has its table.
   */
  spare: Map<number, number>;
}

/**
 * Rebuild the task's descriptor table (the caller has closed what the task inherited). Each
 * description is opened once — or taken from where another task of the tree has it — and
 * duplicated onto every fd that shares it; then kinds with a second pass run it.
 */
export function restoreFdTable(pid: number, inj: Injector, fdinfos: readonly FdinfoEntry[],
  files: ReadonlyMap<number, FileEntryMessage>, opts: RestoreFdTableOptions): RestoredFdTable {
  const byId = new Map<number, FdinfoEntry[]>();
  for (const f of fdinfos) byId.set(f.id, [...(byId.get(f.id) ?? []), f]);
  const floor = fdinfos.reduce((m, f) => Math.max(m, f.fd + 1), 3);
  const provided = new Map<number, number>();
  const placed = new Map<number, number>();
  const task: RestoreFilesTask = {
    pid, inj, inherited: opts.inherited, importFd: opts.importFd, importGiven: (fd, flags) => importGiven(inj, opts.importFd(fd), flags),
    imageEntries: opts.imageEntries,
    imagePath: opts.imagePath,
    shellJob: opts.shellJob, orphanPts: opts.orphanPts, later: opts.later, memfds: opts.memfds, tcp: opts.tcp, mountRoot: opts.mountRoot, mountPoint: opts.mountPoint,
    file: (id) => files.get(id),
    allFiles: () => files.values(),
    // A descriptor made for a later description is parked above every fd the table uses, so no
    // dup3() onto a target number can close it before its turn.
    provide: (id, fd) => provided.set(id, fd < floor ? moveAbove(inj, fd, floor) : fd),
    fdOf: (id) => placed.get(id) ?? provided.get(id),
    openFile: (id) => {
      const file = files.get(id);
      const kind = file && kindForType(file.type);
      if (!kind) throw new Error(`file ${id} is not in files.img, or of a type stasis cannot restore`);
      const elsewhere = opts.openedElsewhere?.(id);
      if (elsewhere && opts.importFromTask) return opts.importFromTask(elsewhere.pid, elsewhere.fd);
      return kind.open(file[kind.field] as Record<string, unknown>, task);
    },
  };
  const keptIds = new Set(opts.kept?.values() ?? []);
  for (const [id, fds] of byId) forFds(id, fds, () => {
    const file = files.get(id)!;
    const kind = kindForType(file.type)!;
    const have = fds.find((f) => opts.kept?.get(f.fd) === id);
    if (have) {
      // Inherited: copied onto this id's other numbers, if any.
      for (const f of fds) {
        if (f !== have && opts.kept?.get(f.fd) !== id) inj.callChecked(SYS.dup3, have.fd, f.fd, f.flags & FD_CLOEXEC ? O_CLOEXEC : 0);
      }
      placed.set(id, have.fd);
      return;
    }
    const elsewhere = opts.openedElsewhere?.(id);
    let tmp = provided.get(id);
    provided.delete(id);
    if (tmp === undefined && elsewhere && opts.importFromTask) {
      tmp = opts.importFromTask(elsewhere.pid, elsewhere.fd); // as the other task has it, owner and all
    } else {
      const entry = file[kind.field] as Record<string, unknown>;
      if (tmp === undefined) tmp = kind.open(entry, task);
      restoreAsync(inj, tmp, entry);
      // The owner may be another process, a process group or a thread of the tree: set once
      // all of them exist.
      const fown = entry.fown as Partial<Fown> | undefined;
      const at = fds[0]!.fd;
      if (fown?.pid) (opts.afterThreads ?? opts.later)(() => restoreFown(inj, at, fown));
    }
    for (const f of fds) {
      if (f.fd !== tmp) inj.callChecked(SYS.dup3, tmp, f.fd, f.flags & FD_CLOEXEC ? O_CLOEXEC : 0);
      // Opened (or copied in) right on its number: set close-on-exec either way, for what made
      // it may have set it (pidfd_getfd always does, helpers open with O_CLOEXEC).
      else inj.callChecked(SYS.fcntl, f.fd, F_SETFD, f.flags & FD_CLOEXEC);
    }
    if (!fds.some((f) => f.fd === tmp)) inj.callChecked(SYS.close, tmp!);
    placed.set(id, fds[0]!.fd);
  });
  for (const [id, fds] of byId) {
    if (keptIds.has(id)) continue; // the parent finished it
    const file = files.get(id)!;
    const kind = kindForType(file.type)!;
    forFds(id, fds, () => kind.finish?.(file[kind.field] as Record<string, unknown>, fds[0]!.fd, task));
  }
  restoreFileLocks(opts.imagePid ?? pid, inj, opts.imageEntries);
  return { placed, spare: provided };
}

/**
 * O_ASYNC, which no kind's open() gives a description: only F_SETFL sets it (with the other
 * status flags F_SETFL changes, as the image has them).
 */
function restoreAsync(inj: Injector, fd: number, entry: Record<string, unknown>): void {
  const flags = Number(entry.flags ?? 0);
  if (flags & O_ASYNC) inj.callChecked(SYS.fcntl, fd, F_SETFL, flags & SETFL_MASK);
}

/** Runs `fn` for the descriptors `fds` of file `id`, naming them in what it throws. */
function forFds(id: number, fds: readonly FdinfoEntry[], fn: () => void): void {
  try {
    fn();
  } catch (e) {
    throw new Error(`fd ${fds.map((f) => f.fd).join(', ')} (file ${id}): ${(e as Error).message}`, { cause: e });
  }
}

/** Move a helper descriptor in the task to `floor` or above (close-on-exec). */
export function moveAbove(inj: Injector, fd: number, floor: number): number {
  const moved = Number(inj.callChecked(SYS.fcntl, fd, F_DUPFD_CLOEXEC, floor));
  inj.callChecked(SYS.close, fd);
  return moved;
}

/**
 * A handed-over description copied into the task (`fd`): the status flags F_SETFL can change
 * set to the image's where they differ (the access mode and the rest are the giver's).
 */
function importGiven(inj: Injector, fd: number, flags: number): number {
  const have = Number(inj.callChecked(SYS.fcntl, fd, F_GETFL));
  if ((have ^ flags) & SETFL_MASK) inj.callChecked(SYS.fcntl, fd, F_SETFL, (have & ~SETFL_MASK) | (flags & SETFL_MASK));
  return fd;
}
