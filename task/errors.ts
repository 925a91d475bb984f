// Restore failures that say what failed: the image being applied and the object in it (task,
// thread, VMA, descriptor), before what the kernel said. `EFAULT: rseq(...) in task 43` alone
// leaves a user to guess which of a hundred images holds the bad value;
// `core-43.img: task 43: rseq area 0x7ff5...: EFAULT ...` does not.

import { ImageError, MissingImageError, printable } from '../images/index.js';
import { SYSCALL_NAME, type SyscallSpec } from '../sys/arch.js';
import { SysError, isErrorResult } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';

/** A failure while applying image `image` to `object`. */
export class RestoreError extends Error {
  constructor(
    readonly image: string,
    readonly object: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${printable(image)}: ${object ? `${object}: ` : ''}${printable(detail)}`, options);
    this.name = 'RestoreError';
  }
}

/**
 * The error `e`, raised while applying `image` to `object`, as one that names both. An error that
 * names its image already (a RestoreError from a narrower context, an ImageError from decoding)
 * is kept as it is.
 */
export function restoreError(image: string, object: string, e: unknown): Error {
  if (e instanceof RestoreError || e instanceof ImageError || e instanceof MissingImageError) return e;
  const detail = e instanceof Error ? e.message : String(e);
  return new RestoreError(image, object, detail, { cause: e });
}

/** Runs `fn`, naming `image` and `object` in whatever it throws. */
export function applying<T>(image: string, object: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw restoreError(image, object, e);
  }
}

/** applying() for async work. */
export async function applyingAsync<T>(image: string, object: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw restoreError(image, object, e);
  }
}

/**
 * Independent syscalls made in the task together (Injector.callAll), each with the object it
 * sets: the first that failed is reported as `OBJECT: ERRNO: call(args) in task N: text`.
 */
export function callAllNamed(inj: Injector, calls: readonly (readonly [string, SyscallSpec])[]): bigint[] {
  const results = inj.callAll(calls.map(([, call]) => call));
  const bad = results.findIndex(isErrorResult);
  if (bad >= 0) {
    const [what, [nr, ...args]] = calls[bad]!;
    const shown = args.map((a) => (typeof a === 'bigint' && a > 0xffffn ? `0x${a.toString(16)}` : String(a)));
    const e = new SysError(Number(-results[bad]!), `${SYSCALL_NAME.get(nr) ?? `syscall ${nr}`}(${shown.join(', ')}) in task ${inj.pid}`);
    throw new Error(`${what}: ${e.message}`, { cause: e });
  }
  return results;
}
