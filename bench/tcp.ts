// Live migration of a TCP service: a runc container (an echo server, workloads/tcp-echo.c) in a
// network namespace of its own wired to the host by a veth, with clients on the host. A client
// sends a message every millisecond and notes when each answer comes back; the container is
// checkpointed with --tcp-established (killed) and restored into the same namespace by runc,
// with stasis as its criu and then with CRIU 4.2, in the same run. Figures: the largest gap
// between two answers the client saw across checkpoint+restore, and the wall times of `runc
// checkpoint` and `runc restore -d` with 1 and with 100 established connections.

import { execFileSync } from 'node:child_process';
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
  let timer: NodeJS.Timeout | undefined;
  try {
    c.withWorkload('tcp-echo', ['7070']).privileged().editConfig((config) => {
      config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${ns}` } : n));
    });
    const out = await c.run();
    await out.waitForLine(/^ready$/);
    for (let i = 0; i < conns; i++) {
      const s = net.connect(7070, `10.78.${x}.2`);
      s.setNoDelay(true);
      s.on('error', () => {});
      await new Promise<void>((r, j) => { s.once('connect', () => r()); s.once('error', j); });
      sockets.push(s);
    }
    // The pinger: 8 bytes every millisecond on the first connection; when each answer arrives.
    const answers: number[] = [];
    let pending = 0;
    sockets[0]!.on('data', (d: Buffer) => {
      for (let n = Math.floor((pending + d.length) / 8) - Math.floor(pending / 8); n > 0; n--) answers.push(performance.now());
      pending += d.length;
    });
    timer = setInterval(() => sockets[0]!.write(Buffer.alloc(8)), 1);
    await sleep(300);
    const from = performance.now();
    let t0 = performance.now();
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
    const resumed = answers.length;
    const until = performance.now() + 10_000;
    while (answers.length < resumed + 200 && performance.now() < until) await sleep(20);
    if (answers.length < resumed + 200) throw new Error(`${tool}: the connection did not carry on after the restore`);
    const seen = answers.filter((a) => a >= from - 50);
    let gap = 0;
    for (let i = 1; i < seen.length; i++) gap = Math.max(gap, seen[i]! - seen[i - 1]!);
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
    if (timer) clearInterval(timer);
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
