// Established TCP connections (files/tcp-stream.ts, net-ns/network-lock.ts): a process of the
// host's network namespace connected to a server of the test, with data queued both ways at the
// moment of the dump, dumped with --tcp-established (killed) and restored: every byte arrives
// exactly once, the server never sees a reset, and no lock rule is left behind.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import path from 'node:path';
import { eventually, lockRules, patternServer, tcpStates } from './tcp-peers.js';
import { restoreDamagedStream, tcpRoundTrip } from './tcp-peers.js';
import { execa } from 'execa';
import fs from 'node:fs';
import { selfCheckRoundTrip, stasis, stasisBin, tmpDir, tracerOf } from '../helpers/stasis.js';
import { startWorkload as underReaperWorkload } from '../../test-containers/launch.js';


/**
 * A pattern server on 127.0.0.1 (sending `bytes`) and the workload connected to it, ready (its
 * queues filled); both go when the test ends. `ready`: the workload's ready line.
 */
async function clientAndServer(t: ExecutionContext, bytes?: number) {
  const srv = await patternServer('127.0.0.1', bytes);
  t.teardown(() => srv.close());
  const work = tmpDir(t, 'stasis-tcp-');
  const w = await underReaperWorkload('tcp-client', [work, `c,127.0.0.1,${srv.port}${bytes ? `,${bytes}` : ''}`]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready\b/);
  return { srv, work, w, ready };
}

const cases: { host: string; dumper: string; restorer: string }[] = [
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'stasis' },
  { host: '::1', dumper: 'stasis', restorer: 'stasis' },
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
];
for (const { host, dumper, restorer } of cases) {
  const how = dumper === 'stasis' && restorer === 'stasis' ? '' : `, ${dumper} dumps and ${restorer} restores`;
  test.serial(`an established connection (${host}) with both queues full carries on after dump and restore${how}`, async (t) => {
    const srv = await patternServer(host);
    t.teardown(() => srv.close());
    let sent = 0;
    await selfCheckRoundTrip(t, 'tcp-client', {
      args: (work) => [work, `c,${host},${srv.port}`],
      ...tcpRoundTrip(dumper, restorer),
      afterReady: (_w, line) => {
        sent = Number(line.split(' ')[1]);
        srv.expect(sent);
      },
      afterDump: async () => {
        // Locked while the process is away: the connection's packets are dropped, not reset.
        t.is(lockRules(srv.port).length, 2, 'two lock rules (in and out) while the connection is dumped');
      },
      afterRestore: () => srv.resume(),
    });
    t.true(sent > 0);
    t.is(srv.verdict, 'ok', `the server got every byte once (${srv.receivedBytes} bytes)`);
    t.deepEqual(srv.events.filter((e) => e.startsWith('error')), [], 'the server never saw a reset');
    t.deepEqual(lockRules(srv.port), [], 'no lock rule left');
  });
}

test.serial('an established connection is refused without --tcp-established, and the process runs on', async (t) => {
  const { srv, w } = await clientAndServer(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t)]);
  t.not(d.exitCode, 0);
  t.regex(d.all, /established TCP connection is dumped only with --tcp-established/);
  t.deepEqual(lockRules(srv.port), []);
  t.deepEqual(srv.events, [], 'the connection was not touched');
});


test.serial('stasis killed at random moments of a --tcp-established --leave-running dump: the connection carries on, no lock left', async (t) => {
  const { srv, w, work, ready } = await clientAndServer(t);
  srv.expect(Number(ready.split(' ')[1]));
  // How long a whole dump takes, then kills spread over it.
  const t0 = Date.now();
  const full = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--tcp-established', '--leave-running']);
  t.is(full.exitCode, 0, full.all);
  const span = Date.now() - t0;
  t.deepEqual(lockRules(srv.port), [], 'a finished --leave-running dump leaves no rule');
  let lockedKills = 0;
  for (let i = 0; i < 8; i++) {
    const p = execa(process.execPath, [stasisBin, 'dump', '-t', String(w.pid), '-D', tmpDir(t), '--tcp-established', '--leave-running'], { reject: false });
    // Half the kills at random, half once the lock is seen (the connection in repair mode).
    if (i % 2) await new Promise((r) => setTimeout(r, Math.floor(Math.random() * span)));
    else await eventually(() => lockRules(srv.port).length > 0, span * 3);
    if (lockRules(srv.port).length) lockedKills++;
    p.kill('SIGKILL');
    await p;
    t.true(await eventually(() => lockRules(srv.port).length === 0), `kill ${i + 1}: the lock is gone`);
    t.true(await eventually(() => tracerOf(w.pid) === 0), `kill ${i + 1}: the process is not traced`);
  }
  t.log(`dump ${span} ms; ${lockedKills} of 8 kills with the lock held`);
  t.true(lockedKills > 0, 'some kill hit the dump while it held the connection');
  srv.resume();
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
  t.is(srv.verdict, 'ok', 'the server got every byte once');
  t.deepEqual(srv.events.filter((e) => e.startsWith('error')), [], 'the server never saw a reset');
});


