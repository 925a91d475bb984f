import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addressOf, rawSyscall } from '../../sys/native.js';
import { SYS } from '../../sys/arch.js';
import {
  AT, MADV_DONTDUMP, MADV_DONTFORK, MADV_HUGEPAGE, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_RANDOM,
  MADV_SEQUENTIAL, MADV_WIPEONFORK, MAP_GROWSDOWN, MAP_HUGETLB, MAP_LOCKED, MAP_NORESERVE,
  NS_KINDS, O_RDONLY, O_RDWR, PROT_EXEC, PROT_READ, PROT_WRITE, ProcError, auxvEntries,
  environMap, fdKind, findVma, listFds, listThreads, madvAdvices, parseCgroup, parseFdinfo,
  parseMaps, parseMountinfo, parseSmaps, parseStat, parseStatus, parseTimers, parseVmFlags,
  readAuxv, readCgroup, readChildren, readCmdline, readComm, readCwd, readEnviron, readExe,
  readFdLink, readFdinfo, readLoginuid, readMaps, readMountinfo, readNamespaces, readNsLink,
  RLIM_INFINITY, readLimits, readOomScoreAdj, readPersonality, readRoot, readSmaps, readStat, readStatus, readTaskChildren,
  readTaskStat, readTimers, vmFlagsFdFlags, vmFlagsIoOrPfn, vmFlagsMadv, vmFlagsMapFlags,
} from '../../sys/proc/index.js';
import { startWorkload, type Workload } from '../../test-containers/launch.js';

const SIGUSR1 = 10;
const SIGUSR2 = 12;
const sigbit = (sig: number) => 1n << BigInt(sig - 1);
const O_APPEND = 0o2000;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLET = 0x80000000;
const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const FAN_OPEN = 0x20;
const FAN_CLOSE_WRITE = 0x08;

// A marker in our environment, inherited by every workload we start.
process.env.STASIS_PROC_PROBE = 'a b=c';

/** proc-zoo running in a fresh work directory; its "key value..." lines by key. */
interface Zoo {
  w: Workload;
  pid: number;
  dir: string;
  /** The values printed after `key`. */
  get(key: string): string[];
  /** The first value printed after `key`, as a number (fds, pids, ids). */
  num(key: string): number;
  /** The n-th value printed after `key`, as an address. */
  addr(key: string, n?: number): bigint;
}

async function startZoo(t: ExecutionContext): Promise<Zoo> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-proc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = await startWorkload('proc-zoo', [dir]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready$/);
  const get = (key: string): string[] => {
    const line = w.lines.find((l) => l.startsWith(`${key} `));
    if (!line) throw new Error(`proc-zoo printed no "${key}" line; got: ${w.lines.join(' | ')}`);
    return line.split(' ').slice(1);
  };
  return {
    w, pid: w.pid, dir, get,
    num: (key) => Number(get(key)[0]),
    addr: (key, n = 0) => BigInt(`0x${get(key)[n]}`),
  };
}

/** Major/minor of a userspace dev_t as Node's stat returns it (new_encode_dev). */
function devOf(dev: number): { major: number; minor: number } {
  return { major: (dev >> 8) & 0xfff, minor: (dev & 0xff) | ((dev >> 12) & 0xfff00) };
}

// ---------------------------------------------------------------------------------------------
// maps / smaps

test('a Buffer of this process lies in a private rw VMA of maps and smaps', (t) => {
  const buf = Buffer.allocUnsafeSlow(1 << 20).fill(7);
  const addr = addressOf(buf) + 4096n;
  // Node's other threads map memory meanwhile, and a neighbouring anonymous mapping can merge
  // with the buffer's between the two reads: read both again until they agree.
  let vma = findVma(readMaps('self'), addr);
  let svma = findVma(readSmaps('self'), addr)!;
  for (let i = 0; i < 20 && vma && svma && (svma.start !== vma.start || svma.end !== vma.end); i++) {
    vma = findVma(readMaps('self'), addr);
    svma = findVma(readSmaps('self'), addr)!;
  }
  t.truthy(vma, `no VMA holds 0x${addr.toString(16)}`);
  t.is(vma!.prot & (PROT_READ | PROT_WRITE), PROT_READ | PROT_WRITE);
  t.false(vma!.shared);
  t.true(vma!.start <= addr && addr < vma!.end);
  t.is(svma.start, vma!.start);
  t.true(svma.vmFlags.has('rd') && svma.vmFlags.has('wr'));
  t.true(svma.kb.Rss! > 0, 'the filled buffer is resident');
  t.true('Private_Dirty' in svma.kb && 'Anonymous' in svma.kb && 'Swap' in svma.kb);
});

