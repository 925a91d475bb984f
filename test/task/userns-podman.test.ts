// Podman containers whose root is not the host's root (`--uidmap 0:100000:65536 --gidmap
// 0:100000:65536`), stasis as Podman's criu: the userns-ct workload (a counter, files owned by
// several of the container's uids, its ids, capabilities and /proc/self maps) checkpointed and
// restored in place, then exported, removed and restored from the archive; it counts on each time
// and checks itself at the end. The host's view is checked too: the restored task's maps and the
// owners of its files as host ids.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { buildWorkload } from '../../test-containers/launch.js';
import { Podman, withLog } from '../../test-containers/podman.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

const CT_ITEMS = ['counter', 'counter-on', 'owner-mine', 'owner-theirs', 'owner-others', 'owner-root', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid', 'mine-fd'];

/** The tick numbers in a container's log lines. */
function ticks(lines: string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
}

/** The container's first task as the host sees it: its maps and its files' host owners. */
function hostView(t: ExecutionContext, pm: Podman, name: string, when: string): void {
  const pid = pm.pidOf(name);
  for (const map of ['uid_map', 'gid_map']) {
    t.deepEqual(fs.readFileSync(`/proc/${pid}/${map}`, 'utf8').trim().split(/\s+/), ['0', '100000', '65536'], `${when}: ${map}`);
  }
  const owner = (f: string) => {
    const st = fs.statSync(path.join(`/proc/${pid}/root/data`, f));
    return `${st.uid}:${st.gid}`;
  };
  t.is(owner('mine'), '100000:100000', `${when}: mine`);
  t.is(owner('theirs'), '101000:101000', `${when}: theirs`);
  t.is(owner('others'), '104242:104343', `${when}: others`);
}

test.serial('a Podman container with --uidmap/--gidmap 0:100000:65536 counts on after checkpoint/restore and after checkpoint --export, rm and restore --import through stasis, its ids, maps and files\' owners as before', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox({ 'bin/userns-ct': buildWorkload('userns-ct', 'static') }, ['data']);
  const name = `stasis-test-userns-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536', pm.image, '/bin/userns-ct', '/data']);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 2$/);
  hostView(t, pm, name, 'before');

  const archive = path.join(dir, 'userns.tar.zst');
  const rounds: [string, string[], () => void, string[]][] = [
    ['checkpoint/restore', ['container', 'checkpoint', name], () => {}, ['container', 'restore', name]],
    ['export/import', ['container', 'checkpoint', '--export', archive, name], () => t.is(pm.run(['rm', name]).code, 0), ['container', 'restore', '--import', archive]],
  ];
  for (const [round, checkpoint, between, restore] of rounds) {
    const ck = pm.run(checkpoint);
    t.is(ck.code, 0, `${round}: ${withLog(ck.out)}`);
    const before = Math.max(...ticks(pm.logs(name)));
    between();
    const rst = pm.run(restore);
    t.is(rst.code, 0, `${round}: ${withLog(rst.out)}`);
    const after = ticks(await waitForLog(pm, name, (lines) => ticks(lines).some((n) => n > before))).filter((n) => n > before);
    t.is(after[0], before + 1, `${round}: the counter goes on from ${before}`);
    hostView(t, pm, name, round);
  }
  t.is(ticks(pm.logs(name)).filter((n) => n === 1).length, 1, 'never started over');

  t.is(pm.run(['exec', name, '/bin/touch', '/data/check']).code, 0);
  const lines = await pm.waitForLog(name, /^result /, 20_000);
  t.deepEqual(lines.filter((l) => l.startsWith('FAIL')), []);
  for (const item of CT_ITEMS) t.true(lines.includes(`ok ${item}`), item);
});

/** The container's log lines once `done` holds of them. */
async function waitForLog(pm: Podman, name: string, done: (lines: string[]) => boolean, timeoutMs = 15_000): Promise<string[]> {
  const t0 = Date.now();
  for (;;) {
    const lines = pm.logs(name);
    if (done(lines)) return lines;
    if (Date.now() - t0 > timeoutMs) throw new Error(`log ends: ${lines.slice(-3).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
