// runc with stasis as its criu: wall time of `runc --criu stasis checkpoint` and of
// `runc --criu stasis restore -d` for the busybox counter container (the commands a user types;
// each starts stasis twice: a VERSION check, then the work).
import fs from 'node:fs';
import path from 'node:path';
import { RuncContainer } from '../test-containers/runc.js';
import type { Benchmark, Figure } from './run.js';
import { benchTmpDir } from './tmp.js';

const stasisBin = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bin', 'stasis');

export const runcBench: Benchmark = {
  name: 'runc-busybox',
  runs: 5,
  async run(): Promise<Figure[]> {
    const dir = benchTmpDir();
    const c = RuncContainer.create(dir);
    try {
      const out = await c.run();
      await out.waitForLine(/^tick 3$/);
      let t0 = performance.now();
      const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
      const checkpointMs = performance.now() - t0;
      if (ck.code !== 0) throw new Error(`runc checkpoint failed: ${ck.stderr}`);
      t0 = performance.now();
      const rst = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'));
      const restoreMs = performance.now() - t0;
      if (rst.code !== 0) throw new Error(`runc restore failed: ${rst.out.lines.join(' | ')}`);
      await rst.out.waitForLine(/^tick \d+$/);
      return [
        { name: 'runc checkpoint (wall)', value: checkpointMs, unit: 'ms' },
        { name: 'runc restore -d (wall)', value: restoreMs, unit: 'ms' },
      ];
    } finally {
      c.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
