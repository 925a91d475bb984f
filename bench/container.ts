// Container checkpoints as archives, stasis beside Podman in the same run (wall times): of
// `stasis container checkpoint --export` and `stasis container restore --import` for the busybox
// counter under runc, and of Podman's own `podman container checkpoint --export` and
// `podman container restore --import` (stasis as Podman's criu) for the same counter.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RuncContainer } from '../test-containers/runc.js';
import { Podman } from '../test-containers/podman.js';
import type { Benchmark, Figure } from './run.js';
import { benchTmpDir } from './tmp.js';

const stasisBin = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bin', 'stasis');
const COUNTER = 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo tick $i; sleep 0.2; done';

/**
 * Wall time of a command run to its end; throws on a failure. Its stdio is /dev/null and a file
 * for stderr: a restored container keeps them (a pipe would be waited for).
 */
function timed(cmd: string, args: string[], dir: string, env?: NodeJS.ProcessEnv): number {
  const errFile = path.join(dir, 'stderr');
  const err = fs.openSync(errFile, 'w');
  try {
    const t0 = performance.now();
    const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', err], timeout: 120_000 });
    const ms = performance.now() - t0;
    if (r.status !== 0) {
      const msg = fs.readFileSync(errFile, 'utf8').trim().split('\n').pop();
      throw new Error(`${path.basename(cmd)} ${args.slice(0, 2).join(' ')} failed: ${msg}`);
    }
    return ms;
  } finally {
    fs.closeSync(err);
  }
}

/**
 * One busybox counter under runc, checkpointed with `stasis container checkpoint --export` and
 * restored with `stasis container restore --import`: the rootfs carried whole (the default for a
 * plain directory), or (`diffFrom`) only its changes against the rootfs as made, as Podman
 * carries a container's layer over its image.
 */
async function stasisFigures(dir: string, diff: boolean): Promise<Figure[]> {
  const c = RuncContainer.create(path.join(dir, diff ? 'runc-diff' : 'runc'), '0.2').withArgs(['sh', '-c', COUNTER]);
  const restored = `${c.id}-r`;
  const base = path.join(dir, 'base');
  if (diff && spawnSync('cp', ['-a', path.join(c.bundle, 'rootfs'), base]).status !== 0) throw new Error('cp -a of the rootfs failed');
  const tag = diff ? ' (rootfs diff)' : ' (whole rootfs)';
  try {
    const out = await c.run();
    await out.waitForLine(/^tick 3$/);
    const archive = path.join(dir, 'stasis.tar.zst');
    const checkpointMs = timed(stasisBin, ['container', 'checkpoint', c.id, '--runtime-root', c.stateRoot, '--export', archive,
      ...(diff ? ['--rootfs-diff-from', base] : [])], dir);
    const restoreMs = timed(stasisBin, ['container', 'restore', '--import', archive, '--name', restored,
      '--runtime-root', c.stateRoot, '--bundle', path.join(dir, `restored${diff ? '-diff' : ''}`), ...(diff ? ['--rootfs', base] : [])], dir);
    if (c.runc(['state', restored]).code !== 0) throw new Error('the restored container does not run');
    return [
      { name: `stasis checkpoint --export${tag}`, value: checkpointMs, unit: 'ms' },
      { name: `stasis restore --import${tag}`, value: restoreMs, unit: 'ms' },
      { name: `stasis archive, zstd${tag}`, value: fs.statSync(archive).size / 1024, unit: 'KiB' },
    ];
  } finally {
    c.runc(['delete', '--force', restored]);
    c.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

async function podmanFigures(dir: string): Promise<Figure[]> {
  const pm = new Podman(path.join(dir, 'podman'), stasisBin);
  try {
    pm.importBusybox();
    const name = `stasis-bench-${process.pid}`;
    const run = pm.run(['run', '-d', '--name', name, pm.image, '/bin/sh', '-c', COUNTER]);
    if (run.code !== 0) throw new Error(`podman run: ${run.out}`);
    await pm.waitForLog(name, /^tick 3$/);
    const archive = path.join(dir, 'podman.tar.zst');
    const checkpointMs = timed('podman', ['container', 'checkpoint', '--export', archive, name], dir, pm.env);
    if (pm.run(['rm', name]).code !== 0) throw new Error('podman rm failed');
    const restoreMs = timed('podman', ['container', 'restore', '--import', archive], dir, pm.env);
    return [
      { name: 'podman checkpoint --export', value: checkpointMs, unit: 'ms' },
      { name: 'podman restore --import', value: restoreMs, unit: 'ms' },
      { name: 'podman archive, zstd', value: fs.statSync(archive).size / 1024, unit: 'KiB' },
    ];
  } finally {
    pm.destroy();
  }
}

export const containerBench: Benchmark = {
  name: 'container-archive',
  runs: 3,
  async run(): Promise<Figure[]> {
    const dir = benchTmpDir();
    try {
      return [...(await stasisFigures(dir, false)), ...(await stasisFigures(dir, true)), ...(await podmanFigures(dir))];
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
