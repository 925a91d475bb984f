// Page contents of private memory: pagemap-PID.img (which runs of pages are saved) and the
// headerless pages-N.img (their bytes, back to back in pagemap order). Dump and restore side by side.
//
// Dump finds the pages with PAGEMAP_SCAN (present or swapped, privately owned, not the zero
// page: untouched memory is neither read nor faulted in) and has the task write them out.
// The vDSO is saved whole, as CRIU does (its restore reads the symbols out of the saved copy),
// from stasis's own vDSO: the same kernel image, never touched by the dump's injected code.
// Restore makes the task read its own pages: an injected pread64() from the pages file straight
// into the mapped range, so the bytes never pass through stasis.

import fs from 'node:fs';
import { PAGE_SIZE, SYS } from '../sys/arch.js';
import { ownVdsoImage, type Injector } from '../sys/inject.js';
import { GuardedTask } from '../sys/guard.js';
import { addressOf, nativeBuffer, rawSyscall } from '../sys/native.js';
import { ProcMem } from '../sys/mem.js';
import { PRIVATE_DATA_QUERY, scanPagesFd } from '../sys/pagemap.js';
import { openInTask } from '../files/reg.js';
import { PE_PARENT, PE_PRESENT, createPrivateFileSync, openImageFileSync, type PageRun } from '../images/index.js';
import { VMA, hasDumpablePages, type VmaEntry } from './mm.js';
import { O_WRONLY } from '../sys/fcntl.js';
import type { BusyTime } from './stats.js';

const PAGE = BigInt(PAGE_SIZE);
/** Copy window: bounded, so stasis's memory use does not grow with the target's. */
const CHUNK = 16 << 20;
const MADV_POPULATE_WRITE = 23;

/** A run to dump; `bytes`, when set, are its contents (instead of the task's memory). */
export interface DumpRun extends PageRun {
  bytes?: Buffer;
}

/**
 * The runs of private data pages in `vmas`, adjacent runs merged (also across VMA borders).
 * Adjacent VMAs with pages to save are scanned as one span: a handful of PAGEMAP_SCAN calls per
 * process rather than one per VMA. Never across a hole: what stasis maps in the task while it
 * works (its scratch page) lies in one. The vDSO is one run of its own, with stasis's vDSO as
 * its bytes (left out if the two differ in size: the task's is then no image stasis knows).
 * `scanned` is counted as CRIU counts it (scannedPages).
 */
