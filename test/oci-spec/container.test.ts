import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Output, RuncContainer } from '../../test-containers/runc.js';
import { Podman } from '../../test-containers/podman.js';
import { pipe } from '../../sys/native.js';
import { detectCompression, type Compression } from '../../oci-spec/compression.js';
import { listMembers } from '../../oci-spec/archive.js';
import { lastTick, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

const O_CLOEXEC = 0o2000000;

/** The container writes a file into its rootfs and one into /dev/shm, then counts. */
const WORKLOAD = 'echo in-rootfs > /data/written; echo in-shm > /dev/shm/written; ' +
  'i=0; while true; do i=$((i+1)); echo $i > /data/count; echo tick $i; sleep 0.2; done';

function ticks(lines: readonly string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.slice(5)));
}

/**
 * `stasis ARGS` with real pipes as its stdin and stdout+stderr (runc hands them on to the
 * restored container, whose output is then read here line by line).
 */
function stasisWithPipes(args: string[]): Output {
  const [inR, inW] = pipe(O_CLOEXEC);
  const [outR, outW] = pipe(O_CLOEXEC);
  const child = spawn(process.execPath, [stasisBin, ...args], { stdio: [inR, outW, outW] });
  fs.closeSync(inR);
  fs.closeSync(outW);
  fs.closeSync(inW);
  return new Output(child, fs.createReadStream('', { fd: outR }));
}

/** runc's state of container `name` under the state directory `root`, or undefined. */
function runcState(root: string, name: string): { status: string; pid: number; bundle: string } | undefined {
  const r = spawnSync('runc', ['--root', root, 'state', name], { encoding: 'utf8' });
  return r.status === 0 ? JSON.parse(r.stdout) : undefined;
}

function runcDelete(root: string, name: string): void {
  spawnSync('runc', ['--root', root, 'delete', '--force', name]);
}

/**
 * `stasis container restore --import ARCHIVE --name NAME ...` under the runc state directory
 * `root`; the restored container is deleted (by name) when the test ends.
 */
async function restoreAs(t: ExecutionContext, root: string, archive: string, name: string, extra: string[]) {
  t.teardown(() => runcDelete(root, name));
  const out = stasisWithPipes(['container', 'restore', '--import', archive, '--name', name, '--runtime-root', root, ...extra]);
  const code = await out.exited();
  t.is(code, 0, `restore as ${name}: ${out.lines.join(' | ')}`);
  const st = runcState(root, name);
  t.is(st?.status, 'running', `${name} runs`);
  return { out, pid: st!.pid };
}

/** The counter goes on from `at`, and the files it wrote are there (seen from inside). */
async function assertCountsOn(t: ExecutionContext, out: Output, pid: number, at: number, what: string) {
  await out.waitForLine(new RegExp(`^tick ${at + 3}$`));
  t.deepEqual(ticks(out.lines).slice(0, 3), [at + 1, at + 2, at + 3], `${what}: the count goes on from ${at}`);
  t.is(fs.readFileSync(`/proc/${pid}/root/data/written`, 'utf8'), 'in-rootfs\n', `${what}: the file it wrote in its rootfs`);
  t.is(fs.readFileSync(`/proc/${pid}/root/dev/shm/written`, 'utf8'), 'in-shm\n', `${what}: the file it wrote in /dev/shm`);
  t.true(Number(fs.readFileSync(`/proc/${pid}/root/data/count`, 'utf8')) > at, `${what}: /data/count moves on`);
}

const EXT: Record<Compression, string> = { zstd: 'tar.zst', gzip: 'tar.gz', none: 'tar' };

