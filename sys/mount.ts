// mount(2) and umount2(2) in stasis itself (mounts inside a restored tree go through its injector).

import { SYS } from './arch.js';
import { addressOf, nativeCString, syscall } from './native.js';

export const MNT_DETACH = 2;


export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  const [s, t, f, d] = [source, target, fstype, data].map(nativeCString) as [Buffer, Buffer, Buffer, Buffer];
  syscall(`mount(${fstype} on ${target}, ${data})`, SYS.mount, addressOf(s), addressOf(t), addressOf(f), flags, addressOf(d));
}

export function umount2(target: string, flags: number): void {
  const t = nativeCString(target);
  syscall(`umount2(${target})`, SYS.umount2, addressOf(t), flags);
}
