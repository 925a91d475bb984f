// x86_64 specifics in one place: syscall numbers, the user_regs_struct layout, and the
// ptrace/kernel constants whose values are architecture-specific or that the rest of sys/ shares.
// Another architecture gets its own copy of this module and nothing else changes.

import fs from 'node:fs';
import path from 'node:path';

export const ARCH = 'x86_64';
export const PAGE_SIZE = 4096;

/** Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
export const SYS = {
  read: 0, write: 1, open: 2, close: 3, stat: 4, fstat: 5, lseek: 8, mmap: 9, mprotect: 10,
  munmap: 11, brk: 12, rt_sigaction: 13, rt_sigprocmask: 14, rt_sigreturn: 15, ioctl: 16,
  pread64: 17, pwrite64: 18, readv: 19, writev: 20, pipe: 22, mremap: 25, msync: 26, mincore: 27,
  madvise: 28, dup: 32, dup2: 33, nanosleep: 35, getitimer: 36, setitimer: 38, getpid: 39,
  socket: 41, connect: 42, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47, shutdown: 48,
  bind: 49, listen: 50, getsockname: 51, getpeername: 52, socketpair: 53, setsockopt: 54,
  getsockopt: 55, clone: 56, fork: 57, execve: 59, exit: 60, wait4: 61, kill: 62, uname: 63,
  fcntl: 72, flock: 73, ftruncate: 77, getcwd: 79, chdir: 80, fchdir: 81, fchmod: 91, fchown: 93,
  umask: 95, getrlimit: 97, ptrace: 101, getuid: 102, getgid: 104, setuid: 105, setgid: 106,
  geteuid: 107, getegid: 108, setpgid: 109, getppid: 110, setsid: 112, setgroups: 116,
  setresuid: 117, getresuid: 118, setresgid: 119, getresgid: 120, getpgid: 121, setfsuid: 122,
  setfsgid: 123, getsid: 124, capget: 125, capset: 126, rt_sigpending: 127,
  rt_sigqueueinfo: 129, sigaltstack: 131, personality: 135, fstatfs: 138, getpriority: 140,
  setpriority: 141, sched_setparam: 142, sched_getparam: 143, sched_setscheduler: 144,
  sched_getscheduler: 145, mlock: 149, mlockall: 151, pivot_root: 155, prctl: 157,
  arch_prctl: 158, setrlimit: 160, chroot: 161, mount: 165, umount2: 166, sethostname: 170,
  setdomainname: 171, gettid: 186, tkill: 200, futex: 202, sched_setaffinity: 203,
  sched_getaffinity: 204, set_thread_area: 205, io_setup: 206, get_thread_area: 211,
  set_tid_address: 218, restart_syscall: 219, timer_create: 222, timer_settime: 223,
  timer_gettime: 224, timer_getoverrun: 225, timer_delete: 226, clock_gettime: 228,
  clock_nanosleep: 230, exit_group: 231, epoll_ctl: 233, tgkill: 234, waitid: 247,
  inotify_add_watch: 254, openat: 257, mkdirat: 258, unlinkat: 263, linkat: 265, symlinkat: 266,
  readlinkat: 267, unshare: 272, set_robust_list: 273, get_robust_list: 274, timerfd_create: 283,
  accept4: 288, signalfd4: 289, eventfd2: 290, epoll_create1: 291, dup3: 292, pipe2: 293,
  inotify_init1: 294, rt_tgsigqueueinfo: 297, prlimit64: 302, setns: 308, process_vm_readv: 310,
  process_vm_writev: 311, kcmp: 312, getrandom: 318, memfd_create: 319, userfaultfd: 323,
  membarrier: 324, statx: 332, getcpu: 309, tee: 276, rt_sigtimedwait: 128, copy_file_range: 326, sendfile: 40, rseq: 334, open_tree: 428, move_mount: 429, pidfd_open: 434, seccomp: 317,
  clone3: 435, close_range: 436, pidfd_getfd: 438, process_madvise: 440,
  timerfd_settime: 286, timerfd_gettime: 287, getxattr: 191,
  inotify_rm_watch: 255, name_to_handle_at: 303, open_by_handle_at: 304,
  shmget: 29, shmat: 30, shmctl: 31, shmdt: 67, semget: 64, semctl: 66, msgget: 68, msgsnd: 69,
  msgrcv: 70, msgctl: 71,
  mknodat: 259, fchownat: 260, fchmodat: 268,
} as const;
export type SyscallName = keyof typeof SYS;

/** Reverse map, for messages ("ptrace(SEIZE, 1234)"). */
export const SYSCALL_NAME: ReadonlyMap<number, string> = new Map(
  Object.entries(SYS).map(([name, nr]) => [nr, name]),
);

