// Checkpoint a container into an archive, and restore one from an archive into a fresh bundle,
// as a runtime user would: the runtime (runc) does the checkpoint and restore, with stasis as
// its criu, so it keeps its own state, cgroups and hooks right; around it, stasis reads the
// container's bundle and writes (or reads) the archive in Podman's layout (archives.md §2):
//
//   spec.dump               the bundle's config.json as it was
//   config.dump             ours: id, name, runtime, bundle, created/checkpointed times, how the
//                           rootfs is carried (rootfs.ts), plus the fields checkpointctl reads
//   checkpoint/             the images (with runc's descriptors.json)
//   stats-dump              the dump's statistics
//   rootfs-diff.tar, deleted.files    the rootfs (rootfs.ts)
//   devshm-checkpoint.tar   the files in the container's /dev/shm
//   bind.mounts             the bind mounts and what their sources were (CRI-O's format), so a
//                           restore elsewhere recreates the sources that do not exist there
//
// /dev/shm: under runc it is a tmpfs inside the container's mount namespace, which the dump
// already saves (tmpfs-dev-N.tar.gz.img, the files as they were at the frozen moment); that
// image's tar is what devshm-checkpoint.tar holds, so it matches the dumped processes exactly
// and needs no second visit of a running container. When /dev/shm is a bind mount of a host
// directory (Podman's), that directory is packed, after the dump (the container is stopped or
// was frozen). On restore the dump's own tmpfs image brings a runc container's /dev/shm back;
// devshm-checkpoint.tar fills a recreated /dev/shm bind source (a Podman archive's).

import fs from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { applyTar, extractArchive, packDirectory, packTree } from './archive.js';
import type { Compression } from './compression.js';
import { readSpec, parseSpec, specText, isBindMount, type OciSpec } from './spec.js';
import { runRuntimeCommand, runtimeArgs, runtimeMessage, runtimeState, type RuntimeOptions, type RuntimeState } from './runtime-state.js';
import { carried, restoreRootfs, saveRootfs, type RootfsCarriage } from './rootfs.js';
import { ImageDir } from '../images/index.js';

/** The archive's members (Podman's names). */
export const MEMBERS = {
  spec: 'spec.dump',
  config: 'config.dump',
  checkpoint: 'checkpoint',
  stats: 'stats-dump',
  devshm: 'devshm-checkpoint.tar',
  bindMounts: 'bind.mounts',
} as const;

/** A checkpoint or restore that could not be done; the message is one line. */
export class ContainerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContainerError';
  }
}

/** bin/stasis, the criu the runtime is given (two levels up from dist/oci-spec/ and dist/bundle/). */
export const STASIS_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'stasis');

/** config.dump as stasis writes it (checkpointctl's ContainerConfig fields, and ours). */
export interface ContainerConfigDump {
  id: string;
  name: string;
  rootfsImage: string;
  rootfsImageRef: string;
  rootfsImageName: string;
  runtime: string;
  createdTime: string;
  checkpointedTime: string;
  restored: boolean;
  /** Where the container's bundle was. */
  bundle: string;
  rootfsCarriage: RootfsCarriage;
  /** The base a 'diff' of a plain directory rootfs was taken against. */
  rootfsDiffFrom?: string;
  engine: 'stasis';
}

/** bind.mounts (CRI-O's): one external bind mount. */
export interface BindMountRecord {
  source: string;
  destination: string;
  file_type: 'directory' | 'file';
  permissions: number;
}

export interface CheckpointContainerOptions extends RuntimeOptions {
  /** The container's id in the runtime. */
  id: string;
  /** The archive to write (replaced if it exists; written beside and renamed into place). */
  export?: string;
  /** An OCI image layout to write, holding the archive as its layer (checkpoint-image.ts); --export, --create-image or both. */
  createImage?: string;
  compression?: Compression;
  /** Let the container run on after the checkpoint. */
  leaveRunning?: boolean;
  /** For a plain directory rootfs: carry only its changes against this directory. */
  rootfsDiffFrom?: string;
  /** The criu the runtime is given (default: this stasis). */
  criu?: string;
}

