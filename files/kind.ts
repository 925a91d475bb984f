// What every kind of open file provides. The generic fd-table code (fdtable.ts) walks a task's
// descriptors and dispatches here without knowing any kind; adding a kind means one module that
// implements FileKind and one line in index.ts.

import type { Injector } from '../sys/inject.js';
import type { FdInfo } from '../sys/proc/index.js';

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
}

export interface DumpFilesContext {
  /** Registers another file description (e.g. the path half of a FIFO); returns its id. */
  addFile(file: DumpedFile): number;
}

/** The task being restored, as a file kind sees it. */
export interface RestoreFilesTask {
  pid: number;
  inj: Injector;
  /** A descriptor of stasis that the user handed over for this key (--inherit-fd, --shell-job). */
  inherited(key: string): number | undefined;
  /** Copy descriptor `fd` of stasis into the task; returns its number there. */
  importFd(fd: number): number;
}

export interface FileKind {
  /** fd_types value. */
  type: number;
  /** The file_entry field this kind uses. */
  field: string;
  /** Whether this kind dumps the descriptor whose /proc link is `link`. */
  claims(link: string): boolean;
  /** The description's entry, without `id` (the table assigns it). */
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile;
  /** The key `--inherit-fd fd[N]:KEY` names this description by. */
  inheritKey(entry: Record<string, unknown>): string;
  /** Open the description inside the task; returns a descriptor number there. */
  open(entry: Record<string, unknown>, task: RestoreFilesTask): number;
}
