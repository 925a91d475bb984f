// /proc/PID/maps and /proc/PID/smaps: one entry per VMA. The one place that parses them.
//
// A maps line (fs/proc/task_mmu.c show_map_vma):
//   7f5e8414b000-7f5e8414c000 rw-s 00000000 00:01 25        /memfd:stasis mem (deleted)
// start-end, r/w/x and s|p, pgoff (hex), dev major:minor (hex), inode (decimal), then padding
// and the name: a path (may hold spaces; the kernel escapes only '\n', as \012), a bracketed
// special name, or nothing for an anonymous mapping. smaps adds "Key: N kB" lines,
// `THPeligible:`, `ProtectionKey:` and `VmFlags:` after each header.
import {
  type ProcPid, dec, hex, lines, malformed, procPath, readProcText, udec,
} from './read.js';
import { PROT_EXEC, PROT_READ, PROT_WRITE, type VmFlags, parseVmFlags } from './vmflags.js';

/**
 * What the name column says the mapping is.
 * - `anonymous`: no name (private or shared anon; shared anon usually shows as shmem, below).
 * - `file`: a path; `deleted` tells whether the kernel appended " (deleted)".
 * - `heap`, `stack`, `vdso`, `vvar`, `vvar_vclock` (kernel ≥ 6.13), `vsyscall`, `vectors`
 *   (arm), `uprobes`: the kernel's special mappings.
 * - `anon-named`: `[anon:NAME]` set with prctl(PR_SET_VMA_ANON_NAME); `anon-shmem-named`: `[anon_shmem:NAME]`.
 * - `memfd`: `/memfd:NAME (deleted)`; `sysv`: `/SYSV<key hex> (deleted)` (SysV shm);
 *   `shmem`: `/dev/zero (deleted)` on the shmem device (MAP_SHARED|MAP_ANONYMOUS).
 * - `aio`: `/[aio] (deleted)` (AIO ring); `special`: any other bracketed or non-path name.
 */
export type VmaKind =
  | 'anonymous' | 'file' | 'heap' | 'stack' | 'vdso' | 'vvar' | 'vvar_vclock' | 'vsyscall'
  | 'vectors' | 'uprobes' | 'anon-named' | 'anon-shmem-named' | 'memfd' | 'sysv' | 'shmem'
  | 'aio' | 'special';

export interface Vma {
  /** First byte (inclusive). Addresses are bigint: [vsyscall] sits above 2^53. */
  start: bigint;
  /** One past the last byte. */
  end: bigint;
  /** The perms column as printed, e.g. `rw-p`. */
  perms: string;
  /** PROT_READ | PROT_WRITE | PROT_EXEC from the perms column. */
  prot: number;
  /** `s` in the perms column (MAP_SHARED) rather than `p` (MAP_PRIVATE). */
  shared: boolean;
  /** File offset in bytes. */
  pgoff: bigint;
  devMajor: number;
  devMinor: number;
  /** Inode of the backing file (0 for anonymous memory). Values beyond 2^53 are refused, not rounded. */
  inode: number;
  /** The name column with " (deleted)" removed and \012 decoded; '' for anonymous memory. */
  path: string;
  /** The kernel appended " (deleted)": the file was unlinked (always so for memfd, SysV, shmem). */
  deleted: boolean;
  kind: VmaKind;
  /** For `anon-named`/`anon-shmem-named`/`memfd`: the NAME part. */
  name?: string;
  /** For `sysv`: the IPC key from the name (`/SYSV0000abcd` → 0xabcd). */
  sysvKey?: number;
}

export interface SmapsVma extends Vma {
  /** The "Key: N kB" counters in kB, keyed as the kernel prints them: Size, Rss, Pss,
   *  Private_Dirty, Anonymous, Swap, Locked, ... (the set varies with the kernel version). */
  kb: Record<string, number>;
  /** `VmFlags:` mnemonics (see vmflags.ts for what CRIU makes of them). */
  vmFlags: VmFlags;
  /** `THPeligible:` when printed. */
  thpEligible?: boolean;
  /** `ProtectionKey:` when printed (x86 with pkeys). */
  protectionKey?: number;
}

