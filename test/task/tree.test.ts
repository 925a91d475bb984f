import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { fdKey, killPid, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

test.serial('a three-level tree with threads, a shared pipe, file, eventfd and unix sockets across processes, a zombie and a stopped child is restored whole', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-family-');
  const w = await startWorkload('family', [work]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready /);
  const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
  t.teardown(() => pids.forEach(killPid));
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '-v4']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);

  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
  // Each process that holds an end checked it: exact queued bytes, datagram lengths, the counter.
  for (const item of [
    'stream-socketpair-child-end', 'stream-socketpair-root-end', 'stream-socketpair-connected',
    'datagram-socketpair-grandchild-end', 'datagram-socketpair-connected',
    'eventfd-shared-counter', 'eventfd-one-description',
    'accepted-connection-in-child', 'accepted-connection-connected', 'listener-accepts',
  ]) t.true(r.lines.includes(`ok ${item}`), item);
  t.is(await r.exitOf(w.pid), `exit ${w.pid} 0`);
});

test.serial('groups and sessions whose leader has exited are restored with their ids', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-orphans-');
  const w = await startWorkload('orphans', [work]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready /);
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
