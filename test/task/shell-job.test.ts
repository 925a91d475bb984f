import test from 'ava';
import fs from 'node:fs';
import { buildWorkload, onTerminal } from '../../test-containers/launch.js';
import { alive, assertFdsKept, killPid, lastTick, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

test.serial('a job on a terminal needs --shell-job, and with it comes back on the terminal stasis runs on', async (t) => {
  const dir = tmpDir(t);
  const job = await onTerminal([buildWorkload('counter'), 'nanosleep', '20']);
  t.teardown(() => job.kill());
  await job.waitForLine(/^tick 3/);
  const pid = Number(fs.readFileSync(`/proc/${job.pid}/task/${job.pid}/children`, 'utf8').trim());
  t.teardown(() => killPid(pid));
  t.regex(fs.readlinkSync(`/proc/${pid}/fd/1`), /^\/dev\/pts\/\d+$/);

  const refused = await stasis(['dump', '-t', String(pid), '-D', dir]);
  t.is(refused.exitCode, 1);
  t.regex(refused.stderr, /^stasis: fd 0 of task \d+ is the terminal \/dev\/pts\/\d+: dump with --shell-job to keep it$/);
  t.true(alive(pid), 'still running after the refusal');

  const d = await stasis(['dump', '-t', String(pid), '-D', dir, '--shell-job']);
  t.is(d.exitCode, 0, d.all);
  await job.exitOf(job.pid); // the terminal's holder reaps its job, then ends
  const at = lastTick(job.lines.map((l) => l.trim()));

  const noJob = await stasis(['restore', '-D', dir]);
  t.is(noJob.exitCode, 1);
  t.regex(noJob.stderr, /restore with --shell-job/);
  t.false(alive(pid));

  const back = await onTerminal([process.execPath, stasisBin, 'restore', '--shell-job', '-D', dir]);
  t.teardown(() => back.kill());
  await back.waitForLine(new RegExp(`^tick ${at + 3}\\s*$`));
  const first = back.lines.map((l) => l.trim()).find((l) => l.startsWith('tick'));
  t.is(first, `tick ${at + 1}`, 'the count goes on from where it stopped, on the new terminal');
  t.regex(fs.readlinkSync(`/proc/${pid}/fd/1`), /^\/dev\/pts\/\d+$/);
  await assertFdsKept(t, dir, pid);
  killPid(pid);
  await back.exitOf(back.pid);
});