export function findDataPages(pid: number, vmas: readonly VmaEntry[]): { runs: DumpRun[]; scanned: number } {
  const fd = fs.openSync(`/proc/${pid}/pagemap`, 'r');
  const runs: DumpRun[] = [];
  try {
    for (let i = 0; i < vmas.length;) {
      if (!hasDumpablePages(vmas[i]!)) {
        const v = vmas[i++]!;
        const vdso = v.status & VMA.VDSO ? ownVdsoImage() : null;
        if (vdso && BigInt(vdso.length) === v.end - v.start) {
          runs.push({ vaddr: v.start, nrPages: vdso.length / PAGE_SIZE, flags: PE_PRESENT, bytes: vdso });
        }
        continue;
      }
      const start = vmas[i]!.start;
      let end = start;
      while (i < vmas.length && hasDumpablePages(vmas[i]!) && vmas[i]!.start === end) {
        end = vmas[i]!.end;
        i++;
      }
      for (const r of scanPagesFd(fd, pid, start, end, PRIVATE_DATA_QUERY)) {
        const prev = runs[runs.length - 1];
        if (prev && !prev.bytes && prev.vaddr + BigInt(prev.nrPages) * PAGE === r.start) {
          prev.nrPages += Number((r.end - r.start) / PAGE);
        } else {
          runs.push({ vaddr: r.start, nrPages: Number((r.end - r.start) / PAGE), flags: PE_PRESENT });
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { runs, scanned: scannedPages(vmas, runs) };
}

/**
 * stats-dump's pages_scanned, as CRIU 4.2 counts it on a kernel with PAGEMAP_SCAN: its scan
 * walks each private VMA page by page, jumping over what holds no data in one step. So each
 * page saved counts one, and so does each stretch of a VMA passed over (a VMA with nothing to
 * save counts one); the vDSO, saved whole, counts all its pages; the vvar area is not scanned.
 * `runs` are in address order, as findDataPages makes them.
 */
export function scannedPages(vmas: readonly VmaEntry[], runs: readonly PageRun[]): number {
  let n = 0;
  let j = 0;
  for (const v of vmas) {
    if (v.status & VMA.VDSO) {
      n += Number((v.end - v.start) / PAGE);
      continue;
    }
    if (!hasDumpablePages(v)) continue;
    const runEnd = (r: PageRun) => r.vaddr + BigInt(r.nrPages) * PAGE;
    while (j < runs.length && runEnd(runs[j]!) <= v.start) j++;
    let at = v.start;
    for (let k = j; k < runs.length && runs[k]!.vaddr < v.end; k++) {
      const from = runs[k]!.vaddr > v.start ? runs[k]!.vaddr : v.start;
      const to = runEnd(runs[k]!) < v.end ? runEnd(runs[k]!) : v.end;
      if (from > at) n++; // a stretch passed over
      n += Number((to - from) / PAGE);
      at = to;
    }
    if (at < v.end) n++;
  }
  return n;
}

/** How an error names a run of pages: `pages at 0x7f...-0x7f...`. */
function runName(r: PageRun): string {
  return `pages at 0x${r.vaddr.toString(16)}-0x${(r.vaddr + BigInt(r.nrPages) * PAGE).toString(16)}`;
}

/** Runs `fn` for run `r`, naming the run in what it throws. */
function forRun<T>(r: PageRun, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${runName(r)}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Refuses page runs a restore cannot write (a damaged pagemap image), before any task exists:
 * present pages outside every VMA, or runs out of order (one page written twice).
 */
export function checkPageRuns(runs: readonly PageRun[], vmas: readonly VmaEntry[]): void {
  let prevEnd = 0n;
  // Runs and VMAs are both in address order (each checked so): one walk over the VMAs.
  let vi = 0;
  for (const r of runs) {
    const end = r.vaddr + BigInt(r.nrPages) * PAGE;
    if (r.vaddr % PAGE || r.nrPages < 1) throw new Error(`${runName(r)}: not a run of whole pages`);
    if (r.vaddr < prevEnd) throw new Error(`${runName(r)}: overlap the run before them (or the runs are out of order)`);
    prevEnd = end;
    if (!(r.flags & PE_PRESENT)) continue;
    // Covered by VMAs, back to back (a run may span adjacent VMAs).
    for (let at = r.vaddr; at < end;) {
      while (vi < vmas.length && vmas[vi]!.end <= at) vi++;
      const v = vi < vmas.length && vmas[vi]!.start <= at ? vmas[vi] : vmas.find((x) => x.start <= at && at < x.end);
      if (!v) throw new Error(`${runName(r)}: 0x${at.toString(16)} is in no VMA of the mm image`);
      at = v.end;
    }
  }
}

/** Called as page bytes are copied: bytes done so far and the total, for progress on a terminal. */
export type PageProgress = (done: number, total: number) => void;

/** Bytes per injected read or write: small enough for progress to move, big enough to be free. */
const STEP = 64 << 20;

/**
 * Copy the runs' bytes from the task into `pagesFile`, in order. The fast way is to have the
 * task write its own memory into the file (an injected pwrite64: one copy, by the kernel, at page
 * cache speed). Where that cannot be done — the file is not reachable or writable from the task,
 * its RLIMIT_FSIZE is too small, or a run is not readable by it (PROT_NONE) — the bytes go
 * through stasis, read from /proc/PID/mem (not process_vm_readv, which un-shares copy-on-write
 * pages: see below).
 * `writing` is told while the file is written here (the caller times what `writeSmall` does).
 */
export function writePages(pid: number, runs: readonly DumpRun[], pagesFile: string, inj: Injector | GuardedTask | undefined,
  progress: PageProgress | undefined, writeSmall: (data: Buffer) => void, writing?: BusyTime): number {
  const total = runs.reduce((n, r) => n + r.nrPages * PAGE_SIZE, 0);
  // A small process's pages read by stasis and handed to `writeSmall` (which writes the file off
  // this thread): cheaper than the injected open, writes and close. Through /proc/PID/mem, not
  // process_vm_readv: that pins the pages it reads, and the kernel first gives the task a copy of
  // its own of every page it shares copy-on-write (with its parent or children): a tree that
  // runs on after the dump would no longer share them.
  if (total <= DIRECT_FILL_LIMIT) {
    const buf = nativeBuffer(total, false); // all of it read over, or not used
    const mem = new ProcMem(pid, false);
    try {
      let at = 0;
      for (const r of runs) {
        const len = r.nrPages * PAGE_SIZE;
        if (r.bytes) r.bytes.copy(buf, at);
        else mem.readInto(r.vaddr, buf, at, len);
        at += len;
      }
      writeSmall(buf);
      progress?.(total, total);
      return total / PAGE_SIZE;
    } catch {
      // a run not readable after all: run by run, below
    } finally {
      mem.close();
    }
  }
  const out = createPrivateFileSync(pagesFile); // 0600, a new inode: see images/private-file.ts
  let written = 0;
  let taskFd = -1;
  writing?.begin(); // the bytes are read and written in one go here
  try {
    if (inj && total > DIRECT_FILL_LIMIT) taskFd = openPagesInTask(inj, pagesFile, out, total);
    let offset = 0;
    for (const r of runs) {
      const len = r.nrPages * PAGE_SIZE;
      let done = 0;
      if (r.bytes) {
        while (done < len) done += fs.writeSync(out, r.bytes, done, len - done, offset + done);
      } else if (taskFd >= 0) done = injectedWrite(inj!, taskFd, r.vaddr, len, offset, (n) => progress?.(written + n, total));
      if (done < len) copyThroughStasis(pid, r.vaddr + BigInt(done), len - done, out, offset + done);
      offset += len;
      written += len;
      progress?.(written, total);
    }
  } finally {
    if (taskFd >= 0) inj!.call(SYS.close, taskFd);
    fs.closeSync(out);
    writing?.end();
  }
  return written / PAGE_SIZE;
}

const RLIMIT_FSIZE = 1;

/** The pages file opened inside the task, checked to be the same inode; -1 when not possible. */
function openPagesInTask(inj: Injector | GuardedTask, file: string, ours: number, total: number): number {
  const limit = nativeBuffer(16);
  if (rawSyscall(SYS.prlimit64, inj.pid, RLIMIT_FSIZE, 0, addressOf(limit)) < 0n) return -1;
  if (limit.readBigUInt64LE(0) < BigInt(total)) return -1; // a write past it would send SIGXFSZ
  let fd: number;
  if (inj instanceof GuardedTask) {
    fd = inj.openHigh(file, O_WRONLY); // closed by the task itself if stasis dies meanwhile
    if (fd < 0) return -1;
  } else {
    try {
      fd = openInTask(inj, file, O_WRONLY);
    } catch {
      return -1;
    }
  }
  const theirs = fs.statSync(`/proc/${inj.tgid}/fd/${fd}`);
  const mine = fs.fstatSync(ours);
  if (theirs.ino !== mine.ino || theirs.dev !== mine.dev) {
    inj.call(SYS.close, fd);
    return -1;
  }
  return fd;
}

/** pwrite64 run by the task; returns how many bytes it wrote before stopping (EFAULT etc.). */
function injectedWrite(inj: Injector | GuardedTask, fd: number, vaddr: bigint, len: number, offset: number,
  step: (done: number) => void): number {
  let done = 0;
  while (done < len) {
    const n = inj.call(SYS.pwrite64, fd, vaddr + BigInt(done), Math.min(len - done, STEP), offset + done);
    if (n <= 0n) break;
    done += Number(n);
    step(done);
  }
  return done;
}

/** Through /proc/PID/mem, which reads through protections and leaves shared pages shared (see writePages). */
function copyThroughStasis(pid: number, vaddr: bigint, len: number, out: number, offset: number): void {
  const buf = nativeBuffer(Math.min(len, CHUNK));
  const mem = new ProcMem(pid, false);
  try {
    for (let done = 0; done < len;) {
      const n = Math.min(len - done, CHUNK);
      mem.readInto(vaddr + BigInt(done), buf, 0, n);
      let w = 0;
      while (w < n) w += fs.writeSync(out, buf, w, n - w, offset + done + w);
      done += n;
    }
  } finally {
    mem.close();
  }
}

/**
 * Up to this many bytes, a task's pages are better copied by stasis itself, on dump (a read of
 * /proc/PID/mem per run) and on restore (fillPagesDirect): two plain syscalls per run instead of the
 * injected open, madvise, pread and close, and no write access lent to read-only VMAs and taken
 * back. Above it, the task copies its own memory at page cache speed.
 */
export const DIRECT_FILL_LIMIT = 8 << 20;

/** The bytes fillPages or fillPagesDirect would write for these runs. */
export function fillBytes(runs: readonly PageRun[], skip: (vaddr: bigint) => boolean): number {
  return runs.reduce((n, r) => n + (r.flags & PE_PRESENT && !skip(r.vaddr) ? r.nrPages * PAGE_SIZE : 0), 0);
}

function checkRun(r: PageRun): boolean {
  if (r.flags & PE_PRESENT) return true;
  if (r.flags & PE_PARENT) throw new Error('the image refers to pages in a parent image, which stasis cannot restore yet');
  return false;
}

/** What a fill found the task to hold already (CRIU's pages_compared and pages_skipped_cow). */
export interface CowCounts {
  /** Pages of the image compared with what the task held. */
  compared: number;
  /** Of those, pages equal to it and left as they were: still shared with the parent. */
  skipped: number;
}

/**
 * Ranges a task cloned from its restored parent holds as the parent does, page for page and
 * copy-on-write since the fork (kept VMAs, where the parent's image filled them), in address
 * order. A page of the image equal to what is there is not written: it stays shared.
 */
export interface SharedWithParent {
  ranges: readonly { vaddr: bigint; len: number }[];
  counts: CowCounts;
}

/**
 * Fill a task's memory from stasis: each run read from the pages file and written through
 * /proc/PID/mem, which writes through any protection (a private read-only page gets its own copy,
 * as it had). The VMAs need no write access for it. For a small task (all of it), and for what
 * a child keeps of its parent's address space (`parent`: pages equal to what it holds are left
 * shared). Returns the pages written.
 */
export function fillPagesDirect(pid: number, runs: readonly PageRun[], pagesFile: string,
  skip: (vaddr: bigint) => boolean, whole?: Buffer, parent?: SharedWithParent): number {
  const wanted = runs.filter((r) => checkRun(r) && !skip(r.vaddr));
  if (!wanted.length) return 0;
  const mem = new ProcMem(pid);
  let fd: number | undefined;
  let pages = 0;
  try {
    // The runs' bytes lie back to back in the file: one read per batch of them (none where the
    // caller has the whole file already), batches bounded so stasis's memory use is.
    for (const batch of whole ? [wanted] : batches(wanted)) {
      const from = batch.reduce((m, r) => Math.min(m, r.offset!), Infinity);
      const to = batch.reduce((m, r) => Math.max(m, r.offset! + r.nrPages * PAGE_SIZE), 0);
      let bytes: Buffer;
      if (whole) {
        if (whole.length < to) throw new Error(`${pagesFile} ends before offset ${to}`);
        bytes = whole.subarray(from, to);
      } else {
        bytes = Buffer.allocUnsafe(to - from);
        fd ??= openImageFileSync(pagesFile);
        if (fs.readSync(fd, bytes, 0, bytes.length, from) !== bytes.length) throw new Error(`${pagesFile} ends before offset ${to}`);
      }
      pages += writeRuns(mem, batch, bytes, from, parent && unchangedPages(mem, batch, bytes, from, parent));
    }
  } finally {
    mem.close();
    if (fd !== undefined) fs.closeSync(fd);
  }
  return pages;
}

/** Runs cut into batches of at most CHUNK bytes of pages (a longer run cut in pieces), each read at once. */
function* batches(runs: readonly PageRun[]): Generator<PageRun[]> {
  const most = CHUNK / PAGE_SIZE;
  let batch: PageRun[] = [];
  let size = 0;
  for (const r of runs) {
    for (let i = 0; i < r.nrPages;) {
      if (size === most) {
        yield batch;
        batch = [];
        size = 0;
      }
      const n = Math.min(r.nrPages - i, most - size);
      batch.push({ ...r, vaddr: r.vaddr + BigInt(i) * PAGE, nrPages: n, offset: r.offset! + i * PAGE_SIZE });
      size += n;
      i += n;
    }
  }
  if (batch.length) yield batch;
}

/** Writes `runs` (bytes from file offset `from`) but the pages in `same`; the pages written. */
function writeRuns(mem: ProcMem, runs: readonly PageRun[], bytes: Buffer, from: number, same?: Set<bigint>): number {
  let pages = 0;
  for (const r of runs) {
    const at = r.offset! - from;
    if (!same?.size) {
      forRun(r, () => mem.write(r.vaddr, bytes.subarray(at, at + r.nrPages * PAGE_SIZE)));
      pages += r.nrPages;
      continue;
    }
    // The pages that differ, a stretch of them at a time.
    for (let i = 0; i < r.nrPages;) {
      if (same.has(r.vaddr + BigInt(i) * PAGE)) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < r.nrPages && !same.has(r.vaddr + BigInt(j) * PAGE)) j++;
      forRun(r, () => mem.write(r.vaddr + BigInt(i) * PAGE, bytes.subarray(at + i * PAGE_SIZE, at + j * PAGE_SIZE)));
      pages += j - i;
      i = j;
    }
  }
  return pages;
}

/**
 * Runs cut where `ranges` (in address order) begin and end: the pieces inside them, and the
 * pieces outside, each piece with its own offset in the pages file.
 */
export function splitRuns(runs: readonly PageRun[], ranges: readonly { vaddr: bigint; len: number }[]): { inside: PageRun[]; outside: PageRun[] } {
  const inside: PageRun[] = [];
  const outside: PageRun[] = [];
  let k = 0;
  for (const r of runs) {
    if (!(r.flags & PE_PRESENT)) {
      outside.push(r);
      continue;
    }
    const end = r.vaddr + BigInt(r.nrPages) * PAGE;
    const piece = (lo: bigint, hi: bigint, to: PageRun[]) => {
      if (lo < hi) to.push({ ...r, vaddr: lo, nrPages: Number((hi - lo) / PAGE), offset: r.offset! + Number(lo - r.vaddr) });
    };
    while (k < ranges.length && ranges[k]!.vaddr + BigInt(ranges[k]!.len) <= r.vaddr) k++;
    let at = r.vaddr;
    for (let i = k; i < ranges.length && ranges[i]!.vaddr < end; i++) {
      const s = ranges[i]!;
      const lo = s.vaddr > at ? s.vaddr : at;
      const sEnd = s.vaddr + BigInt(s.len);
      const hi = sEnd < end ? sEnd : end;
      piece(at, lo, outside);
      piece(lo, hi, inside);
      at = hi > at ? hi : at;
    }
    piece(at, end, outside);
  }
  return { inside, outside };
}

/**
 * The pages of `runs` (their bytes in `bytes`, from file offset `from`) inside the ranges shared
 * with the parent whose content the task holds already, compared page by page. Read through
 * /proc/PID/mem: process_vm_readv pins the pages it reads, and the kernel gives a task its own
 * copy of a shared anonymous page before pinning it, which would undo the sharing looked for.
 * What cannot be read counts as different.
 */
function unchangedPages(mem: ProcMem, runs: readonly PageRun[], bytes: Buffer, from: number, parent: SharedWithParent): Set<bigint> {
  const same = new Set<bigint>();
  // Both lists are in address order: where each run meets the shared ranges.
  const pieces: { addr: bigint; len: number; at: number }[] = [];
  let k = 0;
  for (const r of runs) {
    const end = r.vaddr + BigInt(r.nrPages) * PAGE;
    while (k < parent.ranges.length && parent.ranges[k]!.vaddr + BigInt(parent.ranges[k]!.len) <= r.vaddr) k++;
    for (let i = k; i < parent.ranges.length && parent.ranges[i]!.vaddr < end; i++) {
      const s = parent.ranges[i]!;
      const lo = s.vaddr > r.vaddr ? s.vaddr : r.vaddr;
      const sEnd = s.vaddr + BigInt(s.len);
      const hi = sEnd < end ? sEnd : end;
      if (lo < hi) pieces.push({ addr: lo, len: Number(hi - lo), at: r.offset! - from + Number(lo - r.vaddr) });
    }
  }
  for (const p of pieces) {
    let held: Buffer;
    try {
      held = mem.read(p.addr, p.len);
    } catch {
      continue; // unreadable: written
    }
    for (let off = 0; off < p.len; off += PAGE_SIZE) {
      parent.counts.compared++;
      if (bytes.compare(held, off, off + PAGE_SIZE, p.at + off, p.at + off + PAGE_SIZE) === 0) {
        same.add(p.addr + BigInt(off));
        parent.counts.skipped++;
      }
    }
  }
  return same;
}

/**
 * Fill the task's memory from the pages file: the task itself pread()s each run into place.
 * Runs inside `skip` (the kernel's vDSO, which other dumpers save) are passed over.
 */
export function fillPages(inj: Injector, runs: readonly PageRun[], pagesFile: string,
  skip: (vaddr: bigint) => boolean, progress?: PageProgress,
  open: (inj: Injector, file: string) => number = (i, f) => openInTask(i, f, 0)): number {
  const fd = open(inj, pagesFile);
  let pages = 0;
  const total = fillBytes(runs, skip);
  try {
    for (const r of runs) {
      if (!checkRun(r) || skip(r.vaddr)) continue;
      const len = BigInt(r.nrPages) * PAGE;
      const offset = BigInt(r.offset!);
      // Allocate the pages in one go before reading into them: much cheaper than a fault per
      // page inside pread (fails harmlessly on kernels without MADV_POPULATE_WRITE).
      inj.call(SYS.madvise, r.vaddr, len, MADV_POPULATE_WRITE);
      let done = 0n;
      while (done < len) {
        const want = len - done < BigInt(STEP) ? len - done : BigInt(STEP);
        const n = forRun(r, () => inj.callChecked(SYS.pread64, fd, r.vaddr + done, want, offset + done));
        if (n === 0n) throw new Error(`${pagesFile} ends before offset ${offset + done}`);
        done += n;
        progress?.(pages * PAGE_SIZE + Number(done), total);
      }
      pages += r.nrPages;
    }
  } finally {
    inj.call(SYS.close, fd);
  }
  return pages;
}
