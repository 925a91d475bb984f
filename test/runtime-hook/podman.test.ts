import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Podman } from '../../test-containers/podman.js';
import { LeftoverHierarchy } from '../../test-containers/cgroup-leftover.js';
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

/** GET a URL; the body (rejects after 5 s without an answer). */
function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 5 s`)));
    req.on('error', reject);
  });
}

test.serial('Podman with a bridge network: the restored container is back in the network namespace Podman hands over, at its address, and its server answers', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  // Podman's CNI bridge stays on the host after its last container: removed if the test made it.
  const bridge = 'cni-podman0';
  const hadBridge = fs.existsSync(`/sys/class/net/${bridge}`);
  t.teardown(() => {
    pm.destroy();
    if (!hadBridge && fs.existsSync(`/sys/class/net/${bridge}`)) execFileSync('ip', ['link', 'del', bridge]);
  });
  pm.importBusybox();
  const name = `stasis-test-net-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, '--network', 'bridge', pm.image, '/bin/sh', '-c',
    `echo served > /tmp/index.html; httpd -p 8080 -h /tmp; ${COUNTER}`]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  const inspect = (f: string) => pm.run(['inspect', '-f', f, name]).out.trim();
  const ip = inspect('{{.NetworkSettings.IPAddress}}');
  t.regex(ip, /^\d+\.\d+\.\d+\.\d+$/);
  t.is(await get(`http://${ip}:8080/index.html`), 'served\n');

  const ck = pm.run(['container', 'checkpoint', name]);
  t.is(ck.code, 0, ck.out);
  const at = Math.max(...ticks(pm.logs(name)));
  const rst = pm.run(['container', 'restore', name]);
  t.is(rst.code, 0, rst.out);
  await pm.waitForLog(name, new RegExp(`^tick ${at + 2}$`));
  t.is(inspect('{{.NetworkSettings.IPAddress}}'), ip, 'the same address');
  t.is(fs.statSync(`/proc/${inspect('{{.State.Pid}}')}/ns/net`).ino, fs.statSync(inspect('{{.NetworkSettings.SandboxKey}}')).ino,
    'in the network namespace Podman names for it');
  t.is(await get(`http://${ip}:8080/index.html`), 'served\n', 'the restored server answers');
});

test.serial('Podman: programs the restored container\'s shell starts write to its stdout, and it shows in podman logs', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-child-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c',
    'i=0; while true; do i=$((i+1)); echo tick $i; echo child $i | cat; sleep 0.2; done']);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^child 3$/);
  // (Podman's helper compares every descriptor of the container's tasks with a snapshot taken
  // before the checkpoint.)
  const ck = pm.run(['container', 'checkpoint', name]);
  t.is(ck.code, 0, ck.out);
  const at = Math.max(...ticks(pm.logs(name)));
  const rst = pm.run(['container', 'restore', name]);
  t.is(rst.code, 0, rst.out);
  const lines = await pm.waitForLog(name, new RegExp(`^child ${at + 2}$`));
  t.true(lines.includes(`child ${at + 1}`), `cat, started after the restore, wrote "child ${at + 1}"`);
  t.false(lines.some((l) => /Bad file descriptor/.test(l)), lines.slice(-6).join(' | '));
  t.is(pm.fdChecks, 1, 'the restored container\'s descriptors were compared with the checkpointed ones');
});

test.serial('Podman restores a container while a named cgroup v1 hierarchy is mounted nowhere on the host', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  pm.importBusybox();
  const name = `stasis-test-cg-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', COUNTER]);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 3$/);
  // Made just before the checkpoint, removed with the container (whose tasks keep it).
  const h = LeftoverHierarchy.create(`stasistest${process.pid}`);
  t.teardown(async () => {
    pm.destroy();
    await h.destroy();
  });
  const ck = pm.run(['container', 'checkpoint', name]);
  t.is(ck.code, 0, ck.out);
  const at = Math.max(...ticks(pm.logs(name)));
  const rst = pm.run(['container', 'restore', name]);
  t.is(rst.code, 0, rst.out);
  await pm.waitForLog(name, new RegExp(`^tick ${at + 2}$`));
  const pid = pm.pidOf(name);
  t.regex(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`^\\d+:name=${h.name}:/$`, 'm'));
  pm.destroy();
  await h.destroy();
});
