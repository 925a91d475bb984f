// Live migration of a TCP service: a runc container (an echo server, workloads/tcp-echo.c) in a
// network namespace of its own wired to the host by a veth, with clients on the host. A client
// (bench/pinger.ts, a process of its own) sends a message every millisecond and notes when each
// answer comes back; the container is checkpointed with --tcp-established (killed) and
// restored into the same namespace by runc,
// with stasis as its criu and then with CRIU 4.2, in the same run. Figures: the largest gap
// between two answers the client saw across checkpoint+restore, and the wall times of `runc
// checkpoint` and `runc restore -d` with 1 and with 100 established connections.

import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RuncContainer } from '../test-containers/runc.js';
import type { Benchmark, Figure } from './run.js';
import { benchTmpDir } from './tmp.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const tools: [string, string][] = [
  ['stasis', path.join(root, 'bin', 'stasis')],
  ['criu', path.resolve(root, '..', 'shared', 'anchors', 'criu-4.2', 'criu')],
];

function sh(cmd: string): void {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One container, `conns` connections, one checkpoint+restore by `criu`; its figures. */
async function migrate(tool: string, criu: string, conns: number): Promise<Figure[]> {
  const dir = benchTmpDir();
  const x = 150 + (process.pid % 50);
  const ns = `stasis-bench-${process.pid}`;
  const hostIf = `sbv${process.pid % 100000}`;
  sh(`ip netns add ${ns} && ip link add ${hostIf} type veth peer name ${hostIf}c && ip link set ${hostIf}c netns ${ns}`
    + ` && ip addr add 10.78.${x}.1/24 dev ${hostIf} && ip link set ${hostIf} up`
    + ` && ip -n ${ns} addr add 10.78.${x}.2/24 dev ${hostIf}c && ip -n ${ns} link set ${hostIf}c up && ip -n ${ns} link set lo up`);
  const c = RuncContainer.create(dir);
  const sockets: net.Socket[] = [];
  let pinger: ChildProcess | undefined;
  try {
    c.withWorkload('tcp-echo', ['7070']).privileged().editConfig((config) => {
      config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${ns}` } : n));
    });
    const out = await c.run();
    await out.waitForLine(/^ready$/);
    // The pinger (bench/pinger.ts, a process of its own) holds the first connection; the others
    // stay idle here.
    pinger = fork(path.join(path.dirname(new URL(import.meta.url).pathname), 'pinger.js'), [`10.78.${x}.2`, '7070'], { stdio: 'ignore' });
    const messages: unknown[] = [];
    pinger.on('message', (m) => messages.push(m));
    const next = async (): Promise<unknown> => {
      const until = performance.now() + 15_000;
      while (!messages.length && performance.now() < until) await sleep(5);
      if (!messages.length) throw new Error(`${tool}: the pinger did not answer`);
      return messages.shift();
    };
    if (await next() !== 'connected') throw new Error(`${tool}: the pinger could not connect`);
    for (let i = 1; i < conns; i++) {
      const s = net.connect(7070, `10.78.${x}.2`);
      s.on('error', () => {});
      await new Promise<void>((r, j) => { s.once('connect', () => r()); s.once('error', j); });
      sockets.push(s);
    }
    await sleep(300);
    pinger.send('mark');
    if (process.env.BENCH_LOGS) sh('nstat -n');
    let t0 = performance.now();
    const checkpointAt = t0;
    // (BENCH_LOGS: times on the wall clock's last 100 s, to line up with other traces.)
    const abs = (t: number) => (performance.timeOrigin + t) % 100_000;
    const ck = c.checkpoint(criu, path.join(dir, 'img'), path.join(dir, 'work'), ['--tcp-established']);
    const checkpointMs = performance.now() - t0;
    if (ck.code !== 0) throw new Error(`${tool}: runc checkpoint failed: ${ck.stderr}`);
    t0 = performance.now();
    // (CRIU gives the stdio pipes O_LARGEFILE: not what is measured here.)
    const why = 'criu adds O_LARGEFILE';
    const rst = await c.restore(criu, path.join(dir, 'img'), path.join(dir, 'rwork'), ['--tcp-established'],
      { exclude: [0, 1, 2].map((fd) => ({ task: 'root' as const, fd, why })) });
    const restoreMs = performance.now() - t0;
    if (rst.code !== 0) throw new Error(`${tool}: runc restore failed: ${rst.out.lines.join(' | ')}`);
    // Answers again, for a while.
    pinger.send('finish');
    const report = await next() as { gap: number; after: number; at: number };
    if (report.after < 200) throw new Error(`${tool}: the connection did not carry on after the restore`);
    const gap = report.gap;
    if (process.env.BENCH_LOGS) {
      process.stderr.write(`${tool}: checkpoint from ${abs(checkpointAt).toFixed(1)} restore from ${abs(t0).toFixed(1)} to ${abs(t0 + restoreMs).toFixed(1)}; gap from ${(report.at % 100_000).toFixed(1)} for ${gap.toFixed(1)}\n`);
      process.stderr.write(execFileSync('nstat', [], { encoding: 'utf8' }).split('\n').filter((l) => /Tcp|Icmp/.test(l)).join('\n') + '\n');
    }
    if (process.env.BENCH_LOGS) {
      for (const f of [path.join(dir, 'work', 'dump.log'), path.join(dir, 'rwork', 'restore.log')]) {
        process.stderr.write(`--- ${tool} ${conns} ${path.basename(f)}\n${fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '(none)'}\n`);
      }
    }
    const label = conns === 1 ? '1 connection' : `${conns} connections`;
    const figures: Figure[] = [
      { name: `${tool}: runc checkpoint, ${label}`, value: checkpointMs, unit: 'ms' },
      { name: `${tool}: runc restore -d, ${label}`, value: restoreMs, unit: 'ms' },
    ];
    if (conns === 1) figures.unshift({ name: `${tool}: largest gap in a 1 ms echo stream`, value: gap, unit: 'ms' });
    return figures;
  } finally {
    pinger?.kill('SIGKILL');
    for (const s of sockets) s.destroy();
    c.destroy();
    try { sh(`ip link del ${hostIf}`); } catch { /* gone */ }
    try { sh(`ip netns del ${ns}`); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const tcpBench: Benchmark = {
  name: 'tcp-migration',
  runs: 3,
  async run(): Promise<Figure[]> {
    const figures: Figure[] = [];
    for (const conns of [1, 100]) {
      for (const [tool, criu] of tools) {
        try {
          figures.push(...(await migrate(tool, criu, conns)));
        } catch (e) {
          process.stderr.write(`tcp-migration: ${(e as Error).message}\n`);
        }
      }
    }
    return figures;
  },
};
