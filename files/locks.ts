// File locks a task holds: flock(2), POSIX (fcntl F_SETLK) and open-file-description (F_OFD_SETLK)
// locks, and leases (F_SETLEASE, read or write; not one being broken), from the `lock:` lines of the fdinfo of the descriptor they were taken through, into
// filelocks.img (file_lock_entry: kind, type, owner pid, fd, start, len — as criu's file-lock.c).
// criu dumps them only with --file-locks and refuses a task holding one otherwise; so does stasis.
// The kernel shows a flock or OFD lock on every descriptor of its description, a POSIX lock
// only on the descriptor it was taken through and to the process that owns it: so flock and OFD
// locks are saved with the description (its first descriptor), POSIX locks with each process's
// own descriptors, shared or not. The owner pid is the image's (the tree's pid namespace
// numbers it: a container's init is 1), whatever stasis reads on the host. On restore they are
// taken again, by the restored task, once all its descriptors exist.

import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import type { FileLock } from '../sys/proc/index.js';
import type { DumpFilesContext, OpenFd } from './kind.js';
import { F_OFD_SETLK, F_RDLCK, F_SETLK, F_WRLCK } from '../sys/fcntl.js';

export const FILE_LOCKS_IMAGE = 'filelocks.img';

/** file_lock_entry.flag (criu/include/file-lock.h). */
export const FL_POSIX = 1;
export const FL_FLOCK = 2;
export const FL_OFD = 4;
export const FL_LEASE = 8;
const F_SETLEASE = 1024;
/** file_lock_entry.type: F_RDLCK / F_WRLCK as fcntl has them (flock locks too, as criu). */

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const SEEK_SET = 0;

const KIND_FLAG: Record<string, number> = { POSIX: FL_POSIX, FLOCK: FL_FLOCK, OFDLCK: FL_OFD, LEASE: FL_LEASE };

function describe(l: FileLock): string {
  return `${l.type} ${l.access} lock`;
}

/**
 * The file_lock_entry-s of the locks held through a descriptor (appended to filelocks.img):
 * all of them at the first descriptor of a description (`firstOfDescription`), only the task's
 * POSIX locks at the others. `imagePid`: the task's pid as the image numbers it.
 */
export function dumpFileLocks(f: OpenFd, ctx: DumpFilesContext, imagePid: number, firstOfDescription: boolean): void {
  for (const l of f.fdinfo.locks) {
    if (!firstOfDescription && l.type !== 'POSIX') continue;
    if (!ctx.fileLocks) {
      throw new Error(`task ${f.pid} holds a ${describe(l)} on ${f.link} (fd ${f.fd}); dump with --file-locks to save it`);
    }
    const flag = KIND_FLAG[l.type];
    if (flag === undefined) throw new Error(`task ${f.pid} holds a ${describe(l)} on ${f.link} (fd ${f.fd}), which stasis cannot dump`);
    if (flag === FL_LEASE && l.mode !== 'ACTIVE') {
      throw new Error(`task ${f.pid} holds a lease on ${f.link} (fd ${f.fd}) that is being broken (${l.mode}), which stasis cannot dump`);
    }
    if (l.access !== 'READ' && l.access !== 'WRITE') {
      throw new Error(`task ${f.pid} holds a ${describe(l)} on ${f.link} (fd ${f.fd}), which stasis cannot dump`);
    }
    // A POSIX lock of a process sharing the descriptor table is that process's (fdinfo, read
    // by stasis, gives host pids).
    if (flag === FL_POSIX && l.pid !== f.pid) continue;
    ctx.addImageEntry(FILE_LOCKS_IMAGE, {
      flag, type: l.access === 'READ' ? F_RDLCK : F_WRLCK, pid: imagePid, fd: f.fd,
      start: l.start, len: l.end === null ? 0n : l.end - l.start + 1n,
    });
  }
}

/** struct flock (x86_64): l_type, l_whence (short), l_start, l_len (off_t), l_pid. */
function flockStruct(type: number, start: bigint, len: bigint): Buffer {
  const b = Buffer.alloc(32);
  b.writeInt16LE(type, 0);
  b.writeInt16LE(SEEK_SET, 2);
  b.writeBigInt64LE(start, 8);
  b.writeBigInt64LE(len, 16);
  return b;
}

/** Take again, inside the task of image pid `pid`, the locks filelocks.img records for it (never waiting). */
export function restoreFileLocks(pid: number, inj: Injector,
  imageEntries: (image: string) => { message: Record<string, any> }[]): void {
  for (const { message: l } of imageEntries(FILE_LOCKS_IMAGE)) {
    if (Number(l.pid) !== pid) continue;
    const fd = Number(l.fd);
    const type = Number(l.type);
    const flag = Number(l.flag);
    const kind = flag === FL_FLOCK ? 'flock' : flag === FL_OFD ? 'OFD' : flag === FL_LEASE ? 'lease' : 'POSIX';
    const what = `the ${kind} ${type === F_RDLCK ? 'read' : 'write'} ${flag === FL_LEASE ? 'lease' : 'lock'} on fd ${fd} of task ${pid}`;
    let r: bigint;
    if (flag & FL_LEASE) {
      r = inj.call(SYS.fcntl, fd, F_SETLEASE, type);
    } else if (flag & FL_FLOCK) {
      r = inj.call(SYS.flock, fd, (type === F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB);
    } else if (flag & (FL_POSIX | FL_OFD)) {
      const at = inj.writeScratch(flockStruct(type, BigInt(l.start), BigInt(l.len)));
      r = inj.call(SYS.fcntl, fd, flag & FL_OFD ? F_OFD_SETLK : F_SETLK, at);
    } else {
      throw new Error(`filelocks.img: ${what} is of unknown kind ${flag}`);
    }
    if (r === -11n || r === -13n) throw new Error(`cannot take ${what} again: another process holds a conflicting lock`);
    if (r < 0n) throw new Error(`cannot take ${what} again: ${errnoName(Number(-r))}`);
  }
}
