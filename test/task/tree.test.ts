import test from 'ava';
import { killPid, selfCheckRoundTrip } from '../helpers/stasis.js';

test.serial('a three-level tree with threads, a shared pipe, file, eventfd and unix sockets across processes, a zombie and a stopped child is restored whole', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'family', {
    dumpArgs: ['-v4'],
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  // Each process that holds an end checked it: exact queued bytes, datagram lengths, the counter.
  for (const item of [
    'stream-socketpair-child-end', 'stream-socketpair-root-end', 'stream-socketpair-connected',
    'datagram-socketpair-grandchild-end', 'datagram-socketpair-connected',
    'eventfd-shared-counter', 'eventfd-one-description',
    'accepted-connection-in-child', 'accepted-connection-connected', 'listener-accepts',
  ]) t.true(r.lines.includes(`ok ${item}`), item);
});

test.serial('groups and sessions whose leader has exited are restored with their ids', async (t) => {
  await selfCheckRoundTrip(t, 'orphans');
});