const HEADER = /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][sp]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)(?: +(.*))?$/;
const DELETED = ' (deleted)';
const NO_FLAGS: VmFlags = new Set();

/**
 * Whether a line starting with character `c` is a VMA header (`hex-hex ...`) rather than an smaps field: field names
 * start with an upper-case letter, addresses with a lower-case hex digit.
 */
function isHeader(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
}

const SPECIAL: Record<string, VmaKind> = {
  '[heap]': 'heap', '[stack]': 'stack', '[vdso]': 'vdso', '[vvar]': 'vvar',
  '[vvar_vclock]': 'vvar_vclock', '[vsyscall]': 'vsyscall', '[vectors]': 'vectors', '[uprobes]': 'uprobes',
};

function classify(vma: Vma): void {
  const p = vma.path;
  if (p === '') {
    vma.kind = 'anonymous';
  } else if (SPECIAL[p] && !vma.deleted) {
    vma.kind = SPECIAL[p]!;
  } else if (p.startsWith('[anon:') && p.endsWith(']')) {
    vma.kind = 'anon-named';
    vma.name = p.slice(6, -1);
  } else if (p.startsWith('[anon_shmem:') && p.endsWith(']')) {
    vma.kind = 'anon-shmem-named';
    vma.name = p.slice(12, -1);
  } else if (p.startsWith('/memfd:') && vma.deleted) {
    // memfd names are "memfd:" + the name given to memfd_create; a shmem-backed inode never linked.
    vma.kind = 'memfd';
    vma.name = p.slice(7);
  } else if (/^\/SYSV[0-9a-f]{8}$/.test(p) && vma.deleted) {
    vma.kind = 'sysv';
    vma.sysvKey = parseInt(p.slice(5), 16);
  } else if (p === '/dev/zero' && vma.deleted && vma.shared) {
    vma.kind = 'shmem';
  } else if (p === '/[aio]' && vma.deleted) {
    vma.kind = 'aio';
  } else if (p.startsWith('/')) {
    vma.kind = 'file';
  } else {
    vma.kind = 'special';
  }
}

/** Parses one header line. `lineNo` is 1-based, for errors. */
function parseHeader(line: string, path: string, lineNo: number): Vma {
  const m = HEADER.exec(line);
  if (!m) throw malformed(path, lineNo, 'not a VMA line', line);
  const perms = m[3]!;
  let name = unescapeNewlines(m[8] ?? '');
  let deleted = false;
  if (name.endsWith(DELETED)) {
    deleted = true;
    name = name.slice(0, -DELETED.length);
  }
  const where = () => [path, lineNo, line] as const; // built for an error only
  const vma: Vma = {
    start: hexAddr(m[1]!),
    end: hexAddr(m[2]!),
    perms,
    prot: (perms[0] === 'r' ? PROT_READ : 0) | (perms[1] === 'w' ? PROT_WRITE : 0) | (perms[2] === 'x' ? PROT_EXEC : 0),
    shared: perms[3] === 's',
    pgoff: hexAddr(m[4]!),
    devMajor: hex(m[5]!, 'dev major', where),
    devMinor: hex(m[6]!, 'dev minor', where),
    inode: udec(m[7]!, 'inode', where),
    path: name,
    deleted,
    kind: 'anonymous',
  };
  if (vma.end <= vma.start) throw malformed(path, lineNo, 'VMA end is not above its start', line);
  classify(vma);
  return vma;
}

/** maps escapes only '\n' in names (seq_file_path(m, file, "\n")); other backslashes are literal. */
function unescapeNewlines(s: string): string {
  return s.includes('\\012') ? s.replaceAll('\\012', '\n') : s;
}

/** Parses the text of a maps file. `path` names the file in errors. */
export function parseMaps(text: string, path = 'maps'): Vma[] {
  return lines(text).map((line, i) => parseHeader(line, path, i + 1));
}

