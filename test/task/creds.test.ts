import test from 'ava';
import { killPid, selfCheckRoundTrip } from '../helpers/stasis.js';

test.serial('processes that gave up root (setuid with every capability gone; KEEP_CAPS and NOROOT securebits with permitted, effective, inheritable and ambient capabilities of their own) keep their ids, groups, capabilities, securebits and mlocked memory; one under a seccomp filter that kills setresuid() is restored and still killed by it', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'setuid', {
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of ['main-creds', 'mlocked-after-setuid', 'K-creds', 'child-K', 'S-creds', 'child-S-killed-by-its-filter']) t.true(r.lines.includes(`ok ${item}`), item);
});
