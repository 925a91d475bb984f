// 1 GiB of touched anonymous memory: dump and restore times, throughput, stasis's peak RSS,
// beside the raw floor measured in the same run (process_vm_readv of the same memory into a
// warm buffer, plus a write of it to a file in the same directory).
import fs from 'node:fs';
import path from 'node:path';
import { SYS } from '../sys/arch.js';
import { nativeBuffer, syscall } from '../sys/native.js';
import { readRanges } from '../sys/mem.js';
import { buildWorkload, underReaper } from '../test-containers/launch.js';
import type { Benchmark, Figure } from './run.js';
import { benchTmpDir } from './tmp.js';
import { freshStasis } from './fresh.js';

const MIB = Number(process.env.BENCH_MIB ?? 1024);

function floor(pid: number, addr: bigint, dir: string): number {
  const chunk = 64 << 20;
  const buf = nativeBuffer(chunk);
  readRanges(pid, [{ addr, len: chunk }], buf); // warm the buffer
  const file = path.join(dir, 'floor.bin');
  const fd = fs.openSync(file, 'w');
  const t0 = performance.now();
  for (let off = 0; off < MIB << 20; off += chunk) {
    readRanges(pid, [{ addr: addr + BigInt(off), len: chunk }], buf);
    fs.writeSync(fd, buf, 0, chunk);
  }
  const ms = performance.now() - t0;
  fs.closeSync(fd);
  fs.rmSync(file);
  return ms;
}

/**
 * Writing the same amount from a warm buffer into a new file of the same directory: the page
 * cache's own speed here, which bounds any dump that writes its pages to a file.
 */
function writeFloor(dir: string): number {
  const chunk = 64 << 20;
  const buf = nativeBuffer(chunk).fill(0x5a);
  const file = path.join(dir, 'write-floor.bin');
  const fd = fs.openSync(file, 'w');
  const t0 = performance.now();
  for (let off = 0; off < MIB << 20; off += chunk) fs.writeSync(fd, buf, 0, chunk);
  const ms = performance.now() - t0;
  fs.closeSync(fd);
  fs.rmSync(file);
  return ms;
}

/** Fresh anonymous memory allocated and populated by the kernel: the least a restore must pay. */
function allocFloor(): number {
  const len = MIB << 20;
  const t0 = performance.now();
  const addr = syscall('mmap', SYS.mmap, 0, len, 3, 0x22, -1, 0);
  syscall('madvise', SYS.madvise, addr, len, 23 /* MADV_POPULATE_WRITE */);
  const ms = performance.now() - t0;
  syscall('munmap', SYS.munmap, addr, len);
  return ms;
}

export const memoryBench: Benchmark = {
  name: `memory-${MIB}MiB`,
  runs: 5,
  async run(): Promise<Figure[]> {
    const dir = benchTmpDir();
    const w = await underReaper([buildWorkload('bigmem'), String(MIB)]);
    let restored = 0;
    try {
      const addr = BigInt((await w.waitForLine(/^ready /, 60_000)).split(' ')[1]!);
      const floorMs = floor(w.pid, addr, dir);
      const writeMs = writeFloor(dir);
      const allocMs = allocFloor();
      const gb = (MIB * 1048576) / 1e9;
      const d = await freshStasis(['dump', String(w.pid), path.join(dir, 'img')]);
      await w.exitOf(w.pid);
      const r = await freshStasis(['restore', path.join(dir, 'img')]);
      restored = r.pid;
      return [
        { name: 'floor: process_vm_readv + write', value: gb / (floorMs / 1000), unit: 'GB/s' },
        { name: 'floor: write alone, warm buffer to file', value: gb / (writeMs / 1000), unit: 'GB/s' },
        { name: 'dump time', value: d.ms / 1000, unit: 's' },
        { name: 'dump throughput', value: gb / (d.ms / 1000), unit: 'GB/s' },
        { name: 'dump peak RSS of stasis', value: d.maxRssKiB / 1024, unit: 'MiB' },
        { name: 'floor: allocate+populate fresh anon memory', value: allocMs / 1000, unit: 's' },
        { name: 'restore time', value: r.ms / 1000, unit: 's' },
        { name: 'restore throughput', value: gb / (r.ms / 1000), unit: 'GB/s' },
        { name: 'restore peak RSS of stasis', value: r.maxRssKiB / 1024, unit: 'MiB' },
      ];
    } finally {
      if (restored) try { process.kill(restored, 'SIGKILL'); } catch { /* gone */ }
      await w.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
