// What every kind of open file provides. The generic fd-table code (fdtable.ts) walks a task's
// descriptors and dispatches here without knowing any kind; adding a kind means one module that
// implements FileKind and one line in index.ts.

import type { PendingStream, RepairedSockets } from './tcp-stream.js';
import type { LockedConnection } from '../net-ns/network-lock.js';
import type { Injector, TaskCalls } from '../sys/inject.js';
import type { FdInfo } from '../sys/proc/index.js';
import type { FileEntryMessage } from './table.js';
import type { PageRun } from '../images/index.js';
import type { MemfdInodes } from './memfd.js';
import type { IdsInside } from '../task/userns.js';

/** An open descriptor of a task being dumped. */
export interface OpenFd {
  pid: number;
  fd: number;
  /** readlink of /proc/PID/fd/N. */
  link: string;
  fdinfo: FdInfo;
}

/** The image side of a file description: the file_entry field and its message. */
export interface DumpedFile {
  /** fd_types value. */
  type: number;
  /** The field of file_entry that holds `entry` (reg, pipe, usk, ...). */
  field: string;
  entry: Record<string, unknown>;
  /**
   * Called with the description's id once the table has given it one, for what refers back to
   * it by id (remap-fpath.img's orig_id, the id of epoll targets and inotify watches).
   */
  added?(id: number): void;
}

export interface DumpFilesContext {
  /** The task that holds the descriptor, and an injector on it (stopped, all signals blocked). */
  pid: number;
  /** --shell-job: terminals may be dumped (and are given back on restore). */
  shellJob?: boolean;
  /** criu's orphan_pts_master: a pseudo-terminal whose master is outside the tree may be dumped. */
  orphanPts?: boolean;
  /**
   * One process of each mount namespace of the tree other than the root's (nested ones): a watch
   * may be on a mount only one of them has.
   */
  mountNsPeers?: readonly number[];
  inj: TaskCalls;
  /** Registers another file description (e.g. the path half of a FIFO); returns its id. */
  addFile(file: DumpedFile): number;
  /**
   * Dumps descriptor `fd` of the task as any other (a file received in flight, installed there
   * only for the dump): the id of its description, shared with an fd that has it already.
   */
  dumpFd(fd: number): number;
  /** Appends an entry (with its payload) to a shared image: pipes-data.img, sk-queues.img, ... */
  addImageEntry(image: string, message: Record<string, unknown>, extra?: Uint8Array): void;
  /** Writes a whole image of the kind's own (ghost-file-N.img, ...). */
  writeImage(image: string, entries: { message: Record<string, unknown>; extra?: Uint8Array }[]): void;
  /** Writes a shared memory object's pages (FileTable.writeSharedPages, which counts them). */
  writeSharedPages(shmid: bigint, runs: readonly Omit<PageRun, 'offset'>[], data: Uint8Array, objectPages: number): void;
  /** Per-dump scratch space a kind may use to remember things across descriptors (by its own keys). */
  memo: Map<string, unknown>;
  /** criu's --file-locks: dump the locks a task holds (without it, a held lock fails the dump). */
  fileLocks: boolean;
  /** criu's --link-remap: a removed file that has other names is linked to a temporary one (reg.ts). */
  linkRemap?: boolean;
  /**
   * The container's user namespace (the tree's, owning its other namespaces): the owners of
   * files (a ghost file, a socket's file) are written as it sees them, as CRIU writes them.
   */
  ids?: IdsInside;
  /** Undo `fn` if the dump fails (what a kind made outside the images). */
  onRollback?(fn: () => void): void;
  /**
   * criu's --ext-unix-sk: a datagram socket connected to a bound socket outside the tree may be
   * dumped (it is connected to that name again on restore).
   */
  extUnixSk?: boolean;
  /**
   * Run `check` once every process of the tree has been dumped, for what only the whole tree can
   * tell (is a socket's peer held by some process of it?); a throw fails the dump.
   */
  atEnd(check: () => void): void;
  /** --tcp-established / --tcp-close: how established connections are dumped (none: refused). */
  tcp?: TcpDump;
  /** criu's --skip-in-flight: connections not yet accepted by a TCP listener are left out. */
  skipInFlight?: boolean;
}

