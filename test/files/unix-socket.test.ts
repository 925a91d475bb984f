import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { startWorkload, underReaper } from '../../test-containers/launch.js';
import { alive, selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

test.serial('restored unix sockets keep their queued bytes, datagram boundaries, names, listeners, peers and options', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'unix-sockets', {
    ready: /^ready$/,
    afterDump: async (dir) => {
      // The images are CRIU's: crit decodes them and stasis show prints what crit prints.
      for (const f of ['files.img', 'sk-queues.img']) {
        const crit = await execa('crit', ['decode', '-i', path.join(dir, f), '--pretty'], { reject: false });
        t.is(crit.exitCode, 0, `${f}: ${crit.stderr}`);
        const ours = await stasis(['show', path.join(dir, f)]);
        t.deepEqual(JSON.parse(ours.stdout), JSON.parse(crit.stdout), f);
      }
      const files = JSON.parse((await stasis(['show', path.join(dir, 'files.img')])).stdout).entries as { type: string; usk?: Record<string, unknown> }[];
      t.is(files.filter((f) => f.type === 'UNIXSK').length, 17, 'every unix socket of the workload is in files.img');
    },
  });
  t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
});

test.serial('a unix socket connected to a process outside the dump fails the dump clearly and the process runs on', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-unix-');
  const server = net.createServer((c) => c.on('error', () => {}));
  await new Promise<void>((resolve) => server.listen(path.join(work, 'ext.sock'), resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const w = await startWorkload('unix-sockets', [work, 'external']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1, d.all);
  t.regex(d.stderr, /^stasis: unix socket:\[\d+\] \(fd 3 of task \d+\) is connected to socket:\[\d+\], which is outside the dumped process: stasis cannot dump a connection that leaves the tree \(only a datagram socket connected to a bound one, with --ext-unix-sk\)$/);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')), 'no complete dump is left behind');
  t.true(alive(w.pid));
  t.regex(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'), /TracerPid:\s+0\n/, 'released untraced');
  fs.writeFileSync(path.join(work, 'check'), '');
  t.is(await w.exitOf(w.pid), `exit ${w.pid} 0`, 'the process carried on and finished by itself');
});

test.serial('a datagram socket connected to one that only a child holds is connected again after restore', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'dgram-peer');
  // Parent and child write to one pipe: the parent's line may follow the child's result.
  for (const item of ['child-received', 'parent-sent']) {
    t.truthy(await r.waitForLine(new RegExp(`^ok ${item}$`), 5000).catch(() => undefined), `ok ${item}: ${r.lines.join(' | ')}`);
  }
});

test.serial('with --ext-unix-sk a datagram socket connected to one bound outside the tree is connected to it again after restore', async (t) => {
  const outside = tmpDir(t, 'stasis-outside-');
  const sock = path.join(outside, 'extd.sock');
  // The socket outside the dump: bound by another process, printing what it receives.
  const server = await underReaper(['/usr/bin/python3', '-c', [
    'import socket, sys', 's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)', 's.bind(sys.argv[1])',
    'print("ready", flush=True)', 'while True: print("got " + s.recv(100).decode(), flush=True)',
  ].join('\n'), sock]);
  t.teardown(() => server.kill());
  await server.waitForLine(/^ready$/);

  // Without the option the dump says what to do, and the process runs on.
  const w = await startWorkload('unix-sockets', [outside, 'external-dgram', sock]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1, d.all);
  t.regex(d.stderr, /is outside the dumped process: dump with --ext-unix-sk \(criu's ext_unix_sk\) to connect it to the same name on restore$/);
  t.true(alive(w.pid));

  const { r } = await selfCheckRoundTrip(t, 'unix-sockets', {
    args: (work) => [work, 'external-dgram', sock], dumpArgs: ['--ext-unix-sk'], ready: /^ready$/,
  });
  t.true(r.lines.includes('ok external-dgram-send'), r.lines.join(' | '));
  await server.waitForLine(/^got hello from the restored task$/);
});

test.serial('a connection not accepted yet that its client wrote into fails the dump clearly, as with CRIU, and the process runs on', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-unix-');
  const w = await startWorkload('unix-pending', [work, 'pending-data']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1, d.all);
  t.regex(d.stderr, /^stasis: unix socket:\[\d+\] \(fd \d+ of task \d+\) has sent \d+ bytes on a connection that socket:\[\d+\] has not accepted yet, which stasis cannot dump$/);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')), 'no complete dump is left behind');
  t.true(alive(w.pid));
  fs.writeFileSync(path.join(work, 'check'), '');
  t.is(await w.exitOf(w.pid), `exit ${w.pid} 0`, 'the process carried on and checked itself');
  t.true(w.lines.includes('ok pending-data'), w.lines.join('\n'));
});

// CRIU's zdtm behaviours of unix sockets (issue 16), as workloads of ours: each as a plain
// process tree and as a runc container (new pid/mount/net namespaces, restored under --root).
const zdtmLike: [string, string, string[]][] = [
  ['unix-pending', 'a listener with a connection not yet accepted, unconnected stream sockets, a relative name', []],
  ['unix-scm', 'descriptors in flight (SCM_RIGHTS) queued in unix sockets', []],
  ['unix-dgram', 'datagram sockets bound by path, one path bound in two mount namespaces', ['mntns']],
  ['unix-gone', 'sockets bound in directories removed since', []],
];
for (const [workload, what, args] of zdtmLike) {
  test.serial(`${workload}: ${what}, restored as a process tree`, async (t) => {
    await selfCheckRoundTrip(t, workload, { args: (work) => [work, ...args] });
  });
  test.serial(`${workload}: ${what}, restored in a container`, async (t) => {
    const { dir } = await selfCheckInContainer(t, workload, { args });
    // A child's own mount namespace is restored as its own (mount-ns/nested.ts): no warning.
    const log = fs.readFileSync(path.join(dir, 'rwork', 'restore.log'), 'utf8');
    t.false(/Warn: .*mount namespace/.test(log), log);
  });
}
