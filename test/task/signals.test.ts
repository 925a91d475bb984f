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
