// Guarded injection: the syscalls a dump makes a task execute, arranged so that the task can
// always get back to exactly its own state by itself — if stasis is killed, crashes or is
// OOM-killed at any instant, the kernel detaches its tracees and each runs on from whatever
// registers it has at that moment. Every such moment leads into code that restores the task.
//
// How:
// - The code lives in the unused zero tail of the task's vDSO (the vDSO is the same image in
//   every process, its last page mostly padding): written there through /proc/PID/mem (the
//   kernel gives the process a private copy of that page), zeroed again when the dump is done.
//   No mapping is added for code, so nothing is left mapped when the task restores itself.
// - Per task, a slot holds: the task's own rip, blocked mask and CPU affinity, then a `syscall`
//   instruction, then the epilogue (arch.ts's EpilogueTemplate): for the main task, close the
//   descriptor stasis may have opened in it and unmap stasis's scratch memory; put back affinity
//   and mask, load every register, jump back (an interrupted syscall resumed as the kernel
//   would resume it); then a call stub and the marker tail (below).
// - The task's registers are never left pointing anywhere else: from the first change on, rip
//   is the epilogue, a call that falls into it, or a sequence of calls that ends by jumping to
//   it. Stops come from a signal the task ignores by default (SIGURG, SIGWINCH or SIGCHLD, one
//   it neither catches nor has pending) that the task raises on itself at the end of each call
//   or sequence: a signal-delivery stop under the tracer, discarded without one. (Without such a
//   signal, from syscall-stops, harmless too: PTRACE_O_TRACESYSGOOD's stop signal is no signal.)
//   Never an int3: its SIGTRAP would kill the task once the tracer is gone.
// - The order of changes keeps that true: the epilogue is written, then rip is pointed at it,
//   then the mask and affinity are changed; at the end affinity and mask go back first and the
//   registers last.
// - A call costs one stop: a per-task stub makes it and falls into the marker; several calls go
//   into a sequence area after the slots (one task at a time uses it; a task stopped elsewhere
//   sits in its own slot), their results stored in scratch memory by the main task, kept in
//   registers (which the epilogue reloads anyway) by the others.
// - Scratch memory for arguments and answers is one mapping at an address chosen beforehand, so
//   the main thread's epilogue can unmap it whether or not the mmap has happened yet. Only the
//   main thread writes it from user space (its epilogue runs after); other threads' syscalls
//   fail with EFAULT once it is gone, so it may be unmapped while they run their own way back.
//
// A task whose vDSO differs from stasis's own, or that has none, cannot be guarded this way; the
// dump then uses the plain injector (sys/inject.ts) for it.

import fs from 'node:fs';
import {
  IP_REG, MachineCode, PAGE_SIZE, SYS, SYSCALL_ARG_REGS, SYSCALL_NAME, SYSCALL_NR_REG, SYSCALL_ORIG_REG,
  SYSCALL_RET_REG, EpilogueTemplate, epilogueMaxBytes, type SyscallSpec,
} from './arch.js';
import { isErrorResult } from './errno.js';
import { ProcMem, readMemory, readRanges, writeMemory } from './mem.js';
import { addressOf, nativeBuffer, rawSyscall, tgkill, type Arg } from './native.js';
import type { Vma } from './proc/index.js';
import {
  Regs, SIGSTOP, SYSCALL_STOP_SIG, cont, describeWaitStatus, getRegs, setRegs, setSigmask, waitTask, type WaitStatus,
} from './ptrace.js';
import {
  Questions, checkedResults, getAffinity, injectedCallError, loadCall, ownVdsoImage, parkInEventStop, setAffinity, stepToSyscallStop,
  type TaskCalls,
} from './inject.js';

const ALL_SIGNALS = (1n << 64n) - 1n;
const bit = (sig: number) => 1n << BigInt(sig - 1);

/** Signals whose default action is to ignore them, in the order they are tried as end markers. */
const MARKER_SIGNALS = [23 /* SIGURG */, 28 /* SIGWINCH */, 17 /* SIGCHLD */];

/**
 * Scratch memory: room for arguments and answers (a socket's or pipe's queue peeked at can
 * take megabytes). Address space for all of it is set aside in the middle of the task's largest
 * gap, where neither its heap nor its top-down mmaps reach; what is needed is mapped there,
 * growing in place.
 */
