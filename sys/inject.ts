// The syscall-injection engine: make a ptrace-stopped task execute system calls of our choosing,
// then put it back exactly as it was. Used by the dumper (to ask a task about itself) and the
// restorer (to rebuild a task from the inside) alike.
//
// How it works:
// - Bootstrap without writing to the task: the vDSO contains a `syscall` instruction (in its
//   fallback paths), and it is mapped in every process. Point rip at it, load rax/args, set
//   orig_rax = -1 (so no syscall-restart logic runs as we resume), and step with PTRACE_SYSCALL:
//   one stop at syscall entry, one at exit, where rax holds the result. No page of the task is
//   written, so no file-backed page becomes a private copy.
// - A trampoline page holding `syscall; int3` can be mapped (it is needed when the vDSO must move
//   or go away, in address-space rebuilds, and it halves the cost of every later call: the int3
//   gives one stop after the syscall instead of the two syscall-stops). SIGTRAP stays unblocked
//   for that: the kernel resets the handler of a blocked or ignored signal it forces, so a task
//   that ignores SIGTRAP keeps the two-stop way. A scratch mapping carries arguments and results.
// - All signals are blocked (through ptrace, not a syscall) while we work; a SIGSTOP that cannot be
//   blocked is held back and sent again at the end.
// - finish() unmaps what we mapped, then ends in a PTRACE_EVENT_STOP (PTRACE_INTERRUPT + CONT from
//   the last syscall-exit stop) and restores the saved registers *there*. Restoring at a
//   syscall-exit stop instead would return to user space without passing the kernel's restart
//   logic, and a task that was interrupted inside a syscall would see -ERESTART* in rax. From an
//   event stop, the resume path runs that logic: a sleep simply resumes.

import { BREAKPOINT_SIGNAL, CPUID_TRAP_INSNS, IP_REG, PAGE_SIZE, SEQUENCE_CALL_MAX, SYS, SYSCALL_ARG_REGS, SYSCALL_INSN,
  SYSCALL_NR_REG, SYSCALL_ORIG_REG, SYSCALL_RET_REG, SYSCALL_NAME, SYSCALL_TRAP_INSNS, syscallSequence,
  type SyscallSpec } from './arch.js';
import fs from 'node:fs';
import { SysError, isErrorResult } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall, tgkill, type Arg } from './native.js';
import { ProcMem, readMemory, readRanges, writeMemory } from './mem.js';
import {
  MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ,
  PROT_WRITE, AT, auxvEntries, readAuxv, readMapRanges, readSigIgn,
} from './proc/index.js';
import {
  PTRACE_EVENT, SIGSTOP, SYSCALL_STOP_SIG, Regs, cont, describeWaitStatus, getEventMsg, getRegs, getSigmask,
  interrupt, resumeToSyscall, setRegs, setSigmask, waitTask, type WaitStatus,
} from './ptrace.js';

/** mmap protection and flag values, as one object each (the values are defined in proc/vmflags.ts). */
export const PROT = { NONE: PROT_NONE, READ: PROT_READ, WRITE: PROT_WRITE, EXEC: PROT_EXEC } as const;
export const MAP = {
  SHARED: MAP_SHARED, PRIVATE: MAP_PRIVATE, FIXED: 0x10, ANONYMOUS: MAP_ANONYMOUS,
  GROWSDOWN: MAP_GROWSDOWN, NORESERVE: MAP_NORESERVE, POPULATE: 0x8000, FIXED_NOREPLACE: 0x100000,
} as const;

const ALL_SIGNALS = (1n << 64n) - 1n;
const TRAP_BIT = 1n << BigInt(BREAKPOINT_SIGNAL - 1);

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Offset of the `syscall` instruction in this kernel's vDSO (the same image in every task). */
let vdsoSyscallOffset: bigint | undefined;
/** What is read of a vDSO whose start alone is known: it is two pages or so (a short read is fine). */
const VDSO_SEARCH = 2 * PAGE_SIZE;

/**
 * The error of an injected call that returned `r` (a negative errno), naming the call, its
 * arguments and the task.
 */
export function injectedCallError(pid: number, r: bigint, nr: number, args: readonly Arg[]): SysError {
  const shown = args.map((a) => (typeof a === 'bigint' && a > 0xffffn ? hex(a) : String(a)));
  return new SysError(Number(-r), `${SYSCALL_NAME.get(nr) ?? `syscall ${nr}`}(${shown.join(', ')}) in task ${pid}`);
}

/** `results` of `calls` (callAll), or the error of the first that failed, but for those in `mayFail`. */
export function checkedResults(pid: number, calls: readonly SyscallSpec[], results: bigint[], mayFail?: ReadonlySet<number>): bigint[] {
  const bad = results.findIndex((r, i) => isErrorResult(r) && !mayFail?.has(i));
  if (bad >= 0) throw injectedCallError(pid, results[bad]!, calls[bad]![0], calls[bad]!.slice(1));
  return results;
}

