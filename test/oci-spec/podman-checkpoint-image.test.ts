// A checkpoint image Podman made (`podman container checkpoint --create-image`, stasis as its
// criu), taken out of Podman's storage as an OCI image layout (by `podman save --format oci-dir`
// and by `skopeo copy containers-storage:… oci:…`), is read by readCheckpointImage: its
// annotations and its layer, which holds Podman's export layout.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { extractArchive, listMembers } from '../../oci-spec/archive.js';
import { createCheckpointImage, readCheckpointImage } from '../../oci-spec/checkpoint-image.js';
import { Podman } from '../../test-containers/podman.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

const COUNTER = 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done';

test.serial('a checkpoint image Podman made is read from podman save --format oci-dir and from skopeo copy to oci:', async (t) => {
  const dir = tmpDir(t, 'stasis-ckimg-podman-');
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-ckimg-${process.pid}`;
  const image = `localhost/${name}-checkpoint:latest`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', COUNTER]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  const ck = pm.run(['container', 'checkpoint', '--create-image', image, name]);
  t.is(ck.code, 0, ck.out);

  const saved = path.join(dir, 'saved');
  const save = pm.run(['save', '--format', 'oci-dir', '-o', saved, image]);
  t.is(save.code, 0, save.out);
  const copied = path.join(dir, 'copied');
  const cp = spawnSync('skopeo', ['copy', '--quiet', `containers-storage:${image}`, `oci:${copied}`], { env: pm.env, encoding: 'utf8' });
  t.is(cp.status, 0, cp.stderr);

  for (const layout of [saved, copied]) {
    const img = await readCheckpointImage(layout);
    t.is(img.containerName, name, `${layout}: the container's name from Podman's annotation`);
    t.is(img.annotations['io.podman.annotations.checkpoint.name'], name);
    t.is(img.annotations['io.podman.annotations.checkpoint.runtime.name'], 'runc');
    t.is(img.annotations['io.podman.annotations.checkpoint.rootfsImageName'], pm.image);
    const names = (await listMembers(img.archive)).map((m) => m.name);
    for (const m of ['config.dump', 'spec.dump', 'checkpoint/inventory.img', 'checkpoint/pstree.img']) {
      t.true(names.includes(m), `${layout}: the layer holds ${m} (${names.slice(0, 12).join(', ')}…)`);
    }
    // What container restore --import does with it: unpack it into a fresh bundle.
    const dest = path.join(dir, `unpacked-${path.basename(layout)}`);
    await extractArchive(img.archive, dest);
    t.true(fs.statSync(path.join(dest, 'checkpoint', 'inventory.img')).isFile(), 'it unpacks like an exported archive');
  }
});

test.serial('Podman restores a container from a checkpoint image stasis made of its exported archive', async (t) => {
  const dir = tmpDir(t, 'stasis-ckimg-podman-');
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-ckimg2-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', COUNTER]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  const archive = path.join(dir, 'export.tar.zst');
  const ex = pm.run(['container', 'checkpoint', '--export', archive, name]);
  t.is(ex.code, 0, ex.out);
  const at = Math.max(...pm.logs(name).filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.slice(5))));
  t.is(pm.run(['rm', name]).code, 0);

  const layout = path.join(dir, 'image');
  const made = await createCheckpointImage(archive, layout);
  t.is(made.containerName, name, 'the name comes from Podman\'s config.dump');
  const image = `localhost/${name}-checkpoint:latest`;
  const cp = spawnSync('skopeo', ['copy', '--quiet', `oci:${layout}`, `containers-storage:${image}`], { env: pm.env, encoding: 'utf8' });
  t.is(cp.status, 0, cp.stderr);
  const rst = pm.run(['container', 'restore', image]);
  t.is(rst.code, 0, rst.out);
  const lines = await pm.waitForLog(name, new RegExp(`^tick ${at + 2}$`));
  t.true(lines.includes(`tick ${at + 1}`), `it goes on from ${at}`);
});