/**
 * struct user_regs_struct (arch/x86/include/asm/user_64.h): 27 u64 in this order.
 * CRIU's user_x86_regs_entry uses the same order with short names (bp, bx, ax, ...).
 */
export const USER_REGS = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx',
  'rsi', 'rdi', 'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds',
  'es', 'fs', 'gs',
] as const;
export type RegName = (typeof USER_REGS)[number];
export const USER_REGS_SIZE = USER_REGS.length * 8; // 216

/** Registers that carry a syscall's number, arguments and result. */
export const SYSCALL_ARG_REGS: readonly RegName[] = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'];
export const SYSCALL_NR_REG: RegName = 'rax';
export const SYSCALL_RET_REG: RegName = 'rax';
export const SYSCALL_ORIG_REG: RegName = 'orig_rax';
export const IP_REG: RegName = 'rip';
export const SP_REG: RegName = 'rsp';

/** The `syscall` instruction (0f 05): its length is what rip moves back by on a restart. */
export const SYSCALL_INSN = Buffer.from([0x0f, 0x05]);
export const SYSCALL_INSN_LEN = 2;
/** `syscall; int3`: a trampoline that stops in the tracer right after the syscall returns. */
export const SYSCALL_TRAP_INSNS = Buffer.from([0x0f, 0x05, 0xcc]);
/** cpuid; int3 */
export const CPUID_TRAP_INSNS = Buffer.from([0x0f, 0xa2, 0xcc]);
/** The signal a breakpoint (int3) raises. */
export const BREAKPOINT_SIGNAL = 5;

/** One syscall of a sequence: its number and up to six arguments (absent ones are 0). */
export type SyscallSpec = readonly [nr: number, ...args: (number | bigint)[]];

/** Bytes one call of syscallSequence() takes at most: 7 register loads of 10, syscall, store. */
export const SEQUENCE_CALL_MAX = 7 * 10 + 2 + 7;

/** Register numbers in instruction encodings: rax, then the argument registers in order. */
const LOAD_REGS = [0, 7, 6, 2, 10, 8, 9]; // rax, rdi, rsi, rdx, r10, r8, r9

/** `mov reg, value` at `at` in its shortest form (xor for 0, 32-bit below 2^32, else 64-bit); returns the end. */
function loadRegister(code: Buffer, at: number, reg: number, value: number | bigint): number {
  const high = reg >= 8;
  const low = reg & 7;
  let small = typeof value === 'number' && value >= 0 && value <= 0xffffffff ? value : -1;
  let wide = 0n;
  if (small < 0) {
    wide = BigInt.asUintN(64, BigInt(value));
    if (wide <= 0xffffffffn) small = Number(wide);
  }
  if (small === 0) {
    if (high) code[at++] = 0x45;
    code[at++] = 0x31; // xor r32, r32
    code[at++] = 0xc0 | (low << 3) | low;
  } else if (small > 0) {
    if (high) code[at++] = 0x41;
    code[at++] = 0xb8 + low; // mov r32, imm32 (zero-extends)
    code.writeUInt32LE(small, at);
    at += 4;
  } else {
    code[at++] = high ? 0x49 : 0x48;
    code[at++] = 0xb8 + low; // mov r64, imm64
    code.writeBigUInt64LE(wide, at);
    at += 8;
  }
  return at;
}

/**
 * Machine code that makes `calls` one after another and stops: for each, the number and all
 * six argument registers loaded, `syscall`, and rax stored at `results + 8 * i`; then int3.
 * `at` is where the code will run (the stores are rip-relative).
 */
