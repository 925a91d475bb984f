// Kubernetes' checkpoint flow: CRI-O freezes the container's cgroup itself, then runs
// `runc checkpoint --leave-running --file-locks` (the same as `runc pause` and then a
// checkpoint). stasis dumps the frozen container and leaves it frozen, as it found it.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { RuncContainer } from '../../test-containers/runc.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

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
