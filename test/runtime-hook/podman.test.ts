import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Podman } from '../../test-containers/podman.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

const COUNTER = 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done';

function ticks(lines: readonly string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.slice(5)));
}

test.serial('Podman with stasis as its criu: checkpoint and restore in place, then through an exported archive', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', COUNTER]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  const pid = () => Number(pm.run(['inspect', '-f', '{{.State.Pid}}', name]).out.trim());
  t.regex(fs.readFileSync(`/proc/${pid()}/status`, 'utf8'), /^Seccomp:\s+2$/m, 'Podman runs it under its seccomp profile');

  // In place.
  const ck = pm.run(['container', 'checkpoint', name]);
  t.is(ck.code, 0, ck.out);
  t.regex(pm.run(['ps', '-a', '--format', '{{.Status}}', '--filter', `name=${name}`]).out, /^Exited/);
  const at = Math.max(...ticks(pm.logs(name)));
  const rst = pm.run(['container', 'restore', name]);
  t.is(rst.code, 0, rst.out);
  let lines = await pm.waitForLog(name, new RegExp(`^tick ${at + 3}$`));
  const after = ticks(lines).filter((n) => n > at);
  t.deepEqual(after.slice(0, 3), [at + 1, at + 2, at + 3], 'the count goes on');
  t.is(ticks(lines).filter((n) => n === 1).length, 1, 'it never started over');
  const status = fs.readFileSync(`/proc/${pid()}/status`, 'utf8');
  t.regex(status, /^Seccomp:\s+2$/m, 'the seccomp filter is back');
  t.regex(status, /^NSpid:\s+\d+\s+1$/m);

  // Exported, removed, imported.
  const archive = path.join(dir, 'checkpoint.tar.gz');
  const ex = pm.run(['container', 'checkpoint', '--export', archive, name]);
  t.is(ex.code, 0, ex.out);
  t.true(fs.statSync(archive).size > 0);
  const at2 = Math.max(...ticks(pm.logs(name)));
  t.is(pm.run(['rm', name]).code, 0);
  const imp = pm.run(['container', 'restore', '--import', archive]);
  t.is(imp.code, 0, imp.out);
  lines = await pm.waitForLog(name, new RegExp(`^tick ${at2 + 2}$`));
  t.true(ticks(lines).includes(at2 + 1), `it goes on from ${at2}`);
});