test('[stack] has gd in VmFlags, which becomes MAP_GROWSDOWN', (t) => {
  const stacks = readSmaps('self').filter((v) => v.kind === 'stack');
  t.is(stacks.length, 1);
  const stack = stacks[0]!;
  t.is(stack.path, '[stack]');
  t.true(stack.vmFlags.has('gd'));
  t.is(vmFlagsMapFlags(stack.vmFlags) & MAP_GROWSDOWN, MAP_GROWSDOWN);
  t.is(stack.prot, PROT_READ | PROT_WRITE);
});

test('[vsyscall] keeps its address above 2^53 exactly, and [vdso]/[vvar] are classified', (t) => {
  const vmas = readMaps('self');
  const vsyscall = vmas.find((v) => v.kind === 'vsyscall');
  if (vsyscall) {
    t.is(vsyscall.start, 0xffffffffff600000n);
    t.is(vsyscall.end, 0xffffffffff601000n);
  }
  const vdso = vmas.find((v) => v.kind === 'vdso')!;
  t.is(vdso.prot, PROT_READ | PROT_EXEC);
  t.true(vmas.some((v) => v.kind === 'vvar'));
  const heapOrNone = vmas.filter((v) => v.kind === 'heap');
  t.true(heapOrNone.length <= 1);
  const vvar = readSmaps('self').find((v) => v.kind === 'vvar')!;
  t.true(vmFlagsIoOrPfn(vvar.vmFlags), 'vvar is io/pfnmap');
});

test('madvised and mmap-flagged regions of proc-zoo carry their madv bits and map flags', async (t) => {
  const zoo = await startZoo(t);
  const vmas = readSmaps(zoo.pid);

  const dr = findVma(vmas, zoo.addr('madv_dontfork_random'))!;
  t.is(dr.start, zoo.addr('madv_dontfork_random', 0));
  t.is(dr.end, zoo.addr('madv_dontfork_random', 1));
  t.true(dr.vmFlags.has('dc') && dr.vmFlags.has('rr'));
  t.is(vmFlagsMadv(dr.vmFlags), (1 << MADV_DONTFORK) | (1 << MADV_RANDOM));

  const sdw = findVma(vmas, zoo.addr('madv_seq_dontdump_wipe'))!;
  t.is(sdw.start, zoo.addr('madv_seq_dontdump_wipe', 0));
  t.is(sdw.end, zoo.addr('madv_seq_dontdump_wipe', 1));
  t.is(vmFlagsMadv(sdw.vmFlags), (1 << MADV_SEQUENTIAL) | (1 << MADV_DONTDUMP) | (1 << MADV_WIPEONFORK));
  t.deepEqual(madvAdvices(vmFlagsMadv(sdw.vmFlags)), [MADV_SEQUENTIAL, MADV_DONTDUMP, MADV_WIPEONFORK]);

  // The neighbouring untouched part of the same mmap is its own VMA without advice.
  const plain = findVma(vmas, dr.end)!;
  t.is(vmFlagsMadv(plain.vmFlags), 0);

  const nr = findVma(vmas, zoo.addr('noreserve'))!;
  t.is(vmFlagsMapFlags(nr.vmFlags) & MAP_NORESERVE, MAP_NORESERVE);
  const lo = findVma(vmas, zoo.addr('locked'))!;
  t.is(vmFlagsMapFlags(lo.vmFlags) & MAP_LOCKED, MAP_LOCKED);
  t.true(lo.kb.Locked! > 0, 'MAP_LOCKED pages are locked in memory');
  t.is(vmFlagsMapFlags(dr.vmFlags), 0);
});

test('proc-zoo mappings are classified: path with spaces, deleted file, memfd, SysV, shared anon', async (t) => {
  const zoo = await startZoo(t);
  const vmas = readMaps(zoo.pid);

  const spaced = findVma(vmas, zoo.addr('file_spaces'))!;
  const spacedPath = path.join(zoo.dir, 'with space (1).bin');
  t.is(spaced.kind, 'file');
  t.is(spaced.path, spacedPath);
  t.false(spaced.deleted);
  t.is(spaced.pgoff, 4096n);
  t.is(spaced.inode, fs.statSync(spacedPath).ino);
  const dev = devOf(fs.statSync(spacedPath).dev);
  t.deepEqual([spaced.devMajor, spaced.devMinor], [dev.major, dev.minor]);
  t.is(spaced.prot, PROT_READ);

  const gone = findVma(vmas, zoo.addr('file_deleted'))!;
  t.is(gone.kind, 'file');
  t.is(gone.path, path.join(zoo.dir, 'gone.bin'));
  t.true(gone.deleted);

  const memfd = findVma(vmas, zoo.addr('memfd_map'))!;
  t.is(memfd.kind, 'memfd');
  t.is(memfd.name, 'stasis mem');
  t.is(memfd.path, '/memfd:stasis mem');
  t.true(memfd.shared && memfd.deleted);
  t.is(readFdLink(zoo.pid, zoo.num('memfd_fd')), '/memfd:stasis mem (deleted)');

  const sysv = findVma(vmas, zoo.addr('sysv'))!;
  t.is(sysv.kind, 'sysv');
  t.is(sysv.sysvKey, 0, 'IPC_PRIVATE has key 0');
  t.true(sysv.shared);

  const shm = findVma(vmas, zoo.addr('shared_anon'))!;
  t.is(shm.kind, 'shmem');
  t.is(shm.path, '/dev/zero');

  const exe = vmas.find((v) => v.kind === 'file' && v.path === readExe(zoo.pid))!;
  t.truthy(exe, 'the executable is mapped');
  t.true(vmas.some((v) => v.kind === 'heap'));
  t.true(vmas.some((v) => v.kind === 'anonymous'));

  if (zoo.w.lines.some((l) => l.startsWith('anon_named '))) {
    const named = findVma(vmas, zoo.addr('anon_named'))!;
    t.is(named.kind, 'anon-named');
    t.is(named.name, 'stasis anon');
  }
});

