// Podman on its bridge network, a client on the host connected to a server in the container, with
// data queued both ways: `podman container checkpoint --tcp-established` and `restore
// --tcp-established` (stasis as Podman's criu) — the connection carries on; then `--export` and
// `--import` under the same name — it still carries on, byte-exact, never reset; then that archive
// restored twice more with --tcp-close — the container runs, its socket no longer connected.
// Podman 4.3 has no `restore --tcp-close`: its user sets it in a criu configuration file that
// runc hands over (the container's org.criu.config annotation), as here.
// The host client sends little (it never probes a closed window into the gap: see tcp-container).

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { buildWorkload } from '../../test-containers/launch.js';
import { Podman, withLog } from '../../test-containers/podman.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';
import { PatternPeer } from './tcp-peers.js';

test.serial('Podman bridge network: a host client\'s connection to the container survives checkpoint/restore and export/import with --tcp-established; --tcp-close restores it closed, twice', async (t) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  const bridge = 'cni-podman0';
  const hadBridge = fs.existsSync(`/sys/class/net/${bridge}`);
  let client: PatternPeer | undefined;
  t.teardown(() => {
    client?.socket.destroy();
    pm.destroy();
    if (!hadBridge && fs.existsSync(`/sys/class/net/${bridge}`)) execFileSync('ip', ['link', 'del', bridge]);
  });
  pm.importBusybox();
  const bin = path.join(dir, 'tcp-client');
  fs.copyFileSync(buildWorkload('tcp-client', 'static'), bin);
  const name = `stasis-test-tcp-${process.pid}`;
  const criuConf = path.join(dir, 'criu.conf');
  fs.writeFileSync(criuConf, '');
  const run = pm.run(['run', '-d', '--name', name, '--network', 'bridge', '--annotation', `org.criu.config=${criuConf}`, '-v', `${bin}:/tcp-client:ro`, pm.image, '/tcp-client', '/tmp', 'l,7070,16384']);
  t.is(run.code, 0, run.out);
  const ip = pm.run(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', name]).out.trim();
  t.regex(ip, /^\d+\.\d+\.\d+\.\d+$/);
  while (!client) {
    const s = net.connect(7070, ip);
    if (await new Promise<boolean>((r) => { s.once('connect', () => r(true)); s.once('error', () => r(false)); })) client = new PatternPeer(s, 16384);
    else await new Promise((r) => setTimeout(r, 100));
  }
  const ready = (await pm.waitForLog(name, /^ready /)).find((l) => l.startsWith('ready '))!;
  client.expect(Number(ready.split(' ')[1]));

  const ck = pm.run(['container', 'checkpoint', '--tcp-established', name]);
  t.is(ck.code, 0, withLog(ck.out));
  const rst = pm.run(['container', 'restore', '--tcp-established', name]);
  t.is(rst.code, 0, withLog(rst.out));
  t.is(pm.run(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', name]).out.trim(), ip, 'the same address');

  const archive = path.join(dir, 'tcp.tar.zst');
  const ex = pm.run(['container', 'checkpoint', '--tcp-established', '--export', archive, name]);
  t.is(ex.code, 0, withLog(ex.out));
  t.is(pm.run(['rm', name]).code, 0);
  const imp = pm.run(['container', 'restore', '--tcp-established', '--import', archive]);
  t.is(imp.code, 0, withLog(imp.out));

  client.socket.resume();
  t.is(pm.run(['exec', name, '/bin/touch', '/tmp/check']).code, 0);
  const lines = await pm.waitForLog(name, /^result /, 20_000);
  t.deepEqual(lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(lines.includes('result PASS'), lines.join('\n'));
  t.is(client.verdict, 'ok', 'the host client got every byte once, through two checkpoints');
  const lockLeft = (pid: number) => execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'iptables', '-S'], { encoding: 'utf8' }).includes('STASIS');
  t.deepEqual(client.events.filter((e) => e.startsWith('error')), [], 'never reset');

  fs.writeFileSync(criuConf, 'tcp-close\n');
  for (let i = 0; i < 2; i++) {
    pm.run(['rm', '--force', '--time', '0', name]);
    const closed = pm.run(['container', 'restore', '--import', archive]);
    t.is(closed.code, 0, `--tcp-close restore ${i + 1}: ${withLog(closed.out)}`);
    const pid = Number(pm.run(['inspect', '-f', '{{.State.Pid}}', name]).out.trim());
    t.true(pid > 0, 'running');
    t.false(lockLeft(pid), 'no lock left in its network namespace');
    const sockets = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`)).filter((l) => l.startsWith('socket:'));
    t.is(sockets.length, 1, 'its socket is there');
    const ino = /\d+/.exec(sockets[0]!)![0];
    const tcp = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'cat', '/proc/net/tcp'], { encoding: 'utf8' });
    t.false(tcp.split('\n').some((l) => l.trim().split(/\s+/)[9] === ino && l.trim().split(/\s+/)[3] === '01'), 'not connected');
  }
});