let ownVdso: Buffer | null | undefined;

/** The bytes of stasis's own vDSO, read once (null when it has none): the kernel's image, the same in every task. */
export function ownVdsoImage(): Buffer | null {
  if (ownVdso === undefined) {
    const v = readMapRanges('self').find((r) => r.special === '[vdso]');
    ownVdso = v ? Buffer.from(readMemory(process.pid, v.start, Number(v.end - v.start))) : null;
  }
  return ownVdso;
}

/** Where stasis's own vDSO is (a task cloned from stasis has it there too). */
export function ownVdsoStart(): bigint | undefined {
  return auxvEntries(readAuxv('self')).get(AT.SYSINFO_EHDR);
}

/**
 * The first `syscall` instruction in the task's vDSO (read, never written). `vdsoStart` — where
 * the caller already knows the vDSO is — spares reading the maps; the instruction's offset is
 * looked up once per run.
 */
export function findVdsoSyscall(pid: number, vdsoStart?: bigint): bigint | undefined {
  let start = vdsoStart;
  let len = VDSO_SEARCH;
  if (start === undefined) {
    const vdso = readMapRanges(pid).find((v) => v.special === '[vdso]');
    if (!vdso) return undefined;
    start = vdso.start;
    len = Number(vdso.end - vdso.start);
  }
  if (vdsoSyscallOffset === undefined) {
    const text = nativeBuffer(len);
    const n = readRanges(pid, [{ addr: start, len }], text);
    const at = text.subarray(0, n).indexOf(SYSCALL_INSN);
    if (at < 0) return undefined;
    vdsoSyscallOffset = BigInt(at);
  }
  return start + vdsoSyscallOffset;
}

/**
 * What code that asks a task about itself needs of an injector: the plain one below, or the
 * guarded one a dump uses (sys/guard.ts).
 */
export interface TaskCalls {
  readonly pid: number;
  readonly tgid: number;
  call(nr: number, ...args: Arg[]): bigint;
  callChecked(nr: number, ...args: Arg[]): bigint;
  callAll(calls: readonly SyscallSpec[]): bigint[];
  callAllChecked(calls: readonly SyscallSpec[], mayFail?: ReadonlySet<number>): bigint[];
  questions(): Questions;
  scratch(size: number): bigint;
  readScratch(len: number, offset?: number): Buffer;
  writeScratch(data: Buffer, offset?: number): bigint;
}

export interface InjectorOptions {
  /** Bytes of scratch memory to map at once (more can be had later with scratch()). */
  scratchSize?: number;
  /**
   * Run tracer and task on one CPU while injecting (default true): each injected syscall is a
   * round trip of wake-ups, about 4x faster without cross-CPU wake-ups (36 µs vs 140 µs measured).
   * Both affinities are put back by finish().
   */
  pin?: boolean;
  /** Where the task's vDSO starts, when the caller knows it (saves reading its maps). */
  vdsoStart?: bigint;
  /** The task's ignored signals (SigIgn), when the caller has read its status already. */
  sigIgn?: bigint;
  /**
   * Scratch memory another injector mapped in the same process (threads share their memory):
   * used as it is, and left for that injector to unmap.
   */
  sharedScratch?: { addr: bigint; len: number };
  /** A trampoline another injector of the process mapped (see scratchWithTrampoline): used, not unmapped. */
  sharedTrampoline?: bigint;
  /** The code area of that injector's page (see callAll), used by turns: threads run one at a time. */
  sharedSequenceArea?: bigint;
  /** The task's registers and blocked mask, when the caller has just read them. */
  regs?: Regs;
  sigmask?: bigint;
}

/**
 * A page that holds code as well as data (scratchWithTrampoline): the trampoline, then the code
 * of a syscall sequence (callAll) and its results, then the scratch data.
 */
const SEQUENCE_AT = 16;
/** Calls in one sequence; a longer list is run as several. */
const SEQUENCE_CALLS = 20;
const SEQUENCE_CODE_BYTES = SEQUENCE_CALLS * SEQUENCE_CALL_MAX + 1;
const CODE_BYTES = Math.ceil((SEQUENCE_AT + SEQUENCE_CODE_BYTES + 8 * SEQUENCE_CALLS) / 64) * 64;

const AFFINITY_BYTES = 128; // cpu_set_t: up to 1024 CPUs

export function getAffinity(tid: number): Buffer {
  const mask = nativeBuffer(AFFINITY_BYTES);
  syscall(`sched_getaffinity(${tid})`, SYS.sched_getaffinity, tid, AFFINITY_BYTES, addressOf(mask));
  return mask;
}

