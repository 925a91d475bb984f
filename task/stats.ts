// stats-dump / stats-restore: timings and page counts, in the work directory with the service
// magic, as CRIU writes them (Podman's --print-stats and checkpointctl read these).

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

/** Written synchronously: one small file, at the very end; private, as the images are. */
async function writeStats(dir: string, name: string, entry: Record<string, unknown>): Promise<void> {
  const bytes = encodeImage({ type: imageTypeByName('STATS'), entries: [{ message: entry }] });
  writePrivateFileSync(path.join(dir, name), bytes);
}

export function writeDumpStats(dir: string, s: DumpStats): Promise<void> {
  return writeStats(dir, 'stats-dump', { dump: s });
}

export function writeRestoreStats(dir: string, s: RestoreStats): Promise<void> {
  return writeStats(dir, 'stats-restore', { restore: s });
}
