// Page contents of private memory: pagemap-PID.img (which runs of pages are saved) and the
// headerless pages-N.img (their bytes, back to back in pagemap order). Dump and restore side by side.
//
// Dump finds the pages with PAGEMAP_SCAN (present or swapped, privately owned, not the zero
// page: untouched memory is neither read nor faulted in) and copies them with process_vm_readv.
// Restore makes the task read its own pages: an injected pread64() from the pages file straight
// into the mapped range, so the bytes never pass through stasis.

import fs from 'node:fs';
import { PAGE_SIZE, SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { nativeBuffer } from '../sys/native.js';
import { readRanges } from '../sys/mem.js';
import { PRIVATE_DATA_QUERY, scanPagesFd } from '../sys/pagemap.js';
import { openInTask } from '../files/reg.js';
import { PE_PARENT, PE_PRESENT, type PageRun } from '../images/index.js';
import { hasDumpablePages, type VmaEntry } from './mm.js';

const PAGE = BigInt(PAGE_SIZE);
/** Copy window: bounded, so stasis's memory use does not grow with the target's. */
const CHUNK = 16 << 20;

export interface PagesDumpStats {
  pagesScanned: number;
  pagesWritten: number;
}

/** The runs of private data pages in `vmas`, adjacent runs merged (also across VMA borders). */
export function findDataPages(pid: number, vmas: readonly VmaEntry[]): { runs: PageRun[]; scanned: number } {
  const fd = fs.openSync(`/proc/${pid}/pagemap`, 'r');
  const runs: PageRun[] = [];
  let scanned = 0;
  try {
    for (const v of vmas) {
      if (!hasDumpablePages(v)) continue;
      scanned += Number((v.end - v.start) / PAGE);
      for (const r of scanPagesFd(fd, pid, v.start, v.end, PRIVATE_DATA_QUERY)) {
        const prev = runs[runs.length - 1];
        if (prev && prev.vaddr + BigInt(prev.nrPages) * PAGE === r.start) {
          prev.nrPages += Number((r.end - r.start) / PAGE);
        } else {
          runs.push({ vaddr: r.start, nrPages: Number((r.end - r.start) / PAGE), flags: PE_PRESENT });
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { runs, scanned };
}

/** Copy the runs' bytes from the task into `pagesFile`, in order. */
export function writePages(pid: number, runs: readonly PageRun[], pagesFile: string): number {
  const out = fs.openSync(pagesFile, 'w');
  const buf = nativeBuffer(CHUNK);
  let written = 0;
  try {
    for (const r of runs) {
      let addr = r.vaddr;
      let left = r.nrPages * PAGE_SIZE;
      while (left > 0) {
        const len = Math.min(left, CHUNK);
        const got = readRanges(pid, [{ addr, len }], buf);
        if (got !== len) {
          throw new Error(`task ${pid}: could read only ${got} of ${len} bytes at 0x${addr.toString(16)}`);
        }
        let off = 0;
        while (off < len) off += fs.writeSync(out, buf, off, len - off);
        addr += BigInt(len);
        left -= len;
        written += len;
      }
    }
  } finally {
    fs.closeSync(out);
  }
  return written / PAGE_SIZE;
}

/**
 * Fill the task's memory from the pages file: the task itself pread()s each run into place.
 * Runs inside `skip` (the kernel's vDSO, which other dumpers save) are passed over.
 */
export function fillPages(inj: Injector, runs: readonly PageRun[], pagesFile: string,
  skip: (vaddr: bigint) => boolean): number {
  const fd = openInTask(inj, pagesFile, 0);
  let pages = 0;
  try {
    for (const r of runs) {
      if (!(r.flags & PE_PRESENT)) {
        if (r.flags & PE_PARENT) throw new Error('the image refers to pages in a parent image, which stasis cannot restore yet');
        continue;
      }
      if (skip(r.vaddr)) continue;
      const len = BigInt(r.nrPages) * PAGE;
      const offset = BigInt(r.offset!);
      let done = 0n;
      while (done < len) {
        const n = inj.callChecked(SYS.pread64, fd, r.vaddr + done, len - done, offset + done);
        if (n === 0n) throw new Error(`${pagesFile} ends before offset ${offset + done}`);
        done += n;
      }
      pages += r.nrPages;
    }
  } finally {
    inj.call(SYS.close, fd);
  }
  return pages;
}
