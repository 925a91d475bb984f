// Checkpoint images (oci-spec/checkpoint-image.ts): a real dump of a counter, laid out as Podman
// exports it and packed into an archive, becomes an OCI image layout that skopeo reads, with the
// annotations Podman, CRI-O and containerd look for; read back, its layer is the archive byte for
// byte, and the process restored from it counts on. Broken and hostile layouts are refused.

import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { extractArchive, packDirectory, readMembers } from '../../oci-spec/archive.js';
import {
  CHECKPOINT_NAME_ANNOTATIONS, CheckpointImageError, MEDIA_TYPE, checkpointArchiveOf, createCheckpointImage, isImageLayout, readCheckpointImage,
} from '../../oci-spec/checkpoint-image.js';
import { COMPRESSIONS, type Compression } from '../../oci-spec/compression.js';
import { underReaper, startWorkload } from '../../test-containers/launch.js';
import { fdKey, killPid, lastTick, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

interface Dumped {
  /** The checkpoint directory in Podman's layout (config.dump, spec.dump, checkpoint/, stats-dump). */
  bundle: string;
  pid: number;
  /** The inherit-fd key of the counter's stdout. */
  key: string;
  /** The last tick it printed before the dump. */
  tick: number;
}

const NAME = 'stasis-test-counter';

/** A counter dumped (and so killed) by stasis into a directory laid out as Podman's export. */
async function dumpedInPodmanLayout(t: ExecutionContext): Promise<Dumped> {
  const bundle = tmpDir(t, 'stasis-ckimg-');
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', path.join(bundle, 'checkpoint'), '-W', bundle]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  fs.rmSync(path.join(bundle, 'dump.log'), { force: true });
  t.true(fs.existsSync(path.join(bundle, 'stats-dump')), 'the dump wrote stats-dump into its work directory');
  const now = new Date().toISOString();
  fs.writeFileSync(path.join(bundle, 'config.dump'), JSON.stringify({
    id: 'c0ffee'.repeat(10) + 'abcd', name: NAME, rootfsImageName: 'localhost/stasis-busybox:test',
    rootfsImageID: 'ab'.repeat(32), rawImageName: 'stasis-busybox:test', runtime: 'runc', createdTime: now, checkpointedTime: now,
  }));
  fs.writeFileSync(path.join(bundle, 'spec.dump'), JSON.stringify({
    ociVersion: '1.0.2', process: { args: ['counter', 'nanosleep', '20'], cwd: '/' }, root: { path: 'rootfs' },
    annotations: { 'io.container.manager': 'libpod' },
  }));
  return { bundle, pid: w.pid, key, tick: lastTick(w.lines) };
}

async function packed(t: ExecutionContext, d: Dumped, compression: Compression): Promise<string> {
  const archive = path.join(tmpDir(t, 'stasis-ckimg-ar-'), `checkpoint.tar${compression === 'none' ? '' : compression === 'gzip' ? '.gz' : '.zst'}`);
  await packDirectory(d.bundle, archive, { compression });
  return archive;
}

/** Every member of an archive: name, type, bytes (hex digest). */
async function members(archive: string): Promise<string[]> {
  const out: string[] = [];
  for await (const m of readMembers(archive, () => true)) out.push(`${m.name} ${m.type} ${m.size} ${createHash('sha256').update(m.data).digest('hex')}`);
  return out;
}

function skopeo(args: string[]): string {
  const r = spawnSync('skopeo', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`skopeo ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function sha256File(file: string): string {
  return `sha256:${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
}

test.serial('a checkpoint image layout of a real dump: skopeo reads it with the engines\' annotations, and its layer is the archive byte for byte (zstd, gzip, none)', async (t) => {
  const d = await dumpedInPodmanLayout(t);
  for (const compression of COMPRESSIONS) {
    const archive = await packed(t, d, compression);
    const layout = path.join(tmpDir(t, 'stasis-ckimg-oci-'), 'image');
    const made = await createCheckpointImage(archive, layout, { tag: 'latest' });
    t.true(await isImageLayout(layout));

    // skopeo's view: the manifest as written (--raw), the config, and the image summary.
    const raw = JSON.parse(skopeo(['inspect', '--raw', `oci:${layout}`])) as { mediaType: string; layers: { mediaType: string; digest: string; size: number }[]; annotations: Record<string, string> };
    t.is(raw.mediaType, MEDIA_TYPE.manifest);
    t.is(raw.layers.length, 1);
    t.is(raw.layers[0]!.mediaType, { zstd: MEDIA_TYPE.layerZstd, gzip: MEDIA_TYPE.layerGzip, none: MEDIA_TYPE.layer }[compression], `${compression} layer media type`);
    t.is(raw.layers[0]!.size, fs.statSync(archive).size, 'layer size is the archive\'s');
    t.is(raw.layers[0]!.digest, sha256File(archive), 'layer digest is the archive\'s sha256');
    for (const k of CHECKPOINT_NAME_ANNOTATIONS) t.is(raw.annotations[k], NAME, `manifest annotation ${k}`);
    t.is(raw.annotations['io.podman.annotations.checkpoint.rootfsImageName'], 'localhost/stasis-busybox:test');
    t.is(raw.annotations['io.kubernetes.cri-o.annotations.checkpoint.rootfsImageID'], 'ab'.repeat(32));
    t.is(raw.annotations['io.podman.annotations.checkpoint.runtime.name'], 'runc');
    t.is(raw.annotations['io.podman.annotations.checkpoint.criu.version'], '40200');
    t.is(raw.annotations['org.criu.checkpoint.engine.name'], 'stasis');
    const summary = JSON.parse(skopeo(['inspect', `oci:${layout}:latest`])) as { Digest: string; Layers: string[]; Labels: Record<string, string>; Os: string };
    t.is(summary.Digest, made.manifestDigest);
    t.deepEqual(summary.Layers, [sha256File(archive)]);
    t.is(summary.Labels['io.podman.annotations.checkpoint.name'], NAME);
    t.is(summary.Os, 'linux');
    const config = JSON.parse(skopeo(['inspect', '--config', '--raw', `oci:${layout}`])) as { rootfs: { diff_ids: string[] } };
    const tarHash = createHash('sha256');
    for await (const c of fs.createReadStream(archive).compose((await import('../../oci-spec/compression.js')).decompressor(compression))) tarHash.update(c as Buffer);
    t.deepEqual(config.rootfs.diff_ids, [`sha256:${tarHash.digest('hex')}`], 'diff id is the sha256 of the uncompressed tar');
    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { annotations: Record<string, string> };
    t.is(index.annotations['org.criu.checkpoint.container.name'], NAME, 'containerd\'s annotation on the index');

    // skopeo copies it (checking every digest on the way).
    const copy = path.join(tmpDir(t, 'stasis-ckimg-copy-'), 'dir');
    skopeo(['copy', '--quiet', `oci:${layout}`, `dir:${copy}`]);
    t.deepEqual(fs.readFileSync(path.join(copy, sha256File(archive).slice(7))), fs.readFileSync(archive), 'skopeo copied the layer unchanged');

    // Read back: the archive's members, byte for byte.
    const back = await readCheckpointImage(layout);
    t.is(back.containerName, NAME);
    t.is(back.compression, compression);
    t.is(back.tag, 'latest');
    t.deepEqual(await members(back.archive), await members(archive));
    t.true((await members(archive)).some((m) => m.startsWith('checkpoint/pages-1.img file')), 'the archive holds the dump\'s pages');
    t.is(await checkpointArchiveOf(layout), back.archive, 'restore --import of a layout reads its layer');
    t.is(await checkpointArchiveOf(archive), archive, 'restore --import of an archive reads the archive');
  }
});

test.serial('a process restored from a checkpoint image layout counts on', async (t) => {
  const d = await dumpedInPodmanLayout(t);
  const archive = await packed(t, d, 'zstd');
  const layout = path.join(tmpDir(t, 'stasis-ckimg-oci-'), 'image');
  await createCheckpointImage(archive, layout);
  fs.rmSync(archive);
  fs.rmSync(d.bundle, { recursive: true });

  const image = await readCheckpointImage(layout);
  const dest = path.join(tmpDir(t, 'stasis-ckimg-rst-'), 'bundle');
  await extractArchive(image.archive, dest);
  t.deepEqual(fs.readdirSync(dest).sort(), ['checkpoint', 'config.dump', 'spec.dump', 'stats-dump']);
  const r = await underReaper([process.execPath, stasisBin, 'restore', '-d', '-D', path.join(dest, 'checkpoint'), '--inherit-fd', `fd[1]:${d.key}`]);
  t.teardown(async () => {
    killPid(d.pid);
    await r.kill();
  });
  t.is(await r.exitOf(r.pid, 60_000), `exit ${r.pid} 0`, r.lines.join('\n'));
  await r.waitForLine(new RegExp(`^tick ${d.tick + 3}$`));
  t.false(r.lines.includes('tick 1'), 'it went on from where it was, not from the start');
});

/** A copy of a good layout, for one damage. */
async function goodLayout(t: ExecutionContext): Promise<{ layout: string; archive: string }> {
  const src = tmpDir(t, 'stasis-ckimg-bad-');
  fs.mkdirSync(path.join(src, 'checkpoint'));
  fs.writeFileSync(path.join(src, 'checkpoint', 'inventory.img'), 'not really an image');
  fs.writeFileSync(path.join(src, 'config.dump'), JSON.stringify({ name: NAME }));
  const archive = path.join(src, '..', `${path.basename(src)}.tar`);
  t.teardown(() => fs.rmSync(archive, { force: true }));
  await packDirectory(src, archive, { compression: 'none' });
  const layout = path.join(tmpDir(t, 'stasis-ckimg-oci-'), 'image');
  await createCheckpointImage(archive, layout);
  return { layout, archive };
}

function editJson(file: string, edit: (v: Record<string, any>) => void): void {
  const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, any>;
  edit(v);
  fs.writeFileSync(file, JSON.stringify(v));
}

/** Rewrite the manifest blob (and its descriptor in index.json, so that only the edit is wrong). */
function editManifest(layout: string, edit: (m: Record<string, any>) => void): void {
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const m = JSON.parse(fs.readFileSync(path.join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as Record<string, any>;
  edit(m);
  editManifestRaw(layout, Buffer.from(JSON.stringify(m)));
}

/** Replace the manifest blob by `data` (its descriptor updated to match). */
function editManifestRaw(layout: string, data: Buffer): void {
  const indexFile = path.join(layout, 'index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; size: number }[] };
  const hex = createHash('sha256').update(data).digest('hex');
  fs.writeFileSync(path.join(layout, 'blobs/sha256', hex), data);
  index.manifests[0]!.digest = `sha256:${hex}`;
  index.manifests[0]!.size = data.length;
  fs.writeFileSync(indexFile, JSON.stringify(index));
}

const layerFile = (layout: string, archive: string) => path.join(layout, 'blobs/sha256', sha256File(archive).slice(7));

const BAD: [string, (layout: string, archive: string) => void, RegExp][] = [
  ['no oci-layout file', (l) => fs.rmSync(path.join(l, 'oci-layout')), /oci-layout: missing/],
  ['an unknown layout version', (l) => fs.writeFileSync(path.join(l, 'oci-layout'), '{"imageLayoutVersion":"9"}'), /imageLayoutVersion "9"/],
  ['index.json not JSON', (l) => fs.writeFileSync(path.join(l, 'index.json'), '{'), /index\.json: not JSON/],
  ['index.json a JSON array', (l) => fs.writeFileSync(path.join(l, 'index.json'), '[]'), /index\.json: not a JSON object/],
  ['index.json a symlink', (l) => {
    fs.renameSync(path.join(l, 'index.json'), path.join(l, 'index.real'));
    fs.symlinkSync('index.real', path.join(l, 'index.json'));
  }, /index\.json: not a regular file/],
  ['a manifest that is no JSON object', (l) => editManifestRaw(l, Buffer.from('"manifest"')), /manifest sha256:[0-9a-f]{64}: not a JSON object/],
  ['a tampered layer (same size)', (l, a) => {
    const f = layerFile(l, a);
    const b = fs.readFileSync(f);
    b[600] ^= 0xff;
    fs.writeFileSync(f, b);
  }, /its content's digest is sha256:/],
  ['a layer longer than its descriptor', (l, a) => fs.appendFileSync(layerFile(l, a), 'x'), /blob is \d+ bytes, its descriptor says/],
  ['a layer blob replaced by a symlink', (l, a) => {
    const f = layerFile(l, a);
    fs.renameSync(f, `${f}.real`);
    fs.symlinkSync(`${f}.real`, f);
  }, /blob is not a regular file/],
  ['a manifest blob changed behind its digest', (l) => {
    const index = JSON.parse(fs.readFileSync(path.join(l, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const f = path.join(l, 'blobs/sha256', index.manifests[0]!.digest.slice(7));
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace(NAME, NAME.toUpperCase()));
  }, /its content's digest is/],
  ['a digest naming a path outside the layout', (l) => editJson(path.join(l, 'index.json'), (v) => { v.manifests[0].digest = 'sha256:../../../etc/passwd'; }), /is not sha256:<64 hex digits>/],
  ['no checkpoint annotation', (l) => {
    editJson(path.join(l, 'index.json'), (v) => { delete v.annotations; });
    editManifest(l, (m) => { delete m.annotations; });
  }, /not a checkpoint image/],
  ['two layers', (l) => editManifest(l, (m) => { m.layers.push(m.layers[0]); }), /2 layers; a checkpoint image has one/],
  ['a layer type that says gzip over a plain tar', (l) => editManifest(l, (m) => { m.layers[0].mediaType = MEDIA_TYPE.layerGzip; }), /media type says gzip but the blob is none/],
  ['a layer that is not a tar', (l) => editManifest(l, (m) => { m.layers[0].mediaType = 'application/octet-stream'; }), /is not a tar layer/],
];

for (const [what, damage, expected] of BAD) {
  test(`a checkpoint image layout with ${what} is refused in one line`, async (t) => {
    const { layout, archive } = await goodLayout(t);
    await readCheckpointImage(layout); // whole, it reads
    damage(layout, archive);
    const e = await t.throwsAsync(readCheckpointImage(layout));
    t.true(e instanceof CheckpointImageError || /oci-layout/.test(e!.message), `${e}`);
    t.regex(e!.message, expected);
    t.false(e!.message.includes('\n'), 'one line');
    t.true(e!.message.startsWith(`${layout}: `), 'names the layout');
  });
}

test('createCheckpointImage refuses a non-empty target and leaves nothing behind when the archive is bad', async (t) => {
  const { layout, archive } = await goodLayout(t);
  await t.throwsAsync(createCheckpointImage(archive, layout), { message: /exists and is not empty/ });
  const bad = path.join(tmpDir(t, 'stasis-ckimg-'), 'x.tar');
  fs.writeFileSync(bad, Buffer.alloc(1024));
  const target = path.join(path.dirname(bad), 'image');
  await t.throwsAsync(createCheckpointImage(bad, target), { message: /the container's name is needed/ });
  t.deepEqual(fs.readdirSync(path.dirname(bad)), ['x.tar'], 'no layout, no partial directory');
});

test('createCheckpointImage with moveArchive moves the archive into the layout as its layer', async (t) => {
  const { archive } = await goodLayout(t);
  const bytes = fs.readFileSync(archive);
  const layout = path.join(tmpDir(t, 'stasis-ckimg-oci-'), 'image');
  const made = await createCheckpointImage(archive, layout, {}, { moveArchive: true });
  t.false(fs.existsSync(archive), 'the archive is gone from where it was');
  t.deepEqual(fs.readFileSync(made.archive), bytes, 'the layer is its bytes');
  t.is((await readCheckpointImage(layout)).layerDigest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
});