test('maps lines are parsed from text: spaces, \\012, (deleted), [anon:...], 64-bit addresses', (t) => {
  const text = [
    '00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/my prog',
    '7f0000000000-7f0000001000 rw-s 00001000 00:05 1234  /tmp/a\\012b (deleted)',
    '7f0000001000-7f0000002000 rw-p 00000000 00:00 0     [anon:my buffer]',
    '7f0000002000-7f0000003000 rw-s 00000000 00:01 77    [anon_shmem:shared one]',
    '7f0000003000-7f0000004000 rw-s 00000000 00:0f 9     /[aio] (deleted)',
    '7f0000004000-7f0000005000 r--p 00000000 00:00 0     [vvar_vclock]',
    '7f0000005000-7f0000006000 ---p 00000000 00:00 0 ',
    '7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0     [stack]',
    'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]',
    '',
  ].join('\n');
  const v = parseMaps(text, '/proc/1/maps');
  t.is(v.length, 9);
  t.like(v[0], { path: '/usr/bin/my prog', kind: 'file', prot: PROT_READ | PROT_EXEC, inode: 173521, devMajor: 8, devMinor: 2 });
  t.like(v[1], { path: '/tmp/a\nb', deleted: true, shared: true, pgoff: 4096n, devMinor: 5 });
  t.like(v[2], { kind: 'anon-named', name: 'my buffer' });
  t.like(v[3], { kind: 'anon-shmem-named', name: 'shared one' });
  t.like(v[4], { kind: 'aio' });
  t.like(v[5], { kind: 'vvar_vclock' });
  t.like(v[6], { kind: 'anonymous', path: '', prot: 0 });
  t.like(v[7], { kind: 'stack' });
  t.is(v[8]!.start, 0xffffffffff600000n);
  t.is(v[8]!.kind, 'vsyscall');
});

test('VmFlags turn into CRIU map flags, madv bits and reopen mode', (t) => {
  const all = parseVmFlags('rd wr sh mr mw me ms gd lo nr ht sr rr dc dd mg hg nh wf ac zz');
  t.true(all.has('zz'), 'unknown mnemonics pass through');
  t.is(vmFlagsMapFlags(all), MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_HUGETLB);
  t.is(vmFlagsMadv(all), (1 << MADV_SEQUENTIAL) | (1 << MADV_RANDOM) | (1 << MADV_DONTFORK) |
    (1 << MADV_DONTDUMP) | (1 << MADV_MERGEABLE) | (1 << MADV_HUGEPAGE) | (1 << MADV_NOHUGEPAGE) |
    (1 << MADV_WIPEONFORK));
  t.is(vmFlagsFdFlags(all), O_RDWR);
  t.is(vmFlagsFdFlags(parseVmFlags('rd sh mr me ms')), O_RDONLY);
  t.is(vmFlagsFdFlags(parseVmFlags('rd wr mr mw me')), O_RDONLY, 'private writable maps reopen read-only');
});

test('smaps content errors name the file and the line (a counter\'s when the counters are read)', (t) => {
  const bad = '00400000-00401000 r-xp 00000000 08:02 1 /bin/x\nSize:     4 kB\nRss: lots\n';
  const vmas = parseSmaps(bad, '/proc/42/smaps');
  const err = t.throws(() => vmas[0]!.kb, { instanceOf: ProcError });
  t.regex(err!.message, /^\/proc\/42\/smaps:3: Rss is not "N kB"/);
  t.is(err!.code, 'EMALFORMED');
  t.is(err!.line, 3);
  const notVma = t.throws(() => parseMaps('hello world\n', '/proc/42/maps'));
  t.regex(notVma!.message, /^\/proc\/42\/maps:1: not a VMA line: "hello world"/);
});

