// stasis's own filesystem ids for a while (setfsuid/setfsgid, which are per-thread: stasis's
// sync fs calls run on its main thread, this one): files made on a filesystem of a user
// namespace's own (a container's tmpfs) must be made by ids that namespace maps. The change of
// fsuid drops the filesystem capabilities; they are raised again from the permitted set
// (capset), so that owners can still be set as the image has them.

import { SYS } from './arch.js';
import { SysError, isErrorResult } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall } from './native.js';

const CAP_V3 = 0x20080522;

function check(r: bigint, what: string): void {
  if (isErrorResult(r)) throw new SysError(Number(-r), what);
}

/** `fn` run with stasis's fsuid and fsgid `uid`, `gid` (the host's ids); both back to 0, and its capabilities as they were, after. */
export function withFsIds<T>(uid: number, gid: number, fn: () => T): T {
  const hdr = nativeBuffer(8);
  const data = nativeBuffer(24);
  hdr.writeUInt32LE(CAP_V3, 0);
  hdr.writeInt32LE(0, 4);
  check(rawSyscall(SYS.capget, addressOf(hdr), addressOf(data)), 'capget');
  const before = Buffer.from(data);
  rawSyscall(SYS.setfsgid, gid);
  rawSyscall(SYS.setfsuid, uid);
  try {
    // effective = permitted again (two 32-bit halves: effective at 0 and 12, permitted at 4 and 16)
    data.writeUInt32LE(data.readUInt32LE(4), 0);
    data.writeUInt32LE(data.readUInt32LE(16), 12);
    hdr.writeInt32LE(0, 4);
    check(rawSyscall(SYS.capset, addressOf(hdr), addressOf(data)), 'capset');
    return fn();
  } finally {
    rawSyscall(SYS.setfsuid, 0);
    rawSyscall(SYS.setfsgid, 0);
    before.copy(data);
    hdr.writeUInt32LE(CAP_V3, 0);
    hdr.writeInt32LE(0, 4);
    rawSyscall(SYS.capset, addressOf(hdr), addressOf(data));
  }
}