for (const compression of ['zstd', 'gzip', 'none'] as const) {
  test.serial(`runc: a busybox container checkpointed with --export (${compression}), deleted with its bundle, is restored three times under new names in new bundles, counting on with its rootfs and /dev/shm files`, async (t) => {
    const dir = tmpDir(t);
    const c = RuncContainer.create(dir, '0.2').withArgs(['sh', '-c', WORKLOAD]);
    t.teardown(() => c.destroy());
    const out = await c.run();
    await out.waitForLine(/^tick 3$/);

    const archive = path.join(dir, `x.${EXT[compression]}`);
    const ck = await stasis(['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--export', archive, '--compress', compression]);
    t.is(ck.exitCode, 0, ck.all);
    t.is(c.state(), undefined, 'the checkpointed container is gone');
    await out.closed;
    const at = lastTick(out.lines);
    t.is(await detectCompression(archive), compression);
    const names = (await listMembers(archive)).map((m) => m.name);
    for (const m of ['spec.dump', 'config.dump', 'stats-dump', 'checkpoint/inventory.img', 'rootfs-diff.tar', 'devshm-checkpoint.tar']) {
      t.true(names.includes(m), `the archive holds ${m}`);
    }
    t.is(fs.statSync(archive).mode & 0o777, 0o600);
    t.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('.stasis-')), [], 'no work directory left beside it');
    // Our own archive, inspected: who it is, and its process tree as runc's container had it.
    const inspected = await stasis(['inspect', archive, '--format', 'json', '--ps-tree-cmd']);
    t.is(inspected.exitCode, 0, inspected.all);
    const info = JSON.parse(inspected.stdout) as Record<string, any>[];
    t.is(info.length, 1);
    t.is(info[0]!.id, c.id);
    t.is(info[0]!.container_name, c.id);
    t.is(info[0]!.runtime, 'runc');
    t.is(info[0]!.process_tree.pid, 1);
    t.is(info[0]!.process_tree.command, 'sh');
    t.deepEqual(info[0]!.process_tree.cmdline, ['sh', '-c', WORKLOAD].join(' '));
    fs.rmSync(c.bundle, { recursive: true });

    // Side by side: each its own bundle, rootfs, cgroups and processes.
    const newNames = [`${c.id}-other`, `${c.id}-again`, `${c.id}-third`];
    const restored: { name: string; out: Output; pid: number }[] = [];
    for (const [i, name] of newNames.entries()) {
      const bundle = path.join(dir, `host${i}`, 'bundle');
      const { out: rout, pid } = await restoreAs(t, c.stateRoot, archive, name, ['--bundle', bundle]);
      t.is(runcState(c.stateRoot, name)?.bundle, bundle);
      const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
      t.is(spec.root.path, 'rootfs');
      await assertCountsOn(t, rout, pid, at, name);
      restored.push({ name, out: rout, pid });
    }
    t.is(new Set(restored.map((r) => r.pid)).size, 3);
    for (const r of restored) t.is(runcState(c.stateRoot, r.name)?.status, 'running', `${r.name} still runs beside the others`);
    for (const r of restored) {
      runcDelete(c.stateRoot, r.name);
      await r.out.closed;
    }
  });
}

test.serial('runc: --leave-running keeps the container counting; --rootfs-diff-from carries only the changes, and a restore needs --rootfs for them', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.2').withArgs(['sh', '-c', WORKLOAD]);
  t.teardown(() => c.destroy());
  // The base: the bundle's rootfs as made, before the container ran.
  const base = path.join(dir, 'base');
  t.is(spawnSync('cp', ['-a', path.join(c.bundle, 'rootfs'), base]).status, 0);
  fs.rmSync(path.join(c.bundle, 'rootfs', 'etc', 'group'));
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const archive = path.join(dir, 'x.tar.zst');
  const ck = await stasis(['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--export', archive,
    '--leave-running', '--rootfs-diff-from', base]);
  t.is(ck.exitCode, 0, ck.all);
  t.is(c.state()?.status, 'running', 'it runs on');
  const now = lastTick(out.lines);
  await out.waitForLine(new RegExp(`^tick ${now + 2}$`));
  const members = await listMembers(archive);
  const diffSize = members.find((m) => m.name === 'rootfs-diff.tar')!.size;
  t.true(diffSize < 64 * 1024, `only the changes: ${diffSize} bytes (busybox alone is ~1 MB)`);
  t.true(members.some((m) => m.name === 'deleted.files'));
  c.destroy();
  await out.closed;
  const end = lastTick(out.lines);

  const noBase = await stasis(['container', 'restore', '--import', archive, '--name', `${c.id}-r`, '--runtime-root', c.stateRoot,
    '--bundle', path.join(dir, 'nobase')]);
  t.is(noBase.exitCode, 1);
  t.regex(noBase.stderr, /^stasis: .*carries only the rootfs's changes: give the rootfs they apply to with --rootfs DIR$/);
  t.false(fs.existsSync(path.join(dir, 'nobase')), 'no bundle left');

  const bundle = path.join(dir, 'restored');
  const { out: rout, pid } = await restoreAs(t, c.stateRoot, archive, `${c.id}-r`, ['--bundle', bundle, '--rootfs', base]);
  await rout.waitForLine(/^tick \d+$/);
  const first = ticks(rout.lines)[0]!;
  t.true(first > 3 && first <= end, `it goes on from the checkpoint (${first}; the original ran on to ${end})`);
  t.true(ticks(out.lines).includes(first - 1), `tick ${first - 1} was the original's`);
  // The rootfs was saved at the moment of the dump (the container paused meanwhile), not later:
  // the count the archive carries is the one the restored counter goes on from.
  const { readMembers } = await import('../../oci-spec/archive.js');
  let diff: Buffer = Buffer.alloc(0);
  for await (const m of readMembers(archive, (n) => n === 'rootfs-diff.tar')) diff = m.data;
  const saved = Number(spawnSync('tar', ['-xO', 'data/count'], { input: diff, encoding: 'utf8' }).stdout);
  t.true(first === saved || first === saved + 1, `the saved count ${saved} is where it goes on (${first})`);
  t.is(fs.readFileSync(`/proc/${pid}/root/data/written`, 'utf8'), 'in-rootfs\n');
  t.is(fs.readFileSync(`/proc/${pid}/root/dev/shm/written`, 'utf8'), 'in-shm\n');
  t.false(fs.existsSync(path.join(bundle, 'rootfs', 'etc', 'group')), 'the deleted file stays deleted');
  t.true(fs.existsSync(path.join(bundle, 'rootfs', 'etc', 'passwd')), 'the base is there');
});

