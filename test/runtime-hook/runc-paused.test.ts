// Kubernetes' checkpoint flow: CRI-O freezes the container's cgroup itself, then runs
// `runc checkpoint --leave-running --file-locks` (the same as `runc pause` and then a
// checkpoint). stasis dumps the frozen container and leaves it frozen, as it found it.

import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RuncContainer } from '../../test-containers/runc.js';
import { stasisBin, tmpDir, tracerOf } from '../helpers/stasis.js';

function ticks(lines: readonly string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

test.serial('a paused runc container is checkpointed with --leave-running --file-locks: it stays paused, resumes and counts on, and its images restore', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.1');
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  t.is(c.runc(['pause', c.id]).code, 0);
  t.is(c.state()?.status, 'paused');
  const freezer = c.cgroupDirs().map((d) => path.join(d, 'freezer.state')).find((f) => fs.existsSync(f));
  const atPause = Math.max(...ticks(out.lines));

  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'), ['--leave-running', '--file-locks']);
  t.is(ck.code, 0, `${ck.stderr} ${(() => { try { return fs.readFileSync(path.join(dir, 'work', 'dump.log'), 'utf8'); } catch { return ''; } })()}`);
  t.true(fs.existsSync(path.join(dir, 'img', 'inventory.img')));

  // Still paused: frozen, and not a tick more.
  t.is(c.state()?.status, 'paused');
  if (freezer) t.is(fs.readFileSync(freezer, 'utf8').trim(), 'FROZEN');
  await sleep(500);
  t.is(Math.max(...ticks(out.lines)), atPause, 'no tick while paused');

  // Resumed, it counts on from where it was.
  t.is(c.runc(['resume', c.id]).code, 0);
  await out.waitForLine(new RegExp(`^tick ${atPause + 2}$`));
  t.deepEqual(ticks(out.lines), ticks(out.lines).map((_, i) => i + 1), 'every tick once, in order');

  // The images restore: the counter goes on from the tick it had when it was paused.
  c.destroy();
  await out.closed;
  const rst = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'));
  t.is(rst.code, 0, rst.out.lines.join(' | '));
  const next = await rst.out.waitForLine(/^tick \d+$/);
  t.is(Number(next.split(' ')[1]), atPause + 1, 'the restored counter goes on from the paused one');
  t.is(c.state()?.status, 'running');
});


test.serial('a stasis killed while it checkpoints a paused container leaves it paused (its guardian freezes the cgroup again)', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.1');
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const init = c.state()!.pid;
  t.is(c.runc(['pause', c.id]).code, 0);
  const freezer = c.cgroupDirs().map((d) => path.join(d, 'freezer.state')).find((f) => fs.existsSync(f));
  if (!freezer) {
    t.pass('no v1 freezer on this host');
    return;
  }
  const atPause = Math.max(...ticks(out.lines));
  const runc = spawn('runc', ['--root', c.stateRoot, '--criu', stasisBin, 'checkpoint', '--leave-running',
    '--image-path', path.join(dir, 'img'), '--work-path', path.join(dir, 'work'), c.id], { stdio: 'ignore' });
  const until = performance.now() + 10_000;
  while (!tracerOf(init) && performance.now() < until) { /* wait for the seize */ }
  const tracer = tracerOf(init);
  t.not(tracer, 0, 'stasis seized the container');
  process.kill(tracer, 'SIGKILL');
  await new Promise((r) => runc.on('exit', r));
  const deadline = performance.now() + 2000;
  while (fs.readFileSync(freezer, 'utf8').trim() !== 'FROZEN' && performance.now() < deadline) await sleep(10);
  t.is(fs.readFileSync(freezer, 'utf8').trim(), 'FROZEN', 'frozen again, as it was found');
  await sleep(300);
  t.true(Math.max(...ticks(out.lines)) <= atPause + 1, 'at most the tick under way when it was thawed for the seize');
  t.is(c.runc(['resume', c.id]).code, 0);
  const now = Math.max(...ticks(out.lines));
  await out.waitForLine(new RegExp(`^tick ${now + 2}$`));
  t.is(tracerOf(init), 0);
});
