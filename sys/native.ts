// The one koffi binding of libc. Every raw system call stasis makes goes through `syscall` here,
// synchronously on the main JS thread (ptrace is per-thread: only this thread is the tracer).

import koffi from 'koffi';
import { SysError, isErrorResult, setStrerror } from './errno.js';
import { SYS } from './arch.js';

const libc = koffi.load('libc.so.6');

// glibc's syscall() is plain asm without va_arg handling, so a fixed 7-long prototype is exact and
// twice as fast as a variadic declaration. It returns -1 and sets errno on failure.
const syscall7 = libc.func('long syscall(long, long, long, long, long, long, long)') as (
  ...a: (number | bigint)[]
) => number | bigint;
const strerrorFn = libc.func('const char *strerror(int)') as (e: number) => string;
setStrerror((e) => strerrorFn(e));

export type Arg = number | bigint;

/** A raw syscall: the result as the kernel gave it, errors as -errno (never throws). */
export function rawSyscall(nr: number, a = 0 as Arg, b = 0 as Arg, c = 0 as Arg, d = 0 as Arg,
  e = 0 as Arg, f = 0 as Arg): bigint {
  const r = BigInt(syscall7(nr, a, b, c, d, e, f));
  return r === -1n ? -BigInt(koffi.errno()) : r;
}

/** A syscall that throws SysError (errno name + `what`) on failure. */
export function syscall(what: string | (() => string), nr: number, a: Arg = 0, b: Arg = 0,
  c: Arg = 0, d: Arg = 0, e: Arg = 0, f: Arg = 0): bigint {
  const r = rawSyscall(nr, a, b, c, d, e, f);
  if (isErrorResult(r)) throw new SysError(Number(-r), typeof what === 'string' ? what : what());
  return r;
}

/**
 * A buffer the kernel may read or write. Allocated outside Node's pool so that its address is
 * stable and it is never shared with unrelated small buffers. Zero-filled unless `zeroed` is
 * false (for one the kernel fills whole before it is read).
 */
export function nativeBuffer(size: number, zeroed = true): Buffer {
  const buf = Buffer.allocUnsafeSlow(size);
  return zeroed ? buf.fill(0) : buf;
}

/** A NUL-terminated string the kernel wrote (a name, a path): the bytes before the NUL, as UTF-8. */
/** `text` NUL-terminated in native memory (keep it referenced until the call that takes it returns). */
export function nativeCString(text: string): Buffer {
  const b = nativeBuffer(Buffer.byteLength(text) + 1);
  b.write(text, 0, 'utf8');
  return b;
}

export function cString(b: Uint8Array): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end < 0 ? buf.length : end);
}

/** The address of a buffer's first byte, to pass as a pointer argument. */
export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf) as bigint;
}

/** A copy of descriptor `fd` of task `pid` as stasis's own (pidfd_getfd); the caller closes it. */
export function takeTaskFd(pid: number, fd: number): number {
  const pidfd = Number(syscall(`pidfd_open(${pid})`, SYS.pidfd_open, pid, 0));
  try {
    return Number(syscall(`pidfd_getfd(${pid}, ${fd})`, SYS.pidfd_getfd, pidfd, fd, 0));
  } finally {
    rawSyscall(SYS.close, pidfd);
  }
}

/** Small wrappers used across sys/. */
export function getpid(): number {
  return Number(rawSyscall(SYS.getpid));
}

export function gettid(): number {
  return Number(rawSyscall(SYS.gettid));
}

export function kill(pid: number, sig: number): void {
  syscall(`kill(${pid}, ${sig})`, SYS.kill, pid, sig);
}

export function tgkill(tgid: number, tid: number, sig: number): void {
  syscall(`tgkill(${tgid}, ${tid}, ${sig})`, SYS.tgkill, tgid, tid, sig);
}

export function prctl(what: string, option: number, a: Arg = 0, b: Arg = 0, c: Arg = 0,
  d: Arg = 0): bigint {
  return syscall(`prctl(${what})`, SYS.prctl, option, a, b, c, d);
}

// glibc's clone(): the child runs fn(arg) on `stack`. Used only to start a seed process that
// waits in pause() (fn = libc's pause), never returning into JavaScript in the child.
const cloneFn = libc.func('int clone(void *fn, void *stack, int flags, void *arg)') as (
  fn: unknown, stack: bigint, flags: number, arg: null) => number;
const pauseSymbol = libc.symbol('pause');
const SEED_STACK = 64 * 1024;
const CLONE_VM = 0x100;
/** Stacks of seeds that share this process's memory, kept until the seed is gone (seedGone). */
const seedStacks = new Map<number, Buffer>();

/**
 * Start a process that does nothing but wait in pause(), one thread, whose only job is to be
 * traced and made to clone the real task. `flags` adds clone flags such as CLONE_PARENT; the
 * exit signal is SIGCHLD. By default it is a copy of this process (fork semantics). With
 * `shareMemory` it runs in this process's memory (CLONE_VM): nothing is copied on the way in
 * or torn down on the way out (~1-2 ms each for node's address space), it has no rseq area of
 * its own, and what is mapped in it is mapped here; call seedGone() once it is reaped.
 */
export function spawnPausedSeed(flags = 0, shareMemory = false): number {
  const stack = nativeBuffer(SEED_STACK);
  const top = (addressOf(stack) + BigInt(SEED_STACK) - 64n) & ~15n;
  const SIGCHLD = 17;
  // A copy's stack is its own copy; ours must merely stay valid until clone returns (it does:
  // `stack` is referenced below). A seed sharing our memory runs on ours until it is gone.
  const pid = cloneFn(pauseSymbol, top, flags | SIGCHLD | (shareMemory ? CLONE_VM : 0), null);
  if (pid < 0) throw new SysError(koffi.errno(), 'clone(seed)');
  if (shareMemory) seedStacks.set(pid, stack);
  return pid;
}

/** A seed that shared our memory is reaped: its stack may go. */
export function seedGone(pid: number): void {
  seedStacks.delete(pid);
}

/** pipe2(): [read end, write end] in this process. */
export function pipe(flags = 0): [number, number] {
  const fds = nativeBuffer(8);
  syscall('pipe2', SYS.pipe2, addressOf(fds), flags);
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}
