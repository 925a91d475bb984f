import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { fdKey, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

test.serial('POSIX timers keep their ids and times, itimers run on, and queued signals keep their siginfo (process and thread)', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-timers-');
  const w = await startWorkload('timers', [work]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready /);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const show = await stasis(['show', path.join(dir, `core-${w.pid}.img`)]);
  const posix = JSON.parse(show.stdout).entries[0].tc.timers.posix;
  t.is(posix.length, 2, 'both timers are in the image');
  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
});