// ---------------------------------------------------------------------------------------------
// stat / status

test('stat of proc-zoo splits comm "a) b (c)" at the last parenthesis', async (t) => {
  const zoo = await startZoo(t);
  const st = readStat(zoo.pid);
  t.is(st.pid, zoo.pid);
  t.is(st.comm, 'a) b (c)');
  t.is(st.state, 'S');
  t.is(st.numThreads, 2);
  t.is(st.session, zoo.pid, 'the reaper made it a session leader');
  t.is(st.pgrp, zoo.pid);
  t.is(st.ppid, zoo.w.reaper.pid!);
  t.is(readComm(zoo.pid), 'a) b (c)');
  t.is(readStatus(zoo.pid).name, 'a) b (c)');
  // mm addresses as bigint, consistent with maps
  const vmas = readMaps(zoo.pid);
  t.is(typeof st.startCode, 'bigint');
  t.truthy(findVma(vmas, st.startCode), 'start_code is mapped');
  t.is(findVma(vmas, st.startStack)?.kind, 'stack');
  t.true(st.argStart < st.argEnd && st.argEnd <= st.envStart && st.envStart < st.envEnd);
  t.true(st.startBrk > 0n && st.startData < st.endData);
  t.is(st.exitCode, 0);
  t.is(st.rsslim, 0xffffffffffffffffn);

  const threads = listThreads(zoo.pid);
  t.is(threads.length, 2);
  const worker = threads.find((tid) => tid !== zoo.pid)!;
  const ts = readTaskStat(zoo.pid, worker);
  t.is(ts.pid, worker);
  t.is(ts.comm, 'zoo worker');
  t.is(readComm(zoo.pid, worker), 'zoo worker');
  t.is(readStatus(zoo.pid, worker).pid, worker);
  t.is(readStatus(zoo.pid, worker).tgid, zoo.pid);
});

test('stat text with ")" , "(" and a newline in comm parses', (t) => {
  const fields = Array.from({ length: 49 }, (_, i) => String(i + 4));
  fields[1] = '-1'; // pgrp... negative values are accepted
  const text = `123 (x) (\n) y)) R ${fields.join(' ')}\n`;
  const st = parseStat(text, '/proc/123/stat');
  t.is(st.comm, 'x) (\n) y)');
  t.is(st.state, 'R');
  t.is(st.ppid, 4);
  t.is(st.pgrp, -1);
  t.is(st.exitCode, 52);
  t.is(st.envEnd, 51n);
  const err = t.throws(() => parseStat('123 (short) R 1 2 3\n', '/proc/123/stat'));
  t.regex(err!.message, /^\/proc\/123\/stat:1: expected 52 fields, found 6/);
});

test('stat of this process matches process.pid and ppid', (t) => {
  const st = readStat('self');
  t.is(st.pid, process.pid);
  t.is(st.ppid, process.ppid);
  t.is(st.state, 'R');
  t.true(st.numThreads >= 1);
  t.true(st.startTime > 0n);
  const status = readStatus(process.pid);
  t.is(status.pid, process.pid);
  t.is(status.tgid, process.pid);
  t.is(status.ppid, process.ppid);
  t.is(status.threads, st.numThreads);
  t.is(status.uid[0], process.getuid!());
  t.is(status.uid[1], process.geteuid!());
  t.is(status.gid[0], process.getgid!());
  t.deepEqual(status.nsPid.at(-1), process.pid);
  t.is(status.tracerPid, 0);
  t.is(typeof status.capBnd, 'bigint');
});

test('status of proc-zoo shows its blocked SIGUSR1/SIGUSR2, 2 threads and caps', async (t) => {
  const zoo = await startZoo(t);
  const s = readStatus(zoo.pid);
  t.is(s.name, 'a) b (c)');
  t.is(s.state, 'S');
  t.is(s.stateName, 'sleeping');
  t.is(s.threads, 2);
  t.is(s.sigBlk & (sigbit(SIGUSR1) | sigbit(SIGUSR2)), sigbit(SIGUSR1) | sigbit(SIGUSR2));
  t.is(s.sigIgn, 0n);
  t.is(s.seccomp, 0);
  t.is(s.noNewPrivs, 0);
  t.deepEqual(s.uid, [process.getuid!(), process.getuid!(), process.getuid!(), process.getuid!()]);
  t.is(s.ppid, zoo.w.reaper.pid!);
  t.deepEqual(s.nsPid, [zoo.pid]);
  t.deepEqual(s.nsSid, [zoo.pid]);
  t.is(s.capEff, readStatus('self').capEff, 'same credentials as the test');
  t.true(s.sigQueueLimit > 0);
  t.is(s.umask, readStatus('self').umask, 'umask inherited from the test');
});

