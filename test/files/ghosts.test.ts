// Files whose names are gone while they are open, mapped, or a task's working directory
// (criu's "ghosts" and link remaps), and file leases: each self-checking workload as a plain
// process and as a runc container's process (the paths are then the container's).
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload } from '../../test-containers/launch.js';
import { alive, selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

/**
 * A container whose checkpoint has criu options beyond runc's (runc reads them from the file
 * its org.criu.config annotation names, as criu's configuration file).
 */
function withCriuConfig(options: string[]): (rootfs: string) => void {
  return (rootfs) => {
    const bundle = path.dirname(rootfs);
    const conf = path.join(bundle, 'criu.conf');
    fs.writeFileSync(conf, options.map((o) => `${o}\n`).join(''));
    const file = path.join(bundle, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.annotations = { ...config.annotations, 'org.criu.config': conf };
    fs.writeFileSync(file, JSON.stringify(config, null, 2));
  };
}

/**
 * The workload as a plain process and as a container's, each dumped with criu's options `flags`
 * (runc's own where it has them, else through criu's configuration file); every item must pass.
 */
async function both(t: ExecutionContext, workload: string, flags: string[], items: string[]): Promise<void> {
  await plain(t, workload, flags, items);
  await inContainer(t, workload, flags, items);
}

async function plain(t: ExecutionContext, workload: string, flags: string[], items: string[]): Promise<void> {
  const { r } = await selfCheckRoundTrip(t, workload, { dumpArgs: flags.map((f) => `--${f}`) });
  for (const item of items) t.true(r.lines.includes(`ok ${item}`), `plain: ${item}`);
}

async function inContainer(t: ExecutionContext, workload: string, flags: string[], items: string[]): Promise<void> {
  const runcHas = (f: string) => f === 'file-locks';
  const viaConfig = flags.filter((f) => !runcHas(f));
  const ct = await selfCheckInContainer(t, workload, {
    prepare: viaConfig.length ? withCriuConfig(viaConfig) : undefined,
    checkpointArgs: flags.filter(runcHas).map((f) => `--${f}`),
  });
  for (const item of items) t.true(ct.restored.lines.includes(`ok ${item}`), `container: ${item}`);
}

test.serial('FIFOs removed while open come back removed, with their queued bytes, one pipe per FIFO', async (t) => {
  await both(t, 'ghost-fifo', [], ['queued-bytes', 'one-pipe', 'lone-passes', 'still-deleted', 'no-names-back']);
});

test.serial('mappings of removed files come back with their contents, shared with the descriptor of the same file', async (t) => {
  await both(t, 'ghost-mmap', [], ['private-ro', 'private-rw', 'shared-contents', 'shared-one-file', 'reborn',
    'names-one-file', 'private-sees-fd', 'no-names-back']);
});

test.serial('a removed working directory comes back as the same removed directory', async (t) => {
  await both(t, 'ghost-cwd', [], ['same-cwd', 'removed-dir', 'no-name-back', 'deep']);
});

test.serial('--link-remap: a removed file with another name comes back as that inode; inotify watches on a removed file still fire', async (t) => {
  await both(t, 'link-remap', ['link-remap'], ['linked-contents', 'linked-same-inode', 'linked-path', 'nothing-left',
    'watch-quiet', 'watch-removed-file', 'watch-dir']);
});

test.serial('without --link-remap, a removed file with other names fails the dump with a one-line error naming the option', async (t) => {
  const work = tmpDir(t, 'stasis-link-remap-');
  const w = await startWorkload('link-remap', [work]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready\b/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t)]);
  t.is(d.exitCode, 1);
  t.regex(d.stderr, /^stasis: fd \d+ of task \d+ is the deleted file .*\/sub\/file, which has 1 other name\(s\); dump with --link-remap to keep it$/);
  t.true(alive(w.pid));
});

test.serial('a dump that fails after --link-remap linked a removed file removes the link again', async (t) => {
  const work = tmpDir(t, 'stasis-link-remap-');
  const w = await startWorkload('link-remap', [work, 'flock']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready\b/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--link-remap']);
  t.is(d.exitCode, 1);
  t.regex(d.stderr, /holds a FLOCK WRITE lock .*--file-locks/);
  t.deepEqual(fs.readdirSync(work).sort(), ['keep', 'w'], 'no link_remap.N left in the work directory');
  t.true(alive(w.pid));
});

test.serial('file leases (read and write) are taken again with --file-locks', async (t) => {
  await plain(t, 'leases', ['file-locks'], ['read-lease', 'write-lease']);
});

// In a container, as every file lock there, under the task's pid as the container numbers it.
test.serial('file leases in a container come back after runc checkpoint and restore', async (t) => {
  await inContainer(t, 'leases', ['file-locks'], ['read-lease', 'write-lease']);
});
