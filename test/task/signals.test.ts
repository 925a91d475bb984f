import test from 'ava';
import path from 'node:path';
import { selfCheckRoundTrip, stasis } from '../helpers/stasis.js';

test.serial('POSIX timers keep their ids and times, itimers run on, and queued signals keep their siginfo (process and thread)', async (t) => {
  await selfCheckRoundTrip(t, 'timers', {
    afterDump: async (dir, w) => {
      const show = await stasis(['show', path.join(dir, `core-${w.pid}.img`)]);
      t.is(JSON.parse(show.stdout).entries[0].tc.timers.posix.length, 2, 'both timers are in the image');
    },
  });
});

test.serial('a POSIX timer that signals one thread (SIGEV_THREAD_ID) still signals that thread alone, and a glibc SIGEV_THREAD timer still runs its function', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'thread-timers');
  for (const item of ['thread-timer-interval', 'thread-timer-not-for-main', 'thread-timer-fires-in-worker', 'sigev-thread-interval', 'sigev-thread-fires']) {
    t.true(r.lines.includes(`ok ${item}`), item);
  }
});
