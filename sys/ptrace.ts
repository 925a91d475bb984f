// ptrace requests, wait4 and their decoded results. Everything synchronous, on the main thread.
// The raw ptrace syscall is used (not glibc's wrapper) so PEEK-style requests are unambiguous.

import { SYS, NT, USER_REGS, USER_REGS_SIZE, XSAVE_MAX_SIZE, type RegName } from './arch.js';
import { SysError } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall } from './native.js';
import { isErrorResult } from './errno.js';

export const PTRACE = {
  TRACEME: 0, PEEKDATA: 2, CONT: 7, KILL: 8, SINGLESTEP: 9, GETREGS: 12, SETREGS: 13,
  GETFPREGS: 14, SETFPREGS: 15, ATTACH: 16, DETACH: 17, SYSCALL: 24, ARCH_PRCTL: 30,
  SETOPTIONS: 0x4200, GETEVENTMSG: 0x4201, GETSIGINFO: 0x4202, SETSIGINFO: 0x4203,
  GETREGSET: 0x4204, SETREGSET: 0x4205, SEIZE: 0x4206, INTERRUPT: 0x4207, LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209, GETSIGMASK: 0x420a, SETSIGMASK: 0x420b, SECCOMP_GET_FILTER: 0x420c,
  SECCOMP_GET_METADATA: 0x420d, GET_SYSCALL_INFO: 0x420e, GET_RSEQ_CONFIGURATION: 0x420f,
} as const;
type Request = keyof typeof PTRACE;

export const PTRACE_O = {
  TRACESYSGOOD: 0x1, TRACEFORK: 0x2, TRACEVFORK: 0x4, TRACECLONE: 0x8, TRACEEXEC: 0x10,
  TRACEVFORKDONE: 0x20, TRACEEXIT: 0x40, TRACESECCOMP: 0x80, EXITKILL: 0x100000,
  SUSPEND_SECCOMP: 0x200000,
} as const;

export const PTRACE_EVENT = {
  FORK: 1, VFORK: 2, CLONE: 3, EXEC: 4, VFORK_DONE: 5, EXIT: 6, SECCOMP: 7, STOP: 128,
} as const;
const EVENT_NAME = new Map<number, string>(Object.entries(PTRACE_EVENT).map(([k, v]) => [v, k]));

export const SIGTRAP = 5;
export const SIGKILL = 9;
export const SIGSTOP = 19;
export const SIGCHLD = 17;
export const SIGCONT = 18;
/** The stop signal of syscall-stops once PTRACE_O_TRACESYSGOOD is set. */
export const SYSCALL_STOP_SIG = SIGTRAP | 0x80;

const WNOHANG = 1;
const WALL = 0x40000000;
const PTRACE_PEEKSIGINFO_SHARED = 1;
export const SIGINFO_SIZE = 128;

function ptrace(req: Request, pid: number, addr: number | bigint = 0, data: number | bigint = 0,
  detail = ''): bigint {
  return syscall(() => `ptrace(${req}, ${pid}${detail})`, SYS.ptrace, PTRACE[req], pid, addr, data);
}

export function seize(pid: number, options = 0): void {
  ptrace('SEIZE', pid, 0, options);
}
export function interrupt(pid: number): void {
  ptrace('INTERRUPT', pid);
}
export function setOptions(pid: number, options: number): void {
  ptrace('SETOPTIONS', pid, 0, options);
}
/** Resume a stopped tracee, delivering `sig` (0 = none). */
export function cont(pid: number, sig = 0): void {
  ptrace('CONT', pid, 0, sig);
}
/** Resume until the next syscall entry or exit. */
export function resumeToSyscall(pid: number, sig = 0): void {
  ptrace('SYSCALL', pid, 0, sig);
}
export function listen(pid: number): void {
  ptrace('LISTEN', pid);
}
export function detach(pid: number, sig = 0): void {
  ptrace('DETACH', pid, 0, sig);
}
export function getEventMsg(pid: number): bigint {
  const b = nativeBuffer(8);
  ptrace('GETEVENTMSG', pid, 0, addressOf(b));
  return b.readBigUInt64LE(0);
}

/** The general registers of a stopped tracee (struct user_regs_struct). */
/** Each register's byte offset in struct user_regs_struct. */
const REG_OFFSET = Object.fromEntries(USER_REGS.map((n, i) => [n, i * 8])) as Record<RegName, number>;

