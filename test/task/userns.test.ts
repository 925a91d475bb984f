import test from 'ava';
import { killPid, selfCheckRoundTrip } from '../helpers/stasis.js';

const ITEMS = [
  'root-state', 'root-file', 'root-socketpair', 'p1-state', 'p1-file-f1', 'p1-file-f2', 'p1-socketpair',
  'p2-state', 'p2-file-f1', 'p2-file-f2', 'p3-state', 'p3-file-f1',
];

test.serial('a tree in two nested user namespaces (maps not identity, setgroups allowed in one and denied in the other) keeps its ids, groups and capability sets as seen inside, its maps, the ownership of its files as each task sees it and its unix socketpair', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'userns-tree', {
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of ITEMS) t.true(r.lines.includes(`ok ${item}`), item);
});
