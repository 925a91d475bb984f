// stasis restores images that CRIU 4.2 wrote: the `single`, `threads` and `tree` fixture sets.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { fixturesDir } from '../helpers/paths.js';
import { alive, killPid, tmpDir, waitForFreePids } from '../helpers/stasis.js';
import { underReaper } from '../../test-containers/launch.js';
import { SYS } from '../../sys/arch.js';
import { addressOf, nativeBuffer, rawSyscall } from '../../sys/native.js';

const HOME = '/opt/stasis-fixtures';

/** Read bytes of a task's memory (unbuffered: each read goes to the kernel). */
function readMem(pid: number, addr: bigint, len: number): Buffer {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, addr);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Put the fixture's workload binary back (rebuilt from its source, at the path the images
 * name), restore the set under a reaper, and return the address of `symbol` (a .bss variable)
 * in the restored root. Everything is removed / killed when the test ends.
 */
async function restoreFixture(t: ExecutionContext, set: string, pids: number[], symbol = ''): Promise<bigint> {
  const created = !fs.existsSync(HOME);
  fs.mkdirSync(HOME, { recursive: true });
  t.teardown(() => {
    if (created) fs.rmSync(HOME, { recursive: true, force: true });
  });
  const bin = path.join(HOME, set);
  await execa('gcc', ['-O1', '-o', bin, path.join(fixturesDir, `workloads/${set}.c`), '-lpthread']);
  t.deepEqual(fs.readFileSync(bin), fs.readFileSync(path.join(fixturesDir, `workloads/bin/${set}`)),
    'the rebuilt binary is the one that was dumped');
  if (set === 'single') fs.writeFileSync(path.join(HOME, 'data.txt'), 'hello stasis fixture\n');
  // A PID can still be taken between the wait and the restore (which then fails cleanly, saying
  // so): a few tries. (No descriptor invariant here: CRIU dumped the tree elsewhere, there is no
  // "before" to compare with.)
  let r: Awaited<ReturnType<typeof underReaper>>;
  let exit: string;
  for (let attempt = 1; ; attempt++) {
    await waitForFreePids(pids);
    r = await underReaper([process.execPath, path.resolve('bin/stasis'), 'restore', '-d',
      '-D', path.join(fixturesDir, `${set}/images`), '-W', tmpDir(t)]);
    const restored = r;
    t.teardown(async () => {
      pids.forEach(killPid);
      await restored.kill();
    });
    exit = await r.exitOf(r.pid);
    if (exit === `exit ${r.pid} 0` || attempt === 3 || !r.lines.some((l) => /already in use/.test(l))) break;
  }
  t.is(exit, `exit ${r.pid} 0`, r.lines.join('\n'));
  if (!symbol) return 0n;
  const nm = await execa('nm', [bin]);
  const off = BigInt(`0x${new RegExp(`^([0-9a-f]+) [bB] ${symbol}$`, 'm').exec(nm.stdout)![1]}`);
  const base = BigInt(`0x${fs.readFileSync(`/proc/${pids[0]}/maps`, 'utf8').split('-')[0]}`);
  return base + off;
}

test.serial('the CRIU 4.2 single fixture restores and its counter and signal handler work', async (t) => {
  const pid = 2696;
  const counter = await restoreFixture(t, 'single', [pid], 'counter');
  t.true(alive(pid));
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  t.regex(status, /SigBlk:\s+0000000000000200/, 'SIGUSR1 blocked');
  t.regex(status, /SigCgt:\s+0000000000000800/, 'SIGUSR2 caught');
  t.is(fs.readlinkSync(`/proc/${pid}/fd/3`), `${HOME}/data.txt`);
  t.regex(fs.readFileSync(`/proc/${pid}/fdinfo/3`, 'utf8'), /^pos:\s+6$/m);
  t.is(fs.readlinkSync(`/proc/${pid}/cwd`), '/');
  const c1 = readMem(pid, counter, 8).readBigUInt64LE();
  await sleep(450);
  const c2 = readMem(pid, counter, 8).readBigUInt64LE();
  t.true(c2 >= c1 + 2n, `counter went from ${c1} to ${c2}`);
  process.kill(pid, 'SIGUSR2');
  await sleep(150);
  t.true(readMem(pid, counter, 8).readBigUInt64LE() >= c2 + 1000n, 'SIGUSR2 handler ran');
});

test.serial('the CRIU 4.2 threads fixture restores with its four TIDs, and every thread counts on', async (t) => {
  const tids = [2694, 2700, 2701, 2702];
  const counters = await restoreFixture(t, 'threads', tids, 'counters');
  t.deepEqual(fs.readdirSync(`/proc/${tids[0]}/task`).map(Number).sort(), tids);
  const read = () => [0, 1, 2, 3].map((i) => readMem(tids[0]!, counters + BigInt(i * 8), 8).readBigUInt64LE());
  const before = read();
  await sleep(400);
  const after = read();
  after.forEach((v, i) => t.true(v >= before[i]! + 3n, `thread ${i}: ${before[i]} -> ${v}`));
});

test.serial('the CRIU 4.2 tree fixture restores: three processes, the pipe and socket queues, and memory shared between them', async (t) => {
  const pids = [2697, 2698, 2699];
  await restoreFixture(t, 'tree', pids);
  t.is(Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/2698/status`, 'utf8'))![1]), 2697);
  t.is(Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/2699/status`, 'utf8'))![1]), 2697);
  // The shared mapping (a memfd of CRIU's shmem pagemap) is one object: the children's
  // increments of shared[0] and shared[1] are seen through the parent's mapping.
  const line = fs.readFileSync('/proc/2697/maps', 'utf8').split('\n').find((l) => l.includes('/memfd:'))!;
  const shared = BigInt(`0x${line.split('-')[0]}`);
  const b1 = readMem(2697, shared, 2);
  await sleep(1300);
  const b2 = readMem(2697, shared, 2);
  t.true(b2[0] !== b1[0] && b2[1] !== b1[1], `shared bytes ${b1.toString('hex')} -> ${b2.toString('hex')}`);
  t.is(readMem(2697, shared + 100n, 1)[0], 0x5a, 'the rest of the pattern is there');
  // Queued data: read out of the parent's descriptors (pipe read end fd 3, socket fd 6).
  const take = (fd: number): string => {
    const pidfd = Number(rawSyscall(SYS.pidfd_open, 2697, 0));
    const dup = Number(rawSyscall(SYS.pidfd_getfd, pidfd, fd, 0));
    const buf = nativeBuffer(64);
    const n = Number(rawSyscall(SYS.recvfrom, dup, addressOf(buf), 64, 0x40 /* MSG_DONTWAIT */, 0, 0));
    const got = n > 0 ? buf.subarray(0, n).toString() : `error ${n}`;
    rawSyscall(SYS.close, dup);
    rawSyscall(SYS.close, pidfd);
    return got;
  };
  t.is(take(6), 'queued-in-socket');
  const pipeData = Buffer.alloc(64);
  const pfd = fs.openSync('/proc/2697/fd/3', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const n = fs.readSync(pfd, pipeData, 0, 64, null);
  fs.closeSync(pfd);
  t.is(pipeData.subarray(0, n).toString(), 'queued-in-pipe');
});