export function setAffinity(tid: number, mask: Buffer): void {
  syscall(`sched_setaffinity(${tid})`, SYS.sched_setaffinity, tid, mask.length, addressOf(mask));
}

/**
 * Pin the calling thread to the CPU it runs on; returns how to undo that. Tasks it creates from
 * then on (restore) inherit the pin; the caller gives them their own mask at the end.
 */
export function pinSelf(): () => void {
  const cpuBuf = nativeBuffer(8);
  syscall('getcpu', SYS.getcpu, addressOf(cpuBuf), 0, 0);
  const cpu = cpuBuf.readUInt32LE(0);
  const one = nativeBuffer(AFFINITY_BYTES);
  one[cpu >> 3] = 1 << (cpu & 7);
  const mine = getAffinity(0);
  setAffinity(0, one);
  // stasis's other threads (libuv's pool writing image files, V8's helpers) keep off that CPU
  // where they may run elsewhere: woken there, they would preempt this thread and its tasks.
  const others = new Map<number, Buffer>();
  const self = Number(rawSyscall(SYS.gettid));
  for (const name of fs.readdirSync('/proc/self/task')) {
    const tid = Number(name);
    if (tid === self) continue;
    const theirs = nativeBuffer(AFFINITY_BYTES);
    if (rawSyscall(SYS.sched_getaffinity, tid, AFFINITY_BYTES, addressOf(theirs)) < 0n) continue;
    const elsewhere = Buffer.from(theirs);
    elsewhere[cpu >> 3]! &= ~(1 << (cpu & 7));
    if (elsewhere.every((b) => b === 0)) continue;
    const mask = nativeBuffer(AFFINITY_BYTES);
    elsewhere.copy(mask);
    if (rawSyscall(SYS.sched_setaffinity, tid, AFFINITY_BYTES, addressOf(mask)) === 0n) others.set(tid, theirs);
  }
  return () => {
    setAffinity(0, mine);
    for (const [tid, mask] of others) rawSyscall(SYS.sched_setaffinity, tid, AFFINITY_BYTES, addressOf(mask));
  };
}

/** Pin the calling thread and `tid` to the CPU the caller runs on; returns how to undo it. */
function pinTogether(tid: number): () => void {
  const cpuBuf = nativeBuffer(8);
  syscall('getcpu', SYS.getcpu, addressOf(cpuBuf), 0, 0);
  const cpu = cpuBuf.readUInt32LE(0);
  const one = nativeBuffer(AFFINITY_BYTES);
  one[cpu >> 3] = 1 << (cpu & 7);
  const mine = getAffinity(0);
  const theirs = getAffinity(tid);
  setAffinity(0, one);
  if (rawSyscall(SYS.sched_setaffinity, tid, AFFINITY_BYTES, addressOf(one)) < 0n) {
    setAffinity(0, mine); // the task's affinity may not include our CPU (cpuset): don't pin
    return () => {};
  }
  return () => {
    setAffinity(0, mine);
    rawSyscall(SYS.sched_setaffinity, tid, AFFINITY_BYTES, addressOf(theirs));
  };
}

type Stopped = Extract<WaitStatus, { kind: 'stopped' }>;

/** `regs` set up for syscall `nr` with `args` at the instruction at `at` (orig_rax -1: no restart logic). */
export function loadCall(regs: Regs, at: bigint, nr: number, args: readonly Arg[]): Regs {
  regs.set(IP_REG, at);
  regs.set(SYSCALL_NR_REG, nr);
  regs.set(SYSCALL_ORIG_REG, -1n);
  SYSCALL_ARG_REGS.forEach((r, i) => regs.set(r, BigInt(args[i] ?? 0)));
  return regs;
}

/**
 * From a stop, to a PTRACE_EVENT_STOP without running any user code (PTRACE_INTERRUPT, then
 * PTRACE_CONT: the event stop comes before the return to user space). `expect` turns a wait
 * status that is no stop into an error; stops on the way are handed to `other`.
 */
export function parkInEventStop(pid: number, expect: (w: WaitStatus, doing: string) => Stopped, other: (w: Stopped) => void): void {
  interrupt(pid);
  cont(pid, 0);
  for (;;) {
    const w = expect(waitTask(pid)!, 'parking');
    if (w.event === PTRACE_EVENT.STOP) return;
    other(w);
    cont(pid, 0);
  }
}

/** Resume to the next syscall-stop (entry or exit), handing other stops to `other`. */
export function stepToSyscallStop(pid: number, doing: string, expect: (w: WaitStatus, doing: string) => Stopped,
  other: (w: Stopped) => void): void {
  resumeToSyscall(pid, 0);
  for (;;) {
    const w = expect(waitTask(pid)!, doing);
    if (w.signal === SYSCALL_STOP_SIG && w.event === 0) return;
    other(w);
    resumeToSyscall(pid, 0);
  }
}

