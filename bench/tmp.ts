// The benchmarks' scratch directories.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where benchmarks put images: BENCH_DIR, else the system's temporary directory. On this
 * machine's disk, creating a file in some directories costs 50 times what it costs in others,
 * from one minute to the next; a tmpfs (BENCH_DIR=/dev/shm) measures stasis without that.
 */
export function benchTmpDir(): string {
  return fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'stasis-bench-'));
}
