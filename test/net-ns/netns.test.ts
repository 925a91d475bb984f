import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { buildWorkload, underReaper } from '../../test-containers/launch.js';
import { alive, fdKey, killPid, lastTick, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

const SETUP = [
  'ip link set lo up', 'ip addr add 10.11.12.13/32 dev lo',
  'ip link add va type veth peer name vb', 'ip link set va mtu 1400',
  'ip addr add 192.168.91.1/24 dev va', 'ip -6 addr add fd00::1/64 dev va nodad', 'ip link set va up', 'ip link set vb up',
  'ip route add 10.99.0.0/16 via 192.168.91.2', 'iptables -A INPUT -s 10.66.0.0/16 -j DROP',
].join(' && ');

function inNet(pid: number, ...cmd: string[]): string {
  return execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, ...cmd], { encoding: 'utf8' });
}

/** What a user would compare: links (name, index, MAC, MTU, up), addresses, routes, firewall rules. */
function netState(pid: number) {
  const links = (JSON.parse(inNet(pid, 'ip', '-j', 'link')) as Record<string, unknown>[]).map((l) => ({
    ifname: l.ifname, ifindex: l.ifindex, address: l.address, mtu: l.mtu, up: (l.flags as string[]).includes('UP'),
  }));
  const addrs = (JSON.parse(inNet(pid, 'ip', '-j', 'addr')) as { ifname: string; addr_info: { local: string; prefixlen: number; scope: string }[] }[])
    .flatMap((l) => l.addr_info.filter((a) => a.scope !== 'link').map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`)).sort();
  return { links, addrs, route: inNet(pid, 'ip', 'route', 'show', '10.99.0.0/16').trim(), rules: inNet(pid, 'iptables', '-S', 'INPUT').trim() };
}

async function startInNetns(t: import('ava').ExecutionContext, setup: string) {
  const w = await underReaper(['/usr/bin/unshare', '--net', '--fork', 'sh', '-c', `${setup} && exec ${buildWorkload('counter')} nanosleep 20`]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const pid = Number(fs.readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim());
  t.teardown(() => killPid(pid));
  return { w, pid };
}

test.serial('a network namespace comes back with its links, addresses, routes and iptables rules', async (t) => {
  const dir = tmpDir(t);
  const { w, pid } = await startInNetns(t, SETUP);
  const before = netState(pid);
  t.is(before.links.length, 3);
  const key = fdKey(pid, 1);
  const d = await stasis(['dump', '-t', String(pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const at = lastTick(w.lines);
  const netdev = fs.readdirSync(dir).find((f) => f.startsWith('netdev-'))!;
  const decoded = JSON.parse(execFileSync('crit', ['decode', '-i', path.join(dir, netdev)], { encoding: 'utf8' }));
  t.deepEqual(decoded.entries.map((e: { name: string; type: string }) => `${e.type} ${e.name}`).sort(), ['LOOPBACK lo', 'VETH va', 'VETH vb']);

  const r = await restoreUnderReaper(t, dir, key, pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.not(fs.readlinkSync(`/proc/${pid}/ns/net`), fs.readlinkSync('/proc/self/ns/net'));
  const after = netState(pid);
  t.deepEqual(after, before);
  t.regex(after.route, /via 192\.168\.91\.2 dev va/);
  t.regex(after.rules, /-A INPUT -s 10\.66\.0\.0\/16 -j DROP/);
  await r.waitForLine(new RegExp(`^tick ${at + 2}$`));
  t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
});

test.serial('a network device stasis cannot restore fails the dump with one line, naming it, and the process runs on', async (t) => {
  const dir = tmpDir(t);
  const { w, pid } = await startInNetns(t, 'ip link set lo up && ip link add br0 type bridge');
  const d = await stasis(['dump', '-t', String(pid), '-D', dir]);
  t.not(d.exitCode, 0);
  t.regex(d.stderr, /^stasis: .*network device br0 .* is of kind bridge, which stasis cannot dump yet$/);
  t.is(d.stderr.trim().split('\n').length, 1);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')));
  t.true(alive(pid));
  t.regex(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), /^TracerPid:\s+0$/m);
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`));
});
