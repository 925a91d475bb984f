// `npm run bench`: runs every benchmark (or those named on the command line), several times
// each, and prints medians. Benchmarks report figures; they never pass or fail.

import { spawn, type ChildProcess } from 'node:child_process';
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

/**
 * BENCH_STEADY=1: one busy loop per CPU at the lowest priority while the benchmarks run. On
 * this virtual machine an idle CPU slows the busy one down (by up to 60%, from one run to the
 * next): figures are then bimodal. With every CPU kept busy they agree within a few percent,
 * which is what comparing two versions needs; the loops get what stasis leaves unused.
 */
function steadyCpus(): ChildProcess[] {
  if (!process.env.BENCH_STEADY) return [];
  return os.cpus().map((_, cpu) => {
    const loop = spawn('nice', ['-n', '19', 'taskset', '-c', String(cpu), 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' });
    loop.unref();
    return loop;
  });
}

async function main(): Promise<void> {
  const loops = steadyCpus();
  try {
    await runAll();
  } finally {
    for (const loop of loops) loop.kill('SIGKILL');
  }
}

async function runAll(): Promise<void> {
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
