// The nsfs ioctls on a namespace file: which user namespace owns a namespace (NS_GET_USERNS) and
// which is a user namespace's parent (NS_GET_PARENT). Each answers with a new descriptor of that
// namespace, whose inode is what /proc/PID/ns links name; only the inode is kept here.

import fs from 'node:fs';
import { SYS } from './arch.js';
import { SysError } from './errno.js';
import { rawSyscall } from './native.js';

const NS_GET_USERNS = 0xb701;
const NS_GET_PARENT = 0xb702;

/** The inode of the namespace `req` names from the namespace file `path`; undefined where there is none to see (EPERM: above ours). */
function related(path: string, req: number, what: string): number | undefined {
  const fd = fs.openSync(path, 'r');
  try {
    const r = rawSyscall(SYS.ioctl, fd, req);
    if (r < 0n) {
      if (Number(-r) === 1) return undefined; // EPERM: the owner or parent is outside stasis's user namespace
      throw new SysError(Number(-r), `ioctl(${path}, ${what})`);
    }
    try {
      return fs.fstatSync(Number(r)).ino;
    } finally {
      fs.closeSync(Number(r));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The user namespace owning namespace `kind` of `pid` (inode). */
export function ownerUserNs(pid: number, kind: string): number | undefined {
  return related(`/proc/${pid}/ns/${kind}`, NS_GET_USERNS, 'NS_GET_USERNS');
}

/** The parent of the user namespace of `pid` (inode); undefined for stasis's own or one above it. */
export function parentUserNs(pid: number): number | undefined {
  return related(`/proc/${pid}/ns/user`, NS_GET_PARENT, 'NS_GET_PARENT');
}