test.serial('Podman: an archive made by `podman container checkpoint --export` (zstd) is restored under plain runc with the image\'s rootfs as --rootfs, counting on', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(path.join(dir, 'podman'), stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-pm-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', WORKLOAD.replace(/\/data\//g, '/')]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  const archive = path.join(dir, 'podman.tar.zst');
  const ck = pm.run(['container', 'checkpoint', '--export', archive, name]);
  t.is(ck.code, 0, ck.out);
  t.is(await detectCompression(archive), 'zstd');
  const at = lastTick(pm.logs(name));
  // Gone from Podman: its per-container files (hosts, hostname, .containerenv, shm) with it.
  t.is(pm.run(['rm', name]).code, 0);
  const mount = pm.run(['image', 'mount', pm.image]);
  t.is(mount.code, 0, mount.out);
  const base = mount.out.trim();
  t.teardown(() => pm.run(['image', 'unmount', pm.image]));

  const root = path.join(dir, 'runc-state');
  fs.mkdirSync(root);
  const bundle = path.join(dir, 'runc-host', 'bundle');
  const restored = `${name}-runc`;
  const { out, pid } = await restoreAs(t, root, archive, restored, ['--bundle', bundle, '--rootfs', base]);
  await out.waitForLine(new RegExp(`^tick ${at + 3}$`));
  t.deepEqual(ticks(out.lines).slice(0, 3), [at + 1, at + 2, at + 3], `the count goes on from ${at}`);
  t.is(fs.readFileSync(`/proc/${pid}/root/written`, 'utf8'), 'in-rootfs\n');
  t.is(fs.readFileSync(`/proc/${pid}/root/dev/shm/written`, 'utf8'), 'in-shm\n', 'devshm-checkpoint.tar filled the new /dev/shm');
  // The missing bind sources were made in the bundle, each with the type it had.
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  const source = (dest: string) => spec.mounts.find((m: { destination: string }) => m.destination === dest).source as string;
  for (const f of ['/etc/hosts', '/etc/hostname', '/run/.containerenv']) {
    t.true(source(f).startsWith(`${bundle}/mounts/`), `${f} from the bundle`);
    t.true(fs.statSync(source(f)).isFile(), `${f}'s source is a file`);
  }
  t.true(fs.statSync(source('/dev/shm')).isDirectory());
  t.is(spec.linux.cgroupsPath, `/${restored}`);
  runcDelete(root, restored);
  await out.closed;
});