const SCRATCH_RESERVE = 256 << 20;
const SCRATCH_FIRST = 2 * PAGE_SIZE;
/**
 * Where a sequence keeps its calls' results. The main task stores them at the start of the
 * scratch memory (RESULTS_BYTES of it): its own epilogue, the only code that unmaps it, runs
 * after. Other threads keep them in registers the calls neither take nor clobber, read at the
 * stop that ends the sequence: a thread running on through a sequence when stasis is gone
 * writes no memory from user space, so it cannot fault on scratch memory its main thread has
 * unmapped meanwhile.
 */
const RESULT_REGS = ['rbx', 'rbp', 'r12', 'r13', 'r14', 'r15'] as const;
const RESULTS_BYTES = 256;

/** Bytes of a CPU mask the epilogue gives back (a cpu_set_t prefix covering every possible CPU). */
function cpumaskBytes(): number {
  try {
    const possible = fs.readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
    const last = Math.max(...possible.split(',').map((r) => Number(r.split('-').pop())));
    return Math.max(8, Math.ceil((last + 1) / 64) * 8);
  } catch {
    return 128;
  }
}
const AFFINITY_BYTES = cpumaskBytes();
const SLOT_BYTES = Math.ceil(epilogueMaxBytes(AFFINITY_BYTES) / 16) * 16;
/** Room for sequences below which they are not used (calls are then made one at a time). */
const MIN_SEQUENCE_AREA = 160;

let vdsoTail: number | undefined;

/** stasis's own vDSO image and where its zero tail starts (16-byte aligned; found once). */
function ownVdso(): { image: Buffer; tail: number } | null {
  const image = ownVdsoImage();
  if (!image) return null;
  if (vdsoTail === undefined) {
    let end = image.length;
    while (end > 0 && image[end - 1] === 0) end--;
    vdsoTail = Math.ceil(end / 16) * 16;
  }
  return { image, tail: vdsoTail };
}

/** Where the scratch memory goes: the middle of the largest gap between mappings (2 MiB aligned). */
function scratchAddress(vmas: readonly Pick<Vma, 'start' | 'end' | 'kind'>[]): bigint | undefined {
  const sorted = [...vmas].filter((v) => v.start < 0x800000000000n).sort((x, y) => (x.start < y.start ? -1 : 1));
  let best: { start: bigint; size: bigint } | undefined;
  for (let i = 1; i < sorted.length; i++) {
    const size = sorted[i]!.start - sorted[i - 1]!.end;
    if (!best || size > best.size) best = { start: sorted[i - 1]!.end, size };
  }
  const need = BigInt(SCRATCH_RESERVE) * 4n;
  if (!best || best.size < need) return undefined;
  const align = 1n << 21n;
  return ((best.start + best.size / 2n) / align) * align;
}

export interface GuardOptions {
  /** The process's VMAs (to find the vDSO and a place for scratch memory). */
  vmas: readonly Pick<Vma, 'start' | 'end' | 'kind'>[];
  /** From /proc/PID/status: caught and pending signals (a marker signal must be neither). */
  sigCgt: bigint;
  sigPnd: bigint;
  shdPnd: bigint;
}

/** Slot layouts, the same for every process: by main or not, and marker signal. */
const templates = new Map<string, EpilogueTemplate>();

function slotTemplate(main: boolean, marker: number | undefined): EpilogueTemplate {
  const key = `${main} ${marker}`;
  let t = templates.get(key);
  if (!t) {
    t = new EpilogueTemplate({ unmapBytes: main ? SCRATCH_RESERVE : undefined, affinityBytes: AFFINITY_BYTES, marker });
    templates.set(key, t);
  }
  return t;
}

/** One process whose tasks are injected into the guarded way (see the top of this file). */
export class GuardedProcess {
  /** The task's memory, written through protections (its vDSO page is read-only). */
  private readonly mem: ProcMem;
  private closed = false;
  /** Slots in the padding: 0 for the main task, 1 for the thread being dumped. */
  private readonly slotUsed = [false, false];

  private constructor(readonly tgid: number, private readonly padStart: bigint, private readonly padEnd: bigint,
    private readonly original: Buffer, readonly scratchAt: bigint, readonly marker: number | undefined) {
    this.mem = new ProcMem(tgid);
  }

