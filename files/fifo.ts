// FIFOs (named pipes): a fifo_entry names the pipe by its inode and points at a reg_file_entry
// with the FIFO's path; the bytes queued in it go to fifo-data.img once per FIFO. The queue is
// read without consuming it, as pipes' queues are (pipe.ts peekPipe: tee() from a read end that
// stasis opens through /proc/PID/fd/N).
// Restore as criu does: open the path O_RDWR (never blocks, whoever is at the other end), put
// the queued bytes back through it, reopen /proc/self/fd/N with the real flags, close the first.
// A FIFO removed while open has its path remapped to a ghost (reg.ts), made again as a FIFO for
// the open; a second description of the same FIFO in the task is opened through the first.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { peekPipe } from './pipe.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { dumpPathFile, openInTask, openRegInTask, writeAllInTask } from './reg.js';
import { F_SETPIPE_SZ, O_CLOEXEC, O_NONBLOCK, O_RDWR } from '../sys/fcntl.js';

export const FD_TYPE_FIFO = 3;
export const FIFO_DATA_IMAGE = 'fifo-data.img';

function isFifo(path: string): boolean {
  try {
    return fs.statSync(path).isFIFO();
  } catch {
    return false;
  }
}

/** FIFOs already opened in a task: pipe_id → the file id of the first description. */
const refilled = new WeakMap<RestoreFilesTask, Map<number, number>>();

export const fifoFile: FileKind = {
  type: FD_TYPE_FIFO,
  field: 'fifo',
  claims: ({ pid, fd, link }) => link.startsWith('/') && isFifo(`/proc/${pid}/fd/${fd}`),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const statPath = `/proc/${f.pid}/fd/${f.fd}`;
    const pipeId = Number(fs.statSync(statPath).ino);
    const regfId = ctx.addFile(dumpPathFile(f.pid, f.link, statPath, f.fdinfo.flags, 0n, ctx, `fd ${f.fd} of task ${f.pid}`));
    const key = `fifo-data:${pipeId}`;
    if (!ctx.memo.has(key)) {
      ctx.memo.set(key, true);
      const { data, size } = peekPipe(f.pid, f.fd);
      if (data.length) ctx.addImageEntry(FIFO_DATA_IMAGE, { pipe_id: pipeId, bytes: data.length, size }, data);
    }
    return { type: FD_TYPE_FIFO, field: 'fifo', entry: { pipe_id: pipeId, regf_id: regfId } };
  },
  inheritKey: (e) => `fifo:[${Number(e.pipe_id)}]`,
  open(e, task: RestoreFilesTask): number {
    const inj = task.inj;
    const reg = task.file(Number(e.regf_id))?.reg as Record<string, unknown> | undefined;
    if (!reg) throw new Error(`FIFO ${Number(e.pipe_id)}: files.img has no path for it (file ${e.regf_id})`);
    const path = String(reg.name);
    const pipeId = Number(e.pipe_id);
    const done = refilled.get(task) ?? new Map<number, number>();
    refilled.set(task, done);
    const first = done.get(pipeId);
    const firstFd = first === undefined ? undefined : task.fdOf(first);
    const rw = firstFd !== undefined ? openInTask(inj, `/proc/self/fd/${firstFd}`, O_RDWR | O_NONBLOCK | O_CLOEXEC)
      : openRegInTask(task, reg, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    try {
      if (first === undefined) {
        done.set(pipeId, Number(e.id));
        for (const { message, extra } of task.imageEntries(FIFO_DATA_IMAGE)) {
          if (Number(message.pipe_id) !== pipeId) continue;
          if (message.size) inj.call(SYS.fcntl, rw, F_SETPIPE_SZ, Number(message.size));
          writeAllInTask(inj, rw, extra ?? new Uint8Array(), `the queued bytes of FIFO ${path}`);
        }
      }
      return openInTask(inj, `/proc/self/fd/${rw}`, Number(reg.flags) & ~O_CLOEXEC);
    } finally {
      inj.callChecked(SYS.close, rw);
    }
  },
};
