import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { cgroupHierarchies } from '../../cgroup/cgroups.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { fixturesDir } from '../helpers/paths.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

/** The cgroup the fixture's config names (cgroupsPath), one directory per hierarchy. */
const FIXTURE_CGROUP = 'stasis-fixture';

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

async function readCount(file: string, timeoutMs = 5000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
    if (text) return Number(text);
    if (Date.now() - t0 > timeoutMs) throw new Error(`${file} stays empty`);
    await sleep(50);
  }
}

test.serial('runc --criu stasis restores the CRIU 4.2 runc-busybox fixture with its bundle config, and its loop counts on', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir, '1', path.join(fixturesDir, 'workloads', 'runc-busybox-config.json'));
  t.teardown(() => {
    c.destroy();
    // runc removes the container's cgroup; the parent the config names is the test's to remove.
    for (const { mountPoint } of cgroupHierarchies()) {
      for (const d of [path.join(mountPoint, FIXTURE_CGROUP, 'ctr1'), path.join(mountPoint, FIXTURE_CGROUP)]) {
        try {
          fs.rmdirSync(d);
        } catch {
          // not there, or not empty: not ours to remove
        }
      }
    }
  });
  // The images as CRIU wrote them (a copy: restore writes its stats next to them). No descriptor
  // invariant here: CRIU dumped the container elsewhere, there is no "before" to compare with.
  const img = path.join(dir, 'images');
  fs.cpSync(path.join(fixturesDir, 'runc-busybox', 'images'), img, { recursive: true });
  const countFile = path.join(c.bundle, 'rootfs', 'data', 'count');
  t.false(fs.existsSync(countFile));

  const rst = await c.restore(stasisBin, img, path.join(dir, 'work'));
  t.is(rst.code, 0, rst.out.lines.join(' | ') + fs.readFileSync(path.join(dir, 'work', 'restore.log'), 'utf8'));
  const st = c.state();
  t.is(st?.status, 'running');
  t.regex(fs.readFileSync(`/proc/${st!.pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m);
  t.regex(fs.readFileSync(`/proc/${st!.pid}/cgroup`, 'utf8'), new RegExp(`/${FIXTURE_CGROUP}/ctr1$`, 'm'));
  // The shell's i comes from the image: a fresh start would write 1 first.
  const first = await readCount(countFile);
  t.true(first > 1, `the loop goes on from the image (first value ${first})`);
  await sleep(2300);
  const later = await readCount(countFile);
  t.true(later >= first + 2 && later <= first + 3, `it counts on once a second (${first} → ${later})`);
});
