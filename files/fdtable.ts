// A task's descriptor table: which fd numbers name which file descriptions (fdinfo-N.img), with
// close-on-exec. The descriptions themselves are dumped and opened by the kinds in index.ts.

import { SYS } from '../sys/arch.js';
import { listFds, readFdLink, readFdinfo } from '../sys/proc/index.js';
import { kindForLink, kindForType } from './index.js';
import type { RestoreFilesTask } from './kind.js';
import type { FileEntryMessage, FileTable } from './table.js';

const O_CLOEXEC = 0o2000000;
const FD_CLOEXEC = 1;
const F_SETFD = 2;
const F_DUPFD_CLOEXEC = 1030;

export interface FdinfoEntry {
  id: number;
  flags: number;
  type: number;
  fd: number;
}

export function dumpFdTable(pid: number, table: FileTable): FdinfoEntry[] {
  const out: FdinfoEntry[] = [];
  for (const fd of listFds(pid)) {
    const link = readFdLink(pid, fd);
    const kind = kindForLink(link);
    if (!kind) throw new Error(`fd ${fd} of task ${pid} is ${link}, which stasis cannot dump yet`);
    const fdinfo = readFdinfo(pid, fd);
    let id = table.sharedWith(pid, fd, link);
    if (id === undefined) {
      id = table.add(kind.dump({ pid, fd, link, fdinfo }, { addFile: (f) => table.add(f) }));
      table.remember(pid, fd, link, id);
    }
    out.push({ id, flags: fdinfo.flags & O_CLOEXEC ? FD_CLOEXEC : 0, type: kind.type, fd });
  }
  return out;
}

/** Check, before touching anything, that every description in the table can be opened by some kind. */
export function checkFdTable(fdinfos: readonly FdinfoEntry[], files: ReadonlyMap<number, FileEntryMessage>): void {
  for (const f of fdinfos) {
    const file = files.get(f.id);
    if (!file) throw new Error(`fd ${f.fd} refers to file ${f.id}, which files.img does not have`);
    if (!kindForType(file.type)) throw new Error(`fd ${f.fd} is of file type ${file.type}, which stasis cannot restore yet`);
  }
}

/**
 * Rebuild the task's descriptor table. Everything the task inherited is closed first; then each
 * description is opened once and duplicated onto every fd that shared it.
 */
export function restoreFdTable(task: RestoreFilesTask, fdinfos: readonly FdinfoEntry[],
  files: ReadonlyMap<number, FileEntryMessage>): void {
  const { inj } = task;
  const byId = new Map<number, FdinfoEntry[]>();
  for (const f of fdinfos) byId.set(f.id, [...(byId.get(f.id) ?? []), f]);
  for (const [id, fds] of byId) {
    const file = files.get(id)!;
    const kind = kindForType(file.type)!;
    const tmp = kind.open(file[kind.field] as Record<string, unknown>, task);
    for (const f of fds) {
      if (f.fd !== tmp) inj.callChecked(SYS.dup3, tmp, f.fd, f.flags & FD_CLOEXEC ? O_CLOEXEC : 0);
      else if (f.flags & FD_CLOEXEC) inj.callChecked(SYS.fcntl, f.fd, F_SETFD, FD_CLOEXEC);
    }
    if (!fds.some((f) => f.fd === tmp)) inj.callChecked(SYS.close, tmp);
  }
}

/** Move a helper descriptor in the task above every fd the table will use. */
export function moveAbove(task: RestoreFilesTask, fd: number, fdinfos: readonly FdinfoEntry[]): number {
  const floor = fdinfos.reduce((m, f) => Math.max(m, f.fd + 1), 3);
  const moved = Number(task.inj.callChecked(SYS.fcntl, fd, F_DUPFD_CLOEXEC, floor));
  task.inj.callChecked(SYS.close, fd);
  return moved;
}
