// Established TCP connections (files/tcp-stream.ts, net-ns/network-lock.ts): a process of the
// host's network namespace connected to a server of the test, with data queued both ways at the
// moment of the dump, dumped with --tcp-established (killed) and restored: every byte arrives
// exactly once, the server never sees a reset, and no lock rule is left behind.

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import path from 'node:path';
import { eventually, lockRules, nftLockTables, nftMonitor, patternServer, tcpStates, unwire, wire } from './tcp-peers.js';
import { ImageDir } from '../../images/index.js';
import { restoreDamagedStream, tcpRoundTrip } from './tcp-peers.js';
import { execa } from 'execa';
import fs from 'node:fs';
import { alive, fdKey, killPid, restoreUnderReaper, selfCheckRoundTrip, stasis, stasisBin, tmpDir, tracerOf } from '../helpers/stasis.js';
import { ConnectionLock, ownerComment, unlockTables, type LockedConnection } from '../../net-ns/network-lock.js';
import { AF } from '../../sys/socket.js';
import { readStat } from '../../sys/proc/index.js';
import { buildWorkload, startWorkload as underReaperWorkload, underReaper } from '../../test-containers/launch.js';


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

const cases: { host: string; dumper: string; restorer: string; lock?: string; listen?: string }[] = [
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'stasis' },
  { host: '::1', dumper: 'stasis', restorer: 'stasis' },
  // An IPv6 socket connected to an IPv4 server: locked as the IPv4 connection it is on the wire.
  { host: '::ffff:127.0.0.1', listen: '127.0.0.1', dumper: 'stasis', restorer: 'stasis' },
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'criu' },
  { host: '127.0.0.1', dumper: 'criu', restorer: 'stasis' },
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'stasis', lock: 'nftables' },
  { host: '::1', dumper: 'stasis', restorer: 'stasis', lock: 'nftables' },
  // An IPv6 socket connected to an IPv4 server: locked as the IPv4 connection it is on the wire.
  { host: '::ffff:127.0.0.1', listen: '127.0.0.1', dumper: 'stasis', restorer: 'stasis', lock: 'nftables' },
  { host: '127.0.0.1', dumper: 'stasis', restorer: 'criu', lock: 'nftables' },
  { host: '127.0.0.1', dumper: 'criu', restorer: 'stasis', lock: 'nftables' },
];
for (const { host, dumper, restorer, lock = 'iptables', listen = host } of cases) {
  const how = [...dumper === 'stasis' && restorer === 'stasis' ? [] : [`${dumper} dumps and ${restorer} restores`],
    ...lock === 'iptables' ? [] : [`--network-lock ${lock}`]].map((x) => `, ${x}`).join('');
  test.serial(`an established connection (${host}) with both queues full carries on after dump and restore${how}`, async (t) => {
    const srv = await patternServer(listen);
    t.teardown(() => srv.close());
    let sent = 0;
    let dumpTable = '';
    let monitor: { stop(): Promise<string[]> } | undefined;
    await selfCheckRoundTrip(t, 'tcp-client', {
      args: (work) => [work, `c,${host},${srv.port}`],
      ...tcpRoundTrip(dumper, restorer, lock),
      afterReady: (_w, line) => {
        sent = Number(line.split(' ')[1]);
        srv.expect(sent);
      },
      afterDump: async (dir: string) => {
        // Locked while the process is away: the connection's packets are dropped, not reset.
        const held = lockRules(srv.port);
        t.is(held.length, 2, `two lock rules or set elements (in and out) while the connection is dumped: ${held.join('; ')}`);
        if (lock === 'iptables' && host !== '::1') t.true(held.every((r) => / -s \d+\.\d+\.\d+\.\d+\/32 /.test(r)), `IPv4 rules (iptables): ${held.join('; ')}`);
        if (lock === 'nftables') {
          // The dump's table, named by the run id its inventory keeps, holds them (IPv4 ones in conns4).
          dumpTable = `CRIU-${(await (await ImageDir.open(dir)).inventory()).dump_criu_run_id}`.slice(0, 26);
          t.true(held.every((e) => e.startsWith(`${dumpTable} `)), `in ${dumpTable}: ${held.join('; ')}`);
          t.is(held.filter((e) => /^\S+ \d+\.\d+\.\d+\.\d+ /.test(e)).length, host === '::1' ? 0 : 2, 'IPv4 on the wire: in conns4');
          if (restorer === 'stasis') monitor = await nftMonitor(t);
        }
      },
      afterRestore: async () => {
        srv.resume();
        if (!monitor) return;
        // stasis's restore locked the connection again in a table of its own (on another host
        // the dump's is not there), and lifted it with the dump's.
        const lines = await monitor.stop();
        const own = lines.map((l) => new RegExp(`^add element inet (CRIU-\\S+) conns[46] \\{ .* ${srv.port}( |,)`).exec(l)?.[1]).find((x) => x && x !== dumpTable);
        t.truthy(own, `the restore's own table holds the connection: ${lines.join('\n')}`);
        t.true(lines.includes(`delete table inet ${own}`), 'the restore\'s table is deleted');
      },
    });
    t.true(sent > 0);
    t.is(srv.verdict, 'ok', `the server got every byte once (${srv.receivedBytes} bytes)`);
    t.deepEqual(srv.events.filter((e) => e.startsWith('error')), [], 'the server never saw a reset');
    t.deepEqual(lockRules(srv.port), [], 'no lock rule left');
    if (dumpTable) t.false(nftLockTables().includes(dumpTable), `the dump's table ${dumpTable} is gone from the ruleset`);
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


for (const lock of ['iptables', 'nftables']) {
  test.serial(`stasis killed at random moments of a --tcp-established --leave-running dump (--network-lock ${lock}): the connection carries on, no lock left`, async (t) => {
    const { srv, w, work, ready } = await clientAndServer(t);
    srv.expect(Number(ready.split(' ')[1]));
    // How long a whole dump takes, then kills spread over it.
    const t0 = Date.now();
    const full = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--tcp-established', '--leave-running', '--network-lock', lock]);
    t.is(full.exitCode, 0, full.all);
    const span = Date.now() - t0;
    t.deepEqual(lockRules(srv.port), [], 'a finished --leave-running dump leaves no rule');
    let lockedKills = 0;
    for (let i = 0; i < 8; i++) {
      const p = execa(process.execPath, [stasisBin, 'dump', '-t', String(w.pid), '-D', tmpDir(t), '--tcp-established', '--leave-running', '--network-lock', lock], { reject: false });
      // Half the kills at random, half once the lock is seen (the connection in repair mode).
      if (i % 2) await new Promise((r) => setTimeout(r, Math.floor(Math.random() * span)));
      else await eventually(() => lockRules(srv.port).length > 0, span * 3);
      const held = lockRules(srv.port);
      if (held.length) lockedKills++;
      p.kill('SIGKILL');
      await p;
      t.true(await eventually(() => lockRules(srv.port).length === 0), `kill ${i + 1}: the lock is gone`);
      // nftables: the tables that held the connection are gone whole, not only emptied.
      const tables = new Set(held.filter((e) => e.startsWith('CRIU-')).map((e) => e.split(' ')[0]!));
      if (lock === 'nftables') t.true(await eventually(() => !nftLockTables().some((x) => tables.has(x))), `kill ${i + 1}: no table left`);
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
}


/** The children of process `pid` (its main thread's) whose command line names `what`. */
function childrenNaming(pid: number, what: string): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
      .filter((c) => { try { return fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes(what); } catch { return false; } });
  } catch {
    return [];
  }
}

for (const lock of ['iptables', 'nftables']) {
  test.serial(`stasis killed at random moments of a --tcp-established restore, once it holds the lock (--network-lock ${lock}): no lock and no process left, the peer sees a reset, not a hang`, async (t) => {
    let kills = 0;
    for (let i = 0; i < 4; i++) {
      const { srv, w } = await clientAndServer(t);
      const dir = tmpDir(t);
      const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established', '--network-lock', lock]);
      t.is(d.exitCode, 0, d.all);
      await w.exitOf(w.pid);
      const tablesBefore = lock === 'nftables' ? nftLockTables() : [];
      const r = execa(process.execPath, [stasisBin, 'restore', '-d', '-D', dir, '--tcp-established'], { reject: false });
      // Once the restore has made its process again (at the dumped PID), a kill at random.
      await eventually(() => fs.existsSync(`/proc/${w.pid}`) || r.exitCode !== null, 10_000);
      await new Promise((res) => setTimeout(res, Math.floor(Math.random() * 30)));
      const watchdog = childrenNaming(r.pid!, 'watchdog')[0];
      r.kill('SIGKILL');
      const done = await r;
      if (!done.isTerminated) {
        // It ended before the kill: restored, the connection goes on, no lock.
        t.is(done.exitCode, 0, done.all);
        t.deepEqual(lockRules(srv.port), [], `restore ${i + 1}: no lock after a restore`);
        killPid(w.pid);
        continue;
      }
      t.truthy(watchdog, `restore ${i + 1}: a watchdog was running`);
      t.true(await eventually(() => !fs.existsSync(`/proc/${watchdog}`), 10_000), `restore ${i + 1}: the watchdog is done`);
      t.deepEqual(lockRules(srv.port), [], `restore ${i + 1}: no lock left`);
      // (the dump's table, there before, goes too: it held the connection, which lockRules sees)
      if (lock === 'nftables') t.deepEqual(nftLockTables().filter((x) => !tablesBefore.includes(x)), [], `restore ${i + 1}: no lock table of the restore left`);
      // Killed before it let the tree go, the half-made tree dies with it (at once: it is traced
      // with PTRACE_O_EXITKILL); killed just after, the tree runs on (not traced any more).
      if (await eventually(() => !alive(w.pid) || tracerOf(w.pid) === 0, 5_000) && alive(w.pid)) {
        killPid(w.pid);
        continue;
      }
      kills++;
      t.false(alive(w.pid), `restore ${i + 1}: no half-restored process left`);
      // The peer finds out at its next word: the connection is gone (reset), not hanging.
      srv.resume();
      srv.write('hello?');
      t.true(await eventually(() => srv.events.some((e) => e === 'error ECONNRESET' || e === 'close'), 10_000), srv.events.join(', '));
    }
    t.log(`${kills} of 4 restores killed before they let the tree go`);
    t.true(kills > 0, 'some kill hit a restore before it let the tree go');
  });
}

for (const lock of ['iptables', 'nftables']) {
  test.serial(`--tcp-close restores an established connection closed, as many times as asked, and lifts the lock (--network-lock ${lock})`, async (t) => {
    const { srv, w } = await clientAndServer(t);
    const fdOf = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).map(Number)
      .find((fd) => fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'));
    const fd = fdOf(w.pid)!;
    const dir = tmpDir(t);
    const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established', '--network-lock', lock]);
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

  test.serial(`a restore that fails (a damaged tcp-stream image) leaves no process and no lock, and the peer sees the connection reset (--network-lock ${lock})`, async (t) => {
    const { srv, w } = await clientAndServer(t, 4096);
    const dir = tmpDir(t);
    const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established', '--network-lock', lock]);
    t.is(d.exitCode, 0, d.all);
    await w.exitOf(w.pid);
    await restoreDamagedStream(t, dir, w.pid, srv.port);
    // The peer finds out at its next word: the connection is gone (reset), not hanging.
    srv.resume();
    srv.write('hello?');
    t.true(await eventually(() => srv.events.some((e) => e === 'error ECONNRESET' || e === 'close'), 10_000), srv.events.join(', '));
  });
}

test.serial('stasis killed while a --leave-running dump holds a tree\'s own network namespace locked (--network-lock nftables): the table goes, the connection carries on', async (t) => {
  const x = 30 + (process.pid % 60);
  const ns = `stasis-nftk-${process.pid}`;
  const hostIf = `stk${process.pid % 100000}`;
  t.teardown(() => unwire(ns, hostIf));
  wire(ns, hostIf, `10.77.${x}`);
  const srv = await patternServer(`10.77.${x}.1`);
  t.teardown(() => srv.close());
  const work = tmpDir(t, 'stasis-tcp-');
  const w = await underReaper(['/usr/bin/nsenter', `--net=/var/run/netns/${ns}`, buildWorkload('tcp-client'), work, `c,10.77.${x}.1,${srv.port}`]);
  t.teardown(() => w.kill());
  srv.expect(Number((await w.waitForLine(/^ready\b/)).split(' ')[1]));
  const ino = fs.statSync(`/var/run/netns/${ns}`).ino;
  const dump = ['dump', '-t', String(w.pid), '--tcp-established', '--leave-running', '--network-lock', 'nftables', '--external', `net[${ino}]:${ns}`];
  const t0 = Date.now();
  const full = await stasis([...dump, '-D', tmpDir(t)]);
  t.is(full.exitCode, 0, full.all);
  const span = Date.now() - t0;
  t.deepEqual(nftLockTables(ns), [], 'a finished --leave-running dump leaves no table');
  let lockedKills = 0;
  for (let i = 0; i < 4; i++) {
    const p = execa(process.execPath, [stasisBin, ...dump, '-D', tmpDir(t)], { reject: false });
    await eventually(() => nftLockTables(ns).length > 0, span * 3);
    const held = nftLockTables(ns);
    if (held.length) lockedKills++;
    p.kill('SIGKILL');
    await p;
    t.true(await eventually(() => nftLockTables(ns).length === 0), `kill ${i + 1}: the namespace's lock table is gone (${held.join(', ')})`);
    t.true(await eventually(() => tracerOf(w.pid) === 0), `kill ${i + 1}: the process is not traced`);
  }
  t.true(lockedKills > 0, 'some kill hit the dump while it held the namespace locked');
  srv.resume();
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
  t.is(srv.verdict, 'ok', 'the server got every byte once');
  t.deepEqual(srv.events.filter((e) => e.startsWith('error')), [], 'the server never saw a reset');
});

/** A process gone: its pid and the start time it had (field 22 of /proc/PID/stat). */
async function goneProcess(): Promise<[number, string]> {
  const p = spawn('sleep', ['60'], { stdio: 'ignore' });
  const start = String(readStat(p.pid!).startTime);
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
  return [p.pid!, start];
}

test.serial('a lock table a killed stasis restore left (--network-lock nftables) never blocks the next: the next restore lifts it, its connection carries on; a running restore\'s table is left alone', async (t) => {
  const { srv, w, work, ready } = await clientAndServer(t);
  srv.expect(Number(ready.split(' ')[1]));
  const conn: LockedConnection = { family: AF.INET, src: Buffer.from([127, 0, 0, 1]), sport: srv.peerPort!, dst: Buffer.from([127, 0, 0, 1]), dport: srv.port };
  // As a restore killed while it held the connection leaves it: its table, its owner gone, drops
  // the connection both ways. And one of a restore still running (this process), to be kept.
  const [dead, start] = await goneProcess();
  const stale = `CRIU-stale-${process.pid}`;
  const live = `CRIU-live-${process.pid}`;
  new ConnectionLock('nftables', undefined, undefined, stale, `stasis restore ${dead} ${start}`).addAll([conn]);
  const running = new ConnectionLock('nftables', undefined, undefined, live, ownerComment());
  running.addAll([{ ...conn, sport: 9, dport: 9 }]);
  t.teardown(() => { unlockTables([stale, live], undefined); });
  t.deepEqual(nftLockTables().filter((x) => x === stale || x === live).sort(), [live, stale]);
  const dir = tmpDir(t);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--tcp-established', '--network-lock', 'nftables']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const r = await restoreUnderReaper(t, dir, key, w.pid, ['--tcp-established']);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.false(nftLockTables().includes(stale), 'the killed restore\'s table is gone');
  t.true(nftLockTables().includes(live), 'a running restore\'s table is left alone');
  t.deepEqual(lockRules(srv.port), [], 'nothing holds the connection');
  srv.resume();
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
  t.is(srv.verdict, 'ok', 'the server got every byte once');
  t.deepEqual(srv.events.filter((e) => e.startsWith('error')), [], 'the server never saw a reset');
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
