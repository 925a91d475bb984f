// Pipes. A pipe end is known by the pipe's inode; `pipe:[INODE]` is also the key runc and users
// give to --inherit-fd to hand over the other process's end of a pipe that crossed the dump
// boundary (a container's stdio). A pipe end that is not handed over is recreated as a fresh
// pipe. (Queued data and pipes shared inside a tree come with process trees.)

import { SYS } from '../sys/arch.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';

export const FD_TYPE_PIPE = 2;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;

export const pipeFile: FileKind = {
  type: FD_TYPE_PIPE,
  field: 'pipe',
  claims: ({ link }) => /^pipe:\[\d+\]$/.test(link),
  dump(f: OpenFd): DumpedFile {
    const ino = Number(/^pipe:\[(\d+)\]$/.exec(f.link)![1]);
    return {
      type: FD_TYPE_PIPE, field: 'pipe',
      entry: { pipe_id: ino, flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown() },
    };
  },
  inheritKey: (e) => `pipe:[${Number(e.pipe_id)}]`,
  open(e, task: RestoreFilesTask): number {
    const given = task.inherited(pipeFile.inheritKey(e));
    if (given !== undefined) return task.importFd(given);
    // Nobody handed the other end over: a new pipe, keeping the end this descriptor was.
    const fds = task.inj.scratch(8);
    task.inj.callChecked(SYS.pipe2, fds, Number(e.flags) & ~O_ACCMODE);
    const pair = task.inj.readScratch(8);
    const [rd, wr] = [pair.readInt32LE(0), pair.readInt32LE(4)];
    const keep = (Number(e.flags) & O_ACCMODE) === O_WRONLY ? wr : rd;
    task.inj.callChecked(SYS.close, keep === rd ? wr : rd);
    return keep;
  },
};