test('status with escaped name and without the optional lines of old kernels parses', (t) => {
  const text = [
    'Name:\ta\\nb\\\\c', 'State:\tT (stopped)', 'Tgid:\t10', 'Pid:\t11', 'PPid:\t1', 'TracerPid:\t0',
    'Uid:\t1\t2\t3\t4', 'Gid:\t5\t6\t7\t8', 'Groups:\t10 20 ', 'Threads:\t2', 'SigQ:\t1/100',
    'SigPnd:\t0000000000000000', 'ShdPnd:\t0000000000000100', 'SigBlk:\tfffffffe7ffbfeff',
    'SigIgn:\t0000000000000000', 'SigCgt:\t8000000000000000', 'CapInh:\t0000000000000000',
    'CapPrm:\t0000003fffffffff', 'CapEff:\t0000003fffffffff', 'CapBnd:\t0000003fffffffff', '',
  ].join('\n');
  const s = parseStatus(text, '/proc/11/status');
  t.is(s.name, 'a\nb\\c');
  t.is(s.state, 'T');
  t.deepEqual(s.uid, [1, 2, 3, 4]);
  t.deepEqual(s.groups, [10, 20]);
  t.deepEqual(s.nsPid, [11]);
  t.is(s.sigBlk, 0xfffffffe7ffbfeffn);
  t.is(s.sigCgt, 1n << 63n);
  t.is(s.capAmb, 0n);
  t.is(s.seccompFilters, 0);
  t.is(s.sigQueued, 1);
  const err = t.throws(() => parseStatus('Name:\tx\nUid:\t1 2\n', '/proc/11/status'));
  t.regex(err!.message, /^\/proc\/11\/status: no State: line/);
});

// ---------------------------------------------------------------------------------------------
// fdinfo

test('fdinfo of proc-zoo eventfd decodes count 300, semaphore and O_NONBLOCK', async (t) => {
  const zoo = await startZoo(t);
  const fd = zoo.num('eventfd');
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'eventfd');
  const info = readFdinfo(zoo.pid, fd);
  t.is(info.eventfd?.count, 300n);
  t.is(info.eventfd?.semaphore, true);
  t.is(typeof info.eventfd?.id, 'number');
  t.is(info.flags & O_NONBLOCK, O_NONBLOCK);
  t.is(info.pos, 0n);
  t.deepEqual(info.other, []);
});

test('fdinfo of proc-zoo epoll lists both targets with their events and data', async (t) => {
  const zoo = await startZoo(t);
  const fd = zoo.num('epoll');
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'eventpoll');
  const info = readFdinfo(zoo.pid, fd);
  t.is(info.epoll.length, 2);
  const ev = info.epoll.find((e) => e.tfd === zoo.num('eventfd'))!;
  t.is(ev.data, 0x1122334455667788n);
  t.is((ev.events & (EPOLLIN | EPOLLET)) >>> 0, (EPOLLIN | EPOLLET) >>> 0);
  t.is(ev.events & EPOLLOUT, 0);
  t.is(ev.ino, readFdinfo(zoo.pid, zoo.num('eventfd')).ino!);
  const tm = info.epoll.find((e) => e.tfd === zoo.num('timerfd'))!;
  t.is(tm.data, 42n);
  t.is(tm.events & (EPOLLIN | EPOLLOUT), EPOLLIN | EPOLLOUT);
  t.is(tm.pos, 0n);
  t.is(tm.sdevMajor, 0, 'anon inodes live on an anonymous superblock');
});

test('fdinfo of proc-zoo timerfd decodes clock, interval and remaining time', async (t) => {
  const zoo = await startZoo(t);
  const fd = zoo.num('timerfd');
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'timerfd');
  const info = readFdinfo(zoo.pid, fd);
  const tf = info.timerfd!;
  t.is(tf.clockid, 1, 'CLOCK_MONOTONIC');
  t.is(tf.ticks, 0n);
  t.is(tf.settimeFlags, 0);
  t.deepEqual(tf.itInterval, [50n, 250000000n]);
  t.true(tf.itValue[0] >= 900n && tf.itValue[0] < 1000n, `it_value ${tf.itValue}`);
  t.is(info.flags & O_CLOEXEC, O_CLOEXEC);
});

test('fdinfo of proc-zoo signalfd has the SIGUSR1|SIGUSR2 mask', async (t) => {
  const zoo = await startZoo(t);
  const fd = zoo.num('signalfd');
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'signalfd');
  t.is(readFdinfo(zoo.pid, fd).signalfd?.sigmask, sigbit(SIGUSR1) | sigbit(SIGUSR2));
});

