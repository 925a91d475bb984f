// Regular files (and device nodes such as /dev/null, which CRIU keeps as regular files too):
// path, open flags, offset; the file's size and mode are recorded so restore can tell when the
// file it finds is not the one that was open.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';

export const FD_TYPE_REG = 1;
const O_CLOEXEC = 0o2000000;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_PATH = 0o10000000;
const AT_FDCWD = -100;
const SEEK_SET = 0;
const DELETED = ' (deleted)';

export function zeroFown(): Record<string, number> {
  return { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
}

/** A reg_file_entry for `path` as seen through `statPath` (a /proc link that reaches the inode). */
export function regFileEntry(path: string, statPath: string, flags: number, pos: bigint): Record<string, unknown> {
  const st = fs.statSync(statPath, { bigint: true });
  const entry: Record<string, unknown> = {
    flags: flags & ~O_CLOEXEC, pos, fown: zeroFown(), name: path,
  };
  if ((st.mode & BigInt(fs.constants.S_IFMT)) === BigInt(fs.constants.S_IFREG)) entry.size = st.size;
  entry.mode = Number(st.mode);
  return entry;
}

/** Open `path` with `flags` inside the task (through the scratch page); returns the fd there. */
export function openInTask(inj: Injector, path: string, flags: number, mode = 0): number {
  const name = Buffer.from(`${path}\0`);
  const at = inj.writeScratch(name, 0);
  const r = inj.call(SYS.openat, AT_FDCWD, at, flags, mode);
  if (r < 0n) {
    const code = Number(-r);
    const why = code === 2 ? 'it no longer exists' : code === 13 ? 'permission denied' : `errno ${code}`;
    throw new Error(`cannot reopen ${path} in task ${inj.pid}: ${why}`);
  }
  return Number(r);
}

export const regFile: FileKind = {
  type: FD_TYPE_REG,
  field: 'reg',
  claims: ({ link }) => link.startsWith('/'),
  dump(f: OpenFd): DumpedFile {
    if (f.link.endsWith(DELETED)) {
      throw new Error(`fd ${f.fd} of task ${f.pid} is the deleted file ${f.link.slice(0, -DELETED.length)}, which stasis cannot dump yet`);
    }
    const entry = regFileEntry(f.link, `/proc/${f.pid}/fd/${f.fd}`, f.fdinfo.flags, f.fdinfo.pos);
    return { type: FD_TYPE_REG, field: 'reg', entry };
  },
  inheritKey: (e) => String(e.name).replace(/^\//, ''),
  open(e, task: RestoreFilesTask): number {
    const name = String(e.name);
    const flags = Number(e.flags) & ~(O_CREAT | O_EXCL | O_TRUNC);
    const fd = openInTask(task.inj, name, flags);
    checkSameFile(task, fd, e);
    const pos = BigInt(e.pos as bigint | number);
    if (pos !== 0n && !(flags & O_PATH)) task.inj.callChecked(SYS.lseek, fd, pos, SEEK_SET);
    return fd;
  },
};

/** Refuse a file whose size changed since the dump (its contents can't be what the task expects). */
function checkSameFile(task: RestoreFilesTask, fd: number, e: Record<string, unknown>): void {
  if (e.size === undefined) return;
  const st = fs.statSync(`/proc/${task.pid}/fd/${fd}`, { bigint: true });
  if (st.size !== BigInt(e.size as bigint)) {
    throw new Error(`${String(e.name)} has size ${st.size}, but was ${e.size} bytes when dumped`);
  }
}