export function syscallSequence(calls: readonly SyscallSpec[], at: bigint, results: bigint): Buffer {
  const code = Buffer.alloc(calls.length * SEQUENCE_CALL_MAX + 1);
  const toResults = Number(results - at);
  let n = 0;
  for (let i = 0; i < calls.length; i++) {
    const call = calls[i]!;
    n = loadRegister(code, n, LOAD_REGS[0]!, call[0]);
    for (let a = 1; a <= 6; a++) n = loadRegister(code, n, LOAD_REGS[a]!, call[a] ?? 0);
    code[n++] = SYSCALL_INSN[0]!;
    code[n++] = SYSCALL_INSN[1]!;
    // mov [rip + disp32], rax; disp from the end of this 7-byte instruction.
    code[n++] = 0x48;
    code[n++] = 0x89;
    code[n++] = 0x05;
    code.writeInt32LE(toResults + 8 * i - (n + 4), n);
    n += 4;
  }
  code[n++] = 0xcc;
  return code.subarray(0, n);
}

/** ELF note types for PTRACE_GETREGSET. */
export const NT = { PRSTATUS: 1, PRFPREG: 2, X86_XSTATE: 0x202 } as const;
/** The FXSAVE area is 512 bytes; XSAVE's header follows at 512. */
export const FXSAVE_SIZE = 512;
/** Upper bound for the XSAVE area we offer the kernel (it trims iov_len to the real size). */
export const XSAVE_MAX_SIZE = 16384;

/** XSAVE state components (the bit numbers of XCR0 / xstate_bv) that user space can hold. */
export const XFEATURE = {
  FP: 0, SSE: 1, YMM: 2, BNDREGS: 3, BNDCSR: 4, OPMASK: 5, ZMM_HI256: 6, HI16_ZMM: 7, PKRU: 9,
  CET_USER: 11,
} as const;

export interface XstateLayout {
  /** Features enabled in XCR0 (user state). */
  xcr0: bigint;
  /** Size of the standard-format XSAVE area the kernel's NT_X86_XSTATE regset uses. */
  size: number;
  /** Standard-format offset and size of each enabled component (from CPUID leaf 0xD). */
  components: Map<number, { offset: number; size: number }>;
}

let layout: XstateLayout | undefined;

/**
 * The CPU's XSAVE layout. Component offsets in the standard format differ between CPU vendors
 * (AMD packs AVX-512 state right after AVX; Intel leaves room for MPX), so they are read from
 * CPUID leaf 0xD through the kernel's /dev/cpu/0/cpuid (offset = leaf | subleaf << 32).
 * The layout read once is kept in LAYOUT_CACHE (per CPU model, until the next boot) and taken from
 * there by later runs, also where a container's devices cgroup (which runc puts a restoring
 * stasis into) forbids the device.
 */
