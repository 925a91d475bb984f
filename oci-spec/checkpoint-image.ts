// Checkpoint images: a checkpoint archive carried as the one layer of an OCI image, in an OCI
// image layout directory (oci-layout, index.json, blobs/sha256/...), as `podman container
// checkpoint --create-image` and checkpointctl's `build` make them, so that registries, skopeo
// and the engines can move and find checkpoints like any image.
//
// The archive's own bytes are the layer blob: a tar stream, compressed with zstd or gzip or not
// at all, whose media type says which. Engines recognise a checkpoint image by its annotations:
// Podman by `io.podman.annotations.checkpoint.name` (on the manifest, as buildah writes them),
// CRI-O by `io.kubernetes.cri-o.annotations.checkpoint.name` (on the manifest), containerd by
// checkpointctl's `org.criu.checkpoint.container.name` on the index. All three sets are written,
// on the manifest and on the index both.
//
// Reading goes the other way: index.json → manifest → the one layer, each blob checked against
// its descriptor's size and sha256 digest, and the layer's path handed out as the archive to
// read (archive.ts reads it in place: nothing is copied or unpacked).

import { createHash } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VERSION } from '../runtime-hook/version.js';
import { readMembers } from './archive.js';
import { decompressor, detectCompression, type Compression } from './compression.js';

export const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

const LAYER_TYPE: Record<Compression, string> = { none: MEDIA_TYPE.layer, gzip: MEDIA_TYPE.layerGzip, zstd: MEDIA_TYPE.layerZstd };

/** What a layer's media type says of its compression (undefined: not a layer type we read). */
function layerCompression(mediaType: string): Compression | undefined {
  switch (mediaType) {
    case MEDIA_TYPE.layer: case MEDIA_TYPE.dockerLayer: return 'none';
    case MEDIA_TYPE.layerGzip: case MEDIA_TYPE.dockerLayerGzip: return 'gzip';
    case MEDIA_TYPE.layerZstd: return 'zstd';
    default: return undefined;
  }
}

/** The annotation each engine recognises a checkpoint image by. */
export const CHECKPOINT_NAME_ANNOTATIONS = [
  'io.podman.annotations.checkpoint.name',
  'io.kubernetes.cri-o.annotations.checkpoint.name',
  'org.criu.checkpoint.container.name',
] as const;

const REF_NAME = 'org.opencontainers.image.ref.name';
const CREATED = 'org.opencontainers.image.created';

/** A bad or unreadable image layout, or one that holds no checkpoint: one line saying which. */
export class CheckpointImageError extends Error {
  constructor(readonly layout: string, readonly reason: string) {
    super(`${layout}: ${reason}`);
    this.name = 'CheckpointImageError';
  }
}

/** What the annotations say of the checkpoint; each field defaults to config.dump's. */
export interface CheckpointImageMeta {
  /** The checkpointed container's name (config.dump `name`). */
  containerName?: string;
  /** Its id (config.dump `id`). */
  containerId?: string;
  /** The image its rootfs came from, as the user asked for it (config.dump `rawImageName`/`rootfsImage`). */
  rawImageName?: string;
  /** That image's resolved name and id (config.dump `rootfsImageName`, `rootfsImageID`/`rootfsImageRef`). */
  rootfsImageName?: string;
  rootfsImageId?: string;
  /** The OCI runtime that ran it (config.dump `runtime`), and its version. */
  runtimeName?: string;
  runtimeVersion?: string;
  /** A Kubernetes pod, for CRI-made checkpoints. */
  podName?: string;
  podNamespace?: string;
  /** The engine that made the checkpoint (`stasis` by default) and its version. */
  engineName?: string;
  engineVersion?: string;
  /** The manifest's name in index.json (`org.opencontainers.image.ref.name`), e.g. `latest`. */
  tag?: string;
  created?: Date;
  /** More annotations, set last (they win). */
  annotations?: Record<string, string>;
}

export interface CheckpointImage {
  /** The layout directory. */
  layout: string;
  /** The archive: the layer's blob file, to read in place (archive.ts readMembers, extractArchive). */
  archive: string;
  compression: Compression;
  /** Its digest and size. */
  layerDigest: string;
  layerSize: number;
  manifestDigest: string;
  /** The manifest's name in index.json, if it has one. */
  tag?: string;
  /** The index's, the manifest descriptor's and the manifest's annotations, in that order of precedence (lowest first). */
  annotations: Record<string, string>;
  /** The container's name, from whichever checkpoint annotation is there. */
  containerName: string;
  manifest: OciManifest;
  config: Record<string, unknown>;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

export interface OciManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** go-criu's integer form of a version (4.2.0 → 40200), as the criu.version annotations hold it. */
function criuVersion(): string {
  return String(VERSION.major * 10000 + VERSION.minor * 100 + VERSION.sublevel);
}

/** The OCI name of Node's architecture. */
function ociArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };
  return map[process.arch] ?? process.arch;
}