  /** undefined where the process cannot be guarded (no vDSO, another vDSO image, no room). */
  static open(tgid: number, opts: GuardOptions): GuardedProcess | undefined {
    const own = ownVdso();
    const vdso = opts.vmas.find((v) => v.kind === 'vdso');
    if (!own || !vdso || Number(vdso.end - vdso.start) !== own.image.length) return undefined;
    if (own.image.length - own.tail < 2 * SLOT_BYTES) return undefined;
    const head = nativeBuffer(own.tail, false);
    if (readRanges(tgid, [{ addr: vdso.start, len: own.tail }], head) !== own.tail || !head.equals(own.image.subarray(0, own.tail))) return undefined;
    const scratchAt = scratchAddress(opts.vmas);
    if (scratchAt === undefined) return undefined;
    const busy = opts.sigCgt | opts.sigPnd | opts.shdPnd;
    const marker = MARKER_SIGNALS.find((s) => !(busy & bit(s)));
    return new GuardedProcess(tgid, vdso.start + BigInt(own.tail), vdso.end, own.image.subarray(own.tail), scratchAt, marker);
  }

  /** Write code into the padding (the task's vDSO page is read-only: /proc/PID/mem forces it). */
  write(at: bigint, code: Buffer): void {
    if (at < this.padStart || at + BigInt(code.length) > this.padEnd) throw new RangeError('code beyond the vDSO padding');
    this.mem.write(at, code);
  }

  slot(i: number): bigint {
    return this.padStart + BigInt(i * SLOT_BYTES);
  }

  /** The layout of slot `i` (0: the main task's, whose epilogue unmaps the scratch reserve). */
  template(i: number): EpilogueTemplate {
    return slotTemplate(i === 0, this.marker);
  }

  takeSlot(main: boolean): number {
    const i = main ? 0 : 1;
    if (this.slotUsed[i]) throw new Error(`task slot ${i} of process ${this.tgid} in use`);
    this.slotUsed[i] = true;
    return i;
  }

  freeSlot(i: number): void {
    this.slotUsed[i] = false;
  }

  /** Where sequences go, or undefined when there is no room or no marker signal. */
  get sequenceArea(): { start: bigint; end: bigint } | undefined {
    const start = this.padStart + BigInt(2 * SLOT_BYTES);
    if (this.marker === undefined || this.padEnd - start < BigInt(MIN_SEQUENCE_AREA)) return undefined;
    return { start, end: this.padEnd };
  }

  /** Scratch memory the main task has mapped so far (other threads use it too). */
  scratchBytes = 0;

  /** Let go of the process without touching it (it was killed at the end of the dump). */
  forget(): void {
    if (this.closed) return;
    this.closed = true;
    this.mem.close();
  }

  /** Put the padding back as it was; every task must be back in its own state. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.write(this.padStart, this.original);
    } catch {
      // the process is gone
    } finally {
      this.mem.close();
    }
  }
}

/** A task being asked about itself through guarded injection. */
export class GuardedTask implements TaskCalls {
  readonly savedRegs: Regs;
  readonly savedSigmask: bigint;
  private readonly slot: number;
  private readonly site: bigint;
  private readonly entry: bigint;
  /** With a marker signal: the call stub, the marker tail and the address after its syscall. */
  private readonly stub?: bigint;
  private readonly tail?: bigint;
  private readonly tailEnd?: bigint;
  /** The task's own CPU affinity (also in its slot), and whether stasis pinned it. */
  private readonly ownAffinity: Buffer;
  private readonly pinned: boolean;
  private finished = false;
  /**
   * The task sits in a stop inside the kernel's signal delivery (the seize's event stop, or a
   * marker's signal-delivery stop): registers set there go through the syscall restart logic
   * on the way out, so it can be handed back from there. After syscall-stop stepping it cannot.
   */
  private inSignalStop = true;
  private deferred: number[] = [];
  private readonly callRegs = new Regs();
  /** Where the task's slot is (filled again by openHigh). */
  private readonly slotAt: bigint;
  private readonly resultRegs = new Regs();
  /** Injected syscalls so far. */
  count = 0;

