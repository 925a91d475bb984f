// What the TCP tests share: the test's ends of workloads/tcp-client.c's connections (its byte
// patterns, its protocol), lock rules and socket states as the host shows them, network
// namespaces wired to the host.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { sharedDir } from '../helpers/paths.js';
import { stasis } from '../helpers/stasis.js';
import { nftTool } from '../../net-ns/network-lock.js';

const criu = [path.join(sharedDir, 'anchors/criu-4.2/criu')];

/**
 * selfCheckRoundTrip's options for a round trip with --tcp-established (and logs), dumped by
 * `dumper` and restored by `restorer` (stasis, or CRIU 4.2), the dump locking by `lock`.
 */
export function tcpRoundTrip(dumper = 'stasis', restorer = 'stasis', lock = 'iptables') {
  return {
    dumpArgs: ['--tcp-established', '--network-lock', lock, '-o', 'dump.log', '-v4'],
    restoreArgs: ['--tcp-established', '-o', 'restore.log', '-v4'],
    dumpTool: dumper === 'criu' ? criu : undefined,
    restoreTool: restorer === 'criu' ? criu : undefined,
  };
}

/**
 * The lock of the connections to server port `port`, by either method (other tests may lock
 * their own meanwhile): iptables rules, and the elements of nftables lock tables (`TABLE a . p . b . q`).
 */
export function lockRules(port: number): string[] {
  const rules = (tool: string) => execFileSync(tool, ['-S'], { encoding: 'utf8' }).split('\n');
  return [...rules('iptables'), ...rules('ip6tables')]
    .filter((l) => l.includes('0xc114') && new RegExp(`--[sd]port ${port}\\b`).test(l))
    .concat(nftLockElements().filter((e) => new RegExp(` ${port}( |$)`).test(e)));
}

/** nftables' ruleset (of the network namespace named `netns`, else this one) as `nft -j` lists it. */
export function nftRuleset(netns?: string): Record<string, any>[] {
  const argv = [nftTool()!, '-j', 'list', 'ruleset']; // not node_modules/.bin's nft
  const out = netns ? execFileSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8' }) : execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return (JSON.parse(out) as { nftables: Record<string, any>[] }).nftables;
}

/** The elements of the lock tables' connection sets (tables CRIU-*), as `TABLE a . p . b . q`. */
export function nftLockElements(netns?: string): string[] {
  return nftRuleset(netns).flatMap((o) => (o.set && String(o.set.table).startsWith('CRIU-') ? (o.set.elem ?? []) : [])
    .map((e: { concat: unknown[] }) => `${o.set.table} ${e.concat.join(' . ')}`));
}

/**
 * `nft monitor` of network namespace `netns` (else this one) from now: `stop()` ends it (by its
 * pid) and gives the lines it printed (`add table inet T`, `add element inet T conns4 { ... }`,
 * `delete table inet T`, ...). Stopped when the test ends, whatever happens.
 */
export async function nftMonitor(t: ExecutionContext, netns?: string) {
  const argv = [...netns ? ['ip', 'netns', 'exec', netns] : [], nftTool()!, 'monitor', 'ruleset'];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  child.stdout.on('data', (c: Buffer) => { text += c.toString(); });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    }
    return text.split('\n');
  };
  t.teardown(stop);
  await new Promise((r) => setTimeout(r, 200)); // listening
  return { stop };
}

/** The lock tables (CRIU-*) of network namespace `netns` (else this one). */
export function nftLockTables(netns?: string): string[] {
  return nftRuleset(netns).filter((o) => o.table && String(o.table.name).startsWith('CRIU-')).map((o) => String(o.table.name));
}

/** TCP sockets of /proc/net/tcp{,6} by inode: their state (hex, 01 = established). */
export function tcpStates(): Map<number, string> {
  const m = new Map<number, string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9) m.set(Number(cols[9]), cols[3]!);
    }
  }
  return m;
}