export class Regs {
  readonly raw: Buffer;
  /** Where `raw` is, for GETREGS and SETREGS. */
  readonly address: bigint;
  /**
   * `raw` (its own, aligned memory) as 32-bit words, for numbers without BigInts, and as 64-bit
   * registers, unsigned and signed: typed-array loads and stores, no call per register.
   */
  private readonly words: Uint32Array;
  private readonly u64: BigUint64Array;
  private readonly s64: BigInt64Array;
  constructor(raw?: Buffer) {
    this.raw = nativeBuffer(USER_REGS_SIZE);
    this.address = addressOf(this.raw);
    this.words = new Uint32Array(this.raw.buffer, this.raw.byteOffset, USER_REGS_SIZE / 4);
    this.u64 = new BigUint64Array(this.raw.buffer, this.raw.byteOffset, USER_REGS_SIZE / 8);
    this.s64 = new BigInt64Array(this.raw.buffer, this.raw.byteOffset, USER_REGS_SIZE / 8);
    if (raw) raw.copy(this.raw, 0, 0, USER_REGS_SIZE);
  }
  get(name: RegName): bigint {
    return this.u64[REG_OFFSET[name] >> 3]!;
  }
  /** The register as a number where it fits 53 bits (most do: no BigInt made), else a bigint. */
  getValue(name: RegName): number | bigint {
    const at = REG_OFFSET[name];
    const high = this.words[(at >> 2) + 1]!;
    return high < 0x200000 ? high * 0x100000000 + this.words[at >> 2]! : this.u64[at >> 3]!;
  }
  /** The register as a signed value (results, orig_rax = -1). */
  getSigned(name: RegName): bigint {
    return this.s64[REG_OFFSET[name] >> 3]!;
  }
  set(name: RegName, v: bigint | number): this {
    const at = REG_OFFSET[name];
    if (typeof v === 'number' && v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)) {
      this.words[at >> 2] = v % 0x100000000;
      this.words[(at >> 2) + 1] = Math.floor(v / 0x100000000);
    } else {
      this.u64[at >> 3] = typeof v === 'bigint' ? v : BigInt(v); // stored modulo 2^64
    }
    return this;
  }
  clone(): Regs {
    return new Regs(this.raw);
  }
  /** Becomes a copy of `other` (no new buffer). */
  copyFrom(other: Regs): this {
    other.raw.copy(this.raw, 0, 0, USER_REGS_SIZE);
    return this;
  }
  toObject(): Record<RegName, bigint> {
    return Object.fromEntries(USER_REGS.map((n) => [n, this.get(n)])) as Record<RegName, bigint>;
  }
}

/** The registers of a stopped tracee, into `into` when given (no new buffer). */
export function getRegs(pid: number, into = new Regs()): Regs {
  ptrace('GETREGS', pid, 0, into.address);
  return into;
}
export function setRegs(pid: number, regs: Regs): void {
  ptrace('SETREGS', pid, 0, regs.address);
}

const NT_NAME: Record<number, string> = { [NT.PRSTATUS]: 'NT_PRSTATUS', [NT.PRFPREG]: 'NT_PRFPREG',
  [NT.X86_XSTATE]: 'NT_X86_XSTATE' };

const regsetBuf = nativeBuffer(XSAVE_MAX_SIZE);
const regsetBufAt = addressOf(regsetBuf);
const regsetIov = nativeBuffer(16);
const regsetIovAt = addressOf(regsetIov);
/**
 * PTRACE_GETREGSET: the kernel trims iov_len to the regset's real size, so the returned buffer is
 * exactly as large as this CPU's state (the XSAVE area's size is never assumed). It is a view of
 * stasis's one regset buffer, valid until the next read: for converting at once.
 */
export function readRegset(pid: number, nt: number): Buffer {
  regsetIov.writeBigUInt64LE(regsetBufAt, 0);
  regsetIov.writeBigUInt64LE(BigInt(XSAVE_MAX_SIZE), 8);
  ptrace('GETREGSET', pid, nt, regsetIovAt, `, ${NT_NAME[nt] ?? nt}`);
  return regsetBuf.subarray(0, Number(regsetIov.readBigUInt64LE(8)));
}
/** The same, as a buffer of its own. */
export function getRegset(pid: number, nt: number): Buffer {
  return Buffer.from(readRegset(pid, nt));
}
export function setRegset(pid: number, nt: number, value: Buffer): void {
  const data = nativeBuffer(value.length);
  value.copy(data);
  const iov = nativeBuffer(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(value.length), 8);
  ptrace('SETREGSET', pid, nt, addressOf(iov), `, ${NT_NAME[nt] ?? nt}`);
}

