// Process trees and threads: a 50-process tree and a 20-thread process, dump and restore times
// (each in a fresh stasis process, as the CLI runs).
import fs from 'node:fs';
import path from 'node:path';
import { underReaper, buildWorkload } from '../test-containers/launch.js';
import type { Benchmark, Figure } from './run.js';
import { benchTmpDir } from './tmp.js';
import { freshStasis } from './fresh.js';


function shape(kind: 'procs' | 'threads', n: number): Benchmark {
  return {
    name: `${kind === 'procs' ? 'tree' : 'threads'}-${n}`,
    runs: 5,
    async run(): Promise<Figure[]> {
      const dir = benchTmpDir();
      const w = await underReaper([buildWorkload('many'), kind, String(n)]);
      let restored = 0;
      try {
        await w.waitForLine(/^ready$/, 30_000);
        const d = await freshStasis(['dump', String(w.pid), path.join(dir, 'img')]);
        await w.exitOf(w.pid);
        await new Promise((r) => setTimeout(r, 100)); // the reaper collects the rest
        const r = await freshStasis(['restore', path.join(dir, 'img')]);
        restored = r.pid;
        return [
          { name: 'dump', value: d.ms, unit: 'ms' },
          { name: 'restore', value: r.ms, unit: 'ms' },
          { name: 'dump, whole process', value: d.processMs, unit: 'ms' },
          { name: 'restore, whole process', value: r.processMs, unit: 'ms' },
        ];
      } finally {
        if (restored) {
          // the restored root's children die with it once it is killed? No: kill the group.
          try { process.kill(-restored, 'SIGKILL'); } catch { /* gone */ }
        }
        await w.kill();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export const treeBench = shape('procs', 50);
export const threadsBench = shape('threads', 20);