export interface CheckpointContainerResult {
  archive: string;
  config: ContainerConfigDump;
  /** Entries of the rootfs that could not be carried (device nodes, sockets). */
  skipped: string[];
}

/** The first error line of a criu-style log, if any. */
async function logError(file: string): Promise<string | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').find((l) => /Error/.test(l))?.replace(/^\(\s*[\d.]+\)\s*/, '').trim();
}

/**
 * `RUNTIME [--root R] --log LOG --criu C ARGS`, failing with the runtime's last message and the
 * first error of criu's log `criuLog`. The runtime's stdio is `stdio` whole (on restore it is the
 * container's: runc hands its own descriptors to the restored pipes), so it logs to a file.
 */
async function runRuntime(opts: RuntimeOptions, criu: string, args: string[], what: string, workDir: string,
  criuLog: string, stdio: StdioOption = 'ignore'): Promise<void> {
  const runtime = opts.runtime ?? 'runc';
  const runtimeLog = path.join(workDir, `${runtime.split('/').pop()}.log`);
  const child = spawn(runtime, [...runtimeArgs(opts), '--log', runtimeLog, '--log-format', 'json', '--criu', criu, ...args], {
    stdio: Array.isArray(stdio) ? stdio : [stdio, stdio, stdio],
  });
  const code = await new Promise<number | Error>((resolve) => {
    child.on('error', resolve);
    child.on('exit', (c, sig) => resolve(c ?? 128 + (sig ? os.constants.signals[sig] : 0)));
  });
  if (code === 0) return;
  const logLine = await logError(criuLog);
  const errors = (await fs.readFile(runtimeLog, 'utf8').catch(() => '')).split('\n').filter((l) => /"level":"(error|fatal)"/.test(l));
  const msg = code instanceof Error ? `cannot run it (${code.message})` : runtimeMessage(errors.join('\n')) || `exit ${code}`;
  throw new ContainerError(`${what}: ${runtime}: ${msg}${logLine ? ` (${path.basename(criuLog)}: ${logLine})` : ''}`);
}

/** `RUNTIME [--root R] ARGS` (pause, resume), failing with the runtime's message. */
async function runRuntimeSimple(opts: RuntimeOptions, args: string[], what: string): Promise<void> {
  const runtime = opts.runtime ?? 'runc';
  const r = await runRuntimeCommand(runtime, [...runtimeArgs(opts), ...args]);
  if (r.exitCode !== 0) throw new ContainerError(`${what}: ${runtime}: ${r.error ?? (runtimeMessage(r.stderr) || `exit ${r.exitCode}`)}`);
}