export class Injector implements TaskCalls {
  /** Registers and blocked mask as the task had them when we took over. */
  readonly savedRegs: Regs;
  readonly savedSigmask: bigint;
  /** The `syscall` instruction the task is sent to. */
  private site: bigint;
  /** The vDSO's syscall instruction (kept for the final unmaps). */
  private vdsoSite: bigint | undefined;
  private trampoline: bigint | undefined;
  /** Writable, executable memory for callAll's code and results (in the trampoline's page). */
  private sequenceArea: bigint | undefined;
  /** The trampoline is ours to unmap (not another injector's). */
  private trampolineOwned = true;
  private scratchAddr: bigint | undefined;
  private scratchLen = 0;
  /** The scratch mapping is ours to unmap (not another injector's). */
  private scratchOwned = true;
  /** Our scratch mapping is in use by other injectors of the process (see scratchRange). */
  private scratchLent = false;
  /** Earlier scratch mappings still lent out when a larger one replaced them: unmapped at finish. */
  private retiredScratch: { addr: bigint; len: number }[] = [];
  /** Where scratch memory must go (an address-space rebuild keeps it out of the dumped layout). */
  private scratchHint: bigint | undefined;
  /** Signals that arrived while we worked and must be sent again at the end. */
  private deferred: number[] = [];
  private finished = false;
  /** The task lets SIGTRAP through (not ignored), so the trampoline's int3 can be used. */
  private trapUsable: boolean;
  /** The int3 is in use now (off while unmapping the trampoline itself). */
  private trapping = false;
  private unpin: () => void = () => {};
  /** Injected syscalls so far (for statistics and tests). */
  count = 0;

  /**
   * Let the task run a syscall that does not return (exit_group) and go on by itself; the
   * caller collects the exit with waitTask. The injector is finished afterwards.
   */
  callAndRelease(nr: number, ...args: Arg[]): void {
    const regs = this.savedRegs.clone();
    regs.set(IP_REG, this.site);
    regs.set(SYSCALL_NR_REG, nr);
    regs.set(SYSCALL_ORIG_REG, -1n);
    SYSCALL_ARG_REGS.forEach((r, i) => regs.set(r, BigInt(args[i] ?? 0)));
    setRegs(this.pid, regs);
    this.finished = true;
    this.unpin();
    cont(this.pid, 0);
  }

  /**
   * Take over a task that this thread has seized and that sits in a ptrace-stop.
   * Nothing in the task changes until the first call().
   */
  constructor(readonly pid: number, readonly tgid: number = pid, opts: InjectorOptions = {}) {
    this.savedRegs = opts.regs ?? getRegs(pid);
    this.savedSigmask = opts.sigmask ?? getSigmask(pid);
    this.vdsoSite = findVdsoSyscall(tgid, opts.vdsoStart);
    this.trapUsable = !((opts.sigIgn ?? readSigIgn(tgid)) & TRAP_BIT);
    setSigmask(pid, this.trapUsable ? ALL_SIGNALS & ~TRAP_BIT : ALL_SIGNALS);
    try {
      if (opts.pin !== false) this.unpin = pinTogether(pid);
      if (this.vdsoSite !== undefined) {
        this.site = this.vdsoSite;
      } else {
        this.site = 0n;
        this.bootstrapWithoutVdso();
      }
      if (opts.sharedScratch) this.takeScratch(opts.sharedScratch, false);
      if (opts.sharedTrampoline !== undefined) this.takeTrampoline(opts.sharedTrampoline, false);
      this.sequenceArea = opts.sharedSequenceArea;
      if (opts.scratchSize) this.scratch(opts.scratchSize);
    } catch (e) {
      this.abandon();
      throw e;
    }
  }

  /**
   * Run one syscall in the task. Returns the raw result (a negative errno on failure).
   */
  /** PID (in stasis's pid namespace) of the last task this task's calls created, if traced. */
  lastChild?: number;

  /** The registers of the call being made, and those it ended with (one buffer each, reused). */
  private readonly callRegs = new Regs();
  private readonly resultRegs = new Regs();

  call(nr: number, ...args: Arg[]): bigint {
    if (this.finished) throw new Error(`injector for task ${this.pid} already finished`);
    setRegs(this.pid, loadCall(this.callRegs.copyFrom(this.savedRegs), this.site, nr, args));
    this.count++;
    if (this.trapping && this.site === this.trampoline) return this.stepToTrap(nr);
    this.stepToSyscallStop(nr); // entry
    this.stepToSyscallStop(nr); // exit
    return getRegs(this.pid, this.resultRegs).getSigned(SYSCALL_RET_REG);
  }

  /** Run from the trampoline to its int3; the result is in rax there. */
  private stepToTrap(nr: number): bigint {
    const after = this.trampoline! + BigInt(SYSCALL_TRAP_INSNS.length);
    return this.runToTrap(after, SYSCALL_NAME.get(nr) ?? String(nr)).getSigned(SYSCALL_RET_REG);
  }

