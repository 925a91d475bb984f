// stasis restores images that CRIU 4.2 wrote: the `single` fixture set.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { fixturesDir } from '../helpers/paths.js';
import { alive, killPid, tmpDir } from '../helpers/stasis.js';
import { underReaper } from '../../test-containers/launch.js';

const FIXTURE_PID = 2696;
const HOME = '/opt/stasis-fixtures';

/** Read a u64 of the task's memory (unbuffered: each read goes to the kernel). */
function readU64(pid: number, addr: bigint): bigint {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, addr);
    return b.readBigUInt64LE(0);
  } finally {
    fs.closeSync(fd);
  }
}

test.serial('the CRIU 4.2 single fixture restores and its counter and signal handler work', async (t) => {
  if (fs.existsSync(`/proc/${FIXTURE_PID}`)) {
    t.fail(`PID ${FIXTURE_PID}, which the fixture needs, is taken on this machine`);
    return;
  }
  // The binary rebuilt from its source at the path the images name, and the file it had open.
  const created = !fs.existsSync(HOME);
  fs.mkdirSync(HOME, { recursive: true });
  t.teardown(() => {
    if (created) fs.rmSync(HOME, { recursive: true, force: true });
  });
  const bin = path.join(HOME, 'single');
  await execa('gcc', ['-O1', '-o', bin, path.join(fixturesDir, 'workloads/single.c'), '-lpthread']);
  t.deepEqual(fs.readFileSync(bin), fs.readFileSync(path.join(fixturesDir, 'workloads/bin/single')),
    'the rebuilt binary is the one that was dumped');
  fs.writeFileSync(path.join(HOME, 'data.txt'), 'hello stasis fixture\n');

  const work = tmpDir(t);
  const r = await underReaper([process.execPath, path.resolve('bin/stasis'), 'restore', '-d',
    '-D', path.join(fixturesDir, 'single/images'), '-W', work]);
  t.teardown(async () => {
    killPid(FIXTURE_PID);
    await r.kill();
  });
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.true(alive(FIXTURE_PID));

  const status = fs.readFileSync(`/proc/${FIXTURE_PID}/status`, 'utf8');
  t.regex(status, /SigBlk:\s+0000000000000200/, 'SIGUSR1 blocked');
  t.regex(status, /SigCgt:\s+0000000000000800/, 'SIGUSR2 caught');
  t.is(fs.readlinkSync(`/proc/${FIXTURE_PID}/fd/3`), `${HOME}/data.txt`);
  t.regex(fs.readFileSync(`/proc/${FIXTURE_PID}/fdinfo/3`, 'utf8'), /^pos:\s+6$/m);
  t.is(fs.readlinkSync(`/proc/${FIXTURE_PID}/cwd`), '/');

  // `counter` (in .bss) goes on counting, and SIGUSR2's handler adds 1000 to it.
  const nm = await execa('nm', [bin]);
  const off = BigInt(`0x${/^([0-9a-f]+) b counter$/m.exec(nm.stdout)![1]}`);
  const base = BigInt(`0x${fs.readFileSync(`/proc/${FIXTURE_PID}/maps`, 'utf8').split('-')[0]}`);
  const c1 = readU64(FIXTURE_PID, base + off);
  await new Promise((res) => setTimeout(res, 450));
  const c2 = readU64(FIXTURE_PID, base + off);
  t.true(c2 >= c1 + 2n, `counter went from ${c1} to ${c2}`);
  process.kill(FIXTURE_PID, 'SIGUSR2');
  await new Promise((res) => setTimeout(res, 150));
  t.true(readU64(FIXTURE_PID, base + off) >= c2 + 1000n, 'SIGUSR2 handler ran');
});