async function hostFacts(): Promise<{ arch: string; kernel: string; cgroups: string; distName: string; distVersion: string }> {
  const cgroups = await stat('/sys/fs/cgroup/cgroup.controllers').then(() => 'v2', () => 'v1');
  let release = '';
  try {
    release = await readFile('/etc/os-release', 'utf8');
  } catch {
    // none: the distribution annotations stay empty
  }
  const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(release)?.[1] ?? '';
  return { arch: ociArch(), kernel: os.release(), cgroups, distName: field('ID'), distVersion: field('VERSION_ID') };
}

/** config.dump's JSON, if the archive has one (it comes early: metadata is written before the images). */
async function configDump(archive: string): Promise<Record<string, unknown> | undefined> {
  for await (const m of readMembers(archive, (name) => name === 'config.dump')) {
    try {
      return JSON.parse(m.data.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${archive}: config.dump is not JSON: ${(e as Error).message}`);
    }
  }
  return undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The annotations of a checkpoint image: Podman's, CRI-O's and checkpointctl's (containerd's) sets. */
export async function checkpointAnnotations(meta: CheckpointImageMeta & { containerName: string }): Promise<Record<string, string>> {
  const host = await hostFacts();
  const podman = 'io.podman.annotations.checkpoint.';
  const crio = 'io.kubernetes.cri-o.annotations.checkpoint.';
  const criu = 'org.criu.checkpoint.';
  const out: Record<string, string> = {};
  const set = (key: string, v: string | undefined) => {
    if (v !== undefined) out[key] = v;
  };
  for (const p of [podman, crio]) {
    set(`${p}name`, meta.containerName);
    set(`${p}rawImageName`, meta.rawImageName);
    set(`${p}rootfsImageID`, meta.rootfsImageId);
    set(`${p}rootfsImageName`, meta.rootfsImageName);
    set(`${p}criu.version`, criuVersion());
  }
  set(`${podman}runtime.name`, meta.runtimeName);
  set(`${podman}runtime.version`, meta.runtimeVersion);
  set(`${podman}host.arch`, host.arch);
  set(`${podman}host.kernel`, host.kernel);
  set(`${podman}cgroups.version`, host.cgroups);
  set(`${podman}distribution.name`, host.distName);
  set(`${podman}distribution.version`, host.distVersion);
  set(`${criu}engine.name`, meta.engineName ?? 'stasis');
  set(`${criu}engine.version`, meta.engineVersion);
  set(`${criu}container.name`, meta.containerName);
  set(`${criu}container.id`, meta.containerId);
  set(`${criu}pod.name`, meta.podName);
  set(`${criu}pod.namespace`, meta.podNamespace);
  set(`${criu}rootfsImageUserRequested`, meta.rawImageName);
  set(`${criu}rawImageName`, meta.rawImageName);
  set(`${criu}rootfsImageName`, meta.rootfsImageName);
  set(`${criu}rootfsImageID`, meta.rootfsImageId);
  set(`${criu}runtime.name`, meta.runtimeName);
  set(`${criu}runtime.version`, meta.runtimeVersion);
  set(`${criu}criu.version`, criuVersion());
  set(`${criu}host.arch`, host.arch);
  set(`${criu}host.kernel`, host.kernel);
  set(`${criu}cgroup.version`, host.cgroups);
  set(`${criu}distribution.name`, host.distName);
  set(`${criu}distribution.version`, host.distVersion);
  return out;
}

/** A sink that hashes what goes through it. */
function hashSink(hash: ReturnType<typeof createHash>): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb();
    },
  });
}

/** A JSON blob written into `blobs`; its descriptor. */
async function writeJsonBlob(blobs: string, mediaType: string, value: unknown): Promise<Descriptor> {
  const data = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(path.join(blobs, hex), data, { flag: 'wx', mode: 0o644 });
  return { mediaType, digest: `sha256:${hex}`, size: data.length };
}

export interface CreateCheckpointImageOptions {
  /**
   * Move the archive into the layout instead of copying it (a temporary archive made only for
   * the image: no second copy of the checkpoint on disk). Moved back if the layout is not made.
   */
  moveArchive?: boolean;
}

/**
 * Write an OCI image layout at `layoutDir` (which must not exist, or be an empty directory)
 * holding the checkpoint archive `archivePath` as its one layer, annotated for Podman, CRI-O and
 * containerd. What `meta` leaves out is taken from the archive's config.dump. The layout is made
 * beside and renamed into place: one that exists is whole.
 */
export async function createCheckpointImage(archivePath: string, layoutDir: string, meta: CheckpointImageMeta = {},
  opts: CreateCheckpointImageOptions = {}): Promise<CheckpointImage> {
  const compression = await detectCompression(archivePath);
  const cfg = (await configDump(archivePath)) ?? {};
  const containerName = meta.containerName ?? str(cfg.name);
  if (!containerName) throw new Error(`${archivePath}: the container's name is needed (no name given and config.dump has none)`);
  const full: CheckpointImageMeta & { containerName: string } = {
    containerId: str(cfg.id),
    rawImageName: str(cfg.rawImageName) ?? str(cfg.rootfsImage),
    rootfsImageName: str(cfg.rootfsImageName),
    rootfsImageId: str(cfg.rootfsImageID) ?? str(cfg.rootfsImageRef),
    runtimeName: str(cfg.runtime) ?? str(cfg.OCIRuntime),
    ...Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined)),
    containerName,
  };
  const created = (meta.created ?? new Date()).toISOString();
  const annotations = { ...(await checkpointAnnotations(full)), [CREATED]: created, ...(meta.annotations ?? {}) };

  const target = path.resolve(layoutDir);
  const existing = await readdir(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw new Error(`${layoutDir}: ${e.code === 'ENOTDIR' ? 'exists and is not a directory' : e.message}`);
  });
  if (existing?.length) throw new Error(`${layoutDir}: exists and is not empty`);
  const tmp = `${target}.partial-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const blobs = path.join(tmp, 'blobs', 'sha256');
  /** The layer blob, once the archive has been moved there (moveArchive). */
  let moved: string | undefined;
  try {
    await mkdir(blobs, { recursive: true });
    // The layer: the archive's bytes as they are (its digest), and the tar they hold (the diff id).
    const layerHash = createHash('sha256');
    const diffHash = createHash('sha256');
    const layerTmp = path.join(blobs, '.layer.partial');
    const layerBytes = opts.moveArchive
      ? pipeline(createReadStream(archivePath), hashSink(layerHash))
      : pipeline(createReadStream(archivePath), async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          layerHash.update(c);
          yield c;
        }
      }, createWriteStream(layerTmp, { flags: 'wx', mode: 0o644 }));
    await Promise.all([
      layerBytes,
      compression === 'none' ? Promise.resolve() : pipeline(createReadStream(archivePath), decompressor(compression), hashSink(diffHash)),
    ]);
    const layerHex = layerHash.digest('hex');
    const diffId = `sha256:${compression === 'none' ? layerHex : diffHash.digest('hex')}`;
    if (opts.moveArchive) {
      moved = path.join(blobs, layerHex);
      await moveFile(archivePath, moved);
    } else {
      await rename(layerTmp, path.join(blobs, layerHex));
    }
    const layerSize = (await stat(path.join(blobs, layerHex))).size;
    const layer: Descriptor = { mediaType: LAYER_TYPE[compression], digest: `sha256:${layerHex}`, size: layerSize };

    const imageConfig = {
      created,
      architecture: ociArch(),
      os: 'linux',
      config: { Labels: annotations },
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created, created_by: `stasis: checkpoint of container ${containerName}` }],
    };
    const config = await writeJsonBlob(blobs, MEDIA_TYPE.config, imageConfig);
    const manifest: OciManifest = { schemaVersion: 2, mediaType: MEDIA_TYPE.manifest, config, layers: [layer], annotations };
    const manifestDesc = await writeJsonBlob(blobs, MEDIA_TYPE.manifest, manifest);
    const index: OciIndex = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: [{
        ...manifestDesc,
        platform: { architecture: ociArch(), os: 'linux' },
        ...(meta.tag ? { annotations: { [REF_NAME]: meta.tag } } : {}),
      }],
      annotations,
    };
    await writeFile(path.join(tmp, 'index.json'), JSON.stringify(index), { mode: 0o644 });
    await writeFile(path.join(tmp, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }), { mode: 0o644 });
    if (existing) await rmdir(target);
    await rename(tmp, target);
    return {
      layout: target, archive: path.join(target, 'blobs', 'sha256', layerHex), compression,
      layerDigest: layer.digest, layerSize, manifestDigest: manifestDesc.digest, tag: meta.tag,
      annotations, containerName, manifest, config: imageConfig,
    };
  } catch (e) {
    if (moved) await moveFile(moved, archivePath).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** rename(), or a copy and unlink across filesystems. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await copyFile(from, to, constants.COPYFILE_EXCL);
    await rm(from);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** True when `p` is a directory holding an `oci-layout` file: an OCI image layout, not an archive. */
export async function isImageLayout(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory() && (await lstat(path.join(p, 'oci-layout'))).isFile();
  } catch {
    return false;
  }
}

const MAX_JSON_BLOB = 4 << 20;

export interface ReadCheckpointImageOptions {
  /** The manifest to take, by its `org.opencontainers.image.ref.name`, when the index has several. */
  tag?: string;
  /** Check the layer's sha256 against its digest (reads it whole once); true by default. */
  verifyLayer?: boolean;
}

/**
 * The checkpoint image in the OCI image layout `layoutDir`: its annotations and the path of the
 * layer blob, which is the checkpoint archive (read it with archive.ts). Every blob read is
 * checked against its descriptor (size, sha256); a layout that is not a checkpoint image (no
 * checkpoint annotation, not exactly one layer, an unknown layer type) is refused in one line.
 */
export async function readCheckpointImage(layoutDir: string, opts: ReadCheckpointImageOptions = {}): Promise<CheckpointImage> {
  const layout = path.resolve(layoutDir);
  const fail = (reason: string): never => {
    throw new CheckpointImageError(layoutDir, reason);
  };
  /** A JSON object file of the layout (oci-layout, index.json): a regular file of sane size. */
  const json = async (file: string, what: string): Promise<Record<string, unknown>> => {
    const full = path.join(layout, file);
    const st = await lstat(full).catch((e: NodeJS.ErrnoException) => fail(`${what}: ${e.code === 'ENOENT' ? 'missing (not an OCI image layout)' : e.message}`));
    if (!st.isFile()) fail(`${what}: not a regular file`);
    if (st.size > MAX_JSON_BLOB) fail(`${what}: ${st.size} bytes, more than an image layout's ${file} ever is`);
    let v: unknown;
    try {
      v = JSON.parse((await readBlob(full, st.size, what, fail)).toString('utf8'));
    } catch (e) {
      if (e instanceof CheckpointImageError) throw e;
      return fail(`${what}: not JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${what}: not a JSON object`);
    return v as Record<string, unknown>;
  };
  const ociLayout = await json('oci-layout', 'oci-layout');
  if (ociLayout.imageLayoutVersion !== '1.0.0') fail(`oci-layout: imageLayoutVersion ${JSON.stringify(ociLayout.imageLayoutVersion)}, not "1.0.0"`);

  /** A blob's path, checked against its descriptor's digest form. */
  const blobPath = (d: Descriptor, what: string): string => {
    const m = /^sha256:([a-f0-9]{64})$/.exec(typeof d?.digest === 'string' ? d.digest : '');
    if (!m) fail(`${what}: digest ${JSON.stringify(d?.digest)} is not sha256:<64 hex digits>`);
    if (!Number.isSafeInteger(d.size) || d.size < 0) fail(`${what}: size ${JSON.stringify(d.size)} is not a byte count`);
    return path.join(layout, 'blobs', 'sha256', m![1]!);
  };
  /** A blob's bytes (small JSON blobs), checked against its descriptor. */
  const smallBlob = async (d: Descriptor, what: string): Promise<Record<string, unknown>> => {
    const file = blobPath(d, what);
    if (d.size > MAX_JSON_BLOB) fail(`${what}: ${d.size} bytes, more than a manifest or config ever is`);
    const data = await readBlob(file, d.size, what, fail);
    const hex = createHash('sha256').update(data).digest('hex');
    if (`sha256:${hex}` !== d.digest) fail(`${what}: its content's digest is sha256:${hex}, not ${d.digest}`);
    let v: unknown;
    try {
      v = JSON.parse(data.toString('utf8'));
    } catch (e) {
      return fail(`${what}: not JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${what}: not a JSON object`);
    return v as Record<string, unknown>;
  };

  const index = (await json('index.json', 'index.json')) as unknown as OciIndex;
  if (!Array.isArray(index.manifests)) fail('index.json: no manifests list');
  // Flatten nested indexes (one level, as a multi-platform image has) into manifest descriptors.
  const candidates: { desc: Descriptor; indexAnnotations: Record<string, string> }[] = [];
  for (const d of index.manifests) {
    if (d?.mediaType === MEDIA_TYPE.index || d?.mediaType === MEDIA_TYPE.dockerManifestList) {
      const inner = (await smallBlob(d, `index ${d.digest}`)) as unknown as OciIndex;
      for (const m of inner.manifests ?? []) candidates.push({ desc: { ...m, annotations: { ...(d.annotations ?? {}), ...(m.annotations ?? {}) } }, indexAnnotations: { ...(index.annotations ?? {}), ...(inner.annotations ?? {}) } });
    } else {
      candidates.push({ desc: d, indexAnnotations: index.annotations ?? {} });
    }
  }
  const manifests = candidates.filter((c) => c.desc?.mediaType === MEDIA_TYPE.manifest || c.desc?.mediaType === MEDIA_TYPE.dockerManifest);
  const tagOf = (d: Descriptor) => d.annotations?.[REF_NAME];
  let chosen = manifests;
  if (opts.tag !== undefined) {
    chosen = manifests.filter((c) => tagOf(c.desc) === opts.tag);
    if (!chosen.length) fail(`no image named "${opts.tag}" (names: ${manifests.map((c) => tagOf(c.desc) ?? '(none)').join(', ') || 'none'})`);
  }
  if (!chosen.length) fail('index.json lists no image manifest');
  const loaded = await Promise.all(chosen.map(async (c) => ({ ...c, manifest: (await smallBlob(c.desc, `manifest ${c.desc.digest}`)) as unknown as OciManifest })));
  const annotationsOf = (c: typeof loaded[number]): Record<string, string> => ({ ...c.indexAnnotations, ...(c.desc.annotations ?? {}), ...(c.manifest.annotations ?? {}) });
  const checkpoints = loaded.filter((c) => CHECKPOINT_NAME_ANNOTATIONS.some((k) => annotationsOf(c)[k] !== undefined));
  if (!checkpoints.length) fail(`not a checkpoint image (none of the annotations ${CHECKPOINT_NAME_ANNOTATIONS.join(', ')})`);
  if (checkpoints.length > 1) fail(`holds ${checkpoints.length} checkpoint images (${checkpoints.map((c) => tagOf(c.desc) ?? c.desc.digest).join(', ')}): name one`);
  const c = checkpoints[0]!;
  const annotations = annotationsOf(c);
  const manifest = c.manifest;
  if (!Array.isArray(manifest.layers) || manifest.layers.length !== 1) {
    fail(`manifest ${c.desc.digest}: ${Array.isArray(manifest.layers) ? manifest.layers.length : 'no'} layers; a checkpoint image has one`);
  }
  const config = await smallBlob(manifest.config, `config ${manifest.config?.digest}`);
  const layer = manifest.layers[0]!;
  const declared = layerCompression(layer.mediaType);
  if (!declared) fail(`layer ${layer.digest}: media type ${JSON.stringify(layer.mediaType)} is not a tar layer`);
  const archive = blobPath(layer, `layer ${layer.digest}`);
  const st = await lstat(archive).catch(() => fail(`layer ${layer.digest}: blob missing`));
  if (!st.isFile()) fail(`layer ${layer.digest}: blob is not a regular file`);
  if (st.size !== layer.size) fail(`layer ${layer.digest}: blob is ${st.size} bytes, its descriptor says ${layer.size}`);
  const actual = await detectCompression(archive).catch((e: Error) => fail(`layer ${layer.digest}: ${e.message}`));
  if (actual !== declared) fail(`layer ${layer.digest}: media type says ${declared} but the blob is ${actual}`);
  if (opts.verifyLayer !== false) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(archive), hashSink(hash));
    const hex = hash.digest('hex');
    if (`sha256:${hex}` !== layer.digest) fail(`layer ${layer.digest}: its content's digest is sha256:${hex}`);
  }
  const containerName = CHECKPOINT_NAME_ANNOTATIONS.map((k) => annotations[k]).find((v) => v !== undefined)!;
  return {
    layout, archive, compression: actual, layerDigest: layer.digest, layerSize: layer.size,
    manifestDigest: c.desc.digest, tag: tagOf(c.desc), annotations, containerName, manifest, config,
  };
}

/** A blob's `size` bytes, opened without following a link; its size must be exactly that. */
async function readBlob(file: string, size: number, what: string, fail: (reason: string) => never): Promise<Buffer> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(`${what}: blob ${code === 'ENOENT' ? 'missing' : code === 'ELOOP' ? 'is a symbolic link' : (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) fail(`${what}: blob is not a regular file`);
    if (st.size !== size) fail(`${what}: blob is ${st.size} bytes, its descriptor says ${size}`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/**
 * What `container restore --import PATH` reads: PATH itself for an archive, the layer blob for
 * an OCI image layout holding a checkpoint image.
 */
export async function checkpointArchiveOf(input: string): Promise<string> {
  if (!(await isImageLayout(input))) return input;
  return (await readCheckpointImage(input)).archive;
}