/** What a dump does with established TCP connections (files/tcp-stream.ts). */
export interface TcpDump {
  established: boolean;
  /** --tcp-close: recorded without their state, restored closed. */
  close: boolean;
  /** Sockets in repair mode, let go when the dump ends. */
  repaired: RepairedSockets;
  /** Drop the connection's packets until it is restored (the network lock), before repair. */
  lock?(c: LockedConnection): void;
}

/** The task being restored, as a file kind sees it. */
export interface RestoreFilesTask {
  pid: number;
  inj: Injector;
  /** A descriptor of stasis that the user handed over for this key (--inherit-fd, --shell-job). */
  inherited(key: string): number | undefined;
  /** --shell-job: the task's terminal becomes stasis's own. */
  shellJob?: boolean;
  /**
   * criu's orphan_pts_master: pseudo-terminals whose master was outside the tree are made anew
   * in the restored tree's /dev/ptmx; their masters, as stasis's descriptors, go here.
   */
  orphanPts?: OrphanPts;
  /** Copy descriptor `fd` of stasis into the task; returns its number there. */
  importFd(fd: number): number;
  /**
   * Copy descriptor `fd` of stasis, handed over for a description of the dump (--inherit-fd),
   * into the task, with the status flags (O_NONBLOCK, O_APPEND...) the image gives it: the
   * description is the task's from now on, as it was when dumped.
   */
  importGiven(fd: number, flags: number): number;
  /** The entries (and payloads) of an image of the dump; [] when it does not exist. */
  imageEntries(image: string): { message: Record<string, any>; extra?: Uint8Array }[];
  /** The full path of a file of the dump (raw pages files are read from there). */
  imagePath(image: string): string;
  /** Another file description of the dump, by id (a socket's peer, a FIFO's path...). */
  file(id: number): FileEntryMessage | undefined;
  /** Every file description of the dump (to find a peer by inode). */
  allFiles(): Iterable<FileEntryMessage>;
  /**
   * Hand a descriptor made here to another description of the dump (the other end of a pipe or
   * socketpair): when that description's turn comes, this fd is used instead of opening it.
   */
  provide(fileId: number, fd: number): void;
  /** The descriptor (in this task) of a description already opened, if any. */
  fdOf(fileId: number): number | undefined;
  /**
   * Open another description of the dump in this task (a file in flight in a socket's queue):
   * copied from the task of the tree that has it already, or else opened by its kind. Returns
   * the new descriptor, which the caller owns.
   */
  openFile(fileId: number): number;
  /** Run `fn` once every task of the tree has its descriptors (e.g. connect to a later one's socket). */
  later(fn: () => void): void;
  /** The memfd inodes of the restore, made once for the whole tree (files/memfd.ts). */
  memfds?: MemfdInodes;
  /** Established connections: made in repair mode, collected to go live with the tree. */
  tcp?: { close: boolean; pending: PendingStream[] };
  /**
   * The way into the mount namespace that has mount `mntId` of the dump when it is not the
   * task's own (a file on a mount of a namespace nested in the tree, or of the tree's own seen
   * from a nested one): /proc/PID/root of a task there, as the task and as stasis name it.
   */
  mountRoot?(mntId: number): MountRoot | undefined;
  /** Where mount `mntId` of the dump is mounted, in its namespace (a mount namespace's image says). */
  mountPoint?(mntId: number): string | undefined;
}

/** /proc/PID/root of a task in another mount namespace: in the restored task's view, and stasis's. */
export interface MountRoot { task: string; stasis: string }

/** New pseudo-terminals of one restore, by tty_info id: the pts number and the master (stasis's fd). */
export type OrphanPts = Map<number, { index: number; master: number }>;

export interface FileKind {
  /** fd_types value. */
  type: number;
  /** The file_entry field this kind uses. */
  field: string;
  /** Whether this kind dumps the descriptor (checked in list order; reg comes last). */
  claims(f: { pid: number; fd: number; link: string }): boolean;
  /** The description's entry, without `id` (the table assigns it). */
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile;
  /** The key `--inherit-fd fd[N]:KEY` names this description by. */
  inheritKey(entry: Record<string, unknown>): string;
  /** Open the description inside the task; returns a descriptor number there. */
  open(entry: Record<string, unknown>, task: RestoreFilesTask): number;
  /**
   * Optional second pass, once every descriptor of the task exists (epoll's watched fds,
   * a socket's connection to a peer opened later...). `fd` is what open() returned, now at
   * its final number.
   */
  finish?(entry: Record<string, unknown>, fd: number, task: RestoreFilesTask): void;
}
