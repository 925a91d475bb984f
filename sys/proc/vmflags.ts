// The `VmFlags:` line of /proc/PID/smaps (fs/proc/task_mmu.c show_smap_vma_flags): two-letter
// mnemonics for vm_area_struct->vm_flags, and what CRIU records from them in vma_entry
// (criu/proc_parse.c parse_vmflags): mmap flags, the madvise bitmap and the reopen mode.

import { O_RDONLY, O_RDWR } from '../fcntl.js';

/** Mnemonics the kernel prints (6.18; older ones included). Unknown ones are kept as plain strings. */
export const VM_FLAG_NAMES = {
  rd: 'readable', wr: 'writable', ex: 'executable', sh: 'shared', mr: 'may read', mw: 'may write',
  me: 'may execute', ms: 'may share', gd: 'stack segment grows down', pf: 'pure PFN range',
  dw: 'disabled write to the mapped file (before 4.x)', lo: 'pages are locked in memory',
  io: 'memory mapped I/O area', sr: 'sequential read advise provided',
  rr: 'random read advise provided', dc: 'do not copy area on fork',
  de: 'do not expand area on remapping', ac: 'area is accountable',
  nr: 'swap space is not reserved for the area', ht: 'area uses huge tlb pages',
  sf: 'synchronous page fault', nl: 'non-linear mapping (removed in 4.0)', ar: 'architecture specific flag',
  wf: 'wipe on fork', dd: 'do not include area into core dump', sd: 'soft-dirty flag',
  mm: 'mixed map area', hg: 'huge page advise flag', nh: 'no-huge page advise flag',
  mg: 'mergeable advise flag', bt: 'arm64 BTI guarded page', mt: 'arm64 MTE allocation tags enabled',
  um: 'userfaultfd missing tracking', uw: 'userfaultfd wr-protect tracking',
  ui: 'userfaultfd minor fault', ss: 'shadow stack page', sl: 'sealed', lf: 'lock on fault pages',
  dp: 'always lazily freeable mapping', gu: 'maybe contains guard regions',
  mp: 'MPX bounds table (removed)',
} as const;

export type KnownVmFlag = keyof typeof VM_FLAG_NAMES;
/** A VmFlags mnemonic; known ones are typed, unknown ones from newer kernels pass through. */
export type VmFlag = KnownVmFlag | (string & {});
export type VmFlags = ReadonlySet<VmFlag>;

/** Sets made so far, by the text they came from: a process has a handful of distinct ones. */
const parsedFlags = new Map<string, VmFlags>();

/** Splits the value of a `VmFlags:` line (`rd wr mr mw me gd ac`) into a set (shared, not to be changed). */
export function parseVmFlags(value: string): VmFlags {
  let flags = parsedFlags.get(value);
  if (!flags) {
    flags = new Set(value.split(' ').filter((t) => t !== ''));
    if (parsedFlags.size < 1024) parsedFlags.set(value, flags);
  }
  return flags;
}

/** mmap(2) flags (asm-generic/mman*.h; identical on x86_64). */
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_DROPPABLE = 0x08;
export const MAP_ANONYMOUS = 0x20;
export const MAP_GROWSDOWN = 0x0100;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_HUGETLB = 0x40000;

/** mmap(2) protection bits. */
export const PROT_NONE = 0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;

/** madvise(2) advice numbers (asm-generic/mman-common.h). */
export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
export const MADV_MERGEABLE = 12;
export const MADV_UNMERGEABLE = 13;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_DONTDUMP = 16;
export const MADV_DODUMP = 17;
export const MADV_WIPEONFORK = 18;
export const MADV_KEEPONFORK = 19;

/** open(2) modes CRIU reopens a mapped file with. */
export { O_RDONLY, O_RDWR };

/** VmFlags that map to an mmap flag to pass again on restore. */
const MAP_FLAG_OF: ReadonlyArray<readonly [KnownVmFlag, number]> = [
  ['gd', MAP_GROWSDOWN],
  ['lo', MAP_LOCKED],
  ['nr', MAP_NORESERVE],
  ['ht', MAP_HUGETLB],
  ['dp', MAP_DROPPABLE],
];

/** VmFlags that record an madvise() the task made, to replay on restore. */
const MADV_OF: ReadonlyArray<readonly [KnownVmFlag, number]> = [
  ['sr', MADV_SEQUENTIAL],
  ['rr', MADV_RANDOM],
  ['dc', MADV_DONTFORK],
  ['dd', MADV_DONTDUMP],
  ['mg', MADV_MERGEABLE],
  ['hg', MADV_HUGEPAGE],
  ['nh', MADV_NOHUGEPAGE],
  ['wf', MADV_WIPEONFORK],
];

/**
 * The mmap flags vma_entry.flags gets from VmFlags: MAP_GROWSDOWN (gd), MAP_LOCKED (lo),
 * MAP_NORESERVE (nr), MAP_HUGETLB (ht), MAP_DROPPABLE (dp). MAP_SHARED/PRIVATE/ANONYMOUS come
 * from the maps line and the backing file, not from here.
 */
export function vmFlagsMapFlags(flags: VmFlags): number {
  return derived(flags).mapFlags;
}

/** What a set of flags maps to, worked out once per set (parseVmFlags shares sets). */
const derivedOf = new WeakMap<VmFlags, { mapFlags: number; madv: number }>();
function derived(flags: VmFlags): { mapFlags: number; madv: number } {
  let d = derivedOf.get(flags);
  if (!d) {
    d = { mapFlags: 0, madv: 0 };
    for (const [name, bit] of MAP_FLAG_OF) if (flags.has(name)) d.mapFlags |= bit;
    for (const [name, advice] of MADV_OF) if (flags.has(name)) d.madv |= 1 << advice;
    derivedOf.set(flags, d);
  }
  return d;
}

/**
 * vma_entry.madv: bit N set means madvise advice N is in effect — sr→SEQUENTIAL, rr→RANDOM,
 * dc→DONTFORK, dd→DONTDUMP, mg→MERGEABLE, hg→HUGEPAGE, nh→NOHUGEPAGE, wf→WIPEONFORK.
 * The highest advice is 18, so the mask fits a number.
 */
export function vmFlagsMadv(flags: VmFlags): number {
  return derived(flags).madv;
}

/** The advice numbers set in an madv bitmask, ascending (for replaying them one madvise at a time). */
export function madvAdvices(madv: number | bigint): number[] {
  const m = BigInt.asUintN(64, BigInt(madv));
  const out: number[] = [];
  // By 32-bit halves, in numbers: no BigInt made per bit.
  for (const [half, base] of [[Number(m & 0xffffffffn), 0], [Number(m >> 32n), 32]] as const) {
    for (let n = 0; n < 32; n++) if (half & (1 << n)) out.push(base + n);
  }
  return out;
}

/**
 * vma_entry.fdflags: a shared mapping that may be written (sh + mw) is reopened O_RDWR,
 * anything else O_RDONLY.
 */
export function vmFlagsFdFlags(flags: VmFlags): number {
  return flags.has('sh') && flags.has('mw') ? O_RDWR : O_RDONLY;
}

/**
 * VM_IO / VM_PFNMAP mappings cannot be vmspliced; CRIU refuses them except the vvar area, which
 * the kernel maps as io+pf and which is recreated rather than copied.
 */
export function vmFlagsIoOrPfn(flags: VmFlags): boolean {
  return flags.has('io') || flags.has('pf');
}