test.serial('bad input: a missing archive, a file that is no archive, an archive without checkpoint/, an unknown container, a container runc cannot checkpoint: one line, exit 1, nothing left', async (t) => {
  const dir = tmpDir(t);
  const root = path.join(dir, 'runc-state');
  fs.mkdirSync(root);
  const bundle = path.join(dir, 'bundle');
  const restore = (archive: string) => stasis(['container', 'restore', '--import', archive, '--name', `stasis-test-bad-${process.pid}`,
    '--bundle', bundle, '--runtime-root', root]);
  const oneLine = (r: { exitCode?: number; stderr: string; stdout: string }, re: RegExp, what: string) => {
    t.is(r.exitCode, 1, what);
    t.regex(r.stderr, new RegExp(`^stasis: ${re.source}[^\\n]*$`), what);
    t.is(r.stdout, '', what);
    t.false(fs.existsSync(bundle), `${what}: no bundle left`);
    t.is(fs.readdirSync(root).length, 0, `${what}: no container left`);
  };

  oneLine(await restore(path.join(dir, 'nothing.tar')), /.*nothing\.tar: no such archive/, 'missing archive');
  const junk = path.join(dir, 'junk.tar');
  fs.writeFileSync(junk, Buffer.alloc(4096, 0x41));
  oneLine(await restore(junk), /.*junk\.tar: not a checkpoint archive/, 'not an archive');

  // A well-formed archive of the right members but checkpoint/.
  const content = path.join(dir, 'content');
  fs.mkdirSync(content);
  const c = RuncContainer.create(path.join(dir, 'c'));
  fs.copyFileSync(path.join(c.bundle, 'config.json'), path.join(content, 'spec.dump'));
  fs.writeFileSync(path.join(content, 'config.dump'), JSON.stringify({ id: 'x', name: 'x', rootfsCarriage: 'whole' }));
  const empty = path.join(dir, 'no-checkpoint.tar.zst');
  const { packDirectory } = await import('../../oci-spec/archive.js');
  await packDirectory(content, empty, { compression: 'zstd' });
  oneLine(await restore(empty), /.*no-checkpoint\.tar\.zst: not a checkpoint archive \(no checkpoint\/inventory\.img\)/, 'no checkpoint/');

  // A bundle directory that exists is someone's: refused, left as it was.
  const theirs = path.join(dir, 'theirs');
  fs.mkdirSync(theirs);
  fs.writeFileSync(path.join(theirs, 'config.json'), '{}');
  const busy = await stasis(['container', 'restore', '--import', empty, '--name', 'x', '--bundle', theirs, '--runtime-root', root]);
  t.is(busy.exitCode, 1);
  t.is(busy.stderr, `stasis: --bundle ${theirs}: it exists already (a restore makes a fresh bundle)`);
  t.deepEqual(fs.readdirSync(theirs), ['config.json']);

  const out = path.join(dir, 'x.tar.zst');
  const ck = await stasis(['container', 'checkpoint', 'stasis-test-nosuch', '--runtime-root', root, '--export', out]);
  t.is(ck.exitCode, 1);
  t.regex(ck.stderr, /^stasis: no container "stasis-test-nosuch" in runc \(--root [^\n]*\)$/);
  t.false(fs.existsSync(out));
  t.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('.stasis-')), []);

  // A container stasis cannot dump (an established TCP connection inside): runc's reason and
  // the dump log's first error in one line; it runs on, nothing is written.
  const c2 = RuncContainer.create(path.join(dir, 'c2'), '0.2').privileged().withArgs(['sh', '-c',
    'ip link set lo up; (sleep 1000 | nc -l -p 7000) & sleep 0.5; (sleep 1000 | nc 127.0.0.1 7000) & ' +
    'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
  t.teardown(() => c2.destroy());
  const c2out = await c2.run();
  await c2out.waitForLine(/^tick 5$/);
  t.regex(fs.readFileSync(`/proc/${c2.state()!.pid}/net/tcp`, 'utf8'), /^\s*\d+: 0100007F:[0-9A-F]{4} 0100007F:[0-9A-F]{4} 01 /m, 'a TCP connection is established');
  const failed = await stasis(['container', 'checkpoint', c2.id, '--runtime-root', c2.stateRoot, '--export', out]);
  t.is(failed.exitCode, 1);
  t.regex(failed.stderr, new RegExp(`^stasis: checkpoint of ${c2.id}: runc: [^\\n]*criu failed[^\\n]*\\(dump\\.log: Error: [^\\n]*\\)$`));
  t.is(c2.state()?.status, 'running', 'the container runs on');
  t.false(fs.existsSync(out));
  t.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('.stasis-')), [], 'no work directory left');

  const usage = await stasis(['container', 'restore', '--import', out, '--frobnicate']);
  t.is(usage.exitCode, 1);
  t.regex(usage.stderr, /^stasis: container restore: unknown option --frobnicate/);
});