export function xstateLayout(): XstateLayout {
  if (layout) return layout;
  const model = cpuModel();
  // Read once per boot (/run is a tmpfs) and kept: a later run takes it from there.
  layout = cachedLayout(model);
  if (layout) return layout;
  let fd: number | undefined;
  try {
    fd = fs.openSync('/dev/cpu/0/cpuid', 'r');
  } catch (e) {
    if (!cpuidFallback) throw new Error(`cannot read the CPU's XSAVE layout: /dev/cpu/0/cpuid: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const cpuid = fd === undefined ? cpuidFallback! : (leaf: number, sub: number): number[] => {
    const b = Buffer.alloc(16);
    fs.readSync(fd!, b, 0, 16, BigInt(leaf) | (BigInt(sub) << 32n));
    return [b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8), b.readUInt32LE(12)];
  };
  try {
    const [eax0, ebx0, , edx0] = cpuid(0xd, 0);
    const xcr0 = BigInt(eax0!) | (BigInt(edx0!) << 32n);
    const components = new Map<number, { offset: number; size: number }>();
    for (let i = 2; i < 64; i++) {
      if (!(xcr0 & (1n << BigInt(i)))) continue;
      const [size, offset] = cpuid(0xd, i);
      components.set(i, { offset: offset!, size: size! });
    }
    layout = { xcr0, size: ebx0!, components };
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  try {
    fs.mkdirSync(path.dirname(LAYOUT_CACHE), { recursive: true });
    fs.writeFileSync(LAYOUT_CACHE, JSON.stringify({
      model, xcr0: layout.xcr0.toString(), size: layout.size, components: [...layout.components],
    }));
  } catch {
    // a read-only /run only costs the cache
  }
  return layout;
}

export const LAYOUT_CACHE = '/run/stasis/xstate-layout.json';

let cpuidFallback: ((leaf: number, sub: number) => number[]) | undefined;

/**
 * Where CPUID comes from when the cpuid device cannot be opened and nothing is cached: an
 * injector running the instruction in a task (sys/inject.ts). undefined clears it.
 */
export function setCpuidSource(fn: ((leaf: number, sub: number) => number[]) | undefined): void {
  cpuidFallback = fn;
}

function cpuModel(): string {
  const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const field = (k: string) => new RegExp(`^${k}\\s*: (.*)$`, 'm').exec(info)?.[1] ?? '';
  return `${field('vendor_id')} ${field('cpu family')}/${field('model')}/${field('stepping')} ${field('model name')}`;
}

function cachedLayout(model: string): XstateLayout | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(LAYOUT_CACHE, 'utf8'));
    if (c.model !== model) return undefined;
    return { xcr0: BigInt(c.xcr0), size: c.size, components: new Map(c.components) };
  } catch {
    return undefined;
  }
}

/**
 * CRIU's names for the user_regs_struct fields (user_x86_regs_entry), in the same order as
 * USER_REGS: the image writes them by these names.
 */
export const CRIU_GPREG_NAMES: Record<RegName, string> = {
  r15: 'r15', r14: 'r14', r13: 'r13', r12: 'r12', rbp: 'bp', rbx: 'bx', r11: 'r11', r10: 'r10',
  r9: 'r9', r8: 'r8', rax: 'ax', rcx: 'cx', rdx: 'dx', rsi: 'si', rdi: 'di', orig_rax: 'orig_ax',
  rip: 'ip', cs: 'cs', eflags: 'flags', rsp: 'sp', ss: 'ss', fs_base: 'fs_base',
  gs_base: 'gs_base', ds: 'ds', es: 'es', fs: 'fs', gs: 'gs',
};

/**
 * The FXSAVE (legacy) part of the XSAVE area, user_i387_struct: byte offsets of its fields.
 * st_space is 8 x87 registers of 16 bytes, xmm_space 16 SSE registers of 16 bytes.
 */
export const FXSAVE = {
  cwd: 0, swd: 2, twd: 4, fop: 6, rip: 8, rdp: 16, mxcsr: 24, mxcsr_mask: 28,
  st_space: 32, st_space_words: 32, xmm_space: 160, xmm_space_words: 64,
  /** The XSAVE header follows the legacy area: xstate_bv, then xcomp_bv. */
  xstate_bv: 512, xcomp_bv: 520, header_size: 64,
} as const;

/**
 * Which XSAVE component holds which of CRIU's user_x86_xsave_entry arrays, and the element width
 * of that array in the image (u32 or u64 words).
 */
export const XSAVE_COMPONENT_FIELDS: { feature: number; field: string; word: 4 | 8 }[] = [
  { feature: XFEATURE.YMM, field: 'ymmh_space', word: 4 },
  { feature: XFEATURE.BNDREGS, field: 'bndreg_state', word: 8 },
  { feature: XFEATURE.BNDCSR, field: 'bndcsr_state', word: 8 },
  { feature: XFEATURE.OPMASK, field: 'opmask_reg', word: 8 },
  { feature: XFEATURE.ZMM_HI256, field: 'zmm_upper', word: 8 },
  { feature: XFEATURE.HI16_ZMM, field: 'hi16_zmm', word: 8 },
  { feature: XFEATURE.PKRU, field: 'pkru', word: 4 },
];

/** ERESTART* codes a task interrupted inside a syscall carries in rax (negated). */
export const RESTART_CODES: readonly bigint[] = [-512n, -513n, -514n, -516n];

const ERESTART_RESTARTBLOCK = -516n;

/**
 * Where and how a task interrupted inside a syscall goes on when it returns to user space with no
 * signal handler run — what the kernel's restart logic does: rip back over the `syscall`
 * instruction, rax the call again. `restartBlock`: ERESTART_RESTARTBLOCK resumes through
 * restart_syscall, as the kernel would (its state is the task's in the kernel: right for a task
 * that never left it); otherwise the original call is made again (right across a checkpoint,
 * which loses that state). Undefined when the task was not interrupted in a syscall.
 */
export function restartedSyscall(regs: { rip: bigint; rax: bigint; orig_rax: bigint }, restartBlock: boolean):
  { rip: bigint; rax: bigint } | undefined {
  const rax = BigInt.asIntN(64, regs.rax);
  const orig = BigInt.asIntN(64, regs.orig_rax);
  if (orig < 0n || !RESTART_CODES.includes(rax)) return undefined;
  const again = restartBlock && rax === ERESTART_RESTARTBLOCK ? BigInt(SYS.restart_syscall) : orig;
  return { rip: regs.rip - BigInt(SYSCALL_INSN_LEN), rax: again };
}

/** Encoding numbers of the general registers. */
const GPR: Record<string, number> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7,
  r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

/** A little x86_64 assembler: just the instructions the guarded injection (sys/guard.ts) emits. */
export class MachineCode {
  private buf = Buffer.alloc(512);
  private n = 0;
  /** `at`: the address the code will run at (for relative jumps). */
  constructor(readonly at: bigint) {}

  get length(): number {
    return this.n;
  }
  /** The address of the next instruction. */
  get here(): bigint {
    return this.at + BigInt(this.n);
  }
  private room(k: number): void {
    if (this.n + k > this.buf.length) {
      const b = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(b);
      this.buf = b;
    }
  }
  bytes(...b: number[]): this {
    this.room(b.length);
    for (const x of b) this.buf[this.n++] = x;
    return this;
  }
  /** `reg = value` in the shortest form that leaves the flags alone (mov, never xor). */
  mov(reg: string, value: number | bigint): this {
    const r = GPR[reg]!;
    const v = BigInt.asUintN(64, BigInt(value));
    this.room(10);
    if (v <= 0xffffffffn) {
      if (r >= 8) this.buf[this.n++] = 0x41;
      this.buf[this.n++] = 0xb8 + (r & 7); // mov r32, imm32 (zero-extends)
      this.buf.writeUInt32LE(Number(v), this.n);
      this.n += 4;
    } else {
      this.buf[this.n++] = r >= 8 ? 0x49 : 0x48;
      this.buf[this.n++] = 0xb8 + (r & 7); // movabs r64, imm64
      this.buf.writeBigUInt64LE(v, this.n);
      this.n += 8;
    }
    return this;
  }
  /** `reg = value` always as a 10-byte movabs; returns where the immediate is (to be filled in later). */
  movWide(reg: string, value: bigint = 0n): number {
    const r = GPR[reg]!;
    this.room(10);
    this.buf[this.n++] = r >= 8 ? 0x49 : 0x48;
    this.buf[this.n++] = 0xb8 + (r & 7);
    const at = this.n;
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, value), at);
    this.n += 8;
    return at;
  }
  /** `reg = value`, 0 as `xor reg, reg` (shorter; it clears the flags, which a sequence does not need). */
  load(reg: string, value: number | bigint): this {
    if (value !== 0 && value !== 0n) return this.mov(reg, value);
    const r = GPR[reg]!;
    if (r >= 8) this.bytes(0x45);
    return this.bytes(0x31, 0xc0 | ((r & 7) << 3) | (r & 7));
  }
  /** `mov [addr], rax` with a 64-bit absolute address. */
  storeRax(addr: bigint): this {
    this.bytes(0x48, 0xa3);
    this.room(8);
    this.buf.writeBigUInt64LE(addr, this.n);
    this.n += 8;
    return this;
  }
  /** `reg = other` (64-bit). */
  movReg(reg: string, from: string): this {
    const d = GPR[reg]!;
    const s = GPR[from]!;
    return this.bytes(0x48 | (s >= 8 ? 4 : 0) | (d >= 8 ? 1 : 0), 0x89, 0xc0 | ((s & 7) << 3) | (d & 7));
  }
  syscall(): this {
    return this.bytes(SYSCALL_INSN[0]!, SYSCALL_INSN[1]!);
  }
  /** Loads a syscall's number and arguments (absent arguments are left as they are) and makes it. */
  call(nr: number, ...args: (number | bigint)[]): this {
    this.mov('rax', nr);
    args.forEach((a, i) => this.mov(SYSCALL_ARG_REGS[i]!, a));
    return this.syscall();
  }
  /** `jmp target` (rel32: the target must lie within 2 GiB). */
  jmp(target: bigint): this {
    const rel = target - (this.here + 5n);
    if (rel < -0x80000000n || rel > 0x7fffffffn) throw new RangeError('jump target out of rel32 reach');
    this.bytes(0xe9);
    this.buf.writeInt32LE(Number(rel), this.n);
    this.n += 4;
    return this;
  }
  /** `jmp [rip + disp]` to the 8-byte address stored at `slot`. */
  jmpThrough(slot: bigint): this {
    const rel = slot - (this.here + 6n);
    this.bytes(0xff, 0x25);
    this.buf.writeInt32LE(Number(rel), this.n);
    this.n += 4;
    return this;
  }
  /** `n` bytes of data (8-byte words written little-endian by the caller). */
  data(b: Buffer): this {
    this.room(b.length);
    b.copy(this.buf, this.n);
    this.n += b.length;
    return this;
  }
  /** Drop what was emitted after `length` bytes. */
  truncate(length: number): this {
    this.n = length;
    return this;
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.n));
  }
}

/** The general registers an epilogue loads (all but orig_rax, rip and the segment and base registers). */
export const EPILOGUE_GPRS = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp'] as const;

const SIG_SETMASK = 2;

/**
 * Code that puts a task back exactly as it was, run by the task itself: what it falls into
 * after any injected syscall when stasis is gone. It unmaps stasis's scratch memory, gives back
 * the CPU affinity and the blocked mask, loads every register and jumps to where the task was
 * (resuming an interrupted syscall as the kernel would). It needs no stack and no writable
 * memory: its data (the address to go back to, the mask, the affinity) comes first, then a
 * `syscall` instruction (the site injected calls are made at), then the code.
 *
 * The code is laid out once per slot (EpilogueSpec without the task's values) with every value
 * at a fixed place, and filled in per task: no instruction's length depends on a value.
 */
export class EpilogueTemplate {
  private readonly code: Buffer;
  /** Offsets of the site, the epilogue, the stub, the tail and the address after its syscall. */
  readonly site: number;
  readonly entry: number;
  readonly stub?: number;
  readonly tail?: number;
  readonly tailEnd?: number;
  /** Where the addresses that depend on the slot's place and the scratch reserve go. */
  private readonly unmapAt?: number;
  /** Where the descriptor the main task's epilogue closes goes (-1 when there is none). */
  private readonly closeAt?: number;
  private readonly affinityPtrAt?: number;
  private readonly maskPtrAt: number;
  /** Where each register's immediate is, and the flag-setting bytes. */
  private readonly regAt = new Map<RegName, number>();
  private readonly ofAt: number;
  private readonly ahAt: number;
  private readonly dfAt: number;

  /**
   * The layout for a slot: `unmapBytes`, the length of the scratch reserve the epilogue unmaps
   * (the main task's), `affinityBytes` of CPU mask it gives back, `marker` its stop signal. The
   * same layout serves every process: addresses are filled in per task.
   */
  constructor(readonly spec: { unmapBytes?: number; affinityBytes?: number; marker?: number }) {
    const k = new MachineCode(0n);
    k.data(Buffer.alloc(16 + (spec.affinityBytes ?? 0)));
    this.site = k.length;
    k.syscall();
    this.entry = k.length;
    if (spec.unmapBytes) {
      // The main task's: close the descriptor stasis may have opened in it (its pages file),
      // unmap the scratch reserve.
      k.mov('rax', SYS.close);
      this.closeAt = k.movWide('rdi', -1n);
      k.syscall();
      k.mov('rax', SYS.munmap);
      this.unmapAt = k.movWide('rdi');
      k.mov('rsi', spec.unmapBytes).syscall();
    }
    if (spec.affinityBytes) {
      k.mov('rax', SYS.sched_setaffinity).mov('rdi', 0).mov('rsi', spec.affinityBytes);
      this.affinityPtrAt = k.movWide('rdx');
      k.syscall();
    }
    k.mov('rax', SYS.rt_sigprocmask).mov('rdi', SIG_SETMASK);
    this.maskPtrAt = k.movWide('rsi');
    k.mov('rdx', 0).mov('r10', 8).syscall();
    // Flags: `mov al, A; add al, B` (0x7f + 1 overflows, 0 + 0 does not) sets OF; `mov eax,
    // FLAGS << 8; sahf` the five flags in AH; then cld or std.
    this.ofAt = k.length;
    k.bytes(0xb0, 0, 0x04, 0);
    k.bytes(0xb8);
    this.ahAt = k.length;
    k.bytes(0, 0, 0, 0, 0x9e);
    this.dfAt = k.length;
    k.bytes(0xfc);
    for (const r of EPILOGUE_GPRS) this.regAt.set(r, k.movWide(r));
    this.regAt.set('rax', k.movWide('rax'));
    k.jmpThrough(0n); // rip-relative: to the slot's first word wherever it is
    if (spec.marker !== undefined) {
      this.stub = k.length;
      k.syscall().movReg('r12', 'rax');
      this.tail = k.length;
      // tgkill(getpid(), gettid(), marker): the ids as the task's own pid namespace numbers them.
      k.call(SYS.getpid).movReg('rdi', 'rax').call(SYS.gettid).movReg('rsi', 'rax');
      k.mov('rdx', spec.marker).call(SYS.tgkill);
      this.tailEnd = k.length;
      k.jmp(BigInt(this.entry)); // relative
    }
    this.code = k.done();
  }

  /**
   * The slot's bytes for a task at `at`: its registers (`raw`, a user_regs_struct), mask and
   * affinity, and where the scratch reserve is (when the epilogue unmaps it).
   */
  fill(at: bigint, raw: Buffer, sigmask: bigint, affinity?: Buffer, scratchAt = 0n, closeFd = -1): Buffer {
    const b = Buffer.from(this.code);
    if (this.unmapAt !== undefined) b.writeBigUInt64LE(scratchAt, this.unmapAt);
    if (this.closeAt !== undefined) b.writeBigInt64LE(BigInt(closeFd), this.closeAt);
    if (this.affinityPtrAt !== undefined) b.writeBigUInt64LE(at + 16n, this.affinityPtrAt);
    b.writeBigUInt64LE(at + 8n, this.maskPtrAt);
    const reg = (name: RegName) => raw.readBigUInt64LE(USER_REGS.indexOf(name) * 8);
    const now = { rip: reg('rip'), rax: reg('rax'), orig_rax: reg('orig_rax') };
    const { rip, rax } = restartedSyscall(now, true) ?? now;
    b.writeBigUInt64LE(BigInt.asUintN(64, rip), 0);
    b.writeBigUInt64LE(BigInt.asUintN(64, sigmask), 8);
    if (affinity) affinity.copy(b, 16, 0, this.spec.affinityBytes);
    for (const [name, at] of this.regAt) {
      if (name === 'rax') b.writeBigUInt64LE(BigInt.asUintN(64, rax), at);
      else raw.copy(b, at, USER_REGS.indexOf(name) * 8, USER_REGS.indexOf(name) * 8 + 8);
    }
    const eflags = raw.readUInt32LE(USER_REGS.indexOf('eflags') * 8);
    if (eflags & 0x800) {
      b[this.ofAt + 1] = 0x7f;
      b[this.ofAt + 3] = 1;
    }
    b[this.ahAt + 1] = eflags & 0xff;
    b[this.dfAt] = eflags & 0x400 ? 0xfd : 0xfc;
    return b;
  }
}

/** Bytes an EpilogueTemplate takes at most, with an affinity of `affinityBytes`. */
export function epilogueMaxBytes(affinityBytes: number): number {
  const data = 16 + affinityBytes;
  const calls = (2 * 10 + 2) + (3 * 10 + 2) + (4 * 10 + 2) + (5 * 10 + 2); // close, munmap, sched_setaffinity, rt_sigprocmask
  const flags = 4 + 5 + 1 + 1;
  const loads = (EPILOGUE_GPRS.length + 1) * 10;
  const stubAndTail = (2 + 3) + (5 + 2 + 3) * 2 + 5 + 5 + 2 + 5; // syscall, mov; getpid, gettid; tgkill; jmp
  return data + 2 + calls + flags + loads + 6 + stubAndTail;
}
