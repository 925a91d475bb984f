// mount(2) and umount2(2) in stasis itself (mounts inside a restored tree go through its injector).

import { SYS } from './arch.js';
import { addressOf, nativeBuffer, syscall } from './native.js';

export const MNT_DETACH = 2;

/** A NUL-terminated copy of `s` in native memory (kept referenced until the call returns). */
function cStr(s: string): Buffer {
  const b = nativeBuffer(Buffer.byteLength(s) + 1);
  b.write(s);
  return b;
}

export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  const [s, t, f, d] = [source, target, fstype, data].map(cStr) as [Buffer, Buffer, Buffer, Buffer];
  syscall(`mount(${fstype} on ${target}, ${data})`, SYS.mount, addressOf(s), addressOf(t), addressOf(f), flags, addressOf(d));
}

export function umount2(target: string, flags: number): void {
  const t = cStr(target);
  syscall(`umount2(${target})`, SYS.umount2, addressOf(t), flags);
}
