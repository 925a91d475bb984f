// stats-dump / stats-restore: timings and page counts, in the work directory with the service
// magic, as CRIU writes them (Podman's --print-stats and checkpointctl read these).
//
// What each number means, as CRIU 4.2 fills it:
//   pages_written      pages of private memory saved (pages-N.img of the processes)
//   shpages_written    pages of shared memory objects saved (shared anonymous memory, memfd): with
//                      pages_written, every page the pages-*.img files hold (test runners check that)
//   pages_scanned      what the scan of private memory visited: each page saved, plus one for each
//                      stretch of a VMA passed over (PAGEMAP_SCAN jumps over it); every page of the vDSO
//   shpages_scanned    the pages of the shared memory objects saved (their size)
//   memdump_time       time spent on the processes' memory (finding the pages, getting them out)
//   memwrite_time      time spent writing page contents into the images
//   pages_compared / pages_skipped_cow (restore): pages of a child compared with those it shares
//                      copy-on-write with its parent, and those left shared because they were equal
//   forking_time       time to create the process tree; restore_time the whole restore
// Where stasis differs: SysV shared memory is not among shpages_* (its contents are kept in
// ipcns-shm-N.img, where CRIU 4.2 puts them in pages files); pages_skipped_parent and
// pages_lazy stay 0 (no incremental dumps, no lazy pages), as do page_pipes and page_pipe_bufs
// (CRIU's pipes), irmap_resolve (CRIU's inode-to-path cache) and the restore's pages_compared and
// pages_skipped_cow (restoreStats).

import path from 'node:path';
import { encodeImage, imageTypeByName, writePrivateFileSync } from '../images/index.js';

export interface DumpStats {
  freezing_time: number; frozen_time: number; memdump_time: number; memwrite_time: number;
  pages_scanned: number; pages_skipped_parent: number; pages_written: number; irmap_resolve: number;
  pages_lazy: number; page_pipes: number; page_pipe_bufs: number; shpages_scanned: number;
  shpages_skipped_parent: number; shpages_written: number;
}

export interface RestoreStats {
  pages_compared: number; pages_skipped_cow: number; forking_time: number; restore_time: number;
  pages_restored: number;
}

/**
 * Time spent in the operations timed (begin/end, or time()); an operation timed inside another
 * is counted once.
 */
export class BusyTime {
  private running = 0;
  private since = 0;
  ms = 0;

  begin(): void {
    if (this.running++ === 0) this.since = performance.now();
  }

  end(): void {
    if (--this.running === 0) this.ms += performance.now() - this.since;
  }

  /** `fn`, timed. */
  time<T>(fn: () => T): T {
    this.begin();
    try {
      return fn();
    } finally {
      this.end();
    }
  }
}

/** Microseconds, as the stats images have them. */
export function micros(ms: number): number {
  return Math.round(ms * 1000);
}

/** Written synchronously: one small file, at the very end; private, as the images are. */
async function writeStats(dir: string, name: string, entry: Record<string, unknown>): Promise<void> {
  const bytes = encodeImage({ type: imageTypeByName('STATS'), entries: [{ message: entry }] });
  writePrivateFileSync(path.join(dir, name), bytes);
}

export function writeDumpStats(dir: string, s: DumpStats): Promise<void> {
  return writeStats(dir, 'stats-dump', { dump: s });
}

/**
 * stats-restore's entry. stasis compares no pages: a child keeps the private VMAs it shares with
 * its restored parent (the fork made them) and has its own pages written over them, so
 * pages_compared and pages_skipped_cow stay 0 unless a caller counts some.
 */
export function restoreStats(t: {
  startMs: number; forkingMs: number; doneMs: number; pagesRestored: number; pagesCompared?: number; pagesSkippedCow?: number;
}): RestoreStats {
  return {
    pages_compared: t.pagesCompared ?? 0, pages_skipped_cow: t.pagesSkippedCow ?? 0,
    forking_time: micros(t.forkingMs), restore_time: micros(t.doneMs - t.startMs), pages_restored: t.pagesRestored,
  };
}

export function writeRestoreStats(dir: string, s: RestoreStats): Promise<void> {
  return writeStats(dir, 'stats-restore', { restore: s });
}
