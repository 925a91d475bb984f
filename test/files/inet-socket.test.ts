import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { startWorkload } from '../../test-containers/launch.js';
import { alive, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

type Entry = { type: string; isk?: Record<string, unknown> };

test.serial('restored TCP listeners accept new clients and UDP sockets receive on their old ports (IPv4 and IPv6)', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'inet-sockets', {
    ready: /^ready$/,
    afterDump: async (dir) => {
      // crit decodes files.img and shows what stasis shows (Debian's crit predates tcp_opts, CRIU 4.0's).
      const crit = await execa('crit', ['decode', '-i', path.join(dir, 'files.img'), '--pretty'], { reject: false });
      t.is(crit.exitCode, 0, crit.stderr);
      const ours = JSON.parse((await stasis(['show', path.join(dir, 'files.img')])).stdout).entries as Entry[];
      for (const e of ours) delete e.isk?.tcp_opts;
      t.deepEqual(ours, JSON.parse(crit.stdout).entries);
      const isk = ours.filter((e) => e.type === 'INETSK').map((e) => e.isk!);
      t.deepEqual(isk.map((s) => `${s.family} ${s.proto} ${s.state}`), [
        'INET TCP LISTEN', 'INET6 TCP LISTEN', 'INET UDP CLOSE', 'INET6 UDP CLOSE', 'INET TCP CLOSE',
        'INET6 TCP CLOSE', 'INET UDP ESTABLISHED',
      ]);
      t.is(isk[0]!.backlog, 7);
      t.deepEqual(isk[0]!.src_addr, ['127.0.0.1']);
      t.deepEqual(isk[1]!.src_addr, ['::1']);
      t.is(isk[1]!.v6only, true);
    },
  });
  t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
});

test.serial('an established TCP connection without --tcp-established fails the dump with a one-line error naming it, and the process runs on', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-inet-');
  const w = await startWorkload('inet-sockets', [work, 'established']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1, d.all);
  t.regex(d.stderr, /^stasis: TCP socket:\[\d+\] \(fd \d+ of task \d+\), connected from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+: an established TCP connection is dumped only with --tcp-established \(or --tcp-close\)$/);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')));
  t.true(alive(w.pid));
  t.regex(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'), /TracerPid:\s+0\n/, 'released untraced');
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /);
  t.true(w.lines.includes('ok connection-intact'), w.lines.join('\n'));
  t.is(await w.exitOf(w.pid), `exit ${w.pid} 0`);
});
