import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import { SYS, NT } from '../../sys/arch.js';
import { Injector, MAP, PROT } from '../../sys/inject.js';
import {
  detach, getRegs, getRegset, getRseqConfiguration, getSigmask, peekSiginfo, seizeAndStop,
  setRegset,
} from '../../sys/ptrace.js';
import { startWorkload, type Workload } from '../../test-containers/launch.js';

const SIGUSR2 = 12;
const SIGTERM = 15;
const SA_RESTART = 0x10000000n;
const SA_RESTORER = 0x04000000n;

/** Per file-backed VMA: its Anonymous kB (pages privately copied from the file). */
function privateCopies(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  let key = '';
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(.*)$/.exec(line);
    if (head) { key = head[2] !== '0' ? `${head[1]} ${head[3]}` : ''; continue; }
    const m = /^(Anonymous):\s+(\d+) kB/.exec(line);
    if (m && key) out.set(`${key} ${m[1]}`, m[2]!);
  }
  return out;
}

function cpusAllowed(pid: number): string {
  return /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
}

function mapsLayout(pid: number): string {
  return fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
}

function lastTick(w: Workload): number {
  const ticks = w.lines.filter((l) => l.startsWith('tick '));
  return ticks.length ? Number(ticks[ticks.length - 1]!.split(' ')[1]) : 0;
}