test('fdinfo of proc-zoo inotify has the watch on its work dir with inode, device and mask', async (t) => {
  const zoo = await startZoo(t);
  const [fd, wd] = zoo.get('inotify').map(Number) as [number, number];
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'inotify');
  const info = readFdinfo(zoo.pid, fd);
  t.is(info.inotify.length, 1);
  const w = info.inotify[0]!;
  const st = fs.statSync(zoo.dir);
  t.is(w.wd, wd);
  t.is(w.ino, st.ino);
  t.deepEqual([w.sdevMajor, w.sdevMinor], [devOf(st.dev).major, devOf(st.dev).minor]);
  t.is(w.mask & (IN_CREATE | IN_DELETE), IN_CREATE | IN_DELETE);
  t.is(w.ignoredMask, 0);
  t.truthy(w.fhandle);
  t.is(w.fhandle!.handle.length, w.fhandle!.bytes);
});

test('fdinfo of proc-zoo fanotify has the inode mark on its work dir', async (t) => {
  const zoo = await startZoo(t);
  if (!zoo.w.lines.some((l) => l.startsWith('fanotify '))) {
    t.pass('fanotify_init is not permitted here');
    return;
  }
  const fd = zoo.num('fanotify');
  t.is(fdKind(readFdLink(zoo.pid, fd)), 'fanotify');
  const fan = readFdinfo(zoo.pid, fd).fanotify!;
  t.is(fan.flags, 0, 'FAN_CLASS_NOTIF');
  t.is(fan.marks.length, 1);
  t.like(fan.marks[0], { type: 'inode', ino: fs.statSync(zoo.dir).ino, mask: FAN_OPEN | FAN_CLOSE_WRITE });
  t.truthy(fan.marks[0]!.fhandle);
});

test('fdinfo of proc-zoo pidfd names its pid, and an flock()ed file shows its lock and position', async (t) => {
  const zoo = await startZoo(t);
  if (zoo.w.lines.some((l) => l.startsWith('pidfd '))) {
    const p = readFdinfo(zoo.pid, zoo.num('pidfd')).pidfd!;
    t.is(p.pid, zoo.pid);
    t.deepEqual(p.nsPid, [zoo.pid]);
  }
  const fd = zoo.num('flock');
  const lockedPath = path.join(zoo.dir, 'locked');
  t.is(readFdLink(zoo.pid, fd), lockedPath);
  t.is(fdKind(lockedPath), 'path');
  const info = readFdinfo(zoo.pid, fd);
  t.is(info.pos, 10n);
  t.is(info.flags & (O_RDWR | O_APPEND), O_RDWR | O_APPEND);
  t.is(info.ino, fs.statSync(lockedPath).ino);
  t.is(info.locks.length, 1);
  t.like(info.locks[0], { type: 'FLOCK', mode: 'ADVISORY', access: 'WRITE', pid: zoo.pid, ino: fs.statSync(lockedPath).ino, start: 0n, end: null });
  const mnt = readMountinfo(zoo.pid).find((m) => m.mntId === info.mntId);
  t.truthy(mnt, 'mnt_id names a mount of its mountinfo');
});

test('the fd listing of proc-zoo holds every fd it printed', async (t) => {
  const zoo = await startZoo(t);
  const fds = listFds(zoo.pid);
  for (const key of ['memfd_fd', 'eventfd', 'timerfd', 'epoll', 'signalfd', 'inotify', 'flock']) {
    t.true(fds.includes(zoo.num(key)), key);
  }
  t.true(fds.includes(0) && fds.includes(1));
  t.deepEqual(fds, [...fds].sort((a, b) => a - b));
});

test('fdinfo text: locks, fanotify mount/sb marks, unknown lines', (t) => {
  const text = [
    'pos:\t123', 'flags:\t02100002', 'mnt_id:\t30', 'ino:\t99',
    'lock:\t1: POSIX  ADVISORY  READ 77 08:02:99 10 19',
    'lock:\t2: OFDLCK ADVISORY  WRITE -1 08:02:99 20 EOF',
    'fanotify flags:10 event-flags:0',
    'fanotify mnt_id:2a mflags:0 mask:3b ignored_mask:0',
    'fanotify sdev:800002 mflags:0 mask:1 ignored_mask:40000000',
    'tty-index:\t3', '',
  ].join('\n');
  const info = parseFdinfo(text, '/proc/1/fdinfo/5');
  t.is(info.pos, 123n);
  t.is(info.flags, 0o2100002);
  t.is(info.ino, 99);
  t.like(info.locks[0], { id: 1, type: 'POSIX', access: 'READ', pid: 77, devMajor: 8, devMinor: 2, start: 10n, end: 19n });
  t.like(info.locks[1], { id: 2, type: 'OFDLCK', pid: -1, end: null });
  t.like(info.fanotify, { flags: 0x10, eventFlags: 0 });
  t.like(info.fanotify!.marks[0], { type: 'mount', mntId: 0x2a, mask: 0x3b });
  t.like(info.fanotify!.marks[1], { type: 'sb', sdev: 0x800002, ignoredMask: 0x40000000 });
  t.deepEqual(info.other, ['tty-index:\t3']);
  t.is(info.timerfd, undefined);
  const err = t.throws(() => parseFdinfo('pos:\t0\nflags:\t0\nmnt_id:\t1\ntfd: x events: 1\n', '/proc/1/fdinfo/3'));
  t.regex(err!.message, /^\/proc\/1\/fdinfo\/3:4: /);
  t.throws(() => parseFdinfo('pos:\t0\n', '/proc/1/fdinfo/3'), { message: /no flags: line/ });
});

