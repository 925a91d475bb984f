// Podman with stasis as its criu, in a private configuration: its own storage (graphroot and
// runroot under one directory), cgroupfs, no network, k8s-file logs, and a PATH whose first
// `criu` is stasis (Podman and the runc it starts find criu through PATH). The image is the
// busybox-static rootfs, imported (no registry). Everything is removed by name and directory.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cgroupHierarchies } from '../cgroup/cgroups.js';
import { expectFdsKept, settledSnapshot, type TreeFds } from './fds.js';

/** Podman's cgroupfs parent (libpod_parent) in each hierarchy. */
function libpodParents(): string[] {
  return cgroupHierarchies().map((h) => path.join(h.mountPoint, 'libpod_parent'));
}

/** rmdir a cgroup directory tree, deepest first (cgroups only go when empty of tasks). */
function removeCgroupTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory()) removeCgroupTree(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // still in use
  }
}

/** Podman's output, with the tail of the criu log it names (what stasis said). */
export function withLog(out: string): string {
  const file = /log file: (\S+)/.exec(out)?.[1];
  return file && fs.existsSync(file) ? `${out}\n${fs.readFileSync(file, 'utf8').trim().split('\n').slice(-6).join('\n')}` : out;
}

export class Podman {
  readonly env: NodeJS.ProcessEnv;
  readonly image = 'localhost/stasis-busybox:test';
  /** libpod_parent cgroups that did not exist before: the test's to remove. */
  private readonly newCgroups = libpodParents().filter((d) => !fs.existsSync(d));

  constructor(readonly dir: string, stasisBin: string) {
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.symlinkSync(stasisBin, path.join(bin, 'criu'));
    fs.writeFileSync(path.join(dir, 'containers.conf'), [
      '[containers]', 'netns = "none"', 'log_driver = "k8s-file"',
      'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
      '[engine]', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"', 'runtime = "runc"',
      `static_dir = "${dir}/libpod"`, `tmp_dir = "${dir}/tmp"`, `volume_path = "${dir}/volumes"`, '',
    ].join('\n'));
    fs.writeFileSync(path.join(dir, 'storage.conf'), [
      '[storage]', 'driver = "overlay"', `graphroot = "${dir}/graph"`, `runroot = "${dir}/run"`, '',
    ].join('\n'));
    this.env = {
      ...process.env, PATH: `${bin}:${process.env.PATH}`,
      CONTAINERS_CONF: path.join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
    };
  }

  /**
   * `podman ARGS`. A checkpoint takes a snapshot of the container's descriptors first; a
   * successful restore of a container checkpointed so must give every task of it the
   * descriptors it had (test-containers/fds.ts): throws otherwise.
   */
  run(args: string[]): { code: number; out: string } {
    const verb = args[0] === 'container' ? args[1] : args[0];
    const name = args[args.length - 1]!;
    let before: TreeFds | undefined;
    if (verb === 'checkpoint') {
      try {
        before = settledSnapshot(this.pidOf(name));
      } catch {
        // not running: the checkpoint says so
      }
    }
    const r = this.exec(args);
    if (verb === 'checkpoint' && r.code === 0 && before) this.dumpedFds.set(this.inspect(name, '{{.Name}}'), before);
    if (verb === 'restore' && r.code === 0) {
      // It prints the restored container's ID.
      const id = r.stdout.trim().split('\n').pop()!;
      const dumped = this.dumpedFds.get(this.inspect(id, '{{.Name}}'));
      if (dumped) {
        expectFdsKept(`podman restore of ${id}`, dumped, () => this.pidOf(id));
        this.fdChecks++;
      }
    }
    return { code: r.code, out: r.out };
  }

  /** How many restores had their descriptors compared with the checkpointed ones. */
  fdChecks = 0;

  /** Descriptors of each container's tasks just before its last checkpoint, by container name. */
  private readonly dumpedFds = new Map<string, TreeFds>();

  private exec(args: string[]): { code: number; out: string; stdout: string } {
    const r = spawnSync('podman', args, { env: this.env, encoding: 'utf8', timeout: 120_000 });
    return { code: r.status ?? 128, out: `${r.stdout}${r.stderr}`, stdout: r.stdout ?? '' };
  }

  private inspect(name: string, format: string): string {
    return this.exec(['inspect', '-f', format, name]).stdout.trim();
  }

  /** The host PID of a running container's first process. */
  pidOf(name: string): number {
    const pid = Number(this.inspect(name, '{{.State.Pid}}'));
    if (!(pid > 0)) throw new Error(`container ${name} is not running`);
    return pid;
  }

  /**
   * Import the busybox rootfs as an image, with `extra` host files copied in (rootfs path →
   * host path, kept executable) and `dirs` made empty.
   */
  importBusybox(extra: Record<string, string> = {}, dirs: string[] = []): void {
    const rootfs = path.join(this.dir, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', ...dirs]) fs.mkdirSync(path.join(rootfs, d));
    for (const [to, from] of Object.entries(extra)) {
      fs.copyFileSync(from, path.join(rootfs, to));
      fs.chmodSync(path.join(rootfs, to), 0o755);
    }
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    for (const a of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      if (!fs.existsSync(path.join(rootfs, 'bin', a))) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
    }
    const tar = path.join(this.dir, 'rootfs.tar');
    execFileSync('tar', ['-C', rootfs, '-cf', tar, '.']);
    const r = this.run(['import', '--change', 'CMD ["/bin/sh"]', '--change', 'ENV PATH=/bin', tar, this.image]);
    if (r.code !== 0) throw new Error(`podman import: ${r.out}`);
  }

  /** The container's log lines (podman logs; a terminal's carriage returns left out). */
  logs(name: string): string[] {
    return this.run(['logs', name]).out.split(/\r?\n/).filter(Boolean);
  }

  /** The container's log lines once one matches `re` (or once `re` holds of them all). */
  async waitForLog(name: string, re: RegExp | ((lines: string[]) => boolean), timeoutMs = 15_000): Promise<string[]> {
    const t0 = Date.now();
    const done = typeof re === 'function' ? re : (lines: string[]) => lines.some((l) => re.test(l));
    for (;;) {
      const lines = this.logs(name);
      if (done(lines)) return lines;
      if (Date.now() - t0 > timeoutMs) throw new Error(`no log line matching ${re}; got: ${lines.slice(-3).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Remove every container and image of this configuration, then its storage. */
  destroy(): void {
    this.run(['rm', '--all', '--force', '--time', '0']);
    this.run(['system', 'reset', '--force']);
    for (const d of this.newCgroups) removeCgroupTree(d);
  }
}
