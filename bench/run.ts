// `npm run bench`: runs every benchmark (or those named on the command line), several times
// each, and prints medians. Benchmarks report figures; they never pass or fail.

import os from 'node:os';
import { benchmarks } from './index.js';

export interface Figure {
  name: string;
  value: number;
  unit: string;
}

export interface Benchmark {
  name: string;
  /** One run; returns its figures. */
  run(): Promise<Figure[]> | Figure[];
  runs?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const selected = only.length ? benchmarks.filter((b) => only.includes(b.name)) : benchmarks;
  process.stdout.write(`images under ${process.env.BENCH_DIR ?? os.tmpdir()}\n`);
  for (const b of selected) {
    const runs = Number(process.env.BENCH_RUNS ?? b.runs ?? 5);
    const all = new Map<string, { unit: string; values: number[] }>();
    for (let i = 0; i < runs; i++) {
      for (const f of await b.run()) {
        const e = all.get(f.name) ?? { unit: f.unit, values: [] };
        e.values.push(f.value);
        all.set(f.name, e);
      }
    }
    process.stdout.write(`\n${b.name} (median of ${runs} runs; min..max)\n`);
    for (const [name, { unit, values }] of all) {
      const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
      process.stdout.write(`  ${name.padEnd(44)} ${fmt(median(values)).padStart(9)} ${unit.padEnd(6)}` +
        ` (${fmt(Math.min(...values))}..${fmt(Math.max(...values))})\n`);
    }
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
