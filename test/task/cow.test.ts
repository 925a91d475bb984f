import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { killPid, selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

// Memory a parent and its child share: private pages still shared copy-on-write after restore
// (not one copy per process), and a memfd reached through several descriptions and mappings.
const childOf = (t: ExecutionContext) => (_w: unknown, ready: string) => {
  const child = Number(/child=(\d+)/.exec(ready)![1]);
  t.teardown(() => killPid(child));
};

test.serial('private pages a parent and its child share copy-on-write stay shared after restore (same PFN), in small and large processes; a write un-shares them', async (t) => {
  await selfCheckRoundTrip(t, 'cow', { afterReady: childOf(t) });
});

test.serial('private pages shared copy-on-write stay shared after restore when stasis fills all of both processes itself', async (t) => {
  await selfCheckRoundTrip(t, 'cow', { args: (work) => [work, 'small'], afterReady: childOf(t) });
});

test.serial('a --leave-running dump leaves the private pages a parent and its child share copy-on-write shared', async (t) => {
  const work = tmpDir(t, 'stasis-cow-');
  const w = await startWorkload('cow', [work, 'small']);
  t.teardown(() => w.kill());
  childOf(t)(w, await w.waitForLine(/^ready\b/));
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
});

test.serial('a memfd reopened through /proc by a child and by itself, and one written through its fd and mapped shared and private, stay one file', async (t) => {
  await selfCheckRoundTrip(t, 'memfds', { afterReady: childOf(t) });
});

for (const workload of ['cow', 'memfds']) {
  test.serial(`${workload}: checks itself after runc checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, workload);
  });
}