// ---------------------------------------------------------------------------------------------
// mountinfo, namespaces, tree

test('mountinfo of this process has / and /proc with fstype proc', (t) => {
  const mounts = readMountinfo('self');
  const root = mounts.filter((m) => m.mountPoint === '/');
  t.true(root.length >= 1);
  const proc = mounts.filter((m) => m.mountPoint === '/proc').at(-1)!;
  t.is(proc.fstype, 'proc');
  t.is(proc.root, '/');
  t.true(mounts.some((m) => m.mntId === proc.parentId));
  const st = devOf(fs.statSync('/proc').dev);
  t.deepEqual([proc.devMajor, proc.devMinor], [st.major, st.minor]);
  t.true(proc.mountOptions.includes('rw') || proc.mountOptions.includes('ro'));
});

test('mountinfo text: optional fields and \\040 escapes are decoded', (t) => {
  const text = [
    '36 35 98:0 /mnt1 /mnt/par\\040ent rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
    '37 36 0:45 / /a\\134b\\011c rw shared:5 master:3 propagate_from:2 - tmpfs my\\040src rw,size=4k',
    '38 36 0:46 / /u rw unbindable - fuse.sshfs host:/x rw,user_id=0',
    '',
  ].join('\n');
  const m = parseMountinfo(text, '/proc/1/mountinfo');
  t.like(m[0], { mntId: 36, parentId: 35, devMajor: 98, devMinor: 0, root: '/mnt1', mountPoint: '/mnt/par ent', master: 1, fstype: 'ext3', source: '/dev/root', superOptions: 'rw,errors=continue', unbindable: false });
  t.deepEqual(m[0]!.mountOptions, ['rw', 'noatime']);
  t.is(m[0]!.shared, undefined);
  t.like(m[1], { mountPoint: '/a\\b\tc', shared: 5, master: 3, propagateFrom: 2, source: 'my src' });
  t.like(m[2], { unbindable: true, fstype: 'fuse.sshfs', source: 'host:/x' });
  t.throws(() => parseMountinfo('1 2 3\n', '/proc/1/mountinfo'), { message: /^\/proc\/1\/mountinfo:1: not a mountinfo line/ });
});

test('ns links have the inode numbers stat() reports, and proc-zoo shares them', async (t) => {
  const ns = readNamespaces('self');
  t.truthy(ns.pid && ns.net && ns.mnt && ns.user && ns.ipc && ns.uts);
  for (const kind of NS_KINDS) {
    const link = ns[kind];
    if (!link) continue;
    t.is(link.ino, fs.statSync(`/proc/self/ns/${kind}`).ino, kind);
  }
  t.is(ns.pid_for_children?.type, 'pid');
  const zoo = await startZoo(t);
  t.is(readNsLink(zoo.pid, 'net').ino, ns.net!.ino);
  t.is(readNsLink(zoo.pid, 'mnt').ino, ns.mnt!.ino);
});

test('proc-zoo has two threads and one child, listed under the thread that forked it', async (t) => {
  const zoo = await startZoo(t);
  const threads = listThreads(zoo.pid);
  t.is(threads.length, 2);
  t.true(threads.includes(zoo.pid));
  t.deepEqual(readChildren(zoo.pid), [zoo.num('child')]);
  t.deepEqual(readTaskChildren(zoo.pid, zoo.pid), [zoo.num('child')]);
  t.deepEqual(readChildren(zoo.num('child')), []);
  t.deepEqual(readChildren(zoo.w.reaper.pid!), [zoo.pid]);
  t.is(readStat(zoo.num('child')).ppid, zoo.pid);
});

// ---------------------------------------------------------------------------------------------
// small files

test('timers of proc-zoo list its POSIX timer with signal, notify and clock', async (t) => {
  const zoo = await startZoo(t);
  const timers = readTimers(zoo.pid);
  t.is(timers.length, 1);
  t.like(timers[0], { id: zoo.num('posix_timer'), signo: SIGUSR1, sigval: 0n, notify: 'signal', notifyTarget: 'pid', notifyPid: zoo.pid, clockId: 1 });
  const parsed = parseTimers('ID: 3\nsignal: 14/00007ffd12345678\nnotify: thread/tid.99\nClockID: 0\nID: 4\nsignal: 0/0000000000000000\nnotify: none/pid.1\nClockID: 7\n');
  t.like(parsed[0], { id: 3, signo: 14, sigval: 0x7ffd12345678n, notify: 'thread', notifyTarget: 'tid', notifyPid: 99, clockId: 0 });
  t.like(parsed[1], { id: 4, notify: 'none', clockId: 7 });
});