/** What the lines of one VMA's block say besides VmFlags: read only when asked for. */
interface BlockFields {
  kb: Record<string, number>;
  thpEligible?: boolean;
  protectionKey?: number;
}

function blockFields(text: string, from: number, to: number, path: string): BlockFields {
  const out: BlockFields = { kb: {} };
  for (let at = from; at < to;) {
    let eol = text.indexOf('\n', at);
    if (eol < 0 || eol > to) eol = to;
    const line = text.slice(at, eol);
    at = eol + 1;
    const colon = line.indexOf(':');
    const lineNo = lineOf(text, at - 1);
    if (colon <= 0) throw malformed(path, lineNo, 'expected "Key: value"', line);
    const key = line.slice(0, colon);
    const where = [path, lineNo, line] as const;
    if (line.endsWith(' kB')) {
      const n = Number(line.slice(colon + 1, -3));
      if (!Number.isSafeInteger(n) || n < 0) throw malformed(path, lineNo, `${key} is not "N kB"`, line);
      out.kb[key] = n;
    } else if (key === 'THPeligible') {
      out.thpEligible = dec(line.slice(colon + 1).trim(), key, where) !== 0;
    } else if (key === 'ProtectionKey') {
      out.protectionKey = dec(line.slice(colon + 1).trim(), key, where);
    } else if (key === 'Nonlinear') {
      throw malformed(path, lineNo, 'non-linear mappings (remap_file_pages) are not supported', line);
    } else if (key !== 'VmFlags') {
      throw malformed(path, lineNo, `${key} is not "N kB"`, line);
    }
  }
  return out;
}

/** The 1-based line number of position `pos` (for errors only). */
function lineOf(text: string, pos: number): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < pos; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** An smaps VMA whose counters are parsed from its block of the text on first use. */
class SmapsEntry implements SmapsVma {
  start: bigint; end: bigint; perms: string; prot: number; shared: boolean; pgoff: bigint;
  devMajor: number; devMinor: number; inode: number; path: string; deleted: boolean; kind: VmaKind;
  name?: string; sysvKey?: number;
  vmFlags: VmFlags = NO_FLAGS;
  private fields?: BlockFields;

  constructor(v: Vma, private readonly block: readonly [text: string, from: number, to: number, path: string]) {
    this.start = v.start; this.end = v.end; this.perms = v.perms; this.prot = v.prot; this.shared = v.shared;
    this.pgoff = v.pgoff; this.devMajor = v.devMajor; this.devMinor = v.devMinor; this.inode = v.inode;
    this.path = v.path; this.deleted = v.deleted; this.kind = v.kind;
    if (v.name !== undefined) this.name = v.name;
    if (v.sysvKey !== undefined) this.sysvKey = v.sysvKey;
  }

  private get parsed(): BlockFields {
    return (this.fields ??= blockFields(...this.block));
  }

  get kb(): Record<string, number> {
    return this.parsed.kb;
  }

  get thpEligible(): boolean | undefined {
    return this.parsed.thpEligible;
  }

  get protectionKey(): number | undefined {
    return this.parsed.protectionKey;
  }
}

/** Where the next VMA line starts: a line beginning with a hex digit (fields begin upper-case). */
const NEXT_HEADER = /\n[0-9a-f]/g;
const VMFLAGS = 'VmFlags:';
const VMFLAGS_LINE = '\nVmFlags:';

/**
 * Parses the text of an smaps file. `path` names the file in errors. Of each VMA's block only
 * VmFlags (its last line) is read now: the counters and the other fields when first asked for.
 */
