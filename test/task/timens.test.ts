import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { buildWorkload, underReaper } from '../../test-containers/launch.js';
import { alive, fdKey, killPid, lastTick, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

/** CLOCK_BOOTTIME as process `pid`'s time namespace shows it (/proc/uptime read in it), in seconds. */
function uptimeIn(pid: number): number {
  return Number(execFileSync('nsenter', ['-t', String(pid), '-T', 'cat', '/proc/uptime'], { encoding: 'utf8' }).split(' ')[0]);
}

test.serial('a process in its own time namespace comes back in a new one whose clocks go on from the dump', async (t) => {
  const dir = tmpDir(t);
  // unshare makes the namespace (boottime a day ahead) and forks the counter into it.
  const w = await underReaper(['/usr/bin/unshare', '--time', '--fork', '--boottime', '86400', '--monotonic', '3600',
    buildWorkload('counter'), 'nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const pid = Number(fs.readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim());
  t.teardown(() => killPid(pid));
  t.not(fs.readlinkSync(`/proc/${pid}/ns/time`), fs.readlinkSync('/proc/self/ns/time'));
  const key = fdKey(pid, 1);
  const hostUptime = () => Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  const before = uptimeIn(pid);
  const wallBefore = hostUptime();
  t.true(before > 86400);

  const d = await stasis(['dump', '-t', String(pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  const at = lastTick(w.lines);
  await w.exitOf(w.pid);
  await new Promise((r) => setTimeout(r, 1500)); // time on disk, which the namespace must not see

  const r = await restoreUnderReaper(t, dir, key, pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.true(alive(pid));
  t.not(fs.readlinkSync(`/proc/${pid}/ns/time`), fs.readlinkSync('/proc/self/ns/time'), 'in a time namespace of its own');
  const after = uptimeIn(pid);
  const wallPassed = hostUptime() - wallBefore;
  t.true(after > before, `its boottime goes on (${before} → ${after})`);
  t.true(after - before < wallPassed - 1.2, `without the ${wallPassed.toFixed(2)} s that passed, less the 1.5 s on disk (${(after - before).toFixed(2)} s)`);
  const offsets = fs.readFileSync(`/proc/${pid}/timens_offsets`, 'utf8');
  const mono = Number(/^monotonic\s+(-?\d+)/m.exec(offsets)![1]);
  t.true(mono > 3590 && mono <= 3600, `monotonic offset ${mono} s`);
  await r.waitForLine(new RegExp(`^tick ${at + 2}$`));
  t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
});