test('cmdline, environ, cwd, root and exe of proc-zoo', async (t) => {
  const zoo = await startZoo(t);
  const argv = readCmdline(zoo.pid);
  t.is(argv.length, 2);
  t.is(argv[1], zoo.dir);
  t.is(path.basename(argv[0]!), 'proc-zoo');
  t.is(readExe(zoo.pid), fs.realpathSync(argv[0]!));
  const env = environMap(readEnviron(zoo.pid));
  t.is(env.get('STASIS_PROC_PROBE'), 'a b=c');
  t.is(readCwd(zoo.pid), fs.realpathSync(process.cwd()));
  t.is(readRoot(zoo.pid), '/');
  t.deepEqual(environMap(['A=1', 'B', 'A=2', 'C=x=y']), new Map([['A', '1'], ['B', ''], ['C', 'x=y']]));
});

test('auxv, personality, loginuid, oom_score_adj and cgroup of this process', (t) => {
  const words = readAuxv('self');
  t.is(words.length % 2, 0);
  t.deepEqual(words.slice(-2), [0n, 0n], 'ends with AT_NULL');
  const aux = auxvEntries(words);
  t.is(aux.get(AT.PAGESZ), 4096n);
  t.is(aux.get(AT.UID), BigInt(process.getuid!()));
  t.truthy(aux.get(AT.SYSINFO_EHDR));
  t.is(findVma(readMaps('self'), aux.get(AT.SYSINFO_EHDR)!)?.kind, 'vdso');

  t.is(readPersonality('self'), parseInt(fs.readFileSync('/proc/self/personality', 'utf8'), 16));
  t.is(readLoginuid('self'), Number(fs.readFileSync('/proc/self/loginuid', 'utf8')));
  t.is(readOomScoreAdj('self'), Number(fs.readFileSync('/proc/self/oom_score_adj', 'utf8')));

  const cg = readCgroup('self');
  t.true(cg.length >= 1);
  t.true(cg.every((l) => l.path.startsWith('/')));
  t.deepEqual(parseCgroup('0::/a:b/c\n4:memory,cpu:/x\n1:name=systemd:/\n'), [
    { hierarchy: 0, controllers: [], path: '/a:b/c' },
    { hierarchy: 4, controllers: ['memory', 'cpu'], path: '/x' },
    { hierarchy: 1, controllers: ['name=systemd'], path: '/' },
  ]);
});

// ---------------------------------------------------------------------------------------------
// errors

test('a vanished PID gives "/proc/PID/FILE: no such process"', async (t) => {
  const zoo = await startZoo(t);
  const pid = zoo.pid;
  await zoo.w.kill();
  await zoo.w.waitForLine(new RegExp(`^signal ${pid} 9$`));
  const err = t.throws(() => readStatus(pid), { instanceOf: ProcError });
  t.is(err!.message, `/proc/${pid}/status: no such process`);
  t.is(err!.code, 'ESRCH');
  t.throws(() => readStat(pid), { message: `/proc/${pid}/stat: no such process` });
  t.throws(() => readSmaps(pid), { message: `/proc/${pid}/smaps: no such process` });
  t.throws(() => readFdinfo(pid, 0), { message: `/proc/${pid}/fdinfo/0: no such process` });
  t.throws(() => listFds(pid), { message: `/proc/${pid}/fd: no such process` });
  t.throws(() => readNsLink(pid, 'net'), { message: `/proc/${pid}/ns/net: no such process` });
  t.throws(() => readTaskStat(pid, pid), { message: `/proc/${pid}/task/${pid}/stat: no such process` });
});

test('a missing fd of a live process is "no such file", not "no such process"', (t) => {
  const err = t.throws(() => readFdinfo('self', 99999), { instanceOf: ProcError });
  t.is(err!.message, '/proc/self/fdinfo/99999: no such file');
  t.is(err!.code, 'ENOENT');
});

test('limits of this process read from /proc match what prlimit says, unlimited as RLIM_INFINITY', (t) => {
  const b = Buffer.alloc(16);
  const fromProc = readLimits('self');
  t.is(fromProc.length, 16);
  fromProc.forEach((l, r) => {
    t.is(rawSyscall(SYS.prlimit64, 0, r, 0, addressOf(b)), 0n);
    t.deepEqual(l, { cur: b.readBigUInt64LE(0), max: b.readBigUInt64LE(8) }, `RLIMIT ${r}`);
  });
  t.true(fromProc.some((l) => l.max === RLIM_INFINITY));
});