  /**
   * Take over a seized task in a ptrace-stop: from here on it is guarded. `pinTo`: a CPU mask
   * the task runs on while stasis works in it (given back by finish(), or by the epilogue).
   */
  constructor(readonly proc: GuardedProcess, readonly pid: number, readonly main: boolean,
    regs: Regs, sigmask: bigint, pinTo?: Buffer) {
    this.savedRegs = regs.clone();
    this.savedSigmask = sigmask;
    this.slot = proc.takeSlot(main);
    const at = proc.slot(this.slot);
    this.ownAffinity = getAffinity(pid);
    this.pinned = pinTo !== undefined;
    this.slotAt = at;
    const epi = proc.template(this.slot);
    const rel = (offset: number | undefined) => (offset === undefined ? undefined : at + BigInt(offset));
    this.site = at + BigInt(epi.site);
    this.entry = at + BigInt(epi.entry);
    this.stub = rel(epi.stub);
    this.tail = rel(epi.tail);
    this.tailEnd = rel(epi.tailEnd);
    try {
      proc.write(at, epi.fill(at, this.savedRegs.raw, sigmask, this.ownAffinity, proc.scratchAt));
      // From now on the task runs into its epilogue if left alone.
      const r = this.callRegs.copyFrom(this.savedRegs);
      r.set(IP_REG, this.entry);
      r.set(SYSCALL_ORIG_REG, -1n);
      setRegs(pid, r);
      setSigmask(pid, proc.marker !== undefined ? ALL_SIGNALS & ~bit(proc.marker) : ALL_SIGNALS);
      if (pinTo) setAffinity(pid, pinTo);
    } catch (e) {
      this.abandon();
      throw e;
    }
  }

  get tgid(): number {
    return this.proc.tgid;
  }

  call(nr: number, ...args: Arg[]): bigint {
    if (this.finished) throw new Error(`injector for task ${this.pid} already finished`);
    const regs = this.callRegs.copyFrom(this.savedRegs);
    this.count++;
    if (this.stub !== undefined) {
      // One stop: the marker after the call, its result kept in r12.
      setRegs(this.pid, loadCall(regs, this.stub, nr, args));
      return this.runToMarker(SYSCALL_NAME.get(nr) ?? String(nr)).getSigned('r12');
    }
    this.inSignalStop = false;
    setRegs(this.pid, loadCall(regs, this.site, nr, args));
    const name = SYSCALL_NAME.get(nr) ?? String(nr);
    this.step(name);
    this.step(name);
    return getRegs(this.pid, this.resultRegs).getSigned(SYSCALL_RET_REG);
  }

  callChecked(nr: number, ...args: Arg[]): bigint {
    const r = this.call(nr, ...args);
    if (isErrorResult(r)) throw injectedCallError(this.pid, r, nr, args);
    return r;
  }

  /**
   * Several calls with one stop per RESULT_REGS.length of them: their code goes into the
   * sequence area and ends in the task's marker tail.
   */
  callAll(calls: readonly SyscallSpec[]): bigint[] {
    const area = this.proc.sequenceArea;
    if (!area || this.tail === undefined || calls.length === 1) return calls.map(([nr, ...args]) => this.call(nr, ...args));
    const codeAt = area.start;
    const inMemory = this.main;
    if (inMemory) this.ensureScratch();
    const results = this.proc.scratchAt;
    const most = inMemory ? RESULTS_BYTES / 8 : RESULT_REGS.length;
    const out: bigint[] = [];
    let i = 0;
    while (i < calls.length) {
      const k = new MachineCode(codeAt);
      let n = 0;
      // As many calls as fit, leaving room for the final jump.
      while (i + n < calls.length && n < most) {
        const before = k.length;
        const [nr, ...args] = calls[i + n]!;
        k.mov('rax', nr);
        for (let a = 0; a < 6; a++) k.load(SYSCALL_ARG_REGS[a]!, args[a] ?? 0);
        k.syscall();
        if (inMemory) k.storeRax(results + BigInt(8 * n));
        else k.movReg(RESULT_REGS[n]!, 'rax');
        if (codeAt + BigInt(k.length + 5) > area.end) {
          if (n === 0) throw new Error('a syscall sequence does not fit the vDSO padding');
          k.truncate(before);
          break;
        }
        n++;
      }
      k.jmp(this.tail);
      const r = this.runSequence(k.done(), codeAt, calls[i]![0], n);
      if (inMemory) {
        const m = readMemory(this.tgid, results, 8 * n);
        for (let j = 0; j < n; j++) out.push(m.readBigInt64LE(8 * j));
      } else {
        for (let j = 0; j < n; j++) out.push(r.getSigned(RESULT_REGS[j]!));
      }
      i += n;
    }
    return out;
  }

