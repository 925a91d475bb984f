// Pipes. A pipe end is known by the pipe's inode; both ends, wherever they are in the tree, name
// the same pipe_id. The bytes queued in a pipe go to pipes-data.img (read without consuming
// them: stasis opens another read end through /proc/PID/fd/N and tee()s the data out). On
// restore the first end opened creates the pipe, refills it, and hands the other end to the
// description that holds it. `pipe:[INODE]` is also the key runc and users give to --inherit-fd
// to hand over the far end of a pipe that crossed the dump boundary (a container's stdio).

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { addressOf, nativeBuffer, pipe, rawSyscall } from '../sys/native.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { openInTask, zeroFown } from './reg.js';
import {
  F_GETPIPE_SZ, F_SETFL, F_SETPIPE_SZ, O_ACCMODE, O_CLOEXEC, O_DIRECT, O_LARGEFILE, O_NONBLOCK, O_WRONLY, SETFL_MASK,
} from '../sys/fcntl.js';

export const FD_TYPE_PIPE = 2;
const SPLICE_F_NONBLOCK = 2;
const PIPES_DATA = 'pipes-data.img';

/**
 * The bytes queued in the pipe or FIFO behind fd `fd` of `pid`, left in place, and the pipe's
 * buffer size. Whichever end the task holds, stasis reaches the pipe through a read end of its
 * own (/proc/PID/fd/N reopened) and tee()s the data out.
 */
export function peekPipe(pid: number, fd: number): { data: Buffer; size: number } {
  const rd = fs.openSync(`/proc/${pid}/fd/${fd}`, fs.constants.O_RDONLY | O_NONBLOCK);
  const [tr, tw] = pipe(O_NONBLOCK);
  try {
    const size = Number(rawSyscall(SYS.fcntl, rd, F_GETPIPE_SZ));
    rawSyscall(SYS.fcntl, tw, F_SETPIPE_SZ, size);
    const n = rawSyscall(SYS.tee, rd, tw, size, SPLICE_F_NONBLOCK);
    const len = n > 0n ? Number(n) : 0;
    const data = nativeBuffer(len);
    let got = 0;
    while (got < len) got += Number(rawSyscall(SYS.read, tr, addressOf(data) + BigInt(got), len - got));
    return { data, size };
  } finally {
    for (const f of [rd, tr, tw]) fs.closeSync(f);
  }
}

export const pipeFile: FileKind = {
  type: FD_TYPE_PIPE,
  field: 'pipe',
  claims: ({ link }) => /^pipe:\[\d+\]$/.test(link),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const ino = Number(/^pipe:\[(\d+)\]$/.exec(f.link)![1]);
    const seen = (ctx.memo.get('pipes') as Set<number> | undefined) ?? new Set<number>();
    ctx.memo.set('pipes', seen);
    if (!seen.has(ino)) {
      seen.add(ino);
      const { data, size } = peekPipe(f.pid, f.fd);
      if (data.length) ctx.addImageEntry(PIPES_DATA, { pipe_id: ino, bytes: data.length, size }, data);
    }
    return {
      type: FD_TYPE_PIPE, field: 'pipe',
      entry: { pipe_id: ino, flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown() },
    };
  },
  inheritKey: (e) => `pipe:[${Number(e.pipe_id)}]`,
  open(e, task: RestoreFilesTask): number {
    const given = task.inherited(pipeFile.inheritKey(e));
    if (given !== undefined) return task.importGiven(given, Number(e.flags));
    const pipeId = Number(e.pipe_id);
    const flags = Number(e.flags);
    const ends = [...task.allFiles()].filter((f) => f.type === FD_TYPE_PIPE && f.pipe
      && Number((f.pipe as Record<string, unknown>).pipe_id) === pipeId && f.id !== Number(e.id));
    // Another description of a pipe this task has already made (a reopen of /proc/PID/fd/N, with
    // flags of its own): opened the same way, through an end the task holds.
    for (const f of ends) {
      const have = task.fdOf(f.id);
      if (have !== undefined) return openInTask(task.inj, `/proc/self/fd/${have}`, flags & ~O_CLOEXEC);
    }
    const fds = task.inj.scratch(8);
    task.inj.callChecked(SYS.pipe2, fds, flags & (O_NONBLOCK | O_DIRECT));
    const pair = task.inj.readScratch(8);
    const [rd, wr] = [pair.readInt32LE(0), pair.readInt32LE(4)];
    const queued = task.imageEntries(PIPES_DATA).find((d) => Number(d.message.pipe_id) === pipeId);
    if (queued?.message.size) task.inj.call(SYS.fcntl, wr, F_SETPIPE_SZ, Number(queued.message.size));
    if (queued?.extra?.length) {
      const at = task.inj.writeScratch(Buffer.from(queued.extra), 64);
      const n = task.inj.callChecked(SYS.write, wr, at, queued.extra.length);
      if (Number(n) !== queued.extra.length) throw new Error(`pipe ${pipeId}: refilled ${n} of ${queued.extra.length} bytes`);
    }
    const keep = (flags & O_ACCMODE) === O_WRONLY ? wr : rd;
    const other = keep === rd ? wr : rd;
    // The other end belongs to another description of the dump (here or in another process),
    // with status flags of its own (O_NONBLOCK is per description), or to nobody in the dump (the
    // far end was outside): then it is closed.
    // An end pipe() made (no O_LARGEFILE, which a reopen through /proc gets) is preferred.
    const others = ends.filter((f) => (Number((f.pipe as Record<string, unknown>).flags) & O_ACCMODE) !== (flags & O_ACCMODE));
    const peer = others.find((f) => !(Number((f.pipe as Record<string, unknown>).flags) & O_LARGEFILE)) ?? others[0];
    if (peer) {
      const peerFlags = Number((peer.pipe as Record<string, unknown>).flags);
      if ((peerFlags ^ flags) & SETFL_MASK) task.inj.callChecked(SYS.fcntl, other, F_SETFL, peerFlags & SETFL_MASK);
      task.provide(peer.id, other);
    } else {
      task.inj.callChecked(SYS.close, other);
    }
    return keep;
  },
};