/** The contents of /dev/shm as the dump saved it (its tmpfs image), as a plain tar; false if none. */
async function devShmFromImages(imagesDir: string, out: string): Promise<boolean> {
  const dir = await ImageDir.open(imagesDir);
  for (const name of (await dir.names()).filter((n) => /^mountpoints-\d+\.img$/.test(n))) {
    for (const m of await dir.messages(name)) {
      const mountpoint = String(m.mountpoint ?? '').replace(/^\.?\/*/, '/');
      if (mountpoint !== '/dev/shm' || m.fstype !== 5) continue;
      const image = path.join(imagesDir, `tmpfs-dev-${String(m.root_dev)}.tar.gz.img`);
      if (!(await fs.stat(image).then(() => true, () => false))) return false;
      await pipeline(createReadStream(image), zlib.createGunzip(), createWriteStream(out, { mode: 0o600 }));
      return true;
    }
  }
  return false;
}

function bindMountsOf(spec: OciSpec, bundle: string): Promise<BindMountRecord[]> {
  return Promise.all((spec.mounts ?? []).filter((m) => isBindMount(m) && m.source).map(async (m) => {
    const source = path.resolve(bundle, m.source!);
    const st = await fs.stat(source).catch(() => undefined);
    return { source, destination: m.destination, file_type: st && !st.isDirectory() ? 'file' : 'directory', permissions: st ? st.mode & 0o7777 : 0o755 } as BindMountRecord;
  }));
}

/**
 * Checkpoint the container `opts.id` through its runtime, with stasis as the runtime's criu,
 * into the archive `opts.export`. Unless `leaveRunning`, the container is gone afterwards.
 */
export async function checkpointContainer(opts: CheckpointContainerOptions): Promise<CheckpointContainerResult> {
  const state = await runtimeState(opts.id, opts);
  if (state.status !== 'running' && state.status !== 'paused') {
    throw new ContainerError(`container ${opts.id} is ${state.status}: only a running or paused container can be checkpointed`);
  }
  const spec = readSpec(path.join(state.bundle, 'config.json'));
  const rootfs = state.rootfs || path.resolve(state.bundle, spec.root.path);
  if (opts.rootfsDiffFrom && !(await fs.stat(opts.rootfsDiffFrom).then((s) => s.isDirectory(), () => false))) {
    throw new ContainerError(`--rootfs-diff-from ${opts.rootfsDiffFrom}: no such directory`);
  }
  const out = opts.export ?? opts.createImage;
  if (!out) throw new ContainerError(`checkpoint of ${opts.id}: --export FILE or --create-image DIR is needed`);
  const outDir = path.dirname(path.resolve(out));
  if (!(await fs.stat(outDir).then((s) => s.isDirectory(), () => false))) throw new ContainerError(`cannot write ${out}: no directory ${outDir}`);
  const bindMounts = await bindMountsOf(spec, state.bundle);

  const tmp = await fs.mkdtemp(path.join(outDir, `.stasis-checkpoint-${opts.id}-`));
  const content = path.join(tmp, 'archive');
  const work = path.join(tmp, 'work');
  // Without --export the archive is made only for the image, and moved into it.
  const exportFile = opts.export ? path.resolve(opts.export) : path.join(tmp, 'checkpoint.tar');
  const images = path.join(content, MEMBERS.checkpoint);
  let checkpointed = false;
  // A container left running is paused until its rootfs and /dev/shm are saved too, so that
  // they are those of the moment its processes were dumped (runc checkpoints a paused
  // container and leaves it paused).
  let paused = false;
  try {
    await fs.mkdir(content, { mode: 0o700 });
    await fs.mkdir(work, { mode: 0o700 });
    if (opts.leaveRunning && state.status === 'running') {
      await runRuntimeSimple(opts, ['pause', opts.id], `pausing ${opts.id}`);
      paused = true;
    }
    await runRuntime(opts, opts.criu ?? STASIS_BIN, ['checkpoint', '--image-path', images, '--work-path', work,
      ...(opts.leaveRunning ? ['--leave-running'] : []), opts.id], `checkpoint of ${opts.id}`, work, path.join(work, 'dump.log'));
    checkpointed = true;
    const checkpointedTime = new Date().toISOString();
    await fs.copyFile(path.join(work, 'stats-dump'), path.join(content, MEMBERS.stats)).catch(() => undefined);
    await fs.copyFile(path.join(state.bundle, 'config.json'), path.join(content, MEMBERS.spec));
    const changes = await saveRootfs(rootfs, content, opts.rootfsDiffFrom);

    const devshm = path.join(content, MEMBERS.devshm);
    const shmBind = (spec.mounts ?? []).find((m) => m.destination === '/dev/shm' && isBindMount(m) && m.source);
    if (shmBind) {
      await packTree(path.resolve(state.bundle, shmBind.source!), devshm, { filter: carried });
    } else {
      await devShmFromImages(images, devshm);
    }
    if (paused) {
      paused = false;
      await runRuntimeSimple(opts, ['resume', opts.id], `resuming ${opts.id}`);
    }
    await fs.writeFile(path.join(content, MEMBERS.bindMounts), JSON.stringify(bindMounts), { mode: 0o600 });
    const config: ContainerConfigDump = {
      id: state.id, name: state.id, rootfsImage: '', rootfsImageRef: '', rootfsImageName: '',
      runtime: opts.runtime ?? 'runc', createdTime: state.created, checkpointedTime, restored: false,
      bundle: state.bundle, rootfsCarriage: changes.carriage,
      ...(changes.carriage === 'diff' && opts.rootfsDiffFrom ? { rootfsDiffFrom: path.resolve(opts.rootfsDiffFrom) } : {}),
      engine: 'stasis',
    };
    await fs.writeFile(path.join(content, MEMBERS.config), JSON.stringify(config, null, 2), { mode: 0o600 });
    await packDirectory(content, exportFile, { compression: opts.compression ?? 'zstd' });
    await fs.chmod(exportFile, 0o600);
    let archiveOut = exportFile;
    if (opts.createImage) {
      const { createCheckpointImage } = await import('./checkpoint-image.js');
      const made = await createCheckpointImage(exportFile, opts.createImage, {
        containerName: config.name, containerId: config.id, runtimeName: config.runtime, created: new Date(checkpointedTime),
      }, { moveArchive: !opts.export });
      if (!opts.export) archiveOut = made.archive;
    }
    await fs.rm(tmp, { recursive: true, force: true });
    return { archive: archiveOut, config, skipped: changes.skipped };
  } catch (e) {
    if (paused) await runRuntimeCommand(opts.runtime ?? 'runc', [...runtimeArgs(opts), 'resume', opts.id]);
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    if (checkpointed && !opts.leaveRunning) {
      // The container is gone: its images stay where they are, for the user to act on.
      throw new ContainerError(`checkpoint of ${opts.id}: the container was checkpointed (and stopped) but the archive could not be written: ${msg}; the images are in ${images}`);
    }
    await fs.rm(tmp, { recursive: true, force: true });
    throw e instanceof ContainerError ? e : new ContainerError(`checkpoint of ${opts.id}: ${msg}`);
  }
}

/** The restored container's stdin, stdout and stderr. */
export type StdioOption = 'inherit' | 'ignore' | [number, number, number];

export interface RestoreContainerOptions extends RuntimeOptions {
  /** The archive to restore. */
  import: string;
  /** The restored container's id (default: the archive's container name). */
  name?: string;
  /** The new bundle directory, which must not exist (default: /var/lib/stasis/containers/NAME). */
  bundle?: string;
  /** The rootfs the archive's changes apply to (needed when it carries only changes). */
  rootfs?: string;
  /** The restored container's stdio (default: ours). */
  stdio?: StdioOption;
  criu?: string;
}

export interface RestoreContainerResult {
  name: string;
  bundle: string;
  state: RuntimeState;
}

/** Where bundles go without --bundle. */
export const DEFAULT_BUNDLES = '/var/lib/stasis/containers';

/** config.dump, whoever wrote it (Podman writes its whole container config): the fields read here. */
interface ArchiveConfig {
  name?: string;
  rootfsCarriage?: RootfsCarriage;
}

async function readJson(file: string, what: string): Promise<unknown> {
  const text = await fs.readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch {
    throw new ContainerError(`${what} is not JSON`);
  }
}

/** bind.mounts, checked. */
function toBindMounts(v: unknown): BindMountRecord[] {
  if (!Array.isArray(v)) throw new ContainerError(`${MEMBERS.bindMounts} is not a JSON array`);
  for (const m of v) {
    if (typeof m?.destination !== 'string' || (m.file_type !== 'file' && m.file_type !== 'directory')) {
      throw new ContainerError(`${MEMBERS.bindMounts} has an entry without destination or file_type`);
    }
  }
  return v as BindMountRecord[];
}

/** Files a container engine binds into every container (Podman's per-container files). */
const ENGINE_FILES = new Set(['/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/run/.containerenv', '/etc/passwd', '/etc/group']);

/**
 * Bind mount sources of `spec` that do not exist here are made inside the bundle (`mounts/`)
 * with the type they had: from bind.mounts when the archive has it, else from what stands at
 * the destination in the rootfs, else a file for an engine's per-container files, a directory
 * for the rest. /dev/shm gets devshm-checkpoint.tar's files.
 */
async function recreateBindSources(spec: OciSpec, bundle: string, records: BindMountRecord[], devshmTar: string): Promise<string[]> {
  const made: string[] = [];
  const mountsDir = path.join(bundle, 'mounts');
  let i = 0;
  for (const m of spec.mounts ?? []) {
    i++;
    if (!isBindMount(m) || !m.source) continue;
    if (await fs.lstat(path.resolve(bundle, m.source)).then(() => true, () => false)) continue;
    const record = records.find((r) => r.destination === m.destination);
    let type = record?.file_type;
    if (!type) {
      const inRoot = await fs.lstat(path.join(bundle, 'rootfs', m.destination)).catch(() => undefined);
      type = inRoot ? (inRoot.isDirectory() ? 'directory' : 'file') : ENGINE_FILES.has(m.destination) ? 'file' : 'directory';
    }
    await fs.mkdir(mountsDir, { recursive: true, mode: 0o755 });
    const source = path.join(mountsDir, `${i}-${path.basename(m.destination) || 'root'}`);
    if (type === 'file') await fs.writeFile(source, '', { mode: record?.permissions ?? 0o644 });
    else await fs.mkdir(source, { mode: record?.permissions ?? (m.destination === '/dev/shm' ? 0o1777 : 0o755) });
    if (m.destination === '/dev/shm' && type === 'directory' && (await fs.stat(devshmTar).then(() => true, () => false))) {
      await applyTar(devshmTar, source);
    }
    m.source = source;
    made.push(m.destination);
  }
  return made;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

/**
 * Restore the container checkpointed in the archive `opts.import` into a fresh bundle, under
 * the runtime with stasis as its criu. On failure nothing is left: no bundle, no container.
 */
export async function restoreContainer(opts: RestoreContainerOptions): Promise<RestoreContainerResult> {
  let archive = path.resolve(opts.import);
  const st = await fs.stat(archive).catch(() => undefined);
  if (!st) throw new ContainerError(`${opts.import}: no such archive`);
  if (st.isDirectory()) {
    // A checkpoint image's OCI layout: its layer is the archive.
    const { isImageLayout, readCheckpointImage } = await import('./checkpoint-image.js');
    if (!(await isImageLayout(archive))) throw new ContainerError(`${opts.import}: a directory, but no OCI image layout (no oci-layout file)`);
    archive = (await readCheckpointImage(archive)).archive;
  } else if (!st.isFile()) throw new ContainerError(`${opts.import}: not a file`);
  if (opts.rootfs && !(await fs.stat(opts.rootfs).then((s) => s.isDirectory(), () => false))) {
    throw new ContainerError(`--rootfs ${opts.rootfs}: no such directory`);
  }
  if (opts.name !== undefined && !NAME_RE.test(opts.name)) throw new ContainerError(`--name "${opts.name}": not a container name (letters, digits, _ . + -)`);

  // The bundle directory is claimed by creating it (it must not exist). Without --bundle the
  // archive is unpacked first beside the bundles' place, since the name may come from it.
  const runtime = opts.runtime ?? 'runc';
  let staging: string;
  /** The topmost directory made for --bundle (its parents may be new too): removed on failure. */
  let topmost: string | undefined;
  if (opts.bundle) {
    staging = path.resolve(opts.bundle);
    const parent = await fs.mkdir(path.dirname(staging), { recursive: true });
    try {
      await fs.mkdir(staging, { mode: 0o700 });
    } catch (e) {
      if (parent) await fs.rm(parent, { recursive: true, force: true });
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new ContainerError(`--bundle ${opts.bundle}: it exists already (a restore makes a fresh bundle)`);
      throw new ContainerError(`--bundle ${opts.bundle}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    topmost = parent ?? staging;
  } else {
    await fs.mkdir(DEFAULT_BUNDLES, { recursive: true });
    staging = await fs.mkdtemp(path.join(DEFAULT_BUNDLES, '.import-'));
  }
  /** The bundle, once it is ours. */
  let bundle = staging;
  let created = false;
  let name = opts.name;
  try {
    const from = path.join(staging, 'archive');
    try {
      await extractArchive(archive, from);
    } catch (e) {
      throw new ContainerError(`${opts.import}: not a checkpoint archive (${(e as Error).message.split('\n')[0]})`);
    }
    if (!(await exists(path.join(from, MEMBERS.checkpoint, 'inventory.img')))) {
      throw new ContainerError(`${opts.import}: not a checkpoint archive (no ${MEMBERS.checkpoint}/inventory.img)`);
    }
    if (!(await exists(path.join(from, MEMBERS.spec)))) throw new ContainerError(`${opts.import}: not a checkpoint archive (no ${MEMBERS.spec})`);
    const spec = parseSpec(await fs.readFile(path.join(from, MEMBERS.spec), 'utf8'), `${opts.import}: ${MEMBERS.spec}`);
    if (spec.process.terminal) {
      throw new ContainerError(`${opts.import}: the container had a terminal (process.terminal), which container restore cannot hand over (no console socket)`);
    }
    const config = (await exists(path.join(from, MEMBERS.config)))
      ? (await readJson(path.join(from, MEMBERS.config), MEMBERS.config)) as ArchiveConfig : {};
    name ??= config.name;
    if (!name || !NAME_RE.test(name)) throw new ContainerError(`${opts.import}: the archive names no usable container name: give one with --name`);
    if (!opts.bundle) {
      const target = path.join(DEFAULT_BUNDLES, name);
      try {
        await fs.mkdir(target, { mode: 0o700 }); // claimed; the rename replaces it, being empty
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new ContainerError(`${target} exists already: give another --name or a --bundle`);
        throw e;
      }
      bundle = target;
      await fs.rename(staging, target);
    }
    const taken = await runtimeState(name, opts).then(() => true, () => false);
    if (taken) throw new ContainerError(`a container named ${name} exists already in ${runtime}: give another --name`);

    // The rootfs: whole in the archive, or the changes over a base the user gives.
    const carriage = config.rootfsCarriage ?? 'diff';
    if (carriage === 'diff' && !opts.rootfs) {
      throw new ContainerError(`${opts.import} carries only the rootfs's changes: give the rootfs they apply to with --rootfs DIR`);
    }
    const archiveDir = path.join(bundle, 'archive');
    await restoreRootfs(path.join(bundle, 'rootfs'), archiveDir, opts.rootfs);

    // The spec, for this bundle and name.
    spec.root.path = 'rootfs';
    if (spec.linux) {
      if (spec.linux.cgroupsPath !== undefined) spec.linux.cgroupsPath = `/${name}`;
      for (const ns of spec.linux.namespaces ?? []) {
        if (ns.path && !(await exists(ns.path))) delete ns.path; // a new one instead
      }
    }
    const records = (await exists(path.join(archiveDir, MEMBERS.bindMounts)))
      ? toBindMounts(await readJson(path.join(archiveDir, MEMBERS.bindMounts), MEMBERS.bindMounts)) : [];
    await recreateBindSources(spec, bundle, records, path.join(archiveDir, MEMBERS.devshm));
    await fs.writeFile(path.join(bundle, 'config.json'), specText(spec), { mode: 0o600 });

    const work = path.join(bundle, 'work');
    await fs.mkdir(work, { mode: 0o700 });
    created = true;
    await runRuntime(opts, opts.criu ?? STASIS_BIN, ['restore', '-d', '--image-path', path.join(archiveDir, MEMBERS.checkpoint),
      '--work-path', work, '--bundle', bundle, name], `restore of ${name}`, work, path.join(work, 'restore.log'), opts.stdio ?? 'inherit');
    // What was unpacked into the rootfs and /dev/shm is not needed again (the images stay, as
    // Podman keeps a restored container's checkpoint/).
    for (const m of ['rootfs-diff.tar', MEMBERS.devshm]) await fs.rm(path.join(archiveDir, m), { force: true });
    return { name, bundle, state: await runtimeState(name, opts) };
  } catch (e) {
    if (created && name) {
      await runRuntimeCommand(runtime, [...runtimeArgs(opts), 'delete', '--force', name]);
    }
    await fs.rm(bundle, { recursive: true, force: true });
    if (bundle !== staging) await fs.rm(staging, { recursive: true, force: true });
    if (topmost) await fs.rm(topmost, { recursive: true, force: true });
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    throw e instanceof ContainerError ? e : new ContainerError(`restore from ${opts.import}: ${msg}`);
  }
}