  callAllChecked(calls: readonly SyscallSpec[], mayFail?: ReadonlySet<number>): bigint[] {
    return checkedResults(this.pid, calls, this.callAll(calls), mayFail);
  }

  private runSequence(code: Buffer, codeAt: bigint, first: number, n: number): Regs {
    if (this.finished) throw new Error(`injector for task ${this.pid} already finished`);
    // The task sits in its slot (epilogue, or just past the marker): rewriting the sequence
    // area cannot change what it would run.
    this.proc.write(codeAt, code);
    const regs = this.callRegs.copyFrom(this.savedRegs);
    regs.set(IP_REG, codeAt);
    regs.set(SYSCALL_ORIG_REG, -1n);
    setRegs(this.pid, regs);
    this.count += n;
    return this.runToMarker(`${SYSCALL_NAME.get(first) ?? first} and ${n - 1} more calls`);
  }

  /** Let the task run until it raises the marker at the end of its tail; its registers there. */
  private runToMarker(doing: string): Regs {
    cont(this.pid, 0);
    for (;;) {
      const w = this.expectStopped(waitTask(this.pid)!, doing);
      if (w.event === 0 && w.signal === this.proc.marker) {
        const regs = getRegs(this.pid, this.resultRegs);
        if (regs.get(IP_REG) === this.tailEnd) {
          this.inSignalStop = true;
          return regs;
        }
      }
      this.holdSignal(w);
      cont(this.pid, 0);
    }
  }

  questions(): Questions {
    return new Questions(this);
  }

  /**
   * Open `path` in the main task on a descriptor of stasis's choosing (close-on-exec), one no
   * descriptor of the task has, which its epilogue closes first: a stasis that dies while the
   * task holds it leaves no descriptor behind. openat, dup3 onto that number and close of the
   * first descriptor run as one sequence, with no stop in between. Returns the descriptor, or a
   * negative errno.
   */
  openHigh(path: string, flags: number): number {
    if (!this.main || this.tail === undefined || !this.proc.sequenceArea) return -95; // EOPNOTSUPP
    const fds = new Set(fs.readdirSync(`/proc/${this.tgid}/fd`).map(Number));
    const limit = nativeBuffer(16);
    if (rawSyscall(SYS.prlimit64, this.pid, 7 /* RLIMIT_NOFILE */, 0, addressOf(limit)) < 0n) return -1;
    let fd = Math.min(Number(limit.readBigUInt64LE(0)), 1 << 20) - 1;
    while (fd >= 0 && fds.has(fd)) fd--;
    if (fd < 3) return -24; // EMFILE
    // The epilogue closes it from now on (the slot's code is the same; only that number changes).
    this.proc.write(this.slotAt, this.proc.template(this.slot).fill(this.slotAt, this.savedRegs.raw, this.savedSigmask,
      this.ownAffinity, this.proc.scratchAt, fd));
    const pathAt = this.writeScratch(Buffer.from(`${path}\0`));
    const area = this.proc.sequenceArea;
    const k = new MachineCode(area.start);
    k.call(SYS.openat, -100 /* AT_FDCWD */, pathAt, flags, 0).movReg('rdi', 'rax');
    k.mov('rax', SYS.dup3).mov('rsi', fd).mov('rdx', 0o2000000 /* O_CLOEXEC */).syscall();
    k.storeRax(this.proc.scratchAt);
    k.mov('rax', SYS.close).syscall(); // rdi: openat's descriptor (or its error)
    k.jmp(this.tail);
    this.runSequence(k.done(), area.start, SYS.openat, 3);
    return Number(readMemory(this.tgid, this.proc.scratchAt, 8).readBigInt64LE(0));
  }

  /**
   * At least `bytes` of scratch memory mapped, by the main task, in the range its epilogue
   * unmaps: more is mapped right after what there is.
   */
  private ensureScratch(bytes = SCRATCH_FIRST): void {
    const mapped = this.proc.scratchBytes;
    if (bytes <= mapped) return;
    if (!this.main) throw new Error(`task ${this.pid}: scratch memory is mapped by the process's main task`);
    if (bytes > SCRATCH_RESERVE) throw new RangeError(`task ${this.pid}: ${bytes} bytes of scratch memory asked, at most ${SCRATCH_RESERVE}`);
    const MAP_FIXED_NOREPLACE = 0x100000;
    const len = Math.ceil(Math.max(bytes, SCRATCH_FIRST) / PAGE_SIZE) * PAGE_SIZE - mapped;
    const at = this.proc.scratchAt + BigInt(mapped);
    const r = this.call(SYS.mmap, at, len, 3 /* rw */, 0x22 /* private | anonymous */ | MAP_FIXED_NOREPLACE, -1, 0);
    if (r !== at) throw isErrorResult(r) ? injectedCallError(this.pid, r, SYS.mmap, [at, len]) : new Error(`task ${this.pid}: scratch mapped at 0x${r.toString(16)}`);
    this.proc.scratchBytes += len;
  }

