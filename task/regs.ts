// Registers of one thread: general-purpose registers, the FPU/SSE/AVX state (XSAVE), and the
// TLS descriptors, as CRIU's thread_info_x86. Dump and restore side by side.

import {
  CRIU_GPREG_NAMES, FXSAVE, IP_REG, NT, SYSCALL_ORIG_REG,
  SYSCALL_RET_REG, USER_REGS, XSAVE_COMPONENT_FIELDS, restartedSyscall, xstateLayout,
} from '../sys/arch.js';
import { Regs, readRegset, setRegset } from '../sys/ptrace.js';

export type GpRegsEntry = Record<string, bigint | number>;
export interface XsaveEntry {
  xstate_bv: bigint;
  [component: string]: bigint | number[] | (number | bigint)[];
}
export interface FpRegsEntry {
  cwd: number; swd: number; twd: number; fop: number; rip: bigint; rdp: bigint; mxcsr: number;
  mxcsr_mask: number; st_space: number[]; xmm_space: number[]; xsave?: XsaveEntry;
}
export interface UserDescEntry {
  entry_number: number; base_addr: number; limit: number; seg_32bit: boolean;
  contents_h: boolean; contents_l: boolean; read_exec_only: boolean; limit_in_pages: boolean;
  seg_not_present: boolean; usable: boolean;
}
export interface ThreadInfoX86 {
  clear_tid_addr: bigint;
  gpregs: GpRegsEntry;
  fpregs: FpRegsEntry;
  tls: UserDescEntry[];
}

const NATIVE_MODE = 1;
/** x86-64 has 3 GDT TLS slots (GDT_ENTRY_TLS_MIN 12); 64-bit programs use fs_base instead. */
const GDT_TLS_FIRST = 12;
const GDT_TLS_COUNT = 3;

/**
 * A task stopped inside an interruptible syscall holds -ERESTART* in rax. Rewind it to re-execute
 * that syscall (rax = the syscall number, rip back over the `syscall` instruction), as the kernel
 * itself does when no handler runs. -ERESTART_RESTARTBLOCK would restart through restart_syscall,
 * whose state lives in the kernel and is lost across a checkpoint, so the original syscall is
 * re-issued instead: a sleep sleeps again rather than failing with EINTR.
 */
export function rewindInterruptedSyscall(regs: Regs): boolean {
  const again = restartedSyscall({ rip: regs.get(IP_REG), rax: regs.get(SYSCALL_RET_REG), orig_rax: regs.get(SYSCALL_ORIG_REG) }, false);
  if (!again) return false;
  regs.set(SYSCALL_RET_REG, again.rax);
  regs.set(IP_REG, again.rip);
  regs.set(SYSCALL_ORIG_REG, -1n);
  return true;
}

/** The area as 32-bit words: a view where it is aligned (the regset buffer is), else a copy. */
function wordsOf(area: Buffer): Uint32Array {
  if (area.byteOffset % 4 === 0) return new Uint32Array(area.buffer, area.byteOffset, area.length >> 2);
  return new Uint32Array(Uint8Array.from(area).buffer, 0, area.length >> 2);
}

function u32Words(words: Uint32Array, off: number, n: number): number[] {
  const out = new Array<number>(n);
  const first = off >> 2;
  for (let i = 0; i < n; i++) out[i] = words[first + i]!;
  return out;
}
/**
 * 64-bit words, as numbers where the high half is zero: mostly zeros (the AVX-512 state of a
 * program that never used it), which the encoder then writes without BigInt work.
 */
function u64Words(area: Buffer, words: Uint32Array, off: number, n: number): (number | bigint)[] {
  const out = new Array<number | bigint>(n);
  for (let i = 0, w = off >> 2; i < n; i++, w += 2) {
    out[i] = words[w + 1] === 0 ? words[w]! : area.readBigUInt64LE(off + i * 8);
  }
  return out;
}

/** The XSAVE area (standard format, as NT_X86_XSTATE gives it) → CRIU's fpregs message. */
export function fpregsFromXsave(area: Buffer): FpRegsEntry {
  const words = wordsOf(area);
  const fp: FpRegsEntry = {
    cwd: area.readUInt16LE(FXSAVE.cwd), swd: area.readUInt16LE(FXSAVE.swd),
    twd: area.readUInt16LE(FXSAVE.twd), fop: area.readUInt16LE(FXSAVE.fop),
    rip: area.readBigUInt64LE(FXSAVE.rip), rdp: area.readBigUInt64LE(FXSAVE.rdp),
    mxcsr: area.readUInt32LE(FXSAVE.mxcsr), mxcsr_mask: area.readUInt32LE(FXSAVE.mxcsr_mask),
    st_space: u32Words(words, FXSAVE.st_space, FXSAVE.st_space_words),
    xmm_space: u32Words(words, FXSAVE.xmm_space, FXSAVE.xmm_space_words),
  };
  if (area.length > FXSAVE.xstate_bv) {
    const layout = xstateLayout();
    const xsave: XsaveEntry = { xstate_bv: area.readBigUInt64LE(FXSAVE.xstate_bv) };
    for (const { feature, field, word } of XSAVE_COMPONENT_FIELDS) {
      const c = layout.components.get(feature);
      if (!c || c.offset + c.size > area.length) continue;
      xsave[field] = word === 4 ? u32Words(words, c.offset, c.size / 4) : u64Words(area, words, c.offset, c.size / 8);
    }
    fp.xsave = xsave;
  }
  return fp;
}

/**
 * `n` register words of `size` bytes into the (zeroed, 8-aligned) area at `offset`; the zeros,
 * most of an AVX-512 state, are left as they are. Stored through word views of the area.
 */
