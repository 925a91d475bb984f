import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { killPid, selfCheckRoundTrip } from '../helpers/stasis.js';
import { SeizedTree, TASK_DEAD } from '../../task/tree.js';
import { buildWorkload, underReaper } from '../../test-containers/launch.js';
import { readStat, readStatus } from '../../sys/proc/index.js';

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

test.serial('unreaped children that exited (0, 3) or were killed (SIGKILL, SIGSEGV, SIGTERM) are collected after restore with their exact wait status and the uid wait reports (one that took another uid before it exited), and none dumps core on the way even where stasis may', async (t) => {
  // Core files allowed for this test's processes, stasis among them; put back at the end.
  const core = () => execFileSync('prlimit', ['--pid', String(process.pid), '--core', '--raw', '--noheadings', '-o', 'SOFT,HARD'], { encoding: 'utf8' }).trim().split(/\s+/);
  const [soft, hard] = core();
  t.teardown(() => {
    execFileSync('prlimit', ['--pid', String(process.pid), `--core=${soft}:${hard}`]);
  });
  execFileSync('prlimit', ['--pid', String(process.pid), `--core=${hard}:${hard}`]);
  t.is(core()[0], hard);
  const { r } = await selfCheckRoundTrip(t, 'zombies', {
    args: (work) => [work, 'other-uid'],
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of ['exit-0', 'exit-3', 'sigkill', 'sigsegv', 'sigterm', 'exit-as-other', 'exit-as-other-uid', 'exit-0-uid', 'no-other-children', 'no-core-file']) t.true(r.lines.includes(`ok ${item}`), item);
});

/**
 * A three-process tree whose first child is SIGKILLed while the tree is seized: once the
 * children are listed (`listed`), or once it is seized and not yet interrupted (`seized`).
 */
async function childExitsWhileSeized(t: ExecutionContext, when: 'listed' | 'seized'): Promise<void> {
  const w = await underReaper([buildWorkload('many'), 'procs', '3']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/, 30_000);
  let victim = 0;
  const killVictim = () => {
    process.kill(victim, 'SIGKILL');
    // Its parent is stopped already: it stays a zombie (traced, until we collect its exit).
    const until = Date.now() + 5000;
    while (!['Z', 'X'].includes(readStat(victim).state)) {
      if (Date.now() > until) throw new Error(`${victim} did not die`);
    }
  };
  const tree = SeizedTree.seize(w.pid, {
    beforeChildSeize: (children) => {
      if (victim || !children.length) return;
      victim = children[0]!;
      if (when === 'listed') killVictim();
    },
    beforeInterrupt: (tid) => {
      if (when === 'seized' && tid === victim) killVictim();
    },
  });
  try {
    t.not(victim, 0);
    const dead = tree.processes.find((p) => p.pid === victim);
    t.truthy(dead, 'the child is still in the tree');
    t.is(dead!.state, TASK_DEAD);
    t.is(dead!.exitCode, 9, 'its wait status: killed by SIGKILL');
    t.is(tree.processes.length, 3);
    t.true(tree.root.children.some((c) => c.pid === victim));
  } finally {
    tree.release();
    t.teardown(() => tree.processes.forEach((p) => killPid(p.pid))); // before w.kill(): last added, first run
  }
  // Everyone else runs on, untraced; the child is still a zombie its parent can reap.
  for (const p of tree.processes.filter((q) => q.pid !== victim)) {
    const st = readStatus(p.pid);
    t.is(st.tracerPid, 0, `${p.pid} is not traced`);
    t.false(['t', 'T'].includes(st.state), `${p.pid} runs`);
  }
  t.is(readStat(victim).state, 'Z');
}

test.serial('a child that exits between being listed and being seized is taken as the zombie it became, and release resumes the rest', async (t) => {
  await childExitsWhileSeized(t, 'listed');
});

test.serial('a child that exits once seized, before its stop, is taken as the zombie it became', async (t) => {
  await childExitsWhileSeized(t, 'seized');
});