test.serial('runc, overlay rootfs: the upper layer is carried (rootfs-diff.tar), whiteouts and an opaque directory become deleted.files, and the restore over the lower layer matches', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.2').withArgs(['sh', '-c', 'rm /etc/motd; rm -rf /opt/dir; mkdir /opt/dir; echo new > /opt/dir/c; ' + WORKLOAD]);
  // The bundle's rootfs becomes the lower layer of an overlay mounted in its place.
  const rootfs = path.join(c.bundle, 'rootfs');
  const [lower, upper, work] = ['lower', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
  fs.renameSync(rootfs, lower);
  fs.writeFileSync(path.join(lower, 'etc', 'motd'), 'hello\n');
  fs.mkdirSync(path.join(lower, 'opt', 'dir'), { recursive: true });
  for (const f of ['a', 'b']) fs.writeFileSync(path.join(lower, 'opt', 'dir', f), f);
  for (const d of [rootfs, upper, work]) fs.mkdirSync(d);
  const m = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs], { encoding: 'utf8' });
  t.is(m.status, 0, m.stderr);
  t.teardown(() => {
    spawnSync('umount', [rootfs]);
  });
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);

  const archive = path.join(dir, 'x.tar.zst');
  const ck = await stasis(['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--export', archive]);
  t.is(ck.exitCode, 0, ck.all);
  await out.closed;
  const at = lastTick(out.lines);
  const { readMembers } = await import('../../oci-spec/archive.js');
  const small = new Map<string, Buffer>();
  for await (const mem of readMembers(archive, (n) => ['deleted.files', 'config.dump', 'rootfs-diff.tar'].includes(n))) small.set(mem.name, mem.data);
  t.deepEqual(JSON.parse(small.get('deleted.files')!.toString()), ['/etc/motd', '/opt/dir/a', '/opt/dir/b']);
  t.is(JSON.parse(small.get('config.dump')!.toString()).rootfsCarriage, 'diff');
  const diff = small.get('rootfs-diff.tar')!;
  t.true(diff.length < 64 * 1024, `the upper layer only: ${diff.length} bytes`);
  const inDiff = spawnSync('tar', ['-t'], { input: diff, encoding: 'utf8' }).stdout.split('\n');
  t.true(inDiff.includes('data/written') && inDiff.includes('opt/dir/c'));
  t.false(inDiff.some((n) => n.startsWith('bin/')), 'nothing of the lower layer');

  const bundle = path.join(dir, 'restored');
  const { out: rout, pid } = await restoreAs(t, c.stateRoot, archive, `${c.id}-r`, ['--bundle', bundle, '--rootfs', lower]);
  await assertCountsOn(t, rout, pid, at, 'restored over the lower layer');
  t.false(fs.existsSync(path.join(bundle, 'rootfs', 'etc', 'motd')));
  t.deepEqual(fs.readdirSync(path.join(bundle, 'rootfs', 'opt', 'dir')), ['c']);
  runcDelete(c.stateRoot, `${c.id}-r`);
  await rout.closed;
});