  /** Let the task run until our int3 stops it just before `after`; its registers there. */
  private runToTrap(after: bigint, doing: string): Regs {
    cont(this.pid, 0);
    for (;;) {
      const w = this.expectStopped(waitTask(this.pid)!, doing);
      if (w.event === 0 && w.signal === BREAKPOINT_SIGNAL) {
        const regs = getRegs(this.pid, this.resultRegs);
        if (regs.get(IP_REG) === after) return regs;
      }
      this.holdSignal(w); // a SIGTRAP from elsewhere, or an unblockable signal: later
      cont(this.pid, 0);
    }
  }

  /** Run a syscall and throw a SysError naming the task when it fails. */
  callChecked(nr: number, ...args: Arg[]): bigint {
    const r = this.call(nr, ...args);
    if (isErrorResult(r)) throw injectedCallError(this.pid, r, nr, args);
    return r;
  }

  /**
   * Several independent syscalls, in order, with one stop for all of them: their code is written
   * into the page scratchWithTrampoline mapped, and ends in an int3. Without such a page they are
   * made one by one. Returns the raw results (negative errnos on failure).
   */
  callAll(calls: readonly SyscallSpec[]): bigint[] {
    const area = this.sequenceArea;
    // One call alone costs less made directly (no code to write, no result to read back).
    if (area === undefined || !this.trapping || calls.length === 1) return calls.map(([nr, ...args]) => this.call(nr, ...args));
    const out: bigint[] = [];
    for (let i = 0; i < calls.length; i += SEQUENCE_CALLS) out.push(...this.runSequence(area, calls.slice(i, i + SEQUENCE_CALLS)));
    return out;
  }

  /** Questions to ask the task together (see Questions). */
  questions(): Questions {
    return new Questions(this);
  }

  /**
   * callAll(), throwing a SysError for the first call that failed (all of them were made), but
   * for those numbered in `mayFail`.
   */
  callAllChecked(calls: readonly SyscallSpec[], mayFail?: ReadonlySet<number>): bigint[] {
    return checkedResults(this.pid, calls, this.callAll(calls), mayFail);
  }

  private runSequence(area: bigint, calls: readonly SyscallSpec[]): bigint[] {
    if (this.finished) throw new Error(`injector for task ${this.pid} already finished`);
    const results = area + BigInt(SEQUENCE_CODE_BYTES);
    const code = syscallSequence(calls, area, results);
    writeMemory(this.tgid, area, code);
    const regs = this.callRegs.copyFrom(this.savedRegs);
    regs.set(IP_REG, area);
    regs.set(SYSCALL_ORIG_REG, -1n);
    setRegs(this.pid, regs);
    this.count += calls.length;
    this.runToTrap(area + BigInt(code.length), `${SYSCALL_NAME.get(calls[0]![0]) ?? calls[0]![0]} and ${calls.length - 1} more calls`);
    const r = readMemory(this.tgid, results, 8 * calls.length);
    return calls.map((_, i) => r.readBigInt64LE(8 * i));
  }

  /** mmap inside the task; returns the address. */
  mmap(addr: bigint, len: number, prot: number, flags: number, fd = -1, off = 0n): bigint {
    return this.callChecked(SYS.mmap, addr, len, prot, flags, fd, off);
  }

  munmap(addr: bigint, len: number): void {
    this.callChecked(SYS.munmap, addr, len);
  }

  /**
   * Scratch memory in the task for syscall arguments and results, at least `size` bytes.
   * Returns its address (stable until a larger size is asked for).
   */
  scratch(size: number): bigint {
    if (this.scratchAddr !== undefined && size <= this.scratchLen) return this.scratchAddr;
    const len = Math.ceil(Math.max(size, 1) / PAGE_SIZE) * PAGE_SIZE;
    if (this.scratchAddr !== undefined && this.scratchOwned) {
      if (this.scratchLent) this.retiredScratch.push({ addr: this.scratchAddr, len: this.scratchLen });
      else this.munmap(this.scratchAddr, this.scratchLen);
    }
    this.scratchAddr = undefined;
    const hint = this.scratchHint ?? 0n;
    const addr = this.mmap(hint, len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | (hint ? MAP.FIXED_NOREPLACE : 0));
    this.takeScratch({ addr, len }, true);
    return addr;
  }

  /** Scratch memory at `range` from now on; `owned`: this injector unmaps it (finish, or a larger one). */
  private takeScratch(range: { addr: bigint; len: number }, owned: boolean): void {
    this.scratchAddr = range.addr;
    this.scratchLen = range.len;
    this.scratchOwned = owned;
    this.scratchLent = false;
  }

