import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startWorkload, underReaper } from '../../test-containers/launch.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { repoRoot, sharedDir } from '../helpers/paths.js';
import { alive, selfCheckInContainer, selfCheckRoundTrip, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');

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
  // The same images as CRIU 4.2 reads and writes them (one mountpoints-N.img per namespace,
  // files by the mnt_id of their namespace's mount), both ways.
  for (const [dumper, restorer] of [['stasis', 'criu'], ['criu', 'stasis']] as const) {
    test.serial(`${workload}: a container checkpointed by ${dumper}, restored by ${restorer}, checks itself`, async (t) => {
      await acrossTools(t, workload, dumper, restorer);
    });
  }
}

/** selfCheckInContainer with the checkpoint by one tool and the restore by the other. */
async function acrossTools(t: ExecutionContext, workload: string, dumper: 'stasis' | 'criu', restorer: 'stasis' | 'criu'): Promise<void> {
  const bin = { stasis: stasisBin, criu: criuBin };
  const dir = tmpDir(t, `stasis-${workload}-x-`);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const rootfs = path.join(c.bundle, 'rootfs');
  c.withWorkload(workload, ['/data']).privileged();
  const out = await c.run();
  await out.waitForLine(/^ready\b/);
  const img = path.join(dir, 'img');
  const ck = c.checkpoint(bin[dumper], img, path.join(dir, 'work'));
  t.is(ck.code, 0, ck.stderr);
  await out.closed;
  // CRIU 4.2 reopens inherited pipes with O_LARGEFILE (its own restores too), and the child's
  // directory without O_DIRECTORY: those descriptors are not compared after its restore.
  const exclude = restorer === 'criu'
    ? ['root' as const, ...Array.from({ length: 20 }, (_, i) => i + 2)].flatMap((task) => [0, 1, 2, 100].map((fd) => ({ task, fd, why: 'as CRIU 4.2 reopens it' })))
    : [];
  const { code, out: restored } = await c.restore(bin[restorer], img, path.join(dir, 'rwork'), [], { exclude });
  t.is(code, 0, restored.lines.join(' | '));
  fs.writeFileSync(path.join(rootfs, 'data', 'check'), '');
  await restored.waitForLine(/^result /, 20_000);
  // CRIU 4.2 marks a mount of a nested namespace in the task's own (its own dumps fail so too).
  const criuCannot = restorer === 'criu' ? ['FAIL fanotify-mount:'] : [];
  t.deepEqual(restored.lines.filter((l) => l.startsWith('FAIL') && !criuCannot.some((c) => l.startsWith(c))), []);
  t.true(restored.lines.includes(criuCannot.length && restored.lines.some((l) => l.startsWith('FAIL')) ? 'result FAIL' : 'result PASS'), restored.lines.join('\n'));
  await restored.closed;
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

test.serial('mntns-open in a container with a terminal: the child\'s namespace gets the /dev/console bind the restore makes last', async (t) => {
  const dir = tmpDir(t, 'stasis-mntns-open-tty-');
  const c = RuncContainer.create(dir).withTerminal();
  t.teardown(() => c.destroy());
  const rootfs = path.join(c.bundle, 'rootfs');
  c.withWorkload('mntns-open', ['/data']).privileged();
  const sock = path.join(dir, 'console.sock');
  const reader = await underReaper(['/usr/bin/python3', path.join(repoRoot, 'test-containers', 'console-socket.py'), sock]);
  t.teardown(() => reader.kill());
  await reader.waitForLine(/^listening$/);
  await c.run(['--console-socket', sock]);
  await reader.waitForLine(/^console 1: ready\r?$/);
  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
  t.is(ck.code, 0, ck.stderr);
  await reader.waitForLine(/^closed 1$/);
  const rst = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'), ['--console-socket', sock]);
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${fs.readFileSync(path.join(dir, 'rwork', 'restore.log'), 'utf8').split('\n').filter((l) => /Error/.test(l)).join(' | ')}`);
  fs.writeFileSync(path.join(rootfs, 'data', 'check'), '');
  await reader.waitForLine(/^console 2: result /, 20_000);
  const second = reader.lines.filter((l) => l.startsWith('console 2: ')).map((l) => l.slice('console 2: '.length).replace(/\r$/, ''));
  t.deepEqual(second.filter((l) => l.startsWith('FAIL')), []);
  t.true(second.includes('ok mounts-as-were'), 'the child\'s mounts, /dev/console among them, as they were');
  t.true(second.includes('result PASS'), second.join('\n'));
});