  /** Makes sure the main task has mapped the scratch memory (before other threads use it). */
  mapScratch(): void {
    this.ensureScratch();
  }

  scratch(size: number): bigint {
    if (this.main) this.ensureScratch(RESULTS_BYTES + size);
    else if (RESULTS_BYTES + size > this.proc.scratchBytes) throw new RangeError(`task ${this.pid}: ${size} bytes of scratch memory asked, ${this.proc.scratchBytes - RESULTS_BYTES} there`);
    return this.proc.scratchAt + BigInt(RESULTS_BYTES);
  }

  readScratch(len: number, offset = 0): Buffer {
    if (RESULTS_BYTES + offset + len > this.proc.scratchBytes) throw new RangeError(`task ${this.pid}: scratch read beyond its end`);
    return readMemory(this.tgid, this.proc.scratchAt + BigInt(RESULTS_BYTES + offset), len);
  }

  writeScratch(data: Buffer, offset = 0): bigint {
    const at = this.scratch(offset + data.length) + BigInt(offset);
    writeMemory(this.tgid, at, data);
    return at;
  }

  /**
   * Hand the task back: scratch memory unmapped (main task), then affinity, mask and registers
   * as they were, ending in a PTRACE_EVENT_STOP (so an interrupted syscall restarts). Signals
   * held back meanwhile are sent again.
   */
  finish(): void {
    if (this.finished) return;
    if (this.main && this.proc.scratchBytes) {
      this.callChecked(SYS.munmap, this.proc.scratchAt, this.proc.scratchBytes);
      this.proc.scratchBytes = 0;
    }
    this.restore();
  }

  /** finish() after a failure: as much of it as can be done. */
  abandon(): void {
    if (this.finished) return;
    try {
      if (this.main && this.proc.scratchBytes) this.call(SYS.munmap, this.proc.scratchAt, this.proc.scratchBytes);
    } catch {
      // gone, or not answering: the registers are still put back below if possible
    }
    try {
      this.restore();
    } catch {
      this.finished = true;
      this.proc.freeSlot(this.slot);
    }
  }

  private restore(): void {
    this.finished = true;
    try {
      if (!this.inSignalStop) this.parkInEventStop();
      if (this.pinned) setAffinity(this.pid, this.ownAffinity);
      setSigmask(this.pid, this.savedSigmask);
      setRegs(this.pid, this.savedRegs);
      for (const sig of this.deferred) tgkill(this.tgid, this.pid, sig);
      this.deferred = [];
    } finally {
      this.proc.freeSlot(this.slot);
      if (this.main) this.proc.close();
    }
  }

  /** From any stop, a PTRACE_EVENT_STOP without running user code. */
  private parkInEventStop(): void {
    parkInEventStop(this.pid, (w, doing) => this.expectStopped(w, doing), (w) => this.holdSignal(w));
  }

  private step(name: string): void {
    stepToSyscallStop(this.pid, name, (w, doing) => this.expectStopped(w, doing), (w) => this.holdSignal(w));
  }

  private holdSignal(w: Extract<WaitStatus, { kind: 'stopped' }>): void {
    // Only unblockable signals (SIGSTOP) and a marker signal sent by someone else reach us here.
    if (w.event === 0 && w.signal !== SYSCALL_STOP_SIG) {
      if (w.signal === SIGSTOP || !this.deferred.includes(w.signal)) this.deferred.push(w.signal);
    }
  }

  private expectStopped(w: WaitStatus, doing: string): Extract<WaitStatus, { kind: 'stopped' }> {
    if (w.kind !== 'stopped') {
      this.finished = true;
      this.proc.freeSlot(this.slot);
      throw new Error(`task ${this.pid} ${describeWaitStatus(w)} during injected ${doing}`);
    }
    return w;
  }
}