/** Until `cond` holds or `ms` pass; whether it held. */
export async function eventually(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

function sh(cmd: string): void {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A network namespace NAME with one veth to the host: HOST_IF NET.1/24 here, NET.2 there (NET: "10.77.5"). */
export function wire(name: string, hostIf: string, subnet: string): void {
  sh(`ip netns add ${name} && ip link add ${hostIf} type veth peer name ${hostIf}c && ip link set ${hostIf}c netns ${name}`
    + ` && ip addr add ${subnet}.1/24 dev ${hostIf} && ip link set ${hostIf} up`
    + ` && ip -n ${name} addr add ${subnet}.2/24 dev ${hostIf}c && ip -n ${name} link set ${hostIf}c up && ip -n ${name} link set lo up`);
}

export function unwire(name: string, hostIf: string): void {
  try { sh(`ip link del ${hostIf}`); } catch { /* gone with its namespace */ }
  try { sh(`ip netns del ${name}`); } catch { /* not made */ }
}

const SERVER_BYTES = 512 * 1024;
const clientByte = (i: number) => (i * 7 + Math.floor(i / 4093)) & 0xff;
const serverByte = (i: number) => (i * 13 + Math.floor(i / 1021) + 5) & 0xff;

/**
 * The test's end of one connection of workloads/tcp-client.c: it sends SERVER_BYTES of its
 * pattern at once and reads nothing until `resume()`; then it checks the workload's pattern and
 * trailer ("END N") and answers "OK N". `events` records errors, ends and closes.
 */
export class PatternPeer {
  readonly events: string[] = [];
  private expected = -1;
  private received = Buffer.alloc(0);
  verdict = '';

  /** `bytes`: how much of its pattern it sends (what the workload's CONN spec says). */
  constructor(readonly socket: net.Socket, bytes = SERVER_BYTES) {
    socket.pause();
    socket.on('error', (e) => this.events.push(`error ${(e as NodeJS.ErrnoException).code}`));
    socket.on('close', () => this.events.push('close'));
    socket.on('end', () => this.events.push('end'));
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = serverByte(i);
    socket.write(data);
    socket.on('data', (c: Buffer) => {
      this.received = Buffer.concat([this.received, c]);
      const trailer = Buffer.from(`END ${this.expected}\n`);
      if (this.expected >= 0 && this.received.length >= this.expected + trailer.length && !this.verdict) {
        let bad = -1;
        for (let i = 0; i < this.expected; i++) if (this.received[i] !== clientByte(i)) { bad = i; break; }
        const tail = this.received.subarray(this.expected).toString();
        this.verdict = bad >= 0 ? `byte ${bad} differs` : tail !== trailer.toString() ? `trailer '${tail}'` : 'ok';
        socket.write(this.verdict === 'ok' ? `OK ${this.expected}\n` : `BAD ${this.verdict}\n`);
      }
    });
  }

  /** The workload said how much it sent (its `ready` line). */
  expect(n: number): void {
    this.expected = n;
  }

  get receivedBytes(): number {
    return this.received.length;
  }
}

/** A server of PatternPeers taking one connection. */
export async function patternServer(host: string, bytes?: number) {
  let peer: PatternPeer | undefined;
  let expected = -1;
  const server = net.createServer((s) => {
    peer = new PatternPeer(s, bytes);
    if (expected >= 0) peer.expect(expected);
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get events() { return peer?.events ?? []; },
    /** The connection's other end (the workload's) port. */
    get peerPort() { return peer?.socket.remotePort; },
    expect(n: number) { expected = n; peer?.expect(n); },
    resume() { peer?.socket.resume(); },
    write(text: string) { peer?.socket.write(text); },
    get verdict() { return peer?.verdict ?? ''; },
    get receivedBytes() { return peer?.receivedBytes ?? 0; },
    close() { peer?.socket.destroy(); server.close(); },
  };
}


/**
 * The dump in `dir` (of process `pid`, connected to server port `port`) with its tcp-stream
 * image's queues cut short, restored: the restore fails in one line, leaves no process, and
 * lifts the lock.
 */
export async function restoreDamagedStream(t: ExecutionContext, dir: string, pid: number, port: number): Promise<void> {
  const file = path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('tcp-stream-'))!);
  fs.truncateSync(file, fs.statSync(file).size - 100); // the queues cut short
  const r = await stasis(['restore', '-d', '-D', dir, '--tcp-established']);
  t.not(r.exitCode, 0);
  t.is(r.all.trim().split('\n').length, 1, `one line: ${r.all}`);
  t.false(fs.existsSync(`/proc/${pid}`), 'no process left');
  t.deepEqual(lockRules(port), [], 'the lock is lifted');
}