  /** Calls go to the trampoline at `addr` from now on; `owned`: finish() unmaps it. */
  private takeTrampoline(addr: bigint, owned: boolean): void {
    this.trampoline = addr;
    this.trampolineOwned = owned;
    this.site = addr;
    this.trapping = this.trapUsable;
  }

  /**
   * The caller has unmapped the whole address space (restore): forget the old scratch mapping
   * and put future ones at `at`, a range the caller keeps free of everything it maps.
   */
  relocateScratch(at: bigint): void {
    this.scratchAddr = undefined;
    this.scratchOwned = true;
    this.scratchLent = false;
    this.retiredScratch = [];
    this.scratchLen = 0;
    this.scratchHint = at;
  }

  /**
   * Scratch memory and a trampoline the task has already at these addresses — a fork copied its
   * parent's, left just where this task's own would go: taken over as the task's own (unmapped by
   * finish()), with callAll's code area in the trampoline's page where the parent had one.
   */
  adoptScratchAndTrampoline(scratch: { addr: bigint; len: number }, trampoline: bigint, sequenceArea?: bigint): void {
    this.takeScratch(scratch, true);
    this.retiredScratch = [];
    this.scratchHint = scratch.addr;
    this.takeTrampoline(trampoline, true);
    this.sequenceArea = sequenceArea;
  }

  /** The scratch mapping this injector owns, if any (what a fork of the task inherits). */
  get ownScratch(): { addr: bigint; len: number } | undefined {
    return this.scratchAddr !== undefined && this.scratchOwned ? { addr: this.scratchAddr, len: this.scratchLen } : undefined;
  }

  /** The scratch mapping as it stands (for injectors on the process's other threads). */
  get scratchRange(): { addr: bigint; len: number } | undefined {
    if (this.scratchAddr === undefined) return undefined;
    this.scratchLent = true; // kept mapped until finish(), even if a larger one replaces it
    return { addr: this.scratchAddr, len: this.scratchLen };
  }

  writeScratch(data: Buffer, offset = 0): bigint {
    const base = this.scratch(offset + data.length);
    writeMemory(this.tgid, base + BigInt(offset), data);
    return base + BigInt(offset);
  }

  readScratch(len: number, offset = 0): Buffer {
    if (this.scratchAddr === undefined || offset + len > this.scratchLen) {
      throw new RangeError(`task ${this.pid}: scratch read beyond the mapped ${this.scratchLen} bytes`);
    }
    return readMemory(this.tgid, this.scratchAddr + BigInt(offset), len);
  }

  /**
   * A read-write-execute page mapped at `at` (mmap `flags`) as the trampoline, `syscall; int3`
   * at its start and callAll's code area after it; undefined where the task may not map such
   * memory (memory-deny-write-execute) or cannot take our int3 (SIGTRAP ignored).
   */
  private codePage(at: bigint, flags: number): bigint | undefined {
    if (!this.trapUsable) return undefined;
    const page = this.call(SYS.mmap, at, PAGE_SIZE, PROT.READ | PROT.WRITE | PROT.EXEC, flags, -1, 0);
    if (isErrorResult(page)) return undefined;
    writeMemory(this.tgid, page, SYSCALL_TRAP_INSNS);
    this.takeTrampoline(page, true);
    this.sequenceArea = page + BigInt(SEQUENCE_AT);
    return page;
  }

  /**
   * Map a page holding `syscall; int3` (at `at` if given, without replacing anything) and send
   * later syscalls there: for when the vDSO is about to be moved or unmapped (a restore's
   * address-space rebuild). The page is writable too where the task may map such memory, and
   * then holds callAll's code as well; otherwise (memory-deny-write-execute) it is read and
   * execute only, written through /proc/PID/mem, and calls are made one by one.
   */
  useTrampoline(at = 0n): bigint {
    if (this.trampoline !== undefined) return this.trampoline;
    const flags = MAP.PRIVATE | MAP.ANONYMOUS | (at ? MAP.FIXED_NOREPLACE : 0);
    const rwx = this.codePage(at, flags);
    if (rwx !== undefined) return rwx;
    const page = this.mmap(at, PAGE_SIZE, PROT.READ | PROT.EXEC, flags);
    const mem = new ProcMem(this.tgid);
    try {
      mem.write(page, SYSCALL_TRAP_INSNS); // FOLL_FORCE write into the r-x page
    } finally {
      mem.close();
    }
    this.takeTrampoline(page, true);
    return page;
  }

