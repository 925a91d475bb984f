// stasis's own stdio kept apart from the descriptions it hands to a restored tree. runc (and a
// shell running `stasis restore --inherit-fd fd[1]:pipe:[N]`) hands the container's stdout and
// stderr over as stasis's own: the same file descriptions. Node changes the O_NONBLOCK flag of
// its stdio descriptions (libuv sets it when process.stdout is first used, Node puts it back at
// exit), which, on a shared description, changes it under the restored task.

import fs from 'node:fs';
import { SYS } from './arch.js';
import { F_DUPFD_CLOEXEC, F_GETFL, F_SETFL, O_ACCMODE, O_APPEND, O_NOCTTY, O_NONBLOCK } from './fcntl.js';
import { syscall } from './native.js';

export interface KeptApart {
  /** The handed-over descriptors by key, those that were stasis's stdio now on numbers of their own. */
  fds: Map<string, number>;
  /** Close the descriptors made here (once the tree has its copies). */
  close(): void;
}

/**
 * Each of stasis's stdio (0-2) that is a pipe handed over (under its own number or another)
 * moves onto a description of its own of the same pipe (opened through /proc/self/fd), which
 * Node may change as it likes; a handed-over stdio number is first kept on a new descriptor,
 * returned in its place. A pipe that cannot be opened so (its write end with no reader left)
 * stays shared.
 */
export function keepApartFromStdio(given: ReadonlyMap<string, number>): KeptApart {
  const pipes = new Set([...given.values()].map(pipeInode).filter((i) => i !== undefined));
  const kept = new Map<number, number>();
  for (const fd of [0, 1, 2]) {
    const ino = pipeInode(fd);
    if (ino === undefined || !pipes.has(ino)) continue;
    const status = Number(syscall(`fcntl(${fd}, F_GETFL)`, SYS.fcntl, fd, F_GETFL));
    let own: number;
    try {
      // O_NONBLOCK: a write end with no reader left fails (ENXIO) instead of waiting for one.
      own = fs.openSync(`/proc/self/fd/${fd}`, (status & (O_ACCMODE | O_APPEND)) | O_NONBLOCK | O_NOCTTY);
    } catch {
      continue;
    }
    try {
      syscall(`fcntl(${own}, F_SETFL)`, SYS.fcntl, own, F_SETFL, status);
      if ([...given.values()].includes(fd)) {
        kept.set(fd, Number(syscall(`fcntl(${fd}, F_DUPFD_CLOEXEC)`, SYS.fcntl, fd, F_DUPFD_CLOEXEC, 3)));
      }
      syscall(`dup3(${own}, ${fd})`, SYS.dup3, own, fd, 0);
    } finally {
      fs.closeSync(own);
    }
  }
  return {
    fds: new Map([...given].map(([key, fd]) => [key, kept.get(fd) ?? fd])),
    close: () => { for (const fd of kept.values()) fs.closeSync(fd); },
  };
}

function pipeInode(fd: number): number | undefined {
  try {
    const st = fs.fstatSync(fd);
    return st.isFIFO() ? st.ino : undefined;
  } catch {
    return undefined;
  }
}