function writeWords(area: Buffer, offset: number, size: 4 | 8, values: readonly (number | bigint)[], n: number): void {
  const aligned = (area.byteOffset + offset) % size === 0;
  const u32 = size === 4 && aligned ? new Uint32Array(area.buffer, area.byteOffset + offset, n) : undefined;
  const u64 = size === 8 && aligned ? new BigUint64Array(area.buffer, area.byteOffset + offset, n) : undefined;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v === 0 || v === 0n) continue;
    if (u32) u32[i] = Number(v);
    else if (u64) u64[i] = typeof v === 'bigint' ? v : BigInt(v);
    else if (size === 4) area.writeUInt32LE(Number(v), offset + i * 4);
    else area.writeBigUInt64LE(BigInt(v), offset + i * 8);
  }
}

/** CRIU's fpregs message → an XSAVE area in this CPU's standard format. */
export function xsaveFromFpregs(fp: FpRegsEntry): Buffer {
  const layout = xstateLayout();
  const area = Buffer.alloc(Math.max(layout.size, FXSAVE.xstate_bv + FXSAVE.header_size));
  area.writeUInt16LE(fp.cwd, FXSAVE.cwd);
  area.writeUInt16LE(fp.swd, FXSAVE.swd);
  area.writeUInt16LE(fp.twd, FXSAVE.twd);
  area.writeUInt16LE(fp.fop, FXSAVE.fop);
  area.writeBigUInt64LE(BigInt(fp.rip), FXSAVE.rip);
  area.writeBigUInt64LE(BigInt(fp.rdp), FXSAVE.rdp);
  area.writeUInt32LE(fp.mxcsr, FXSAVE.mxcsr);
  area.writeUInt32LE(fp.mxcsr_mask, FXSAVE.mxcsr_mask);
  writeWords(area, FXSAVE.st_space, 4, fp.st_space, fp.st_space.length);
  writeWords(area, FXSAVE.xmm_space, 4, fp.xmm_space, fp.xmm_space.length);
  // Legacy x87/SSE state is always valid in the header once restored through XSAVE.
  let xstateBv = 3n;
  if (fp.xsave) {
    xstateBv = BigInt(fp.xsave.xstate_bv);
    for (const { feature, field, word } of XSAVE_COMPONENT_FIELDS) {
      const c = layout.components.get(feature);
      const values = fp.xsave[field] as (number | bigint)[] | undefined;
      if (!values?.length) continue;
      if (!c) {
        if (xstateBv & (1n << BigInt(feature))) {
          throw new Error(`the image holds ${field} state, which this CPU does not have`);
        }
        continue;
      }
      writeWords(area, c.offset, word, values, Math.min(values.length, c.size / word));
    }
    xstateBv &= layout.xcr0;
  }
  area.writeBigUInt64LE(xstateBv, FXSAVE.xstate_bv);
  return area;
}

/** CRIU's gpregs field of each register, in user_regs_struct order. */
const GPREG_FIELDS = USER_REGS.map((r) => [CRIU_GPREG_NAMES[r], r] as const);

export function gpregsFromRegs(regs: Regs): GpRegsEntry {
  const out: GpRegsEntry = {};
  for (let i = 0; i < GPREG_FIELDS.length; i++) out[GPREG_FIELDS[i]![0]] = regs.getValue(GPREG_FIELDS[i]![1]);
  out.mode = NATIVE_MODE;
  return out;
}

export function regsFromGpregs(gp: GpRegsEntry): Regs {
  if (gp.mode !== undefined && Number(gp.mode) !== NATIVE_MODE) {
    throw new Error('the image holds a 32-bit (compat mode) task, which stasis does not restore');
  }
  const regs = new Regs();
  for (const r of USER_REGS) regs.set(r, BigInt(gp[CRIU_GPREG_NAMES[r]] ?? 0));
  return regs;
}

/** The empty TLS slots CRIU records for a 64-bit task (no GDT TLS in use). */
function emptyTls(): UserDescEntry[] {
  return Array.from({ length: GDT_TLS_COUNT }, (_, i) => ({
    entry_number: GDT_TLS_FIRST + i, base_addr: 0, limit: 0, seg_32bit: false, contents_h: false,
    contents_l: false, read_exec_only: true, limit_in_pages: false, seg_not_present: true,
    usable: false,
  }));
}

/**
 * Dump a stopped thread's registers. `regs` are the registers as read when the thread was
 * stopped (before any injection); an interrupted syscall is rewound so the image restores
 * correctly with CRIU as well as with stasis.
 */
export function dumpThreadInfo(tid: number, regs: Regs, clearTidAddr: bigint): ThreadInfoX86 {
  const r = regs.clone();
  rewindInterruptedSyscall(r);
  return {
    clear_tid_addr: clearTidAddr,
    gpregs: gpregsFromRegs(r),
    fpregs: fpregsFromXsave(readRegset(tid, NT.X86_XSTATE)),
    tls: emptyTls(),
  };
}

/**
 * The registers a restored thread resumes with. A still-interrupted syscall (images from other
 * dumpers) is rewound the same way; orig_rax = -1 keeps the kernel from restarting anything else.
 */
export function restoredRegs(ti: ThreadInfoX86): Regs {
  const r = regsFromGpregs(ti.gpregs);
  if (!rewindInterruptedSyscall(r)) r.set(SYSCALL_ORIG_REG, -1n);
  return r;
}

/** Put the FPU/vector state back (the thread must be ptrace-stopped). */
export function restoreFpregs(tid: number, ti: ThreadInfoX86): void {
  setRegset(tid, NT.X86_XSTATE, xsaveFromFpregs(ti.fpregs));
}

