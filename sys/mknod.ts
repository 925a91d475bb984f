// mknod(2) in stasis itself: the device nodes and fifos of a tar applied onto a tree (a tmpfs's
// contents on restore, a rootfs diff). Node's fs has no mknod.

import { SYS } from './arch.js';
import { addressOf, nativeCString, syscall } from './native.js';

const AT_FDCWD = -100;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** The kernel's dev_t encoding of a device number (new_encode_dev). */
function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Make the node `path` (never following a symlink in its place: mknod fails with EEXIST). */
export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  const p = nativeCString(path);
  syscall(`mknod(${path})`, SYS.mknodat, AT_FDCWD, addressOf(p), mode, encodeDev(major, minor));
}