  /**
   * Scratch memory and the trampoline in one page, mapped read-write-execute: `syscall; int3` at
   * its start, the scratch data after it. Every later call takes one stop instead of two, for
   * the price of the one mmap the scratch memory costs anyway (the dump's way: a separate
   * trampoline did not pay for itself there). Where a writable and executable mapping is refused
   * (memory-deny-write-execute) or SIGTRAP cannot be used, it is plain scratch memory.
   */
  scratchWithTrampoline(): void {
    if (this.scratchAddr !== undefined || this.trampoline !== undefined) return;
    const rwx = this.codePage(0n, MAP.PRIVATE | MAP.ANONYMOUS);
    if (rwx === undefined) {
      this.scratch(PAGE_SIZE);
      return;
    }
    // The page is unmapped as the trampoline; the scratch view of it is never unmapped alone.
    this.takeScratch({ addr: rwx + BigInt(CODE_BYTES), len: PAGE_SIZE - CODE_BYTES }, false);
  }

  /**
   * The task is about to ignore SIGTRAP: from now on every call takes the two syscall-stops,
   * which never run the trampoline's int3 (the kernel resets an ignored signal it forces to
   * its default action). Call before the call that ignores it.
   */
  noTraps(): void {
    this.trapUsable = false;
    this.trapping = false;
  }

  /** The trampoline's address, for injectors on the process's other threads (see sharedTrampoline). */
  get trampolineAddress(): bigint | undefined {
    return this.trampoline;
  }

  /** callAll's code area, for injectors on the process's other threads (see sharedSequenceArea). */
  get sequenceAreaAddress(): bigint | undefined {
    return this.sequenceArea;
  }

  /**
   * Execute CPUID in the task (leaf, subleaf) → [eax, ebx, ecx, edx]: for when the kernel's
   * cpuid device is out of stasis's reach (a container's devices cgroup). The instruction and an
   * int3 are written into the trampoline page, after `syscall; int3`.
   */
  cpuid(leaf: number, sub: number): number[] {
    if (!this.trapUsable) throw new Error(`task ${this.pid} ignores SIGTRAP: cannot run CPUID in it`);
    const page = this.useTrampoline();
    const site = page + 16n;
    const mem = new ProcMem(this.tgid);
    try {
      mem.write(site, CPUID_TRAP_INSNS);
    } finally {
      mem.close();
    }
    const regs = this.savedRegs.clone();
    regs.set(IP_REG, site);
    regs.set('rax', BigInt(leaf));
    regs.set('rcx', BigInt(sub));
    setRegs(this.pid, regs);
    const r = this.runToTrap(site + BigInt(CPUID_TRAP_INSNS.length), 'cpuid');
    return (['rax', 'rbx', 'rcx', 'rdx'] as const).map((n) => Number(r.get(n) & 0xffffffffn));
  }

  /** The syscall site in use (vDSO or trampoline). */
  get syscallSite(): bigint {
    return this.site;
  }

  /**
   * The vDSO is about to move or vanish (address-space rebuild): from now on only the trampoline
   * is used, and finish() unmaps the trampoline from itself.
   */
  forgetVdso(): void {
    if (this.trampoline === undefined) throw new Error('forgetVdso() needs the trampoline first');
    this.vdsoSite = undefined;
  }

  /**
   * Undo what we mapped and hand the task back: it ends in a PTRACE_EVENT_STOP with its own
   * registers and signal mask (or, for a restored task, the `final` ones), ready to be detached or
   * continued. Signals that arrived meanwhile are re-sent.
   */
  finish(final: { regs?: Regs; sigmask?: bigint } = {}): void {
    if (this.finished) return;
    if (this.scratchAddr !== undefined) {
      if (this.scratchOwned) this.munmap(this.scratchAddr, this.scratchLen);
      this.scratchAddr = undefined;
    }
    for (const r of this.retiredScratch) this.munmap(r.addr, r.len);
    this.retiredScratch = [];
    if (this.trampoline !== undefined) {
      // Unmap the trampoline from the vDSO site if there is one; otherwise from the trampoline
      // itself, with syscall-stops: the exit stop comes before the task would fetch the int3
      // from the vanished page.
      this.trapping = false;
      const t = this.trampoline;
      if (this.vdsoSite !== undefined) this.site = this.vdsoSite;
      if (this.trampolineOwned) this.munmap(t, PAGE_SIZE);
      this.trampoline = undefined;
      this.sequenceArea = undefined;
    }
    this.finished = true;
    if (this.count > 0) this.parkInEventStop();
    setRegs(this.pid, final.regs ?? this.savedRegs);
    setSigmask(this.pid, final.sigmask ?? this.savedSigmask);
    this.unpin();
    for (const sig of this.deferred) tgkill(this.tgid, this.pid, sig);
    this.deferred = [];
  }