export function parseSmaps(text: string, path = 'smaps'): SmapsVma[] {
  const out: SmapsVma[] = [];
  for (let at = 0; at < text.length;) {
    let eol = text.indexOf('\n', at);
    if (eol < 0) eol = text.length;
    if (!isHeader(text.charCodeAt(at))) {
      throw malformed(path, lineOf(text, at), out.length ? 'expected "Key: value"' : 'field before the first VMA line', text.slice(at, eol));
    }
    const line = text.slice(at, eol);
    let header: Vma;
    try {
      header = parseHeader(line, path, 0);
    } catch {
      header = parseHeader(line, path, lineOf(text, at)); // throws again, with the line number
    }
    const body = Math.min(eol + 1, text.length);
    // VmFlags is the last line of a block (show_smap() prints it last, for every VMA): the next
    // header follows it. Otherwise (no VmFlags) the next line that starts with a hex digit.
    let end: number;
    let vf = text.indexOf(VMFLAGS_LINE, eol) + 1;
    let vfEnd = vf > 0 ? text.indexOf('\n', vf) : -1;
    if (vf > 0 && (vfEnd < 0 || vfEnd + 1 === text.length || isHeader(text.charCodeAt(vfEnd + 1)))) {
      end = vfEnd < 0 ? text.length : vfEnd + 1;
    } else {
      NEXT_HEADER.lastIndex = eol;
      const next = NEXT_HEADER.exec(text);
      end = next ? next.index + 1 : text.length;
      vf = text.lastIndexOf(VMFLAGS, end);
      if (vf < body || text.charCodeAt(vf - 1) !== 0x0a) vf = -1;
      vfEnd = vf < 0 ? -1 : text.indexOf('\n', vf);
    }
    const vma = new SmapsEntry(header, [text, body, end, path]);
    if (vf >= body) {
      vma.vmFlags = parseVmFlags(text.slice(vf + VMFLAGS.length, vfEnd < 0 || vfEnd > end ? end : vfEnd).trim());
    }
    out.push(vma);
    at = end;
  }
  return out;
}

/** Every VMA of a process (`/proc/PID/maps`), in address order. */
export function readMaps(pid: ProcPid): Vma[] {
  const path = procPath(pid, 'maps');
  return parseMaps(readProcText(path), path);
}

/** A VMA's bounds and its special name (`[vdso]`, `[vvar]`, ...; '' for every other mapping). */
export interface VmaRange {
  start: bigint;
  end: bigint;
  special: string;
}

/**
 * The VMAs of a process as bounds and special names only: what a restore needs of the address
 * space it is about to replace, without parsing every column of every line.
 */
export function readMapRanges(pid: ProcPid): VmaRange[] {
  const path = procPath(pid, 'maps');
  const text = readProcText(path);
  const out: VmaRange[] = [];
  for (let at = 0; at < text.length;) {
    let eol = text.indexOf('\n', at);
    if (eol < 0) eol = text.length;
    const dash = text.indexOf('-', at);
    const space = text.indexOf(' ', dash);
    if (dash <= at || dash > eol || space < 0 || space > eol) {
      throw malformed(path, out.length + 1, 'not a VMA line', text.slice(at, eol));
    }
    const last = text.lastIndexOf(' ', eol);
    const special = text.charCodeAt(last + 1) === 0x5b /* [ */ && text.charCodeAt(eol - 1) === 0x5d /* ] */
      ? text.slice(last + 1, eol) : '';
    out.push({ start: hexAddr(text.slice(at, dash)), end: hexAddr(text.slice(dash + 1, space)), special });
    at = eol + 1;
  }
  return out;
}

/** A hex address as printed in maps: below 2^52 through a plain number, above as a bigint. */
function hexAddr(s: string): bigint {
  return s.length <= 13 ? BigInt(parseInt(s, 16)) : BigInt(`0x${s}`);
}

/** Every VMA of a process with its smaps counters and VmFlags (`/proc/PID/smaps`). */
export function readSmaps(pid: ProcPid): SmapsVma[] {
  const path = procPath(pid, 'smaps');
  return parseSmaps(readProcText(path), path);
}

/** The VMA containing `addr`, if any (VMAs sorted by address, as the kernel prints them). */
export function findVma<T extends Vma>(vmas: readonly T[], addr: bigint): T | undefined {
  let lo = 0;
  let hi = vmas.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = vmas[mid]!;
    if (addr < v.start) hi = mid - 1;
    else if (addr >= v.end) lo = mid + 1;
    else return v;
  }
  return undefined;
}
