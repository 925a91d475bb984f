// A process's address space: the VMA list and the mm fields (code/data/brk/stack/arg/env bounds,
// auxv, exe), i.e. mm-PID.img. Page contents are in pages.ts. Dump and restore side by side.
//
// Restore rebuilds the address space of a task that starts as a copy of the seed (itself a copy
// of stasis): everything but the vDSO is unmapped through the vDSO's own syscall instruction, a
// trampoline page takes over, the vDSO/vvar pages of the running kernel are moved to where the
// task had them (mremap keeps them working: glibc holds pointers into the vDSO), then every VMA
// is mapped at its address and the mm fields are set with PR_SET_MM_MAP.

import fs from 'node:fs';
import { PAGE_SIZE, SYS, type SyscallSpec } from '../sys/arch.js';
import { Injector, MAP, PROT, type Questions } from '../sys/inject.js';
import { getRseqConfiguration } from '../sys/ptrace.js';
import {
  MADV_DONTFORK, MADV_DONTNEED, MADV_WIPEONFORK, MAP_DROPPABLE, MAP_LOCKED, type ProcStat, type ProcStatus, type SmapsVma, type VmaRange, readMapRanges, vmFlagsFdFlags, vmFlagsIoOrPfn, vmFlagsMadv,
  vmFlagsMapFlags, madvAdvices, parseAuxv, readAuxv, readExe,
} from '../sys/proc/index.js';
import { regFileEntry, openInTask, dumpPathFile, openRegEntry, noteReachable, type RegOpenContext } from '../files/reg.js';
import type { FileTable } from '../files/table.js';
import { FD_TYPE_REG, zeroFown } from '../files/reg.js';
import { FD_TYPE_MEMFD, dumpMemfdInode } from '../files/memfd.js';
import { O_RDONLY, O_RDWR } from '../sys/fcntl.js';

/** vma_entry.status bits (CRIU's VMA_AREA_* / VMA_* values). */
export const VMA = {
  REGULAR: 1 << 0, STACK: 1 << 1, VSYSCALL: 1 << 2, VDSO: 1 << 3, HEAP: 1 << 5,
  FILE_PRIVATE: 1 << 6, FILE_SHARED: 1 << 7, ANON_SHARED: 1 << 8, ANON_PRIVATE: 1 << 9,
  SYSVIPC: 1 << 10, SOCKET: 1 << 11, VVAR: 1 << 12, AIORING: 1 << 13, MEMFD: 1 << 14,
  SHSTK: 1 << 15, GUARD: 1 << 16, UPROBES: 1 << 17,
} as const;

const PAGE = BigInt(PAGE_SIZE);
/** The huge page size of x86_64 (hugetlb SysV segments are attached in whole ones). */
const HUGE_PAGE = 2n << 20n;
const TASK_SIZE = 0x7ffffffff000n;
/** Room kept for the injector's scratch memory while the address space is rebuilt. */
const SCRATCH_RESERVE = 16n << 20n;
const PR_SET_MM = 35;
const PR_SET_MM_MAP = 14;
const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const PR_GET_THP_DISABLE = 42;
const PR_SET_THP_DISABLE = 41;
/** Linux 6.4: the auxv the task was started with (mm->saved_auxv), as /proc/PID/auxv shows it. */
const PR_GET_AUXV = 0x41555856;
/** Room for mm->saved_auxv (AT_VECTOR_SIZE words on x86-64 is 52; the call says if more). */
const AUXV_BYTES = 64 * 8;
const RSEQ_FLAG_UNREGISTER = 1;
const MREMAP_MAYMOVE = 1;
const MREMAP_FIXED = 2;
const SHM_RDONLY = 0o10000;
const SHM_EXEC = 0o100000;

export interface VmaEntry {
  start: bigint;
  end: bigint;
  pgoff: bigint;
  shmid: bigint;
  prot: number;
  flags: number;
  status: number;
  fd: bigint;
  madv?: bigint;
  fdflags?: number;
}

export interface MmEntry {
  mm_start_code: bigint; mm_end_code: bigint; mm_start_data: bigint; mm_end_data: bigint;
  mm_start_stack: bigint; mm_start_brk: bigint; mm_brk: bigint; mm_arg_start: bigint;
  mm_arg_end: bigint; mm_env_start: bigint; mm_env_end: bigint; exe_file_id: number;
  mm_saved_auxv: bigint[]; vmas: VmaEntry[]; dumpable?: number; thp_disabled?: boolean;
}

/** A private mapping, or a droppable one (a private mapping whose pages the kernel may free). */
export function isPrivate(v: VmaEntry): boolean {
  return (v.flags & (MAP.PRIVATE | MAP_DROPPABLE)) !== 0;
}

