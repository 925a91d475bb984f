import test, { type ExecutionContext } from 'ava';
import { killPid, selfCheckInContainer, selfCheckRoundTrip } from '../helpers/stasis.js';

// Memory a parent and its child share: private pages still shared copy-on-write after restore
// (not one copy per process), and a memfd reached through several descriptions and mappings.
const childOf = (t: ExecutionContext) => (_w: unknown, ready: string) => {
  const child = Number(/child=(\d+)/.exec(ready)![1]);
  t.teardown(() => killPid(child));
};

test.serial('private pages a parent and its child share copy-on-write stay shared after restore (same PFN); a write un-shares them', async (t) => {
  await selfCheckRoundTrip(t, 'cow', { afterReady: childOf(t) });
});

test.serial('a memfd reopened through /proc by a child and by itself, and one written through its fd and mapped shared and private, stay one file', async (t) => {
  await selfCheckRoundTrip(t, 'memfds', { afterReady: childOf(t) });
});

for (const workload of ['cow', 'memfds']) {
  test.serial(`${workload}: checks itself after runc checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, workload);
  });
}
