// Half-closed TCP connections (files/tcp-stream.ts): a process of the host's network namespace
// with a connection to a peer of the test in FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK or
// CLOSING (workloads/tcp-halfclosed.c), dumped with --tcp-established (killed) and restored: the
// restored socket is in the same state, the process reads the rest of the peer's bytes and EOF
// where it was, what it wrote (and its FIN) reaches the peer exactly once, nobody sees a reset,
// and no lock rule is left. The same for a runc container in a network namespace of its own with
// a veth to the host (the peer on the host), restored into a new namespace with the same
// addresses.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';
import { startWorkload as underReaperWorkload } from '../../test-containers/launch.js';
import { eventually, lockRules, tcpStates, unwire, wire } from './tcp-peers.js';
import { restoreDamagedStream, tcpRoundTrip } from './tcp-peers.js';

const TOTAL = 60000; // the peer's bytes over the connection's life (workloads/tcp-halfclosed.c)
const BEFORE = 40000; // of which sent before the dump, when the peer still sends afterwards
const myByte = (i: number) => (i * 7 + Math.floor(i / 4093)) & 0xff;
const peerByte = (i: number) => (i * 13 + Math.floor(i / 1021) + 5) & 0xff;

type Mode = 'close_wait' | 'fin_wait1' | 'fin_wait2' | 'last_ack' | 'closing';
/** /proc/net/tcp's state column for each mode. */
const STATE_HEX: Record<Mode, string> = { fin_wait1: '04', fin_wait2: '05', close_wait: '08', last_ack: '09', closing: '0B' };



/** The state (hex) of the TCP socket process `pid` holds. */
function stateOf(pid: number): string | undefined {
  const states = tcpStates();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    if (m && states.has(Number(m[1]))) return states.get(Number(m[1]));
  }
  return undefined;
}


/**
 * The test's end of the workload's connection in `mode`: it sends its pattern (all of it and
 * shuts down at once, for close_wait and last_ack; for closing, once the workload has shut down;
 * the first BEFORE bytes, the rest after `finish()`, for the FIN_WAIT modes), reads nothing until
 * `finish()` (but for fin_wait2, where it reads at once), and at EOF checks what it got: the
 * workload's pattern of the `expect()`ed length, and "END\n" for close_wait.
 */
class HalfClosePeer {
  readonly events: string[] = [];
  private received = Buffer.alloc(0);
  private expected = -1;
  verdict = '';
  private timer?: NodeJS.Timeout;

  constructor(readonly socket: net.Socket, readonly mode: Mode, work: string) {
    if (mode !== 'fin_wait2') socket.pause();
    socket.on('error', (e) => this.events.push(`error ${(e as NodeJS.ErrnoException).code}`));
    socket.on('close', () => this.events.push('close'));
    socket.on('data', (c: Buffer) => { this.received = Buffer.concat([this.received, c]); });
    socket.on('end', () => {
      this.events.push('end');
      this.judge();
    });
    const early = mode === 'fin_wait1' || mode === 'fin_wait2' ? BEFORE : TOTAL;
    socket.write(this.pattern(0, early));
    if (mode === 'close_wait' || mode === 'last_ack') socket.end();
    if (mode === 'closing') {
      this.timer = setInterval(() => {
        if (!fs.existsSync(path.join(work, 'shut'))) return;
        clearInterval(this.timer);
        socket.end();
      }, 10);
    }
  }

  private pattern(from: number, to: number): Buffer {
    const b = Buffer.alloc(to - from);
    for (let i = from; i < to; i++) b[i - from] = peerByte(i);
    return b;
  }

  expect(n: number): void {
    this.expected = n;
    if (this.events.includes('end')) this.judge();
  }

  private judge(): void {
    if (this.expected < 0 || this.verdict) return;
    const trailer = this.mode === 'close_wait' ? 'END\n' : '';
    const r = this.received;
    if (r.length !== this.expected + trailer.length) {
      this.verdict = `got ${r.length} bytes, not ${this.expected} + ${trailer.length}`;
      return;
    }
    for (let i = 0; i < this.expected; i++) {
      if (r[i] !== myByte(i)) {
        this.verdict = `byte ${i} differs`;
        return;
      }
    }
    this.verdict = r.subarray(this.expected).toString() === trailer ? 'ok' : `trailer '${r.subarray(this.expected)}'`;
  }

