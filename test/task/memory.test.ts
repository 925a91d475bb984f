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

const VMA_FLAG_ITEMS = ['noreserve-dontdump', 'locked-sequential', 'dontfork', 'hugepage', 'mergeable', 'noreserve-random-wipeonfork', 'growsdown', 'droppable'];

test.serial('anonymous mappings made MAP_NORESERVE, MAP_LOCKED, MAP_GROWSDOWN or MAP_DROPPABLE and advised (DONTDUMP, SEQUENTIAL, DONTFORK, HUGEPAGE, MERGEABLE, RANDOM, WIPEONFORK) come back with the same VmFlags and bytes', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'vma-flags');
  for (const item of VMA_FLAG_ITEMS) t.true(r.lines.includes(`ok ${item}`), `${item}: ${r.lines.join(' | ')}`);
});
