// Seeded fuzzing of restores from damaged image sets, and from sets mixing files of two dumps.
// A stasis dump (with its stasis-manifest.json) that was damaged or mixed in any way is refused
// with one line naming a file it found wrong, before any process exists; a CRIU-style set (no
// manifest) either fails with one line naming an image, or restores (damage no reader can see,
// such as a flipped bit in a page); no process is ever left behind, no descriptor leaks.
// STASIS_FUZZ_SEED and STASIS_FUZZ_SETS choose the sets (the seed is printed on failure).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { MANIFEST_FILE } from '../../images/index.js';
import { repoRoot } from '../helpers/paths.js';
import { dumpedCounter, stasis, tmpDir } from '../helpers/stasis.js';
import { makeSet, random, type DamageJob, type SetResult } from '../helpers/damaged-restore.js';

const SEED = Number(process.env.STASIS_FUZZ_SEED ?? 15);
const SETS = Number(process.env.STASIS_FUZZ_SETS ?? 500);
const driver = path.join(repoRoot, 'dist/test/helpers/damaged-restore.js');


/** The file an error line names: what comes before its first colon. */
function named(stderr: string): string {
  return /^stasis: ([^:]+):/.exec(stderr)?.[1] ?? '';
}

function isOneLine(stderr: string): boolean {
  return /^stasis: [^\n]+\n?$/.test(stderr) && !/[\x00-\x08\x0b-\x1f\x7f]/.test(stderr);
}

/** What is wrong with the outcome of one set, or undefined. */
function verdict(r: SetResult): string | undefined {
  if (r.left.length) return `left ${r.left.join(' ')} behind`;
  if (r.exitCode === 0) return r.kind === 'criu-style' ? undefined : 'restored';
  if (r.exitCode !== 1) return `exit ${r.exitCode}`;
  if (!isOneLine(r.stderr)) return 'not one line';
  if (r.fdDelta !== 0) return `${r.fdDelta} descriptors leaked`;
  const file = named(r.stderr);
  if (r.kind === 'criu-style') {
    return /\.img$/.test(file) ? undefined : 'names no image';
  }
  // A stasis set: refused at once, naming a file the damage touched (any, if the manifest is one).
  if (r.touched.includes(MANIFEST_FILE) && (file.endsWith('.img') || file === MANIFEST_FILE)) return undefined;
  return r.touched.includes(file) ? undefined : `names ${file || 'nothing'}, not one of ${r.touched.join(' ')}`;
}

test.serial(`${SETS} damaged or mixed image sets: each fails in one line naming a file, no process left, no stasis set restored`, async (t) => {
  t.timeout(240_000);
  const bases = [await dumpedCounter(t, 'nanosleep'), await dumpedCounter(t, 'nanosleep')];
  const other = await dumpedCounter(t, 'read'); // another workload: a pipe, an itimer, a handler
  const started = performance.now();
  // One driver per CPU, each on a dump of its own (a set that restores takes its PID for a while).
  const jobs: DamageJob[] = bases.map((base, i) => ({
    base, other, seed: SEED * 2 + i, count: Math.ceil(SETS / 2) - (i && SETS % 2), work: tmpDir(t), out: '',
  }));
  for (const j of jobs) j.out = path.join(j.work, 'results.jsonl');
  const runs = await Promise.all(jobs.map((j) => execa(process.execPath, [driver, JSON.stringify(j)], { reject: false, all: true })));
  for (const r of runs) t.is(r.exitCode, 0, r.all);
  const results = jobs.flatMap((j) => fs.readFileSync(j.out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SetResult));
  const seconds = (performance.now() - started) / 1000;
  t.is(results.length, SETS);

  const bad = results.map((r) => [r, verdict(r)] as const).filter(([, v]) => v);
  for (const [r, v] of bad.slice(0, 10)) t.log(`set ${r.n} (${r.kind}: ${r.damage.join(', ')}): ${v}: ${r.stderr.trim()}`);
  t.is(bad.length, 0, `seed ${SEED}: ${bad.length} sets went wrong`);

  const count = (k: string) => results.filter((r) => r.kind === k).length;
  const restored = results.filter((r) => r.exitCode === 0);
  t.true(count('mixed') >= SETS / 4 && count('damaged') >= SETS / 4, 'both kinds of stasis set were tried');
  t.true(restored.every((r) => r.kind === 'criu-style'), 'no damaged or mixed stasis set was restored');
  t.log(`seed ${SEED}: ${count('mixed')} mixed and ${count('damaged')} damaged stasis sets refused; of ${count('criu-style')} ` +
    `CRIU-style sets, ${restored.length} restored (damage no reader can see), the rest refused, in ${seconds.toFixed(1)} s`);
  // The CRIU-style sets exercise the checks past the manifest: most are refused.
  t.true(restored.length < count('criu-style') / 2);
});

test.serial('bin/stasis refuses damaged and mixed sets with exit 1 and one line naming the file', async (t) => {
  const base = await dumpedCounter(t, 'nanosleep');
  const other = await dumpedCounter(t, 'read');
  const work = tmpDir(t);
  const rnd = random(SEED);
  const job: DamageJob = { base, other, seed: SEED, count: 0, work, out: '' };
  for (const n of [0, 1, 2, 3, 4, 5, 10, 11, 12, 13]) { // mixed and damaged, as kindOf() numbers them
    const dir = path.join(work, `set-${n}`);
    const set = makeSet(job, n, dir, rnd);
    const r = await stasis(['restore', '-d', '-D', dir, '--inherit-fd', `fd[1]:${base.key}`]);
    const result: SetResult = { n, ...set, exitCode: r.exitCode ?? -1, stderr: `${r.stderr}\n`, left: [base.pid, other.pid].filter((p) => fs.existsSync(`/proc/${p}`)), fdDelta: 0 };
    t.is(verdict(result), undefined, `${set.damage.join(', ')}: ${r.stderr}`);
  }
});