test.serial('a restore that fails in runc leaves nothing: no bundle, no container, no cgroup, no mount; a taken name is refused and its container untouched', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.2').withArgs(['sh', '-c', WORKLOAD]);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 2$/);
  const archive = path.join(dir, 'x.tar');
  const ck = await stasis(['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--export', archive, '--compress', 'none', '--leave-running']);
  t.is(ck.exitCode, 0, ck.all);

  const taken = await stasis(['container', 'restore', '--import', archive, '--name', c.id, '--runtime-root', c.stateRoot, '--bundle', path.join(dir, 'b0')]);
  t.is(taken.exitCode, 1);
  t.is(taken.stderr, `stasis: a container named ${c.id} exists already in runc: give another --name`);
  t.false(fs.existsSync(path.join(dir, 'b0')));
  t.is(c.state()?.status, 'running', 'the container of that name runs on');

  // The same archive with the contents of its tmpfs mounts damaged: found once runc has made the
  // container's namespaces and cgroups.
  const { extractArchive, packDirectory } = await import('../../oci-spec/archive.js');
  const content = path.join(dir, 'content');
  await extractArchive(archive, content);
  const tars = fs.readdirSync(path.join(content, 'checkpoint')).filter((f) => f.startsWith('tmpfs-dev-'));
  t.true(tars.length > 0);
  for (const f of tars) fs.writeFileSync(path.join(content, 'checkpoint', f), 'not a tar file');
  fs.rmSync(path.join(content, 'checkpoint', 'stasis-manifest.json'), { force: true });
  const damaged = path.join(dir, 'damaged.tar');
  await packDirectory(content, damaged, { compression: 'none' });

  const name = `${c.id}-bad`;
  t.teardown(() => runcDelete(c.stateRoot, name));
  const bundle = path.join(dir, 'host', 'bundle');
  const r = await stasis(['container', 'restore', '--import', damaged, '--name', name, '--runtime-root', c.stateRoot, '--bundle', bundle]);
  t.is(r.exitCode, 1);
  // (runc's own lines come first: its stderr is the one the restored container would have had.)
  const last = r.stderr.split('\n').pop()!;
  t.regex(last, new RegExp(`^stasis: restore of ${name}: runc: criu failed: type NOTIFY errno 0 \\(restore\\.log: Error: [^\\n]*restoring the tmpfs at [^\\n]*\\)$`), r.stderr);
  t.false(fs.existsSync(path.dirname(bundle)), 'no bundle left, nor the directory made for it');
  t.is(runcState(c.stateRoot, name), undefined, 'no container left');
  const { cgroupHierarchies } = await import('../../cgroup/cgroups.js');
  t.deepEqual(cgroupHierarchies().map((h) => path.join(h.mountPoint, name)).filter((d) => fs.existsSync(d)), [], 'no cgroup left');
  t.false(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(bundle), 'no mount left');
});

test('stasis container --help lists checkpoint\'s and restore\'s options; stasis --help lists the container action', async (t) => {
  const help = await stasis(['container', '--help']);
  t.is(help.exitCode, 0);
  for (const o of ['--export FILE', '--compress zstd|gzip|none', '--leave-running', '--rootfs-diff-from DIR', '--import FILE',
    '--name NAME', '--bundle DIR', '--rootfs DIR', '--runtime runc', '--runtime-root DIR']) {
    t.true(help.stdout.includes(o), o);
  }
  t.regex((await stasis(['--help'])).stdout, /^ {2}container checkpoint ID --export FILE/m);
  const none = await stasis(['container']);
  t.is(none.exitCode, 1);
  t.is(none.stderr, 'stasis: container wants checkpoint or restore');
});

test.serial('runc: a busybox container checkpointed with --create-image: skopeo reads the layout with the engines\' annotations, and restore --import of the layout counts on with its files', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '0.2').withArgs(['sh', '-c', WORKLOAD]);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const layout = path.join(dir, 'image');
  const ck = await stasis(['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--create-image', layout]);
  t.is(ck.exitCode, 0, ck.all);
  t.is(c.state(), undefined, 'the checkpointed container is gone');
  await out.closed;
  const at = lastTick(out.lines);
  const raw = JSON.parse(spawnSync('skopeo', ['inspect', '--raw', `oci:${layout}`], { encoding: 'utf8' }).stdout) as { annotations: Record<string, string> };
  for (const k of ['io.podman.annotations.checkpoint.name', 'io.kubernetes.cri-o.annotations.checkpoint.name', 'org.criu.checkpoint.container.name']) {
    t.is(raw.annotations[k], c.id, `skopeo shows ${k}`);
  }
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { annotations: Record<string, string> };
  t.is(index.annotations['org.criu.checkpoint.container.name'], c.id, 'containerd\'s annotation on the index');
  t.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('.stasis-')), [], 'no work directory or archive left beside the image');
  fs.rmSync(c.bundle, { recursive: true });

  const name = `${c.id}-from-image`;
  const { out: rout, pid } = await restoreAs(t, c.stateRoot, layout, name, ['--bundle', path.join(dir, 'host', 'bundle')]);
  await assertCountsOn(t, rout, pid, at, name);
  runcDelete(c.stateRoot, name);
  await rout.closed;
});
