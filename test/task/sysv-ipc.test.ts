import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { buildWorkload, underReaper } from '../../test-containers/launch.js';
import { fdKey, killPid, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

function crit(file: string): { entries: Record<string, unknown>[] } {
  return JSON.parse(execFileSync('crit', ['decode', '-i', file], { encoding: 'utf8' }));
}

test.serial('SysV shared memory, semaphores and message queues of an ipc namespace come back with their ids, owners and contents; attachments stay shared', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-sysv-');
  const w = await underReaper(['/usr/bin/unshare', '--ipc', '--fork', buildWorkload('sysv'), work]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready /);
  const pid = Number(fs.readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim());
  t.teardown(() => killPid(pid));
  const [shmA, shmB, shmC, sem, sem2, msg] = ready.split(' ').slice(1).map(Number);
  const key = fdKey(pid, 1);

  const d = await stasis(['dump', '-t', String(pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);

  // Debian's crit reads the three images, payloads included.
  const ipcNs = fs.readdirSync(dir).find((f) => f.startsWith('ipcns-shm-'))!;
  t.truthy(ipcNs, fs.readdirSync(dir).join(' '));
  const n = ipcNs.slice('ipcns-shm-'.length);
  const shm = crit(path.join(dir, `ipcns-shm-${n}`));
  t.deepEqual(shm.entries.map((e) => (e.desc as { id: number }).id).sort(), [shmA, shmB, shmC].sort());
  const semImg = crit(path.join(dir, `ipcns-sem-${n}`));
  t.deepEqual(semImg.entries.map((e) => e.extra), [[1, 7, 0, 32767], [0]]);
  t.deepEqual(semImg.entries.map((e) => (e.desc as { id: number }).id), [sem, sem2]);
  const msgImg = crit(path.join(dir, `ipcns-msg-${n}`));
  t.is(msgImg.entries.length, 1);
  t.is((msgImg.entries[0]!.desc as { id: number }).id, msg);
  t.is(msgImg.entries[0]!.qnum, 3);

  const r = await restoreUnderReaper(t, dir, key, pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  // Restored into a new ipc namespace of its own, not stasis's.
  t.not(fs.readlinkSync(`/proc/${pid}/ns/ipc`), fs.readlinkSync('/proc/self/ns/ipc'));
  t.false(fs.readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').some((l) => l.trim().startsWith(String(0x5157))),
    'nothing was made in the host\'s namespace');
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
});
