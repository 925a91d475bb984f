import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { fdKey, killPid, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

test.serial('shared anonymous memory, a shared memfd and a shared file mapping stay shared across processes; private copies stay apart', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-shm-');
  const w = await startWorkload('shm', [work]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready /);
  const child = Number(/child=(\d+)/.exec(ready)![1]);
  t.teardown(() => killPid(child));
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
});
