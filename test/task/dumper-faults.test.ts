// A dumper that dies never harms its target: stasis is killed (SIGKILL) or told to stop
// (SIGTERM, SIGINT, SIGHUP) at random moments while it dumps a running tree with
// --leave-running, or while runc checkpoints a container through it, and every task must go on
// exactly as it was: alive, neither traced nor stopped, its blocked mask, pending signals, CPU
// affinity and mappings the same, and its own self-checks clean (workloads/steady.c checks its
// registers, its sleeps, a pipe's records, its mask, its pending signal and its affinity all
// the time). A container's cgroup is not left frozen.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { readChildren } from '../../sys/proc/index.js';
import { execa } from 'execa';
import { repoRoot } from '../helpers/paths.js';
import { stasisBin, tmpDir, tracerOf } from '../helpers/stasis.js';

/** Every process of the tree under `root`, parents first. */
function treePids(root: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    try {
      for (const c of readChildren(p)) walk(c);
    } catch {
      // gone
    }
  };
  walk(root);
  return out;
}

/**
 * What must not change, per thread: alive and not traced or stopped, blocked and pending
 * signals, CPU affinity; per process, the mappings and the descriptors.
 */
function snapshot(pids: readonly number[]): string {
  const lines: string[] = [];
  for (const pid of pids) {
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`).sort();
    } catch {
      lines.push(`${pid} gone`);
      continue;
    }
    for (const tid of tids) {
      let status: string;
      try {
        status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      } catch {
        lines.push(`${pid}/${tid} gone`);
        continue;
      }
      const field = (k: string) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '?';
      const state = field('State')[0]!;
      lines.push(`${pid}/${tid} ${'RSD'.includes(state) ? 'running' : `state ${state}`} tracer ${field('TracerPid')} `
        + `blocked ${field('SigBlk')} pending ${field('SigPnd')}/${field('ShdPnd')} cpus ${field('Cpus_allowed_list')}`);
    }
    try {
      lines.push(...fs.readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n').map((l) => `${pid} ${l}`));
      lines.push(`${pid} fds ${fs.readdirSync(`/proc/${pid}/fd`).map(Number).sort((x, y) => x - y).join(' ')}`);
    } catch {
      lines.push(`${pid} maps gone`);
    }
  }
  return lines.join('\n');
}


function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* busy: sub-millisecond precision */ }
}

/** Waits (busily) until `pid` is traced; false after `ms`. */
function untilTraced(pid: number, ms: number): boolean {
  const until = performance.now() + ms;
  while (performance.now() < until) if (tracerOf(pid)) return true;
  return false;
}

function exited(child: ReturnType<typeof spawn>): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.on('exit', () => r()));
}

/**
 * Compares the tree with `before` until they agree (a task that was let go runs its way back
 * within microseconds; a guardian writes a cgroup back within milliseconds) or `ms` pass.
 */
async function settled(pids: readonly number[], before: string, ms = 2000): Promise<string> {
  const until = performance.now() + ms;
  let now = snapshot(pids);
  while (now !== before && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 10));
    now = snapshot(pids);
  }
  return now;
}

function firstDifference(a: string, b: string): string {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) return `was: ${x[i]}\nnow: ${y[i]}`;
  return '';
}

interface Interruptions {
  /** Signals sent in all, and how many of them landed while stasis held the tree. */
  sent: number;
  whileSeized: number;
  /** Interrupted only once every image was written (inventory.img there). */
  whole: number;
  /** Rolled back by stasis itself (SIGTERM, SIGINT, SIGHUP). */
  rolledBack: number;
}

/**
 * How long stasis holds `pid` (from its seize to its release) in an undisturbed run of `start`,
 * which must succeed.
 */
async function holdTime(t: ExecutionContext, pid: number, start: () => ReturnType<typeof spawn>): Promise<number> {
  const full = start();
  t.true(untilTraced(pid, 10_000), 'stasis seized the tree');
  const t0 = performance.now();
  while (tracerOf(pid)) await new Promise((r) => setImmediate(r));
  const held = performance.now() - t0;
  await exited(full);
  t.is(full.exitCode, 0, 'an undisturbed run succeeds');
  return held;
}

/**
 * Runs `dump --leave-running` of the tree again and again, sending one of `signals` to stasis at
 * a random moment of the time it holds the tree, and checks the tree after each — until `want`
 * signals landed while the tree was held (how many do depends on this machine's load), or `max`
 * were sent.
 */
async function interruptDumps(t: ExecutionContext, root: number, signals: NodeJS.Signals[], want: number, max: number,
  lines: readonly string[]): Promise<Interruptions> {
  const dir = tmpDir(t);
  const pids = treePids(root);
  const before = snapshot(pids);
  const dump = (images: string) => spawn(process.execPath, [stasisBin, 'dump', '-t', String(root), '-D', images, '--leave-running'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const held = await holdTime(t, root, () => dump(path.join(dir, 'full')));
  t.is(await settled(pids, before), before);
  const result: Interruptions = { sent: 0, whileSeized: 0, whole: 0, rolledBack: 0 };
  for (let i = 0; result.whileSeized < want && i < max; i++) {
    const signal = signals[i % signals.length]!;
    const images = path.join(dir, `d${i}`);
    const child = dump(images);
    let stderr = '';
    child.stderr!.on('data', (b) => { stderr += b; });
    let landed = false;
    if (untilTraced(root, 10_000)) {
      spin(Math.random() * held);
      landed = tracerOf(root) === child.pid;
      if (landed) result.whileSeized++;
    }
    child.kill(signal);
    result.sent++;
    await exited(child);
    // SIGTERM, SIGINT and SIGHUP while the tree is held: stasis rolls the dump back itself and
    // fails in one line (or, past its last check, finishes the dump).
    if (landed && signal !== 'SIGKILL' && child.exitCode !== 0) {
      t.is(child.exitCode, 1, `${signal} #${i}: ${stderr}`);
      t.regex(stderr, new RegExp(`^stasis: dump stopped by ${signal}: .*\n$`), `${signal} #${i}`);
      t.false(fs.existsSync(path.join(images, 'inventory.img')), 'a rolled-back dump has no inventory.img');
      result.rolledBack++;
    }
    const now = await settled(pids, before);
    if (now !== before) {
      t.fail(`after ${signal} #${i}: the tree changed\n${firstDifference(before, now)}`);
      return result;
    }
    // A dump interrupted before its images were all written has no inventory.img (one
    // interrupted while it handed the tree back is whole, and has one).
    if (fs.existsSync(path.join(images, 'inventory.img'))) result.whole++;
    fs.rmSync(images, { recursive: true, force: true });
  }
  t.deepEqual(lines.filter((l) => l.startsWith('FAIL')), [], 'the tree\'s own checks stayed clean');
  return result;
}

