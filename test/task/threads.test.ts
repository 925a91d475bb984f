import test from 'ava';
import { selfCheckRoundTrip } from '../helpers/stasis.js';

test.serial('each thread keeps its TID, FPU modes, blocked and pending signals, alternate stack, credentials and rseq; a thread asleep in read() gets its bytes', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'threads');
  for (const i of [0, 1, 2]) {
    for (const item of ['tid', 'fpu-modes', 'blocked', 'pending', 'altstack', 'creds', 'rseq']) {
      t.true(r.lines.includes(`ok t${i}-${item}`), `t${i}-${item}: ${r.lines.join(' | ')}`);
    }
  }
  t.true(r.lines.includes('ok read-resumed'));
  t.true(r.lines.includes('ok main-creds'));
});