  /** Best effort after a failure: put back registers and mask, leave mappings. */
  abandon(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      if (this.count > 0) this.parkInEventStop();
      setRegs(this.pid, this.savedRegs);
      setSigmask(this.pid, this.savedSigmask);
      this.unpin();
    } catch {
      // the task is gone or unreachable: nothing more to restore
    }
  }

  /** From a syscall-exit stop, go to a PTRACE_EVENT_STOP without running any user code. */
  private parkInEventStop(): void {
    parkInEventStop(this.pid, (w, doing) => this.expectStopped(w, doing), (w) => this.holdSignal(w));
  }

  private stepToSyscallStop(nr: number): void {
    stepToSyscallStop(this.pid, SYSCALL_NAME.get(nr) ?? String(nr), (w, doing) => this.expectStopped(w, doing), (w) => this.holdSignal(w));
  }

  /** A SIGTRAP stop raised by our own int3 (the task sits just past it). */
  private isOurTrap(): boolean {
    return this.trampoline !== undefined
      && getRegs(this.pid).get(IP_REG) === this.trampoline + BigInt(SYSCALL_TRAP_INSNS.length);
  }

  private holdSignal(w: Extract<WaitStatus, { kind: 'stopped' }>): void {
    if (w.event === PTRACE_EVENT.FORK || w.event === PTRACE_EVENT.CLONE || w.event === PTRACE_EVENT.VFORK) {
      // The new task's PID as stasis sees it (the call returns it as the task's namespace does).
      this.lastChild = Number(getEventMsg(this.pid));
    }
    // Only unblockable signals reach us here (SIGSTOP and friends); event stops are not signals.
    if (w.event === 0 && w.signal !== SYSCALL_STOP_SIG && !(w.signal === BREAKPOINT_SIGNAL && this.trapUsable && this.isOurTrap())) {
      if (w.signal === SIGSTOP || !this.deferred.includes(w.signal)) this.deferred.push(w.signal);
    }
  }

  private expectStopped(w: WaitStatus, doing: string): Extract<WaitStatus, { kind: 'stopped' }> {
    if (w.kind !== 'stopped') {
      this.finished = true;
      throw new Error(`task ${this.pid} ${describeWaitStatus(w)} during injected ${doing}`);
    }
    return w;
  }

  /**
   * No vDSO: put a `syscall` instruction over the bytes at rip just long enough to map the
   * trampoline, then put the bytes back. This makes that page a private copy, which is why the
   * vDSO route is preferred.
   */
  private bootstrapWithoutVdso(): void {
    const rip = this.savedRegs.get(IP_REG);
    const mem = new ProcMem(this.tgid);
    const original = mem.read(rip, SYSCALL_INSN.length);
    mem.write(rip, SYSCALL_INSN);
    try {
      this.site = rip;
      this.useTrampoline();
    } finally {
      mem.write(rip, original);
      mem.close();
    }
  }
}

/** Scratch memory the answers of one set of questions may take. */
const QUESTION_BYTES = 2048;

/**
 * Syscalls that ask a task about itself, gathered from several modules and made together: one
 * stop for all of them (Injector.callAll), their answers read back from scratch memory in one
 * read. Each asker takes room for its answer and a call, and reads both once run() is done.
 */
export class Questions {
  private readonly calls: SyscallSpec[] = [];
  /** Calls whose failure is an answer, not an error (askMay). */
  private readonly mayFail = new Set<number>();
  private size = 0;
  private results: bigint[] | undefined;
  private memory: Buffer | undefined;
  private readonly base: bigint;

  constructor(private readonly inj: TaskCalls) {
    this.base = inj.scratch(QUESTION_BYTES);
  }

  /** `bytes` of scratch memory for an answer (8-byte aligned): where it is, and its offset for answer(). */
  room(bytes: number): { addr: bigint; offset: number } {
    const offset = this.size;
    this.size += Math.ceil(bytes / 8) * 8;
    if (this.size > QUESTION_BYTES) throw new RangeError(`questions need more than ${QUESTION_BYTES} bytes of answers`);
    return { addr: this.base + BigInt(offset), offset };
  }

  /** A call to make; its number for result(). */
  ask(nr: number, ...args: Arg[]): number {
    if (this.results) throw new Error('questions asked after they were run');
    this.calls.push([nr, ...args]);
    return this.calls.length - 1;
  }

  /** ask(), for a call that may fail: its negative errno is then its result(), not an error of run(). */
  askMay(nr: number, ...args: Arg[]): number {
    const i = this.ask(nr, ...args);
    this.mayFail.add(i);
    return i;
  }

  /** Makes every call, then reads the answers' memory; throws the first failure not allowed by askMay(). */
  run(): void {
    this.results = this.inj.callAllChecked(this.calls, this.mayFail);
    this.memory = this.size ? this.inj.readScratch(this.size) : Buffer.alloc(0);
  }

  /** What call `i` returned. */
  result(i: number): bigint {
    if (!this.results) throw new Error('questions not run yet');
    return this.results[i]!;
  }

  /** The answer at `offset` of room() (a view of the memory read after the calls). */
  answer(offset: number, bytes: number): Buffer {
    if (!this.memory) throw new Error('questions not run yet');
    return this.memory.subarray(offset, offset + bytes);
  }
}
