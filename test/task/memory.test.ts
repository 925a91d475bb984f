import test from 'ava';
import { killPid, selfCheckRoundTrip } from '../helpers/stasis.js';

test.serial('shared anonymous memory, a shared memfd (mapped again read-only by one process through a second description) and a shared file mapping stay shared across processes; private copies stay apart, and pages only the parent wrote after the fork are not the child’s', async (t) => {
  await selfCheckRoundTrip(t, 'shm', {
    afterReady: (_w, ready) => {
      const child = Number(/child=(\d+)/.exec(ready)![1]);
      t.teardown(() => killPid(child));
    },
  });
});