test.serial('--tcp-close restores an established connection closed, as many times as asked, and lifts the lock', async (t) => {
  const { srv, w } = await clientAndServer(t);
  const fdOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).map(Number)
    .find((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'));
  const fd = fdOf(w.pid)!;
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  t.is(lockRules(srv.port).length, 2, 'locked until restored');
  for (let i = 0; i < 2; i++) {
    const r = await stasis(['restore', '-d', '-D', dir, '--tcp-close']);
    t.is(r.exitCode, 0, r.all);
    t.deepEqual(lockRules(srv.port), [], `restore ${i + 1}: the lock is lifted`);
    const link = fs.readlinkSync(`/proc/${w.pid}/fd/${fd}`);
    t.regex(link, /^socket:\[\d+\]$/, `restore ${i + 1}: the descriptor is a socket`);
    const ino = Number(/\d+/.exec(link)![0]);
    t.not(tcpStates().get(ino), '01', `restore ${i + 1}: not connected`);
    process.kill(w.pid, 'SIGKILL');
    await eventually(() => !fs.existsSync(`/proc/${w.pid}`));
  }
});

test.serial('a restore that fails (a damaged tcp-stream image) leaves no process and no lock, and the peer sees the connection reset', async (t) => {
  const { srv, w } = await clientAndServer(t, 4096);
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  await restoreDamagedStream(t, dir, w.pid, srv.port);
  // The peer finds out at its next word: the connection is gone (reset), not hanging.
  srv.resume();
  srv.write('hello?');
  t.true(await eventually(() => srv.events.some((e) => e === 'error ECONNRESET' || e === 'close'), 10_000), srv.events.join(', '));
});

/** The retransmission timer of the connection from local port `port`: [ms left, back-offs]. */
function retransmitTimer(port: number): [number, number] | undefined {
  const out = execFileSync('ss', ['-tinoH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  const m = /timer:\(on,(?:(\d+)min)?(?:([\d.]+)sec)?(?:(\d+)ms)?,(\d+)\)/.exec(out);
  if (!m) return undefined;
  return [Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1000 + Number(m[3] ?? 0), Number(m[4])];
}

test.serial('a peer whose retransmissions backed off during the lock sends again as soon as the connection is restored, not when its own timer runs out', async (t) => {
  const port = 21000 + (process.pid % 20000);
  const w = await underReaperWorkload('tcp-echo', [String(port)]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  // The peer: 8 bytes every 2 ms, each echoed.
  const peer = await new Promise<Socket>((r, j) => { const c = netConnect(port, '127.0.0.1', () => r(c)); c.once('error', j); });
  const errors: string[] = [];
  const answers: number[] = [];
  peer.setNoDelay(true);
  peer.on('error', (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message));
  peer.on('data', () => answers.push(performance.now()));
  const pinger = setInterval(() => peer.write(Buffer.alloc(8)), 2);
  t.teardown(() => { clearInterval(pinger); peer.destroy(); });
  await new Promise((r) => setTimeout(r, 200));
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  // The lock drops the peer's segments: it retransmits after 200 ms, 600, 1400, 3000, 6200...
  // Once it has backed off five times its next try is some 6 s away.
  let timer: [number, number] | undefined;
  t.true(await eventually(() => (timer = retransmitTimer(peer.localPort!)) !== undefined && timer[1] >= 5, 15_000), 'the peer backs off');
  const nextTry = performance.now() + timer![0];
  const before = answers.length;
  const r = await stasis(['restore', '-d', '-D', dir, '--tcp-established']);
  const restored = performance.now();
  t.is(r.exitCode, 0, r.all);
  t.true(restored < nextTry, 'the restore ended before the peer\'s next try (else this cannot tell)');
  t.true(await eventually(() => answers.length > before, 10_000), 'the connection carries on');
  const resumed = answers[before]!;
  t.log(`the peer's next try was due ${(nextTry - restored).toFixed(0)} ms after the restore's end; answers came ${(nextTry - resumed).toFixed(0)} ms before it`);
  t.true(resumed < nextTry - 100, `answers again ${(resumed - nextTry).toFixed(0)} ms after the peer's own timer would have fired`);
  t.deepEqual(errors, [], 'the peer sees no error');
  t.deepEqual(lockRules(port), [], 'no lock rule left');
});

test.serial('a TCP listener with connections not yet accepted: refused, or with --skip-in-flight dumped without them (they are reset) and listening again', async (t) => {
  const port = 20000 + (process.pid % 20000);
  const w = await underReaperWorkload('tcp-echo', [String(port), 'noaccept']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const events: string[] = [];
  const pending = await new Promise<import('node:net').Socket>((r) => {
    const s = netConnect(port, '127.0.0.1', () => r(s));
    s.on('error', (e) => events.push(`error ${(e as NodeJS.ErrnoException).code}`));
    s.on('close', () => events.push('close'));
  });
  t.teardown(() => pending.destroy());
  const refused = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t)]);
  t.not(refused.exitCode, 0);
  t.regex(refused.all, /1 connection\(s\) not yet accepted \(in flight\): dumped only with --skip-in-flight/);
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--skip-in-flight']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const r = await stasis(['restore', '-d', '-D', dir]);
  t.is(r.exitCode, 0, r.all);
  t.teardown(() => { try { process.kill(w.pid, 'SIGKILL'); } catch { /* gone */ } });
  // Listening again: a new client gets through the handshake.
  const fresh = await new Promise<boolean>((res) => {
    const s = netConnect(port, '127.0.0.1', () => { s.destroy(); res(true); });
    s.on('error', () => res(false));
  });
  t.true(fresh, 'the restored listener takes new connections');
  // The one in flight was left out: its next word meets a reset.
  pending.write('anyone?');
  t.true(await eventually(() => events.includes('error ECONNRESET')), events.join(', '));
});