  /** After the restore: read on; in the FIN_WAIT modes, send the rest and shut down. */
  finish(): void {
    this.socket.resume();
    if (this.mode === 'fin_wait1' || this.mode === 'fin_wait2') {
      this.socket.write(this.pattern(BEFORE, TOTAL));
      this.socket.end();
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.destroy();
  }
}

async function peerServer(host: string, mode: Mode, work: () => string) {
  let peer: HalfClosePeer | undefined;
  const server = net.createServer({ allowHalfOpen: true }, (s) => { peer = new HalfClosePeer(s, mode, work()); });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get peer() { return peer!; },
    close() { peer?.close(); server.close(); },
  };
}

const cases: { mode: Mode; host: string; dumper?: string; restorer?: string }[] = [
  { mode: 'close_wait', host: '127.0.0.1' },
  { mode: 'fin_wait2', host: '127.0.0.1' },
  { mode: 'fin_wait1', host: '127.0.0.1' },
  { mode: 'last_ack', host: '127.0.0.1' },
  { mode: 'closing', host: '127.0.0.1' },
  { mode: 'close_wait', host: '::1' },
  { mode: 'fin_wait2', host: '::1' },
  { mode: 'closing', host: '::ffff:127.0.0.1' },
  { mode: 'close_wait', host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { mode: 'fin_wait2', host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { mode: 'last_ack', host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { mode: 'closing', host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { mode: 'fin_wait1', host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { mode: 'close_wait', host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
  { mode: 'fin_wait2', host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
  { mode: 'last_ack', host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
  { mode: 'closing', host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
  { mode: 'fin_wait1', host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
];

for (const { mode, host, dumper, restorer } of cases) {
  const how = dumper ? `, ${dumper} dumps and ${restorer} restores` : '';
  test.serial(`a half-closed connection in ${mode.toUpperCase()} (${host}) goes on after dump and restore${how}`, async (t) => {
    let work = '';
    const srv = await peerServer(host, mode, () => work);
    t.teardown(() => srv.close());
    let written = 0;
    let pid = 0;
    await selfCheckRoundTrip(t, 'tcp-halfclosed', {
      args: (w) => {
        work = w;
        return [w, mode, host, String(srv.port)];
      },
      ...tcpRoundTrip(dumper, restorer),
      afterReady: (w, line) => {
        written = Number(line.split(' ')[1]);
        pid = w.pid;
        srv.peer.expect(written);
        t.is(stateOf(w.pid), STATE_HEX[mode], `dumped in ${mode}`);
      },
      afterDump: async () => {
        t.is(lockRules(srv.port).length, 2, 'two lock rules (in and out) while the connection is dumped');
      },
      afterRestore: () => {
        t.is(stateOf(pid), STATE_HEX[mode], `restored in ${mode}`);
        t.deepEqual(lockRules(srv.port), [], 'no lock rule left');
        srv.peer.finish();
      },
    });
    t.true(written > 0);
    t.true(await eventually(() => srv.peer.verdict !== ''), `the peer saw EOF (${srv.peer.events.join(', ')})`);
    t.is(srv.peer.verdict, 'ok', 'the peer got every byte once, then EOF');
    t.is(srv.peer.events.filter((e) => e === 'end').length, 1, 'one EOF');
    t.deepEqual(srv.peer.events.filter((e) => e.startsWith('error')), [], 'the peer never saw a reset');
    t.deepEqual(lockRules(srv.port), [], 'no lock rule left');
  });
}

test.serial('stasis check --feature tcp_half_closed says it is supported', async (t) => {
  const r = await stasis(['check', '--feature', 'tcp_half_closed']);
  t.is(r.exitCode, 0, r.all);
  t.regex(r.all, /tcp_half_closed is supported/);
});




/** The state (hex) of the TCP connection to port `port` in network namespace `ns`. */
function stateIn(ns: string, port: number): string | undefined {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/tcp', '/proc/net/tcp6'], { encoding: 'utf8' });
  for (const line of out.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length > 9 && cols[2]!.endsWith(`:${port.toString(16).toUpperCase().padStart(4, '0')}`)) return cols[3];
  }
  return undefined;
}

for (const mode of ['close_wait', 'last_ack'] as const) {
  test.serial(`a runc container's half-closed connection in ${mode.toUpperCase()} goes on when it is restored into a new network namespace with the same addresses`, async (t) => {
    const x = 100 + ((process.pid + (mode === 'last_ack' ? 1 : 0)) % 100);
    const hostIf = `sth${(process.pid + (mode === 'last_ack' ? 1 : 0)) % 100000}`;
    const [nsA, nsB] = [`stasis-hc-${process.pid}-a`, `stasis-hc-${process.pid}-b`];
    t.teardown(() => { unwire(nsA, hostIf); unwire(nsB, hostIf); });
    wire(nsA, hostIf, `10.78.${x}`);
    const srv = await peerServer(`10.78.${x}.1`, mode, () => '');
    t.teardown(() => srv.close());
    let written = 0;
    await selfCheckInContainer(t, 'tcp-halfclosed', {
      args: [mode, `10.78.${x}.1`, String(srv.port)],
      configure: (config) => {
        config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${nsA}` } : n));
      },
      checkpointArgs: ['--tcp-established'],
      restoreArgs: ['--tcp-established'],
      afterReady: (line) => {
        written = Number(line.split(' ')[1]);
        srv.peer.expect(written);
        t.is(stateIn(nsA, srv.port), STATE_HEX[mode], `dumped in ${mode}`);
      },
      beforeRestore: (config) => {
        unwire(nsA, hostIf);
        wire(nsB, hostIf, `10.78.${x}`);
        config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${nsB}` } : n));
      },
      afterRestore: () => {
        t.is(stateIn(nsB, srv.port), STATE_HEX[mode], `restored in ${mode}`);
        srv.peer.finish();
      },
    });
    t.true(written > 0);
    t.true(await eventually(() => srv.peer.verdict !== ''), `the peer saw EOF (${srv.peer.events.join(', ')})`);
    t.is(srv.peer.verdict, 'ok', 'the peer got every byte once, then EOF');
    t.deepEqual(srv.peer.events.filter((e) => e.startsWith('error')), [], 'the peer never saw a reset');
    for (const tool of ['iptables', 'ip6tables']) {
      t.notRegex(execFileSync('ip', ['netns', 'exec', nsB, tool, '-S'], { encoding: 'utf8' }), /STASIS|0xc114/, `no lock left in the new namespace (${tool})`);
    }
  });
}

test.serial('a --leave-running dump of a half-closed connection (LAST_ACK) leaves it as it was: it goes on, no lock left', async (t) => {
  const work = tmpDir(t, 'stasis-tcp-halfclosed-');
  const srv = await peerServer('127.0.0.1', 'last_ack', () => work);
  t.teardown(() => srv.close());
  const w = await underReaperWorkload('tcp-halfclosed', [work, 'last_ack', '127.0.0.1', String(srv.port)]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready\b/);
  srv.peer.expect(Number(ready.split(' ')[1]));
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--tcp-established', '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  t.deepEqual(lockRules(srv.port), [], 'no lock rule left');
  t.is(stateOf(w.pid), STATE_HEX.last_ack, 'still in LAST_ACK');
  srv.peer.finish();
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
  t.true(await eventually(() => srv.peer.verdict !== ''), `the peer saw EOF (${srv.peer.events.join(', ')})`);
  t.is(srv.peer.verdict, 'ok', 'the peer got every byte once, then EOF');
  t.deepEqual(srv.peer.events.filter((e) => e.startsWith('error')), [], 'the peer never saw a reset');
});

test.serial('a restore of a half-closed connection (CLOSE_WAIT) that fails (a damaged tcp-stream image) leaves no process and no lock', async (t) => {
  const work = tmpDir(t, 'stasis-tcp-halfclosed-');
  const srv = await peerServer('127.0.0.1', 'close_wait', () => work);
  t.teardown(() => srv.close());
  const w = await underReaperWorkload('tcp-halfclosed', [work, 'close_wait', '127.0.0.1', String(srv.port)]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready\b/);
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  t.is(lockRules(srv.port).length, 2, 'locked until restored');
  await restoreDamagedStream(t, dir, w.pid, srv.port);
});
