// A busybox container under real runc for the tests (and the benchmark): its own bundle
// (runc-busybox/make-bundle.sh), its own runc state directory (`runc --root`), pipes as its
// stdio read here line by line. `runc --criu <stasis>` checkpoints and restores it.
// Cleanup is by id: `runc delete --force` (which removes its cgroups), then the directories.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildWorkload, readLines, type LineReader } from './launch.js';
import { fileURLToPath } from 'node:url';
import { pipe } from '../sys/native.js';
import { cgroupHierarchies } from '../cgroup/cgroups.js';
import { expectFdsKept, settledSnapshot, type CompareOptions, type TreeFds } from './fds.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const makeBundle = path.resolve(here, '..', '..', 'test-containers', 'runc-busybox', 'make-bundle.sh');

const O_CLOEXEC = 0o2000000;

/**
 * Start runc with real pipes as stdin and stdout+stderr (what runc passes on to the container,
 * and what criu's inherit_fd maps: Node's own stdio pipes are unix sockets).
 */
function spawnWithPipes(args: string[]): Output {
  const [inR, inW] = pipe(O_CLOEXEC);
  const [outR, outW] = pipe(O_CLOEXEC);
  const child = spawn('runc', args, { stdio: [inR, outW, outW] });
  fs.closeSync(inR);
  fs.closeSync(outW);
  fs.closeSync(inW); // the container reads end-of-file, as with `true | runc ...`
  return new Output(child, fs.createReadStream('', { fd: outR }));
}

/**
 * What one runc process (run or restore) printed: the container's stdout+stderr. `closed`
 * resolves when no writer is left (the container is gone) and every line is in `lines`.
 */
export class Output {
  readonly lines: string[];
  readonly waitForLine: LineReader['waitForLine'];
  readonly closed: Promise<void>;
  constructor(readonly child: ChildProcess, output: NodeJS.ReadableStream) {
    ({ lines: this.lines, waitForLine: this.waitForLine, closed: this.closed } = readLines(output, 15_000));
  }

  /** The runc command itself (detached: it exits once the container runs). */
  exited(): Promise<number> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => this.child.on('exit', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0))));
  }
}

/** Linux's capabilities, by number (CAP_CHOWN = 0 … CAP_CHECKPOINT_RESTORE = 40). */
const ALL_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID',
  'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE'];

export interface RuncResult { code: number; stdout: string; stderr: string }

let counter = 0;

export class RuncContainer {
  readonly id: string;
  readonly stateRoot: string;
  readonly bundle: string;

  private constructor(readonly dir: string) {
    this.id = `stasis-test-${process.pid}-${++counter}`;
    this.stateRoot = path.join(dir, 'runc-state');
    this.bundle = path.join(dir, 'bundle');
  }