test.serial('SIGKILL of stasis at random moments of dump --leave-running: every task goes on exactly as it was', async (t) => {
  const w = await startWorkload('steady', ['4']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const r = await interruptDumps(t, w.pid, ['SIGKILL'], 50, 120, w.lines);
  t.log(`${r.sent} SIGKILLs, ${r.whileSeized} while stasis held the tree, ${r.whole} after the last image`);
  t.true(r.whileSeized >= 50, `at least 50 kills landed while the tree was held (${r.whileSeized})`);
  t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
});

test.serial('SIGTERM, SIGINT and SIGHUP at random moments of dump --leave-running: the dump is rolled back, the tree untouched', async (t) => {
  const w = await startWorkload('steady', ['4']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const r = await interruptDumps(t, w.pid, ['SIGTERM', 'SIGINT', 'SIGHUP'], 24, 60, w.lines);
  t.log(`${r.sent} signals, ${r.whileSeized} while stasis held the tree, ${r.rolledBack} rolled back by stasis, ${r.whole} after the last image`);
  t.true(r.rolledBack >= 12, `stasis rolled most dumps back itself (${r.rolledBack})`);
  t.true(r.whileSeized >= 24, `at least 24 signals landed while the tree was held (${r.whileSeized})`);
});

test.serial('SIGKILL of stasis at random moments of runc checkpoint --leave-running: the container runs on unchanged, its cgroup not frozen', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.05');
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const init = c.state()!.pid;
  // The container's shell (its `sleep` children come and go by themselves).
  const pids = [init];
  const before = snapshot(pids);
  const freezer = c.cgroupDirs().map((d) => path.join(d, 'freezer.state')).find((f) => fs.existsSync(f));
  const freezerState = () => (freezer ? fs.readFileSync(freezer, 'utf8').trim() : 'THAWED');
  const checkpoint = (i: number) => spawn('runc', ['--root', c.stateRoot, '--criu', stasisBin, 'checkpoint', '--leave-running',
    '--image-path', path.join(dir, `img${i}`), '--work-path', path.join(dir, `work${i}`), c.id], { stdio: 'ignore' });
  const held = await holdTime(t, init, () => checkpoint(-1));
  let whileSeized = 0;
  let kills = 0;
  // Until 20 kills landed while stasis held the container (at most 50).
  for (let i = 0; whileSeized < 20 && i < 50; i++, kills++) {
    const runc = checkpoint(i);
    if (untilTraced(init, 10_000)) {
      const tracer = tracerOf(init);
      spin(Math.random() * held);
      if (tracerOf(init) === tracer) whileSeized++;
      try {
        process.kill(tracer, 'SIGKILL');
      } catch {
        // done already
      }
    }
    await exited(runc);
    const now = await settled(pids, before);
    if (now !== before) {
      t.fail(`after kill #${i}: the container changed\n${firstDifference(before, now)}`);
      return;
    }
    const until = performance.now() + 2000;
    while (freezerState() !== 'THAWED' && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
    t.is(freezerState(), 'THAWED', `after kill #${i} the container's cgroup is not left frozen`);
  }
  t.log(`${kills} kills, ${whileSeized} while stasis held the container`);
  t.true(whileSeized >= 20, `at least 20 kills landed while the container was held (${whileSeized})`);
  const ticks = out.lines.filter((l) => /^tick \d+$/.test(l)).length;
  await out.waitForLine(new RegExp(`^tick ${ticks + 3}$`));
  t.is(c.state()?.status, 'running');
});

const guardPhase = path.join(repoRoot, 'dist', 'test', 'helpers', 'guard-phase.js');

for (const phase of ['entered', 'call', 'scratch', 'sequence', 'running', 'thread', 'descriptor']) {
  test.serial(`a tracer that dies at a known point of guarded injection (${phase}) leaves the task exactly as it was`, async (t) => {
    const w = await startWorkload('steady', ['1']);
    t.teardown(() => w.kill());
    await w.waitForLine(/^ready$/);
    const pids = [w.pid];
    const before = snapshot(pids);
    const r = await execa(process.execPath, [guardPhase, String(w.pid), phase], { reject: false });
    t.is(r.stdout, 'ready', r.stderr);
    t.is(r.signal, 'SIGKILL');
    const now = await settled(pids, before);
    t.is(now, before, firstDifference(before, now));
    await new Promise((res) => setTimeout(res, 100));
    t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
  });
}