/** The blocked-signal mask (bit N-1 = signal N). */
export function getSigmask(pid: number): bigint {
  const b = nativeBuffer(8);
  ptrace('GETSIGMASK', pid, 8, addressOf(b));
  return b.readBigUInt64LE(0);
}
export function setSigmask(pid: number, mask: bigint): void {
  const b = nativeBuffer(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, mask));
  ptrace('SETSIGMASK', pid, 8, addressOf(b));
}

export function getSiginfo(pid: number): Buffer {
  const b = nativeBuffer(SIGINFO_SIZE);
  ptrace('GETSIGINFO', pid, 0, addressOf(b));
  return b;
}
export function setSiginfo(pid: number, info: Buffer): void {
  const b = nativeBuffer(SIGINFO_SIZE);
  info.copy(b);
  ptrace('SETSIGINFO', pid, 0, addressOf(b));
}

/**
 * Pending signals, each as the raw 128-byte siginfo: the thread's own queue, or with `shared`
 * the process-wide one. Reads in batches until the queue is exhausted; nothing is dequeued.
 */
export function peekSiginfo(pid: number, shared: boolean): Buffer[] {
  const batch = 32;
  const out: Buffer[] = [];
  const args = nativeBuffer(16);
  const buf = nativeBuffer(batch * SIGINFO_SIZE);
  for (;;) {
    args.writeBigUInt64LE(BigInt(out.length), 0);
    args.writeUInt32LE(shared ? PTRACE_PEEKSIGINFO_SHARED : 0, 8);
    args.writeInt32LE(batch, 12);
    const n = Number(ptrace('PEEKSIGINFO', pid, addressOf(args), addressOf(buf),
      shared ? ', shared' : ''));
    for (let i = 0; i < n; i++) {
      out.push(Buffer.from(buf.subarray(i * SIGINFO_SIZE, (i + 1) * SIGINFO_SIZE)));
    }
    if (n < batch) return out;
  }
}

export interface RseqConfiguration {
  rseqAbiPointer: bigint;
  rseqAbiSize: number;
  signature: number;
  flags: number;
}
/** The thread's registered rseq area (size 0 when none is registered). */
export function getRseqConfiguration(pid: number): RseqConfiguration {
  const b = nativeBuffer(24);
  ptrace('GET_RSEQ_CONFIGURATION', pid, 24, addressOf(b));
  return {
    rseqAbiPointer: b.readBigUInt64LE(0),
    rseqAbiSize: b.readUInt32LE(8),
    signature: b.readUInt32LE(12),
    flags: b.readUInt32LE(16),
  };
}

/** A decoded wait status. */
export type WaitStatus =
  | { pid: number; kind: 'exited'; code: number }
  | { pid: number; kind: 'killed'; signal: number; core: boolean }
  | {
      pid: number;
      kind: 'stopped';
      /** The stop signal; SYSCALL_STOP_SIG for syscall-stops with TRACESYSGOOD. */
      signal: number;
      /** PTRACE_EVENT_* (0 for a signal-delivery-stop or syscall-stop). */
      event: number;
      raw: number;
    };

export function decodeWaitStatus(pid: number, status: number): WaitStatus {
  const low = status & 0x7f;
  if (low === 0) return { pid, kind: 'exited', code: (status >> 8) & 0xff };
  if ((status & 0xff) === 0x7f) {
    return { pid, kind: 'stopped', signal: (status >> 8) & 0xff, event: status >>> 16, raw: status };
  }
  return { pid, kind: 'killed', signal: low, core: (status & 0x80) !== 0 };
}

export function describeWaitStatus(w: WaitStatus): string {
  switch (w.kind) {
    case 'exited': return `exited with status ${w.code}`;
    case 'killed': return `killed by signal ${w.signal}`;
    case 'stopped':
      if (w.event) return `stopped at PTRACE_EVENT_${EVENT_NAME.get(w.event) ?? w.event} (signal ${w.signal})`;
      if (w.signal === SYSCALL_STOP_SIG) return 'stopped at a syscall';
      return `stopped by signal ${w.signal}`;
  }
}

