import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { startWorkload } from '../../test-containers/launch.js';
import { alive, selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

// Mount namespaces nested inside the dumped tree (CRIU's zdtm mntns_open and inotify01, as
// workloads of ours): a child's own namespace comes back as it was — a copy of its parent's with
// the child's own mounts — and files and inotify watches on either namespace's mounts with it.
// As a plain tree (the root in the host's mount namespace) and as a runc container (the root in
// a new pid + mount namespace, restored under --root).
const workloads: [string, string][] = [
  ['mntns-open', 'one file open through the parent\'s mount and the child\'s copy of it'],
  ['inotify-nested', 'a file and inotify watches on a tmpfs only the child\'s namespace has'],
];
for (const [workload, what] of workloads) {
  test.serial(`${workload}: ${what}, restored as a process tree`, async (t) => {
    await selfCheckRoundTrip(t, workload);
  });
  test.serial(`${workload}: ${what}, restored in a container`, async (t) => {
    await selfCheckInContainer(t, workload);
  });
}

test.serial('a nested mount namespace with a mount stasis cannot make again (a ramfs) fails the dump in one line, and the tree runs on', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-mntns-ramfs-');
  const w = await startWorkload('mntns-open', [work, 'ramfs']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1, d.all);
  t.regex(d.stderr, /^stasis: mount \/\S+\/r of the mount namespace of process \d+ \(ramfs stasis-mntns-ramfs\) is neither its parent's nor one stasis can make again$/);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')), 'no complete dump is left behind');
  t.true(alive(w.pid));
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 10_000);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
});
