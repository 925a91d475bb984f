// FIFOs (named pipes): a fifo_entry names the pipe by its inode and points at a reg_file_entry
// with the FIFO's path; the bytes queued in it go to fifo-data.img once per FIFO. The queue is
// read without consuming it: tee() from the FIFO into a pipe of our own, inside the task (a
// write-only descriptor is reopened for reading through /proc/self/fd first).
// Restore as criu does: open the path O_RDWR (never blocks, whoever is at the other end), put
// the queued bytes back through it, reopen /proc/self/fd/N with the real flags, close the first.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { FD_TYPE_REG, openInTask, regFileEntry, writeAllInTask } from './reg.js';

export const FD_TYPE_FIFO = 3;
export const FIFO_DATA_IMAGE = 'fifo-data.img';
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const SPLICE_F_NONBLOCK = 2;
const EAGAIN = 11;

function isFifo(path: string): boolean {
  try {
    return fs.statSync(path).isFIFO();
  } catch {
    return false;
  }
}

/**
 * The bytes queued in the pipe or FIFO behind descriptor `fd` of the task, left in place;
 * and the pipe's buffer size. `readable` tells whether `fd` may be read from.
 */
export function peekPipe(inj: Injector, fd: number, readable: boolean): { data: Buffer; size: number } {
  let src = fd;
  if (!readable) src = openInTask(inj, `/proc/self/fd/${fd}`, 0 /* O_RDONLY */ | O_NONBLOCK | O_CLOEXEC);
  const pair = inj.scratch(8);
  try {
    const size = Number(inj.callChecked(SYS.fcntl, src, F_GETPIPE_SZ));
    inj.callChecked(SYS.pipe2, pair, O_NONBLOCK | O_CLOEXEC);
    const fds = inj.readScratch(8);
    const [rd, wr] = [fds.readInt32LE(0), fds.readInt32LE(4)];
    try {
      inj.callChecked(SYS.fcntl, wr, F_SETPIPE_SZ, size);
      const n = inj.call(SYS.tee, src, wr, size, SPLICE_F_NONBLOCK);
      if (n === -BigInt(EAGAIN) || n === 0n) return { data: Buffer.alloc(0), size };
      if (n < 0n) throw new Error(`tee() of fd ${fd} in task ${inj.pid} failed: ${errnoName(Number(-n))}`);
      const buf = inj.scratch(Number(n));
      const got = inj.callChecked(SYS.read, rd, buf, n);
      return { data: Buffer.from(inj.readScratch(Number(got))), size };
    } finally {
      inj.call(SYS.close, rd);
      inj.call(SYS.close, wr);
    }
  } finally {
    if (src !== fd) inj.call(SYS.close, src);
  }
}

/** FIFOs whose queued bytes were already put back in a task, by pipe_id. */
const refilled = new WeakMap<RestoreFilesTask, Set<number>>();

export const fifoFile: FileKind = {
  type: FD_TYPE_FIFO,
  field: 'fifo',
  claims: ({ pid, fd, link }) => link.startsWith('/') && !link.endsWith(' (deleted)') && isFifo(`/proc/${pid}/fd/${fd}`),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const statPath = `/proc/${f.pid}/fd/${f.fd}`;
    const pipeId = Number(fs.statSync(statPath).ino);
    const regfId = ctx.addFile({
      type: FD_TYPE_REG, field: 'reg', entry: regFileEntry(f.link, statPath, f.fdinfo.flags, 0n),
    });
    const key = `fifo-data:${pipeId}`;
    if (!ctx.memo.has(key)) {
      ctx.memo.set(key, true);
      const { data, size } = peekPipe(ctx.inj, f.fd, (f.fdinfo.flags & O_ACCMODE) !== O_WRONLY);
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
    const rw = openInTask(inj, path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    try {
      const pipeId = Number(e.pipe_id);
      const done = refilled.get(task) ?? new Set<number>();
      refilled.set(task, done);
      if (!done.has(pipeId)) {
        done.add(pipeId);
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
