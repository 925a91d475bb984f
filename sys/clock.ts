// The kernel's clocks, read directly (Node offers CLOCK_MONOTONIC only).

import { SYS } from './arch.js';
import { addressOf, nativeBuffer, syscall } from './native.js';

export const CLOCK = { MONOTONIC: 1, BOOTTIME: 7 } as const;

/** clock_gettime(id) in nanoseconds. */
export function clockNs(id: number): bigint {
  const ts = nativeBuffer(16);
  syscall(`clock_gettime(${id})`, SYS.clock_gettime, id, addressOf(ts));
  return ts.readBigInt64LE(0) * 1_000_000_000n + ts.readBigInt64LE(8);
}