/** A counter that has ticked twice, seized and stopped; its maps as they were before. */
async function stoppedCounter(t: ExecutionContext): Promise<{ w: Workload; layoutBefore: string }> {
  const w = await startWorkload('counter', ['nanosleep', '30']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const layoutBefore = mapsLayout(w.pid);
  seizeAndStop(w.pid);
  return { w, layoutBefore };
}

/** Let the counter go: it counts on, without an error (and with its maps as before, if given). */
async function countsOn(t: ExecutionContext, w: Workload, layoutBefore?: string): Promise<void> {
  if (layoutBefore !== undefined) t.is(mapsLayout(w.pid), layoutBefore);
  detach(w.pid);
  const at = lastTick(w);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`));
  t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), []);
}

for (const mode of ['nanosleep', 'clock', 'read'] as const) {
  test(`injected getpid, mmap and rt_sigaction run in a ${mode}-sleeping counter, which then counts on with no error and no private copy`, async (t) => {
    const w = await startWorkload('counter', [mode, '30']);
    t.teardown(() => w.kill());
    await w.waitForLine(/^tick 3$/);
    const layoutBefore = mapsLayout(w.pid);
    const copiesBefore = privateCopies(w.pid);
    const cpusBefore = cpusAllowed(w.pid);

    // Catch the task inside its sleep (a restart code in rax); it spends nearly all its time
    // there, but a stop can land while it prints: then let it go and try again.
    for (let attempt = 0; ; attempt++) {
      seizeAndStop(w.pid);
      if (getRegs(w.pid).getSigned('rax') < 0n || attempt === 20) break;
      detach(w.pid);
      await new Promise((r) => setTimeout(r, 5));
    }
    const regs0 = getRegs(w.pid);
    const maskBefore = getSigmask(w.pid);
    t.true(regs0.getSigned('rax') < 0n, 'interrupted inside a syscall');
    const tickAtStop = lastTick(w);

    const inj = new Injector(w.pid);
    t.is(inj.callChecked(SYS.getpid), BigInt(w.pid));
    const addr = inj.mmap(0n, 8192, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    t.true(addr > 0n && addr % 4096n === 0n);
    t.regex(mapsLayout(w.pid), new RegExp(`^${addr.toString(16)}-`, 'm'));
    inj.munmap(addr, 8192);

    const old = inj.scratch(64);
    inj.callChecked(SYS.rt_sigaction, SIGUSR2, 0, old, 8);
    const sa = inj.readScratch(32);
    t.not(sa.readBigUInt64LE(0), 0n, 'a handler address');
    const flags = sa.readBigUInt64LE(8);
    t.is(flags & SA_RESTART, SA_RESTART);
    t.is(flags & SA_RESTORER, SA_RESTORER);
    t.is(sa.readBigUInt64LE(24), 1n << BigInt(SIGTERM - 1), 'handler mask is {SIGTERM}');
    // A failing call reports its errno instead of throwing.
    t.is(inj.call(SYS.close, 9999), -9n);
    inj.finish();

    t.deepEqual(getRegs(w.pid).toObject(), regs0.toObject(), 'registers as they were');
    t.is(getSigmask(w.pid), maskBefore, 'signal mask as it was');
    t.is(mapsLayout(w.pid), layoutBefore, 'no mapping left behind');
    t.is(cpusAllowed(w.pid), cpusBefore, 'CPU affinity as it was');
    detach(w.pid);

    await w.waitForLine(new RegExp(`^tick ${tickAtStop + 3}$`));
    t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), [], 'no error surfaced in the program');
    t.deepEqual(privateCopies(w.pid), copiesBefore, 'no file page became a private copy');
  });
}

test('regsets, rseq configuration and pending signals read from a stopped task', async (t) => {
  const w = await startWorkload('counter', ['nanosleep', '30']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  seizeAndStop(w.pid);
  let inSleep = false;
  try {
    // Stopped inside the sleep, the task's rax holds -ERESTART_RESTARTBLOCK; otherwise it was
    // between sleeps (printing a tick), and the signal below cuts no sleep short.
    inSleep = getRegs(w.pid).getSigned('rax') === -516n;
    const prstatus = getRegset(w.pid, NT.PRSTATUS);
    t.is(prstatus.length, 216);
    t.deepEqual(prstatus, getRegs(w.pid).raw);
    t.is(getRegset(w.pid, NT.PRFPREG).length, 512);
    const xsave = getRegset(w.pid, NT.X86_XSTATE);
    t.true(xsave.length > 576, `XSAVE area of ${xsave.length} bytes`);
    setRegset(w.pid, NT.X86_XSTATE, xsave);
    t.deepEqual(getRegset(w.pid, NT.X86_XSTATE), xsave, 'XSAVE state round-trips');

    const rseq = getRseqConfiguration(w.pid);
    t.is(rseq.signature, 0x53053053, 'glibc registers rseq with its signature');
    t.true(rseq.rseqAbiSize >= 32);
    t.not(rseq.rseqAbiPointer, 0n);

    process.kill(w.pid, 'SIGUSR2'); // stays pending while the task is stopped
    const shared = peekSiginfo(w.pid, true);
    t.is(shared.length, 1);
    t.is(shared[0]!.readInt32LE(0), SIGUSR2, 'si_signo');
    t.is(shared[0]!.readInt32LE(16), process.pid, 'si_pid');
    t.deepEqual(peekSiginfo(w.pid, false), [], 'no per-thread signal');
  } finally {
    detach(w.pid);
  }
  const at = lastTick(w);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`));
  // The pending SIGUSR2 was delivered on detach — its handler ran (USR2), so it stayed queued and
  // was not lost — and, if the task slept, it cut that one sleep short, as POSIX says (EINTR even
  // with SA_RESTART for nanosleep).
  t.is(w.lines.filter((l) => l === 'USR2').length, 1);
  t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), inSleep ? ['ERR nanosleep -1 4'] : []);
});

test('a failed ptrace call names the errno, the request and the pid', (t) => {
  const err = t.throws(() => seizeAndStop(1 << 22 + 1));
  t.regex(err!.message, /^ESRCH: ptrace\(SEIZE, \d+\): No such process$/);
});

