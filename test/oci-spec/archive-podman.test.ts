// The archive layer on archives Podman makes (`podman container checkpoint --export`, stasis as
// its criu): read, listed, unpacked strictly, and the tars inside (rootfs-diff.tar,
// devshm-checkpoint.tar) applied onto a fresh tree with applyTar.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Podman } from '../../test-containers/podman.js';
import { applyTar, extractArchive, listMembers, readMembers } from '../../oci-spec/archive.js';
import { detectCompression, type Compression } from '../../oci-spec/compression.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

const SETUP = [
  'echo data > /newfile', 'mkdir -p /d', 'ln -s /newfile /d/sym', 'ln /newfile /d/hard', 'rm /bin/yes',
  'echo shm > /dev/shm/seg',
  'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done',
].join('; ');

test.serial('Podman-made archives (zstd, gzip, none) are read, listed and unpacked; their rootfs-diff.tar and devshm-checkpoint.tar apply onto a fresh tree', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-archive-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', SETUP]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 2$/);
  for (const kind of ['zstd', 'gzip', 'none'] as Compression[]) {
    const archive = path.join(dir, `ck-${kind}.tar`);
    const ex = pm.run(['container', 'checkpoint', '--leave-running', '--export', archive, '--compress', kind, name]);
    t.is(ex.code, 0, ex.out);
    t.is(await detectCompression(archive), kind);
    const names = (await listMembers(archive)).map((m) => m.name);
    for (const n of ['config.dump', 'spec.dump', 'checkpoint/inventory.img', 'rootfs-diff.tar', 'deleted.files', 'devshm-checkpoint.tar']) {
      t.true(names.includes(n), `${kind}: ${n} in ${names.join(' ')}`);
    }
    const counter = { bytes: 0 };
    let spec: unknown;
    for await (const m of readMembers(archive, (n) => n === 'spec.dump', { counter })) {
      spec = JSON.parse(m.data.toString());
      break;
    }
    t.is((spec as { process: { args: string[] } }).process.args.at(-1), SETUP, `${kind}: spec.dump`);
    const dest = path.join(dir, `unpacked-${kind}`);
    await extractArchive(archive, dest);
    t.deepEqual(JSON.parse(fs.readFileSync(path.join(dest, 'deleted.files'), 'utf8')), ['/bin/yes']);
    const root = tmpDir(t);
    fs.mkdirSync(path.join(root, 'etc'));
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'base');
    await applyTar(path.join(dest, 'rootfs-diff.tar'), root);
    t.is(fs.readFileSync(path.join(root, 'newfile'), 'utf8'), 'data\n');
    t.is(fs.readlinkSync(path.join(root, 'd', 'sym')), '/newfile', 'the symlink as it was (not followed)');
    t.is(fs.statSync(path.join(root, 'd', 'hard')).ino, fs.statSync(path.join(root, 'newfile')).ino, 'the hard link');
    t.is(fs.readFileSync(path.join(root, 'etc', 'passwd'), 'utf8'), 'base', 'the rest of the base untouched');
    const shm = tmpDir(t);
    await applyTar(path.join(dest, 'devshm-checkpoint.tar'), shm);
    t.is(fs.readFileSync(path.join(shm, 'seg'), 'utf8'), 'shm\n');
  }
});