/**
 * The mapping type mmap takes for a VMA: MAP_SHARED, MAP_PRIVATE, or MAP_DROPPABLE, which is a
 * type of its own (never or-ed with MAP_PRIVATE: mmap says EINVAL to that).
 */
function mapType(shared: boolean, flags: number): number {
  if (shared) return MAP.SHARED;
  return flags & MAP_DROPPABLE ? MAP_DROPPABLE : MAP.PRIVATE;
}

/** VMAs whose page contents belong in the image (private memory; not the kernel's vDSO/vvar). */
export function hasDumpablePages(v: VmaEntry): boolean {
  return isPrivate(v) && !(v.status & (VMA.VSYSCALL | VMA.VVAR | VMA.VDSO))
    && (v.status & (VMA.ANON_PRIVATE | VMA.FILE_PRIVATE)) !== 0;
}

/** How an error names a VMA of an image: `vma 0x7f...-0x7f...`. */
export function vmaName(v: Pick<VmaEntry, 'start' | 'end'>): string {
  return `vma 0x${BigInt(v.start).toString(16)}-0x${BigInt(v.end).toString(16)}`;
}

/** Runs `fn` for VMA `v`, naming the VMA in what it throws. */
function forVma<T>(v: VmaEntry, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${vmaName(v)}: ${(e as Error).message}`, { cause: e });
  }
}

/** The kinds of VMA a restore can map (or leaves to the kernel: vDSO, vvar, vsyscall). */
const RESTORABLE = VMA.VSYSCALL | VMA.VDSO | VMA.VVAR | VMA.FILE_PRIVATE | VMA.FILE_SHARED | VMA.ANON_PRIVATE | VMA.SYSVIPC;

/**
 * Refuses a VMA list no address space can have (a damaged mm image), before any task exists:
 * mapped as it is, it would fail half-way through a restore with a bare ENOMEM or EINVAL.
 */
export function checkVmas(vmas: readonly VmaEntry[]): void {
  let prevEnd = 0n;
  for (const v of vmas) {
    const start = BigInt(v.start);
    const end = BigInt(v.end);
    const bad = (why: string) => new Error(`${vmaName(v)}: ${why}`);
    if (start >= end) throw bad('ends before it starts');
    if (start % PAGE || end % PAGE) throw bad('not page-aligned');
    if (!(v.status & RESTORABLE)) throw bad(`status 0x${v.status.toString(16)}, which stasis cannot restore yet`);
    if (v.prot & ~(PROT.READ | PROT.WRITE | PROT.EXEC)) throw bad(`protection 0x${v.prot.toString(16)} is not one mmap takes`);
    if (v.status & VMA.VSYSCALL) continue; // the kernel's, above user space
    if (end > TASK_SIZE) throw bad('beyond the end of user space');
    if (start < prevEnd) throw bad('overlaps the VMA before it (or the list is out of order)');
    if (v.status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED) && BigInt(v.pgoff) % PAGE) throw bad(`file offset ${v.pgoff} not page-aligned`);
    prevEnd = end;
  }
}

function unsupported(pid: number, v: SmapsVma, what: string): Error {
  return new Error(`task ${pid} maps ${what} at 0x${v.start.toString(16)}-0x${v.end.toString(16)}, which stasis cannot dump yet`);
}

/**
 * The VMA list of a task, as vma_entry messages; file mappings are registered in `files`.
 * `segments` holds the SysV shared memory segments dumped with the task's ipc namespace (id →
 * size); without it, an attached segment cannot be dumped.
 */
export function dumpVmas(pid: number, smaps: readonly SmapsVma[], files: FileTable,
  segments?: ReadonlyMap<number, number>): VmaEntry[] {
  const out: VmaEntry[] = [];
  for (const v of smaps) {
    const mapFlags = vmFlagsMapFlags(v.vmFlags);
    const flags = mapType(v.shared, mapFlags) | mapFlags;
    const add = (flags: number, status: number, pgoff = 0n, shmid = 0n, fdflags?: number) => {
      out.push(vmaEntry(v, flags, status, pgoff, shmid, fdflags));
    };
    switch (v.kind) {
      case 'vsyscall':
        add(flags | MAP.ANONYMOUS, VMA.VSYSCALL | VMA.ANON_PRIVATE);
        continue;
      case 'vvar':
      case 'vvar_vclock': {
        // The kernel ≥ 6.13 splits vvar in two; CRIU records them as one VVAR area.
        const prev = out[out.length - 1];
        if (prev && prev.status & VMA.VVAR && prev.end === v.start) {
          prev.end = v.end;
          continue;
        }
        add(flags | MAP.ANONYMOUS, VMA.REGULAR | VMA.ANON_PRIVATE | VMA.VVAR);
        continue;
      }
      case 'vdso':
        add(flags | MAP.ANONYMOUS, VMA.REGULAR | VMA.VDSO | VMA.ANON_PRIVATE);
        continue;
      case 'heap':
      case 'stack':
      case 'anonymous':
      case 'anon-named':
        if (v.shared) throw unsupported(pid, v, 'shared anonymous memory');
        add(flags | MAP.ANONYMOUS, VMA.REGULAR | VMA.ANON_PRIVATE | (v.kind === 'heap' ? VMA.HEAP : 0));
        continue;
      case 'file': {
        if (vmFlagsIoOrPfn(v.vmFlags)) throw unsupported(pid, v, `device memory of ${v.path}`);
        const fdflags = vmFlagsFdFlags(v.vmFlags);
        // A removed file is remapped (files/reg.ts: a ghost, or a link with --link-remap).
        const id = files.once(`map:${v.devMajor}:${v.devMinor}:${v.inode}:${fdflags}`, () => dumpPathFile(pid,
          v.deleted ? `${v.path} (deleted)` : v.path, mapFilePath(pid, v), fdflags, 0n, files.remapContext(),
          `the mapping at 0x${v.start.toString(16)} of task ${pid}`));
        add(flags, VMA.REGULAR | (v.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE), v.pgoff, BigInt(id), fdflags);
        continue;
      }
      case 'shmem':
      case 'memfd': {
        // Shared anonymous memory is a shmem file too: both are kept as CRIU keeps them, a
        // memfd inode (memfd.img, contents once however many processes map it) and a memfd
        // file that the VMA names.
        const inodeId = dumpMemfdInode(mapFilePath(pid, v), v.kind === 'shmem' ? '/dev/zero' : v.name ?? '', {
          memo: files.memo,
          addImageEntry: (image, message, extra) => files.addImageEntry(image, message, extra),
          writeSharedPages: (shmid, runs, data, objectPages) => files.writeSharedPages(shmid, runs, data, objectPages),
        });
        const id = files.once(`memfd-map:${inodeId}`, () => ({
          type: FD_TYPE_MEMFD, field: 'memfd',
          entry: { flags: O_RDWR, pos: 0n, fown: zeroFown(), inode_id: inodeId },
        }));
        add(flags & ~MAP.ANONYMOUS, VMA.REGULAR | VMA.MEMFD | (v.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE),
          v.pgoff, BigInt(id), O_RDWR);
        continue;
      }
      case 'sysv': {
        // The inode number of an attached segment is its id. An attachment may be in parts
        // (split by mprotect, cut by munmap): each VMA keeps its offset in the segment.
        const size = segments?.get(v.inode);
        if (size === undefined) throw unsupported(pid, v, `SysV shared memory ${v.inode} of an ipc namespace it does not own`);
        if (v.pgoff + (v.end - v.start) > attachedLength(size, HUGE_PAGE)) {
          throw unsupported(pid, v, `SysV shared memory ${v.inode} beyond its ${size} bytes`);
        }
        // As CRIU has it: a shared anonymous mapping (its restore attaches it as such), opened
        // read-write or read-only as attached.
        add(flags | MAP.ANONYMOUS, VMA.REGULAR | VMA.ANON_SHARED | VMA.SYSVIPC, v.pgoff, BigInt(v.inode), vmFlagsFdFlags(v.vmFlags));
        continue;
      }
      default:
        throw unsupported(pid, v, `a ${v.kind} mapping (${v.path})`);
    }
  }
  return out;
}

/** The address space shmat() gives a segment of `size` bytes: whole pages of `unit` bytes. */
function attachedLength(size: number | bigint, unit = PAGE): bigint {
  return (BigInt(size) + unit - 1n) / unit * unit;
}

function vmaEntry(v: SmapsVma, flags: number, status: number, pgoff: bigint, shmid: bigint, fdflags?: number): VmaEntry {
  const e: VmaEntry = { start: v.start, end: v.end, pgoff, shmid, prot: v.prot, flags, status, fd: -1n };
  const madv = vmFlagsMadv(v.vmFlags);
  if (madv) e.madv = BigInt(madv);
  if (fdflags !== undefined) e.fdflags = fdflags;
  return e;
}

/** The task's map_files link of a VMA (opens the mapped file whatever its path). */
function mapFilePath(pid: number, v: SmapsVma): string {
  return `/proc/${pid}/map_files/${v.start.toString(16)}-${v.end.toString(16)}`;
}

/** auxv as CRIU keeps it: the words up to (not including) the AT_NULL pair. */
function savedAuxv(words: readonly bigint[]): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i + 1 < words.length && words[i] !== 0n; i += 2) out.push(words[i]!, words[i + 1]!);
  return out;
}

/**
 * What only the task can tell of its mm (brk, dumpable, THP, auxv), asked through `questions`
 * of its injector. The auxv is read from /proc where the kernel has no PR_GET_AUXV.
 */
export function askMm(questions: Questions, pid: number, status: Pick<ProcStatus, 'thpEnabled'>): () => MmAnswers {
  const brk = questions.ask(SYS.brk, 0);
  const dumpable = questions.ask(SYS.prctl, PR_GET_DUMPABLE);
  // status says whether THP is disabled (THP_enabled: 0 once PR_SET_THP_DISABLE is set), where printed.
  const thp = status.thpEnabled === undefined ? questions.ask(SYS.prctl, PR_GET_THP_DISABLE) : undefined;
  const auxvRoom = questions.room(AUXV_BYTES);
  const auxv = questions.askMay(SYS.prctl, PR_GET_AUXV, auxvRoom.addr, AUXV_BYTES, 0, 0);
  return () => {
    const size = questions.result(auxv);
    return {
      brk: BigInt.asUintN(64, questions.result(brk)),
      dumpable: Number(questions.result(dumpable)),
      thpDisabled: thp === undefined ? !status.thpEnabled : questions.result(thp) !== 0n,
      auxv: size > 0n && size <= BigInt(AUXV_BYTES)
        ? parseAuxv(questions.answer(auxvRoom.offset, Number(size)))
        : readAuxv(pid),
    };
  };
}

export interface MmAnswers {
  brk: bigint;
  dumpable: number;
  thpDisabled: boolean;
  /** The auxv's words as saved by the kernel (zeros after the AT_NULL pair). */
  auxv: bigint[];
}

export function dumpMm(pid: number, asked: MmAnswers, stat: ProcStat, vmas: VmaEntry[], files: FileTable): MmEntry {
  const exe = readExe(pid);
  const exeId = files.once(`exe:${exe}`, () => ({
    type: FD_TYPE_REG, field: 'reg', entry: regFileEntry(exe, `/proc/${pid}/exe`, O_RDONLY, 0n),
  }));
  return {
    mm_start_code: stat.startCode, mm_end_code: stat.endCode,
    mm_start_data: stat.startData, mm_end_data: stat.endData,
    mm_start_stack: stat.startStack, mm_start_brk: stat.startBrk,
    mm_brk: asked.brk,
    mm_arg_start: stat.argStart, mm_arg_end: stat.argEnd,
    mm_env_start: stat.envStart, mm_env_end: stat.envEnd,
    exe_file_id: exeId,
    mm_saved_auxv: savedAuxv(asked.auxv),
    vmas,
    dumpable: asked.dumpable,
    thp_disabled: asked.thpDisabled,
  };
}

// ---------------------------------------------------------------------------------------------
// Restore

/** A free, page-aligned range of `len` bytes avoiding every range in `busy`, searched from `from`. */
function freeRange(busy: { start: bigint; end: bigint }[], len: bigint, from = 0x10000000n): bigint {
  const sorted = [...busy].sort((a, b) => (a.start < b.start ? -1 : 1));
  let at = from;
  for (const b of sorted) {
    if (b.end <= at) continue;
    if (b.start >= at + len) break;
    at = (b.end + PAGE - 1n) & ~(PAGE - 1n);
  }
  if (at + len > TASK_SIZE) throw new Error('no free address range for the restore trampoline');
  return at;
}

export interface RestoreMmFiles {
  /** The file_entry (reg) a VMA's shmid names. */
  regFile(id: number): Record<string, unknown>;
  /**
   * The images of the dump, for files whose names were removed (remap-fpath.img, ghosts), and
   * the task's PID as its /proc names it (where later openers reach such a file it mapped).
   */
  imageEntries?(image: string): { message: Record<string, any>; extra?: Uint8Array }[];
  vpid?: number;
  /**
   * A descriptor, in the task, of the memfd / shared memory a VMA maps (file id `id`): made on
   * first use, reached again through the mapping of whoever made it.
   */
  memfdFd?(inj: Injector, id: number, vma: VmaEntry): number;
  /** The SysV segment of id `shmid` as the ipc namespace has it again: its size and page size. */
  sysvSegment?(shmid: number): { size: bigint; pageSize: bigint } | undefined;
}

/** What the page filler needs after the VMAs exist. */
export interface MappedSpace {
  /** VMAs mapped writable only so the pages can be filled, to be mprotect()ed afterwards. */
  tightenAfterFill: VmaEntry[];
  /**
   * What the address space holds now, besides the injector's scratch memory and trampoline: the
   * VMAs mapped, and the kernel's vDSO areas where they were put (named as maps names them).
   */
  layout: VmaRange[];
  /**
   * The VMAs a task cloned from its restored parent kept as they were (InheritedSpace): its
   * pages there are the parent's, shared copy-on-write, until written.
   */
  kept: readonly VmaEntry[];
}

/**
 * Tear down the inherited address space and map the dumped VMAs (without contents).
 * `willFill(v)` says whether pages will be written into v (so it must be writable for now).
 */
export function restoreVmas(inj: Injector, vmas: readonly VmaEntry[], files: RestoreMmFiles,
  willFill: (v: VmaEntry) => boolean, inherited?: InheritedSpace): MappedSpace {
  const pid = inj.pid;
  // rseq points into the seed's TLS, about to vanish: unregister first, or the kernel kills the
  // task when it next touches the area.
  const rseq = getRseqConfiguration(pid);
  if (rseq.rseqAbiSize) {
    inj.callChecked(SYS.rseq, rseq.rseqAbiPointer, rseq.rseqAbiSize, RSEQ_FLAG_UNREGISTER, rseq.signature);
  }
  // A fork's address space is its parent's: known, not read from maps (it may hold less than
  // that: a VMA the parent keeps from forks; what is not there is not unmapped).
  const current = inherited?.layout ? [
    ...inherited.layout,
    ...(inherited.scratch ? [{ start: inherited.scratch.addr, end: inherited.scratch.addr + BigInt(inherited.scratch.len), special: '' }] : []),
    ...(inherited.trampoline !== undefined ? [{ start: inherited.trampoline, end: inherited.trampoline + PAGE, special: '' }] : []),
  ] : readMapRanges(pid);
  const kernelAreas = current.filter((v) => ['[vdso]', '[vvar]', '[vvar_vclock]'].includes(v.special));
  const wanted = vmas.filter((v) => !(v.status & VMA.VSYSCALL));
  const kept = inherited ? keptVmas(wanted, inherited.vmas) : [];
  const busy = [...wanted, ...kernelAreas];
  // The injector's scratch memory goes with the rest: new scratch goes to a range no dumped
  // VMA uses, so mapping those with MAP_FIXED can never land on it; the trampoline likewise. A
  // child of a restored parent has the parent's copies there already, and keeps them.
  const scratch = freeRange(busy, SCRATCH_RESERVE);
  const reserved = [...busy, { start: scratch, end: scratch + SCRATCH_RESERVE }];
  const trampolineAt = freeRange(reserved, PAGE);
  const adopted = inherited?.scratch?.addr === scratch && inherited.trampoline === trampolineAt
    ? [{ start: scratch, end: scratch + BigInt(inherited.scratch.len) }, { start: trampolineAt, end: trampolineAt + PAGE }] : [];
  // One munmap per gap between the kernel's areas and the VMAs kept, not one per inherited VMA
  // (a copy of stasis has hundreds).
  let from = 0n;
  const stays = [...kernelAreas, ...kept, ...adopted, { start: TASK_SIZE, end: TASK_SIZE }].sort((a, b) => (a.start < b.start ? -1 : 1));
  const unmaps: SyscallSpec[] = [];
  for (const k of stays) {
    if (k.start > from && current.some((v) => v.special !== '[vsyscall]' && v.start < k.start && v.end > from)) {
      unmaps.push([SYS.munmap, from, Number(k.start - from)]);
    }
    from = k.end;
  }
  // Together where the parent's trampoline came with the fork (its page stays): one stop.
  if (adopted.length) inj.adoptScratchAndTrampoline(inherited!.scratch!, trampolineAt, inherited!.sequenceArea);
  inj.callAllChecked(unmaps);
  let trampoline = trampolineAt;
  if (!adopted.length) {
    inj.relocateScratch(scratch);
    trampoline = inj.useTrampoline(trampolineAt);
  }
  const kernelPlaced = placeVdso(inj, wanted, kernelAreas, [...reserved, { start: trampoline, end: trampoline + PAGE }]);

  const fds = new Map<bigint, number>();
  const regCtx: RegOpenContext | undefined = files.imageEntries
    && { inj, imageEntries: files.imageEntries, regFile: (id) => files.regFile(id) };
  /** Files opened for mappings, and the first mapping of each (a removed one is reached there later). */
  const mappedFiles = new Map<bigint, { reg: Record<string, unknown>; v: VmaEntry }>();
  const tighten: VmaEntry[] = [];
  /** Per advice, the range of adjacent VMAs it is yet to be given to. */
  const advised = new Map<number, { start: bigint; end: bigint }>();
  // The mmaps and madvises go out together (one stop per dozen where the task has a code area);
  // what needs a result first (a file opened, a SysV segment attached) is made on its own.
  const calls: SyscallSpec[] = [];
  try {
    for (const v of wanted) {
      if (v.status & (VMA.VDSO | VMA.VVAR) || kept.includes(v)) continue;
      const len = Number(v.end - v.start);
      const fill = willFill(v);
      const prot = v.prot | (fill ? PROT.WRITE : 0);
      const extra = v.flags & ~(MAP.SHARED | MAP.PRIVATE | MAP_DROPPABLE | MAP.ANONYMOUS);
      if (v.status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) {
        let fd = fds.get(v.shmid);
        if (fd === undefined) {
          fd = forVma(v, () => {
            if (v.status & VMA.MEMFD) {
              if (!files.memfdFd) throw new Error('maps a memfd, which this restore cannot make');
              return files.memfdFd(inj, Number(v.shmid), v);
            }
            const reg = files.regFile(Number(v.shmid));
            mappedFiles.set(v.shmid, { reg, v });
            return regCtx ? openRegEntry(regCtx, reg, v.fdflags ?? O_RDONLY) : openInTask(inj, String(reg.name), v.fdflags ?? O_RDONLY);
          });
          fds.set(v.shmid, fd);
        }
        const shared = v.status & VMA.FILE_SHARED ? MAP.SHARED : MAP.PRIVATE;
        calls.push([SYS.mmap, v.start, len, prot, shared | MAP.FIXED | extra, fd, v.pgoff]);
      } else if (v.status & VMA.ANON_PRIVATE) {
        calls.push([SYS.mmap, v.start, len, prot, mapType(false, v.flags) | MAP.ANONYMOUS | MAP.FIXED | extra, -1, 0]);
      } else if (v.status & VMA.SYSVIPC) {
        // The segment exists again in the task's ipc namespace (sysv-ipc.ts), under its old id.
        const flags = (v.prot & PROT.WRITE ? 0 : SHM_RDONLY) | (v.prot & PROT.EXEC ? SHM_EXEC : 0);
        forVma(v, () => {
          const seg = files.sysvSegment?.(Number(v.shmid));
          const total = seg ? attachedLength(seg.size, seg.pageSize) : BigInt(len);
          if (v.pgoff === 0n && BigInt(len) === total) {
            const at = inj.callChecked(SYS.shmat, v.shmid, v.start, flags);
            if (at !== v.start) throw new Error(`SysV shared memory ${v.shmid} attached at 0x${at.toString(16)}`);
          } else {
            // A part of an attachment: the segment attached whole where the kernel likes, the
            // part moved into place (keeping its offset in the segment), the rest detached.
            const at = inj.callChecked(SYS.shmat, v.shmid, 0, flags);
            inj.callChecked(SYS.mremap, at + v.pgoff, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v.start);
            if (v.pgoff > 0n) inj.callChecked(SYS.munmap, at, v.pgoff);
            const tail = v.pgoff + BigInt(len);
            if (tail < total) inj.callChecked(SYS.munmap, at + tail, total - tail);
          }
          const given = PROT.READ | (v.prot & (PROT.WRITE | PROT.EXEC));
          if (given !== v.prot) inj.callChecked(SYS.mprotect, v.start, len, v.prot);
        });
      } else {
        throw new Error(`${vmaName(v)}: status 0x${v.status.toString(16)}, which stasis cannot restore yet`);
      }
      for (const advice of v.madv ? madvAdvices(v.madv) : []) {
        // One call for a run of adjacent VMAs with the same advice (a thread's stack and its
        // guard page, the stacks of threads made one after another).
        const run = advised.get(advice);
        if (run && run.end === v.start) {
          run.end = v.end;
        } else {
          if (run) calls.push([SYS.madvise, run.start, Number(run.end - run.start), advice]);
          advised.set(advice, { start: v.start, end: v.end });
        }
      }
      if (prot !== v.prot) tighten.push(v);
    }
    for (const [advice, run] of advised) calls.push([SYS.madvise, run.start, Number(run.end - run.start), advice]);
    inj.callAllChecked(calls);
    if (regCtx && files.vpid !== undefined) {
      for (const { reg, v } of mappedFiles.values()) {
        const link = `map_files/${v.start.toString(16)}-${v.end.toString(16)}`;
        noteReachable(regCtx, reg, `/proc/${files.vpid}/${link}`, `/proc/${inj.pid}/${link}`);
      }
    }
  } finally {
    for (const fd of fds.values()) inj.call(SYS.close, fd);
  }
  if (inherited) dropParentPages(inj, kept, inherited.filled, inherited.ownFilled);
  return {
    tightenAfterFill: tighten,
    kept,
    layout: [...wanted.filter((v) => !(v.status & (VMA.VDSO | VMA.VVAR))).map((v) => ({ start: v.start, end: v.end, special: '' })), ...kernelPlaced],
  };
}

/**
 * A task cloned from a parent whose address space is already restored starts with the parent's
 * VMAs. Those it has too, identical and private (most of them, in a forked tree), stay: no
 * unmapping, opening and mapping again. Their pages are the parent's until dropped.
 */
export interface InheritedSpace {
  /** The parent's VMAs, as its image has them. */
  vmas: readonly VmaEntry[];
  /** Page runs the parent's image filled (first address, bytes). */
  filled: readonly { vaddr: bigint; len: number }[];
  /** Page runs this task's own image will fill (which need no dropping: they are overwritten). */
  ownFilled: readonly { vaddr: bigint; len: number }[];
  /** The parent's scratch memory and trampoline when the child was cloned (the fork copied them). */
  scratch?: { addr: bigint; len: number };
  trampoline?: bigint;
  /** callAll's code area in that trampoline's page, if it has one. */
  sequenceArea?: bigint;
  /** The parent's address space besides those (its MappedSpace.layout): the child's, not read again. */
  layout?: readonly VmaRange[];
}

/** Whether two VMA entries (decoded alike) describe the same mapping. */
function sameVma(a: VmaEntry, b: VmaEntry): boolean {
  return a.start === b.start && a.end === b.end && a.pgoff === b.pgoff && a.shmid === b.shmid && a.prot === b.prot
    && a.flags === b.flags && a.status === b.status && (a.madv ?? 0n) === (b.madv ?? 0n) && (a.fdflags ?? 0) === (b.fdflags ?? 0);
}

/** A parent's VMAs by start address, made once for all its children. */
const byStartOf = new WeakMap<readonly VmaEntry[], Map<bigint, VmaEntry>>();

const NOT_INHERITED = (1n << BigInt(MADV_DONTFORK)) | (1n << BigInt(MADV_WIPEONFORK));

/**
 * The task's VMAs that the parent has as they are and a fork copies: private, not a memfd, not
 * locked, not left out of (or wiped in) a child.
 */
function keptVmas(wanted: readonly VmaEntry[], parent: readonly VmaEntry[]): VmaEntry[] {
  let theirs = byStartOf.get(parent);
  if (!theirs) byStartOf.set(parent, (theirs = new Map(parent.map((v) => [BigInt(v.start), v]))));
  const same = (v: VmaEntry) => {
    const p = theirs!.get(BigInt(v.start));
    return p !== undefined && sameVma(v, p);
  };
  return wanted.filter((v) => (v.status & (VMA.ANON_PRIVATE | VMA.FILE_PRIVATE))
    && !(v.status & (VMA.MEMFD | VMA.VDSO | VMA.VVAR | VMA.VSYSCALL)) && !(v.flags & MAP_LOCKED)
    && !(BigInt(v.madv ?? 0n) & NOT_INHERITED) && same(v));
}

/**
 * In kept VMAs, pages the parent's image filled and this task's does not are given back to
 * what the mapping holds untouched (zeroes, or the file's page): one MADV_DONTNEED per stretch
 * of such pages, all in one go. Pages between them stay the parent's (shared copy-on-write).
 */
function dropParentPages(inj: Injector, kept: readonly VmaEntry[],
  filled: InheritedSpace['filled'], own: InheritedSpace['ownFilled']): void {
  const mine = new Set<bigint>();
  for (const r of own) for (let a = r.vaddr; a < r.vaddr + BigInt(r.len); a += PAGE) mine.add(a);
  const calls: SyscallSpec[] = [];
  for (const v of kept) {
    let lo: bigint | undefined;
    let hi = 0n;
    const drop = () => {
      if (lo !== undefined) calls.push([SYS.madvise, lo, Number(hi - lo), MADV_DONTNEED]);
      lo = undefined;
    };
    for (const r of filled) {
      const end = r.vaddr + BigInt(r.len);
      if (end <= v.start || r.vaddr >= v.end) continue;
      for (let a = r.vaddr > v.start ? r.vaddr : v.start; a < end && a < v.end; a += PAGE) {
        if (mine.has(a) || (lo !== undefined && a !== hi)) drop();
        if (mine.has(a)) continue;
        if (lo === undefined) lo = a;
        hi = a + PAGE;
      }
    }
    drop();
  }
  if (calls.length) inj.callAllChecked(calls);
}

/** Give back write access that was lent for filling. */
export function tightenProtections(inj: Injector, space: MappedSpace): void {
  for (const v of space.tightenAfterFill) {
    inj.callChecked(SYS.mprotect, v.start, Number(v.end - v.start), v.prot);
  }
}

/**
 * Move this kernel's vvar/vdso pages to the addresses the dumped task had them at. They move
 * to a free spot first, so that no target overlaps a source still in place. Returns where they
 * are then.
 */
function placeVdso(inj: Injector, wanted: readonly VmaEntry[],
  kernel: readonly VmaRange[], busy: { start: bigint; end: bigint }[]): VmaRange[] {
  const vdso = wanted.find((v) => v.status & VMA.VDSO);
  const vvar = wanted.find((v) => v.status & VMA.VVAR);
  const cur = (k: string) => kernel.find((v) => v.special === k);
  const [kVvar, kClock, kVdso] = [cur('[vvar]'), cur('[vvar_vclock]'), cur('[vdso]')];
  if (!vdso) {
    for (const k of kernel) inj.munmap(k.start, Number(k.end - k.start));
    inj.forgetVdso();
    return [];
  }
  const size = (v?: { start: bigint; end: bigint }) => (v ? v.end - v.start : 0n);
  if (!kVdso || size(kVdso) !== size(vdso) || (vvar && size(kVvar) + size(kClock) !== size(vvar))) {
    throw new Error('the vDSO of the running kernel differs in size from the dumped one; restore on the kernel that made the dump');
  }
  const pieces: { from: VmaRange; to: bigint }[] = [{ from: kVdso, to: vdso.start }];
  if (vvar && kVvar) {
    pieces.push({ from: kVvar, to: vvar.start });
    if (kClock) pieces.push({ from: kClock, to: vvar.start + size(kVvar) });
  }
  const placed = pieces.map((p) => ({ start: p.to, end: p.to + size(p.from), special: p.from.special }));
  const overlaps = (a: bigint, alen: bigint, b: bigint, blen: bigint) => a < b + blen && b < a + alen;
  const moving = pieces.filter((p) => p.from.start !== p.to); // a child of a restored task: in place
  if (!moving.some((p) => pieces.some((q) => overlaps(p.to, size(p.from), q.from.start, size(q.from))))) {
    // No target covers a source: each piece goes straight to its place.
    for (const p of pieces) {
      const len = Number(size(p.from));
      if (p.from.start !== p.to) inj.callChecked(SYS.mremap, p.from.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p.to);
    }
    inj.forgetVdso();
    return placed;
  }
  const total = pieces.reduce((n, p) => n + size(p.from), 0n);
  let spot = freeRange([...busy, ...kernel], total, 0x200000000n);
  const moved = pieces.map((p) => {
    const len = Number(size(p.from));
    inj.callChecked(SYS.mremap, p.from.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, spot);
    const at = { start: spot, len, to: p.to };
    spot += BigInt(len);
    return at;
  });
  for (const m of moved) {
    inj.callChecked(SYS.mremap, m.start, m.len, m.len, MREMAP_MAYMOVE | MREMAP_FIXED, m.to);
  }
  inj.forgetVdso();
  return placed;
}

/** struct prctl_mm_map: 11 u64 bounds, the auxv pointer, its size in bytes, exe_fd. */
const PRCTL_MM_MAP_SIZE = 104;

/** Whether the task's exe link already names `path` (same inode). */
function sameExe(pid: number, path: string): boolean {
  try {
    const a = fs.statSync(`/proc/${pid}/exe`);
    const b = fs.statSync(`/proc/${pid}/root${path}`); // as the task sees it (a container, a chroot)
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

export function restoreMmFields(inj: Injector, mm: MmEntry, files: RestoreMmFiles): void {
  const exe = files.regFile(mm.exe_file_id);
  // A task cloned from an already restored parent has the right exe already, and the kernel
  // refuses to replace an exe file that is still mapped (EBUSY): then leave it (exe_fd -1).
  const keep = sameExe(inj.tgid, String(exe.name));
  const exeFd = keep ? -1 : openInTask(inj, String(exe.name), O_RDONLY);
  try {
    const auxv = [...mm.mm_saved_auxv, 0n, 0n];
    const buf = Buffer.alloc(PRCTL_MM_MAP_SIZE + auxv.length * 8);
    const base = inj.scratch(buf.length + 4096);
    const bounds = [mm.mm_start_code, mm.mm_end_code, mm.mm_start_data, mm.mm_end_data,
      mm.mm_start_brk, mm.mm_brk, mm.mm_start_stack, mm.mm_arg_start, mm.mm_arg_end,
      mm.mm_env_start, mm.mm_env_end];
    bounds.forEach((b, i) => buf.writeBigUInt64LE(BigInt(b), i * 8));
    buf.writeBigUInt64LE(base + BigInt(PRCTL_MM_MAP_SIZE), 88);
    buf.writeUInt32LE(auxv.length * 8, 96);
    buf.writeInt32LE(exeFd, 100);
    auxv.forEach((w, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(w)), PRCTL_MM_MAP_SIZE + i * 8));
    inj.writeScratch(buf);
    inj.callChecked(SYS.prctl, PR_SET_MM, PR_SET_MM_MAP, base, PRCTL_MM_MAP_SIZE);
  } finally {
    if (exeFd >= 0) inj.call(SYS.close, exeFd);
  }
  if (mm.dumpable !== undefined) inj.callChecked(SYS.prctl, PR_SET_DUMPABLE, mm.dumpable);
  if (mm.thp_disabled) inj.callChecked(SYS.prctl, PR_SET_THP_DISABLE, 1, 0, 0, 0);
}