test('syscalls run through a trampoline page, which finish() removes again', async (t) => {
  const { w, layoutBefore } = await stoppedCounter(t);
  const inj = new Injector(w.pid);
  const vdsoSite = inj.syscallSite;
  const page = inj.useTrampoline();
  t.is(inj.syscallSite, page);
  t.not(page, vdsoSite);
  // Writable as well (the task may map such memory): it holds callAll's code too.
  t.regex(mapsLayout(w.pid), new RegExp(`^${page.toString(16)}-\\S+ rwxp`, 'm'));
  t.is(inj.sequenceAreaAddress, page + 16n);
  const started = performance.now();
  for (let i = 0; i < 200; i++) t.is(inj.call(SYS.getpid), BigInt(w.pid));
  t.log(`${((performance.now() - started) * 1000 / 200).toFixed(1)} µs per injected syscall`);
  const before = inj.count;
  t.deepEqual(inj.callAll(Array.from({ length: 20 }, () => [SYS.getpid] as const)), Array(20).fill(BigInt(w.pid)));
  t.is(inj.count, before + 20);
  inj.finish();
  await countsOn(t, w, layoutBefore);
});

test('several syscalls run in one stop from the combined page: results in order, errnos, 64-bit and negative arguments', async (t) => {
  const { w, layoutBefore } = await stoppedCounter(t);
  const inj = new Injector(w.pid);
  const EBADF = 9n;
  const F_GETFD = 1;
  const ITIMER_REAL = 0;
  // Made one by one before the combined page exists, then as one sequence: the same answers.
  const calls = (scratch: bigint) => [
    [SYS.getpid], [SYS.fcntl, -1, F_GETFD], [SYS.getitimer, ITIMER_REAL, scratch], [SYS.getppid],
  ] as const;
  const oneByOne = inj.callAll(calls(inj.scratch(64)));
  inj.finish();
  const seq = new Injector(w.pid);
  seq.scratchWithTrampoline();
  t.not(seq.sequenceAreaAddress, undefined);
  const scratch = seq.scratch(64);
  t.true(scratch > 0xffffffffn); // an argument that needs a 64-bit immediate
  const before = seq.count;
  const results = seq.callAll(calls(scratch));
  t.is(seq.count - before, 4);
  t.deepEqual(results, oneByOne);
  t.deepEqual(results.slice(0, 2), [BigInt(w.pid), -EBADF]);
  t.is(seq.readScratch(32).readBigInt64LE(16), 0n); // ITIMER_REAL not armed
  t.throws(() => seq.callAllChecked(calls(scratch)), { message: /^EBADF: fcntl\(-1, 1\) in task \d+/ });
  // A failure allowed (a call asked with askMay) is an answer, the others are still errors.
  t.deepEqual(seq.callAllChecked(calls(scratch), new Set([1])), oneByOne);
  const questions = seq.questions();
  const pid = questions.ask(SYS.getpid);
  const bad = questions.askMay(SYS.fcntl, -1, F_GETFD);
  questions.run();
  t.deepEqual([questions.result(pid), questions.result(bad)], [BigInt(w.pid), -EBADF]);
  // Longer than one sequence holds: run as several, still in order.
  const many = seq.callAll(Array.from({ length: 30 }, () => [SYS.getpid] as const));
  t.deepEqual(many, Array(30).fill(BigInt(w.pid)));
  seq.finish();
  await countsOn(t, w, layoutBefore);
});

test('CPUID run inside a task gives what the kernel\'s cpuid device gives, and the task runs on', async (t) => {
  const { w } = await stoppedCounter(t);
  const inj = new Injector(w.pid);
  const dev = fs.openSync('/dev/cpu/0/cpuid', 'r');
  try {
    for (const [leaf, sub] of [[0, 0], [0xd, 0], [0xd, 2]] as const) {
      const b = Buffer.alloc(16);
      fs.readSync(dev, b, 0, 16, BigInt(leaf) | (BigInt(sub) << 32n));
      const expected = [0, 4, 8, 12].map((o) => b.readUInt32LE(o));
      t.deepEqual(inj.cpuid(leaf, sub), expected, `leaf 0x${leaf.toString(16)}.${sub}`);
    }
  } finally {
    fs.closeSync(dev);
  }
  t.is(inj.call(SYS.getpid), BigInt(w.pid), 'syscalls still work after it');
  inj.finish();
  await countsOn(t, w);
});