const statusBuf = nativeBuffer(4);
const statusAt = addressOf(statusBuf);
/**
 * wait4(pid, __WALL). Blocking by default; with `timeoutMs` it polls (WNOHANG) and throws when the
 * task has not changed state in time, so a tracee stuck in the kernel cannot hang stasis.
 * Returns null only for `{ nohang: true }` when nothing is pending.
 */
export function waitTask(pid: number, opts: { timeoutMs?: number; nohang?: boolean } = {}): WaitStatus | null {
  const flags = WALL | (opts.nohang || opts.timeoutMs !== undefined ? WNOHANG : 0);
  const deadline = opts.timeoutMs !== undefined ? performance.now() + opts.timeoutMs : 0;
  let pause = 20;
  for (;;) {
    const r = rawSyscall(SYS.wait4, pid, statusAt, flags, 0);
    if (r === -4n) continue; // EINTR
    if (isErrorResult(r)) throw new SysError(Number(-r), `wait4(${pid})`);
    if (r > 0n) return decodeWaitStatus(Number(r), statusBuf.readInt32LE(0));
    if (opts.nohang) return null;
    if (performance.now() > deadline) {
      throw new Error(`task ${pid} did not stop within ${opts.timeoutMs} ms`);
    }
    sleepMicros(pause);
    pause = Math.min(pause * 2, 2000);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Block the main thread briefly (used only while polling a tracee). */
export function sleepMicros(us: number): void {
  Atomics.wait(sleeper, 0, 0, us / 1000);
}

/**
 * Seize a task and bring it to a PTRACE_EVENT_STOP (PTRACE_SEIZE + PTRACE_INTERRUPT).
 * A signal that happens to be delivered first is passed on (the task handles it as it would
 * have) before the interrupt takes hold. Throws if the task exits or does not stop in time.
 * Returns the stop's signal: SIGTRAP, or the job-control stop signal of a stopped task.
 */
export function seizeAndStop(pid: number, options: number = PTRACE_O.TRACESYSGOOD, timeoutMs = 5000): number {
  seize(pid, options);
  interrupt(pid);
  return waitForInterrupt(pid, timeoutMs);
}

/**
 * Wait for a seized and interrupted task to reach its PTRACE_EVENT_STOP (a frozen task gets
 * there once thawed). Returns the stop's signal, as seizeAndStop.
 */
export function waitForInterrupt(pid: number, timeoutMs = 5000): number {
  for (;;) {
    const w = waitTask(pid, { timeoutMs })!;
    if (w.kind !== 'stopped') throw new Error(`task ${pid} ${describeWaitStatus(w)} while being seized`);
    // The event stop's signal is SIGTRAP for our interrupt, or the stop signal of a group-stop.
    if (w.event === PTRACE_EVENT.STOP) return w.signal;
    cont(pid, w.event === 0 ? w.signal : 0);
  }
}

/**
 * The seccomp filters of a stopped tracee, newest first: each one's BPF program (struct
 * sock_filter array, 8 bytes an instruction) and the flags it was installed with.
 */
export function getSeccompFilters(pid: number): { insns: Buffer; flags: number }[] {
  const out: { insns: Buffer; flags: number }[] = [];
  for (let i = 0; ; i++) {
    const count = rawSyscall(SYS.ptrace, PTRACE.SECCOMP_GET_FILTER, pid, i, 0);
    if (count === -2n /* ENOENT: no more */) break;
    if (count < 0n) throw new SysError(Number(-count), `ptrace(SECCOMP_GET_FILTER, ${pid}, ${i})`);
    const insns = nativeBuffer(Number(count) * 8);
    ptrace('SECCOMP_GET_FILTER', pid, i, addressOf(insns));
    const meta = nativeBuffer(16); // struct seccomp_metadata { u64 filter_off; u64 flags; }
    meta.writeBigUInt64LE(BigInt(i), 0);
    const m = rawSyscall(SYS.ptrace, PTRACE.SECCOMP_GET_METADATA, pid, meta.length, addressOf(meta));
    out.push({ insns: Buffer.from(insns), flags: m >= 0n ? Number(meta.readBigUInt64LE(8)) : 0 });
  }
  return out;
}