  /**
   * A new bundle under `dir`, counting every `interval` seconds; `config` replaces the
   * generated config.json (e.g. the one a fixture was dumped with).
   */
  static create(dir: string, interval = '0.2', config?: string): RuncContainer {
    const c = new RuncContainer(dir);
    fs.mkdirSync(c.stateRoot, { recursive: true });
    const r = spawnSync('bash', [makeBundle, c.bundle], { env: { ...process.env, INTERVAL: interval }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-bundle.sh failed: ${r.stderr}`);
    if (config) fs.copyFileSync(config, path.join(c.bundle, 'config.json'));
    return c;
  }

  /** `runc [global] ARGS` run to its end. */
  runc(args: string[], global: string[] = []): RuncResult {
    const r = spawnSync('runc', ['--root', this.stateRoot, ...global, ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
  }

  /** `runc run -d` with pipes as the container's stdio. */
  async run(extra: string[] = []): Promise<Output> {
    const out = spawnWithPipes(['--root', this.stateRoot, 'run', '-d', '--bundle', this.bundle, ...extra, this.id]);
    const code = await out.exited();
    if (code !== 0) throw new Error(`runc run failed (${code}): ${out.lines.join(' | ')}`);
    return out;
  }

  /**
   * `runc --criu CRIU restore -d`, the restored container's stdio being new pipes. From images
   * this container was checkpointed into, a successful restore must give every task of the
   * container the descriptors it had (test-containers/fds.ts; `fdOpts` names those left out):
   * throws otherwise.
   */
  async restore(criu: string, imagePath: string, workPath: string, extra: string[] = [],
    fdOpts: CompareOptions = {}): Promise<{ code: number; out: Output }> {
    const out = spawnWithPipes(['--root', this.stateRoot, '--criu', criu, 'restore', '-d', '--image-path', imagePath,
      '--work-path', workPath, '--bundle', this.bundle, ...extra, this.id]);
    const code = await out.exited();
    const before = this.dumpedFds.get(path.resolve(imagePath));
    if (code === 0 && before) {
      expectFdsKept(`runc restore of ${this.id}`, before, () => this.state()!.pid, fdOpts);
      this.fdChecks++;
    }
    return { code, out };
  }

  /** How many restores had their descriptors compared with the checkpointed ones. */
  fdChecks = 0;

  /** Descriptors of the container's tasks just before each checkpoint, by image path. */
  private readonly dumpedFds = new Map<string, TreeFds>();

  checkpoint(criu: string, imagePath: string, workPath: string, extra: string[] = []): RuncResult {
    const st = this.state();
    let before: TreeFds | undefined;
    try {
      before = st?.status === 'running' ? settledSnapshot(st.pid) : undefined;
    } catch {
      // gone meanwhile: the checkpoint says so
    }
    const r = this.runc(['checkpoint', '--image-path', imagePath, '--work-path', workPath, ...extra, this.id], ['--criu', criu]);
    if (r.code === 0 && before) this.dumpedFds.set(path.resolve(imagePath), before);
    return r;
  }

  /** Give the container a terminal (config.json process.terminal), for --console-socket. */
  withTerminal(): this {
    return this.editConfig((config) => { config.process.terminal = true; });
  }

  /**
   * Privileged, as CRIU's own tests run in namespaces: every capability stasis's own bounding
   * set holds, in every set (workloads that change credentials or lock memory need more than
   * runc's default three), and /proc neither masked nor read-only (a workload's sysctls).
   */
  privileged(): this {
    const bounding = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]}`);
    const all = ALL_CAPABILITIES.filter((_, i) => (bounding >> BigInt(i)) & 1n).map((c) => `CAP_${c}`);
    return this.editConfig((config) => {
      config.process.capabilities = { bounding: all, effective: all, permitted: all, inheritable: all, ambient: all };
      delete config.linux.maskedPaths;
      delete config.linux.readonlyPaths;
    });
  }

  /**
   * Run workload NAME (test-containers/workloads/NAME.c, linked statically, copied into the
   * rootfs as /bin/NAME) with `args`.
   */
  withWorkload(name: string, args: string[] = []): this {
    const bin = path.join(this.bundle, 'rootfs', 'bin', name);
    fs.copyFileSync(buildWorkload(name, 'static'), bin);
    fs.chmodSync(bin, 0o755);
    return this.withArgs([`/bin/${name}`, ...args]);
  }

  /** Change the bundle's config.json. */
  editConfig(fn: (config: Record<string, any>) => void): this {
    const file = path.join(this.bundle, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    fn(config);
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
    return this;
  }

  /** Run another command in the container (config.json process.args). */
  withArgs(args: string[]): this {
    return this.editConfig((config) => { config.process.args = args; });
  }

  /** runc's state: status and init pid, or undefined when there is no such container. */
  state(): { status: string; pid: number } | undefined {
    const r = this.runc(['state', this.id]);
    if (r.code !== 0) return undefined;
    const s = JSON.parse(r.stdout);
    return { status: s.status, pid: s.pid };
  }

  /** Cgroup directories runc made for the container (v1 hierarchies and v2). */
  cgroupDirs(): string[] {
    return cgroupHierarchies().map((h) => path.join(h.mountPoint, this.id)).filter((d) => fs.existsSync(d));
  }

  /** Mounts on the host that name this container's directories. */
  leftoverMounts(): string[] {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
      .filter((l) => l.includes(this.dir) || l.includes(`/${this.id}/`));
  }

  destroy(): void {
    this.runc(['delete', '--force', this.id]);
  }
}
