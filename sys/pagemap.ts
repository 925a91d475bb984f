// Which pages of a process hold data, through the PAGEMAP_SCAN ioctl on /proc/PID/pagemap
// (kernel >= 6.7): one call returns whole runs of pages with the asked-for properties, instead of
// 8 bytes per page to decode. Nothing is faulted in: untouched memory stays untouched.

import fs from 'node:fs';
import { PAGE_SIZE } from './arch.js';
import { SysError } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall } from './native.js';
import { SYS } from './arch.js';

/** _IOWR('f', 16, struct pm_scan_arg) */
const PAGEMAP_SCAN = 0xc0606610;
const PM_SCAN_ARG_SIZE = 96;
const PAGE_REGION_SIZE = 24;

/** Page categories (include/uapi/linux/fs.h PAGE_IS_*). */
export const PAGE_IS = {
  WPALLOWED: 1 << 0, WRITTEN: 1 << 1, FILE: 1 << 2, PRESENT: 1 << 3, SWAPPED: 1 << 4,
  PFNZERO: 1 << 5, HUGE: 1 << 6, SOFT_DIRTY: 1 << 7, GUARD: 1 << 8,
} as const;

export interface PageRun {
  start: bigint;
  end: bigint;
  categories: number;
}

export interface ScanQuery {
  /** Every category here must be set (after inversion by `inverted`). */
  required?: number;
  /** Categories that count as set when clear (so `required` can demand their absence). */
  inverted?: number;
  /** At least one of these must be set. */
  anyOf?: number;
  /** Categories reported back in PageRun.categories. */
  report?: number;
}

/**
 * The runs of pages in [start, end) of `pid` that match `q`. Adjacent matching pages with the
 * same reported categories come back as one run.
 */
export function scanPages(pid: number, start: bigint, end: bigint, q: ScanQuery): PageRun[] {
  const fd = fs.openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    return scanPagesFd(fd, pid, start, end, q);
  } finally {
    fs.closeSync(fd);
  }
}

const REGIONS = 512;
const arg = nativeBuffer(PM_SCAN_ARG_SIZE);
const vec = nativeBuffer(REGIONS * PAGE_REGION_SIZE);
// Word views of the two (their own memory, 8-aligned): a typed-array store is one step where
// writeBigUInt64LE is a JavaScript function, in code that runs cold once per process.
const argWords = new BigUint64Array(arg.buffer, arg.byteOffset, PM_SCAN_ARG_SIZE / 8);
const vecWords = new BigUint64Array(vec.buffer, vec.byteOffset, (REGIONS * PAGE_REGION_SIZE) / 8);
const argAt = addressOf(arg);
const vecAt = addressOf(vec);

export function scanPagesFd(fd: number, pid: number, start: bigint, end: bigint, q: ScanQuery): PageRun[] {
  const out: PageRun[] = [];
  let from = start;
  while (from < end) {
    argWords.fill(0n); // flags and max_pages (no limit) stay 0
    argWords[0] = BigInt(PM_SCAN_ARG_SIZE); // size
    argWords[2] = from;
    argWords[3] = end;
    argWords[5] = vecAt;
    argWords[6] = BigInt(REGIONS);
    argWords[8] = BigInt(q.inverted ?? 0);
    argWords[9] = BigInt(q.required ?? 0);
    argWords[10] = BigInt(q.anyOf ?? 0);
    argWords[11] = BigInt(q.report ?? 0);
    const n = rawSyscall(SYS.ioctl, fd, PAGEMAP_SCAN, argAt);
    if (n < 0n) {
      throw new SysError(Number(-n), `ioctl(/proc/${pid}/pagemap, PAGEMAP_SCAN, 0x${from.toString(16)})`);
    }
    for (let i = 0; i < Number(n); i++) {
      const w = i * (PAGE_REGION_SIZE / 8);
      out.push({ start: vecWords[w]!, end: vecWords[w + 1]!, categories: Number(vecWords[w + 2]!) });
    }
    const walkEnd = argWords[4]!;
    if (walkEnd <= from) break;
    from = walkEnd;
  }
  return out;
}

/** Pages a dump must save from a private mapping: present or swapped, privately owned, not the shared zero page. */
export const PRIVATE_DATA_QUERY: ScanQuery = {
  required: PAGE_IS.FILE | PAGE_IS.PFNZERO,
  inverted: PAGE_IS.FILE | PAGE_IS.PFNZERO,
  anyOf: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
  report: 0,
};

export const PAGE = BigInt(PAGE_SIZE);
