import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import {
  applyTar, applyTmpfsImage, extractArchive, isWhiteout, listMembers, packDirectory, packTree, readMembers, tmpfsImage,
} from '../../oci-spec/archive.js';
import { compressor, type Compression } from '../../oci-spec/compression.js';
import { tmpDir } from '../helpers/stasis.js';

const KINDS: Compression[] = ['zstd', 'gzip', 'none'];
const MiB = 1024 * 1024;

/** An archive built with tar-stream directly, member by member, as a hostile writer would. */
interface Raw {
  header: tar.Header | Partial<tar.Header> & { name: string };
  data?: Buffer;
}

async function tarBytes(members: Raw[], end = true): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collecting = (async () => { for await (const c of pack) chunks.push(c as Buffer); })();
  for (const m of members) {
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mtime: new Date(1e12), mode: 0o644, ...m.header }, m.data ?? Buffer.alloc(0), (e) => (e ? reject(e) : resolve()));
    });
  }
  pack.finalize();
  await collecting;
  const all = Buffer.concat(chunks);
  return end ? all : all.subarray(0, all.length - 1024);
}

async function compress(buf: Buffer, kind: Compression): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([buf]), compressor(kind), async (src: AsyncIterable<Buffer>) => { for await (const c of src) out.push(c); });
  return Buffer.concat(out);
}

async function archiveOf(t: ExecutionContext, members: Raw[], kind: Compression = 'none'): Promise<string> {
  const file = path.join(tmpDir(t), `hostile.tar${kind === 'none' ? '' : `.${kind}`}`);
  fs.writeFileSync(file, await compress(await tarBytes(members), kind));
  return file;
}

/** extractArchive refuses `archive` with one line matching `why`; nothing is left of dest. */
async function refused(t: ExecutionContext, archive: string, why: RegExp, opts = {}): Promise<string> {
  const parent = tmpDir(t);
  const dest = path.join(parent, 'bundle');
  const e = await t.throwsAsync(extractArchive(archive, dest, opts));
  t.regex(e!.message, why);
  t.false(e!.message.includes('\n'), 'one line');
  t.false(fs.existsSync(dest), 'the destination is removed whole');
  t.deepEqual(fs.readdirSync(parent), [], 'nothing made beside it');
  return e!.message;
}

/** A directory holding the usual members of a checkpoint. */
function sampleTree(t: ExecutionContext): string {
  const dir = tmpDir(t);
  fs.mkdirSync(path.join(dir, 'checkpoint', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.dump'), '{"id":"x"}');
  fs.writeFileSync(path.join(dir, 'spec.dump'), '{"ociVersion":"1.0.2"}');
  fs.writeFileSync(path.join(dir, 'checkpoint', 'inventory.img'), Buffer.from([1, 2, 3, 4]));
  fs.writeFileSync(path.join(dir, 'checkpoint', 'pages-1.img'), Buffer.alloc(300000, 0x5a));
  fs.writeFileSync(path.join(dir, 'checkpoint', 'sub', 'deep.img'), 'deep');
  fs.chmodSync(path.join(dir, 'checkpoint', 'inventory.img'), 0o600);
  fs.symlinkSync('../pre-checkpoint', path.join(dir, 'checkpoint', 'parent-missing'));
  fs.symlinkSync('sub/deep.img', path.join(dir, 'checkpoint', 'alias'));
  return dir;
}

/** Every path under dir with what it is: type, mode, size, content or target. */
function describe(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const full = path.join(dir, r);
      const st = fs.lstatSync(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out[r] = `dir ${mode}`;
        walk(r);
      } else if (st.isSymbolicLink()) {
        out[r] = `symlink -> ${fs.readlinkSync(full)}`;
      } else if (!st.isFile()) {
        out[r] = `${st.isFIFO() ? 'fifo' : 'device'} ${mode} ${st.rdev}`;
      } else {
        out[r] = `file ${mode} ${fs.readFileSync(full).toString('base64').slice(0, 40)} ${st.size}`;
      }
    }
  };
  walk('');
  return out;
}

for (const kind of KINDS) {
  test(`round trip (${kind}): a directory with files, subdirectories and symlinks is packed (pages last), read by the system's tar, and unpacked the same`, async (t) => {
    const src = sampleTree(t);
    const archive = path.join(tmpDir(t), `a.tar${kind === 'none' ? '' : `.${kind}`}`);
    await packDirectory(src, archive, { compression: kind });
    const cmd = kind === 'zstd' ? `zstd -dc ${archive} | tar -tvf -` : kind === 'gzip' ? `tar -tzvf ${archive}` : `tar -tvf ${archive}`;
    const listing = execFileSync('bash', ['-c', `set -o pipefail; ${cmd}`], { encoding: 'utf8' }).trim().split('\n');
    t.is(listing.length, 9, listing.join('\n'));
    t.regex(listing.at(-1)!, /checkpoint\/pages-1\.img$/, 'the pages last');
    t.regex(listing.join('\n'), /checkpoint\/alias -> sub\/deep\.img/);
    const members = await listMembers(archive);
    t.deepEqual(members.map((m) => m.name), listing.map((l) => l.split(/\s+/).slice(5).join(' ').replace(/ -> .*/, '').replace(/\/$/, '')));
    const dest = path.join(tmpDir(t), 'out');
    await extractArchive(archive, dest);
    t.deepEqual(describe(dest), describe(src));
    // only some members (as an import that leaves the config out)
    const some = path.join(tmpDir(t), 'some');
    await extractArchive(archive, some, { filter: (n) => !n.endsWith('.dump') && !n.startsWith('checkpoint/sub') });
    const without = describe(src);
    for (const k of ['config.dump', 'spec.dump', 'checkpoint/sub', 'checkpoint/sub/deep.img']) delete without[k];
    t.deepEqual(describe(some), without);
    const [inv] = await collect(readMembers(archive, (n) => n === 'checkpoint/inventory.img'));
    t.deepEqual(inv!.data, Buffer.from([1, 2, 3, 4]));
  });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('packDirectory refuses what a checkpoint never holds (a fifo) and leaves no archive behind', async (t) => {
  const src = sampleTree(t);
  execFileSync('mkfifo', [path.join(src, 'checkpoint', 'fifo')]);
  const out = tmpDir(t);
  const e = await t.throwsAsync(packDirectory(src, path.join(out, 'a.tar.zst'), { compression: 'zstd' }));
  t.regex(e!.message, /^cannot archive .*\/checkpoint\/fifo: not a file, directory or symlink$/);
  t.deepEqual(fs.readdirSync(out), []);
});

test('an existing destination is refused and left alone', async (t) => {
  const archive = await archiveOf(t, [{ header: { name: 'a' }, data: Buffer.from('x') }]);
  const dest = tmpDir(t);
  fs.writeFileSync(path.join(dest, 'mine'), 'keep');
  const e = await t.throwsAsync(extractArchive(archive, dest));
  t.regex(e!.message, /it exists already/);
  t.is(fs.readFileSync(path.join(dest, 'mine'), 'utf8'), 'keep');
});

// ---- hostile archives: each refused in one line, nothing outside, nothing left

test('hostile: an entry with ".." or an absolute path', async (t) => {
  const outside = tmpDir(t);
  const rel = path.relative(path.join(outside, 'x', 'bundle'), path.join(outside, 'escaped'));
  await refused(t, await archiveOf(t, [{ header: { name: 'ok' }, data: Buffer.from('1') }, { header: { name: rel }, data: Buffer.from('x') }]),
    /member [./]*\.\.\/.*escaped: "\.\." in its path$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'a/../../b' }, data: Buffer.from('x') }]), /member a\/\.\.\/\.\.\/b: "\.\." in its path$/);
  await refused(t, await archiveOf(t, [{ header: { name: path.join(outside, 'abs') }, data: Buffer.from('x') }]), /member \/.*abs: absolute path$/);
  t.deepEqual(fs.readdirSync(outside), []);
});

test('hostile: a symlink followed by an entry written through it', async (t) => {
  const outside = tmpDir(t);
  // to the outside: refused as it comes
  await refused(t, await archiveOf(t, [
    { header: { name: 'link', type: 'symlink', linkname: outside } },
    { header: { name: 'link/planted' }, data: Buffer.from('x') },
  ]), /member link: a symlink to .*, outside the directory$/);
  await refused(t, await archiveOf(t, [
    { header: { name: 'd', type: 'directory', mode: 0o755 } },
    { header: { name: 'd/up', type: 'symlink', linkname: '../../..' } },
  ]), /member d\/up: a symlink to \.\.\/\.\.\/\.\., outside the directory$/);
  // each inside by itself, outside together: d/d/.. is dest's parent
  await refused(t, await archiveOf(t, [
    { header: { name: 'd', type: 'symlink', linkname: '.' } },
    { header: { name: 'e', type: 'symlink', linkname: 'd/d/..' } },
  ]), /member e: a symlink to d\/d\/\.\., outside the directory$/);
  // inside, but written through
  await refused(t, await archiveOf(t, [
    { header: { name: 'sub', type: 'directory', mode: 0o755 } },
    { header: { name: 'in', type: 'symlink', linkname: 'sub' } },
    { header: { name: 'in/planted' }, data: Buffer.from('x') },
  ]), /member in\/planted: in is a symlink \(refusing to write through it\)$/);
  // a symlink replacing a directory, then written through: the name twice
  await refused(t, await archiveOf(t, [
    { header: { name: 'dir/f' }, data: Buffer.from('x') },
    { header: { name: 'dir', type: 'symlink', linkname: 'elsewhere' } },
  ]), /member dir: a directory made for an earlier member is in its place$/);
  t.deepEqual(fs.readdirSync(outside), []);
});

test('hostile: hard links pointing outside or at nothing the archive holds', async (t) => {
  const outside = tmpDir(t);
  fs.writeFileSync(path.join(outside, 'secret'), 'secret');
  await refused(t, await archiveOf(t, [{ header: { name: 'h', type: 'link', linkname: path.join(outside, 'secret') } }]),
    /member .*secret: absolute path$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'h', type: 'link', linkname: '../../../../../../../../etc/passwd' } }]),
    /member .*etc\/passwd: "\.\." in its path$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'h', type: 'link', linkname: 'later' } }, { header: { name: 'later' }, data: Buffer.from('x') }]),
    /member h: a hard link to later, which is not an earlier regular file of the archive$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'd', type: 'directory' } }, { header: { name: 'h', type: 'link', linkname: 'd' } }]),
    /member h: a hard link to d, which is not an earlier regular file of the archive$/);
  t.is(fs.statSync(path.join(outside, 'secret')).nlink, 1, 'no link was made to the outside file');
});

test('hostile: device nodes, fifos and setuid/setgid files', async (t) => {
  await refused(t, await archiveOf(t, [{ header: { name: 'null', type: 'character-device', devmajor: 1, devminor: 3 } }]),
    /member null: a character-device, which a checkpoint archive never holds$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 } }]),
    /member sda: a block-device, which a checkpoint archive never holds$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'p', type: 'fifo' } }]), /member p: a fifo, which a checkpoint archive never holds$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'su', mode: 0o4755 }, data: Buffer.from('#!/bin/sh\n') }]),
    /member su: setuid\/setgid file \(mode 4755\)$/);
  await refused(t, await archiveOf(t, [{ header: { name: 'sg', mode: 0o2755 }, data: Buffer.from('x') }]),
    /member sg: setuid\/setgid file \(mode 2755\)$/);
});

test('hostile: duplicate entries', async (t) => {
  await refused(t, await archiveOf(t, [
    { header: { name: 'config.dump' }, data: Buffer.from('{"a":1}') },
    { header: { name: 'x' }, data: Buffer.from('1') },
    { header: { name: './config.dump' }, data: Buffer.from('{"a":2}') },
  ]), /member \.\/config\.dump: appears twice in the archive$/);
  await refused(t, await archiveOf(t, [
    { header: { name: 'd', type: 'directory' } },
    { header: { name: 'd/', type: 'directory' } },
  ]), /member d\/?: appears twice in the archive$/);
});

for (const kind of KINDS) {
  test(`hostile: a truncated archive (${kind})`, async (t) => {
    const whole = await compress(await tarBytes([
      { header: { name: 'a' }, data: Buffer.from('first') },
      { header: { name: 'big' }, data: Buffer.from(Array.from({ length: 200000 }, (_, i) => (i * 7919) % 251)) },
    ]), kind);
    const file = path.join(tmpDir(t), 'cut');
    fs.writeFileSync(file, whole.subarray(0, Math.floor(whole.length / 2)));
    await refused(t, file, /truncated/);
    if (kind === 'none') {
      // cut exactly after a member: no end-of-archive block
      const boundary = await tarBytes([{ header: { name: 'a' }, data: Buffer.from('first') }], false);
      fs.writeFileSync(file, boundary);
      await refused(t, file, /truncated after member a \(no end-of-archive block\)$/);
    } else {
      fs.writeFileSync(file, await compress(await tarBytes([{ header: { name: 'a' }, data: Buffer.from('first') }], false), kind));
      await refused(t, file, /truncated after member a \(no end-of-archive block\)$/);
    }
  });
}

for (const kind of KINDS) {
  test(`hostile: a member larger than its header says, and a corrupt header (${kind})`, async (t) => {
    const plain = await tarBytes([{ header: { name: 'small' }, data: Buffer.from('0123456789') }, { header: { name: 'next' }, data: Buffer.from('n') }]);
    // 600 bytes more of "small" than its header's 10: what follows is no header
    const longer = Buffer.concat([plain.subarray(0, 512 + 10), Buffer.alloc(600, 0x41), plain.subarray(512 + 10)]);
    const file = path.join(tmpDir(t), 'a');
    fs.writeFileSync(file, await compress(longer, kind));
    await refused(t, file, /corrupt tar header after member small \(a member larger than its header says/);
    const damaged = Buffer.from(plain);
    damaged[1024 + 3] ^= 0x20; // a byte of the second header's name: the checksum no longer holds
    fs.writeFileSync(file, await compress(damaged, kind));
    await refused(t, file, /corrupt tar header after member small/);
  });
}

test('hostile: a decompression bomb is stopped by maxBytes before a byte is written, and by the ratio on its way', async (t) => {
  const archive = await archiveOf(t, [{ header: { name: 'ok' }, data: Buffer.from('x') }, { header: { name: 'bomb' }, data: Buffer.alloc(4 * MiB) }], 'gzip');
  await refused(t, archive, /member bomb: its 4194304 bytes would take the unpacked total past 1048576 bytes \(maxBytes/, { maxBytes: MiB });
  // 300 MiB of zeros in a few hundred KiB of zstd: past the 256 MiB floor, far above 1000:1
  const file = path.join(tmpDir(t), 'bomb.tar.zst');
  const pack = tar.pack();
  const writing = pipeline(pack, compressor('zstd'), fs.createWriteStream(file));
  const entry = pack.entry({ name: 'pages-1.img', size: 300 * MiB });
  const zeros = Buffer.alloc(MiB);
  await pipeline(Readable.from((function* () { for (let i = 0; i < 300; i++) yield zeros; })()), entry);
  pack.finalize();
  await writing;
  t.true(fs.statSync(file).size < 2 * MiB, `${fs.statSync(file).size} bytes`);
  await refused(t, file, /member pages-1\.img: a decompression bomb\? \d+ bytes unpacked from \d+ read \(more than 1000:1, maxRatio\)$/);
});

test('the default byte limit is the free space where the archive is unpacked', async (t) => {
  const mnt = tmpDir(t, 'stasis-small-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'stasis-test-archive', mnt]);
  t.teardown(() => execFileSync('umount', [mnt]));
  const archive = await archiveOf(t, [{ header: { name: 'big' }, data: Buffer.alloc(3 * MiB, 1) }], 'zstd');
  const e = await t.throwsAsync(extractArchive(archive, path.join(mnt, 'bundle')));
  t.regex(e!.message, /member big: its 3145728 bytes would take the unpacked total past \d+ bytes \(maxBytes, by default the free space/);
  t.deepEqual(fs.readdirSync(mnt), []);
});

// ---- only the members needed are read

test.serial('reading the metadata of an archive with 1 GiB of pages reads a few KiB of the file, whatever its compression; an uncompressed one is listed by seeking past the pages', async (t) => {
  t.timeout(5 * 60 * 1000);
  const src = tmpDir(t);
  fs.mkdirSync(path.join(src, 'checkpoint'));
  fs.writeFileSync(path.join(src, 'config.dump'), '{"id":"big"}');
  fs.writeFileSync(path.join(src, 'checkpoint', 'inventory.img'), 'inv');
  fs.writeFileSync(path.join(src, 'checkpoint', 'pages-1.img'), '');
  fs.truncateSync(path.join(src, 'checkpoint', 'pages-1.img'), 1024 * MiB); // sparse: zeros
  fs.writeFileSync(path.join(src, 'checkpoint', 'pstree.img'), 'pstree');
  const out = tmpDir(t);
  for (const kind of KINDS) {
    const archive = path.join(out, `big-${kind}`);
    await packDirectory(src, archive, { compression: kind });
    const size = fs.statSync(archive).size;
    const counter = { bytes: 0 };
    fs.writeFileSync('/proc/self/clear_refs', '5'); // the peak RSS starts again from now
    const rssBefore = peakRss();
    const rcharBefore = rchar();
    let found: string | undefined;
    for await (const m of readMembers(archive, (n) => n === 'checkpoint/pstree.img', { counter })) {
      found = m.data.toString();
      break;
    }
    const rcharRead = rchar() - rcharBefore;
    t.is(found, 'pstree', kind);
    t.true(counter.bytes < 512 * 1024, `${kind}: ${counter.bytes} bytes read of ${size}`);
    t.true(rcharRead < 4 * MiB, `${kind}: the process read ${rcharRead} bytes`);
    t.true(peakRss() - rssBefore < 64 * MiB, `${kind}: the peak RSS grew by ${peakRss() - rssBefore} bytes`);
    if (kind === 'none') {
      t.true(size > 1024 * MiB);
      const all = { bytes: 0 };
      const members = await listMembers(archive, { counter: all });
      t.deepEqual(members.map((m) => m.name), ['checkpoint', 'checkpoint/inventory.img', 'checkpoint/pstree.img', 'config.dump', 'checkpoint/pages-1.img']);
      t.true(all.bytes < 64 * 1024, `listing read ${all.bytes} bytes`);
    }
    fs.rmSync(archive);
  }
});

function peakRss(): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
}

function rchar(): number {
  return Number(/rchar: (\d+)/.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

// ---- applyTar: trees with symlinks and hard links onto an existing root

async function tarFile(t: ExecutionContext, members: Raw[]): Promise<string> {
  const file = path.join(tmpDir(t), 'tree.tar');
  fs.writeFileSync(file, await tarBytes(members));
  return file;
}

test('applyTar: a symlink to /etc made by the tar is never written through (x/passwd does not reach the host\'s /etc)', async (t) => {
  const root = tmpDir(t);
  const probe = `stasis-test-${process.pid}-${Date.now()}`;
  t.teardown(() => fs.rmSync(path.join('/etc', probe), { force: true }));
  const file = await tarFile(t, [
    { header: { name: 'x', type: 'symlink', linkname: '/etc' } },
    { header: { name: `x/${probe}` }, data: Buffer.from('owned') },
  ]);
  const e = await t.throwsAsync(applyTar(file, root));
  t.regex(e!.message, new RegExp(`member x/${probe}: x is a symlink \\(refusing to write through it\\)$`));
  t.false(fs.existsSync(path.join('/etc', probe)));
  t.is(fs.readlinkSync(path.join(root, 'x')), '/etc', 'the symlink itself is made');
});

test('applyTar: a symlink the root already holds is not written through either, nor are hard links made to outside files', async (t) => {
  const root = tmpDir(t);
  const outside = tmpDir(t);
  fs.writeFileSync(path.join(outside, 'secret'), 'secret');
  fs.symlinkSync(outside, path.join(root, 'lib'));
  const e1 = await t.throwsAsync(applyTar(await tarFile(t, [{ header: { name: 'lib/planted' }, data: Buffer.from('x') }]), root));
  t.regex(e1!.message, /member lib\/planted: lib is a symlink \(refusing to write through it\)$/);
  const e2 = await t.throwsAsync(applyTar(await tarFile(t, [{ header: { name: 'h', type: 'link', linkname: 'lib/secret' } }]), root));
  t.regex(e2!.message, /member h \(a hard link to lib\/secret\): lib is a symlink/);
  const e3 = await t.throwsAsync(applyTar(await tarFile(t, [{ header: { name: 'h', type: 'link', linkname: path.join(outside, 'secret') } }]), root));
  t.regex(e3!.message, /absolute path$/);
  const e4 = await t.throwsAsync(applyTar(await tarFile(t, [{ header: { name: 'h', type: 'link', linkname: '../secret' } }]), root));
  t.regex(e4!.message, /"\.\." in its path$/);
  t.deepEqual(fs.readdirSync(outside), ['secret']);
  t.is(fs.statSync(path.join(outside, 'secret')).nlink, 1);
  t.deepEqual(fs.readdirSync(root), ['lib']);
});

test('applyTar: existing entries are replaced, never written into (a hard link or symlink the root had to an outside file keeps that file as it was); modes, owners and times as in the tar', async (t) => {
  const root = tmpDir(t);
  const outside = tmpDir(t);
  fs.writeFileSync(path.join(outside, 'shared'), 'outside');
  fs.linkSync(path.join(outside, 'shared'), path.join(root, 'a'));
  fs.writeFileSync(path.join(outside, 'target'), 'outside');
  fs.symlinkSync(path.join(outside, 'target'), path.join(root, 'b'));
  fs.mkdirSync(path.join(root, 'wasdir', 'inner'), { recursive: true });
  fs.writeFileSync(path.join(root, 'keep'), 'kept');
  const mtime = new Date('2024-05-06T07:08:09Z');
  const file = await tarFile(t, [
    { header: { name: 'a', uid: 1234, gid: 5678, mode: 0o4755, mtime }, data: Buffer.from('new a') },
    { header: { name: 'b', mode: 0o640, mtime }, data: Buffer.from('new b') },
    { header: { name: 'wasdir', type: 'symlink', linkname: '/etc', mtime } },
    { header: { name: 'd', type: 'directory', mode: 0o1777, uid: 42, gid: 43, mtime } },
    { header: { name: 'd/hl', type: 'link', linkname: 'keep' } },
    { header: { name: 'd/f' }, data: Buffer.from('f') },
  ]);
  const r = await applyTar(file, root);
  t.deepEqual(r, { members: 6, bytes: 11 });
  t.is(fs.readFileSync(path.join(outside, 'shared'), 'utf8'), 'outside');
  t.is(fs.readFileSync(path.join(outside, 'target'), 'utf8'), 'outside');
  const a = fs.lstatSync(path.join(root, 'a'));
  t.is(fs.readFileSync(path.join(root, 'a'), 'utf8'), 'new a');
  t.deepEqual([a.mode & 0o7777, a.uid, a.gid, a.nlink, a.mtime.getTime()], [0o4755, 1234, 5678, 1, mtime.getTime()]);
  t.true(fs.lstatSync(path.join(root, 'b')).isFile());
  t.is(fs.readlinkSync(path.join(root, 'wasdir')), '/etc');
  const d = fs.lstatSync(path.join(root, 'd'));
  t.deepEqual([d.mode & 0o7777, d.uid, d.gid, d.mtime.getTime()], [0o1777, 42, 43, mtime.getTime()]);
  t.is(fs.statSync(path.join(root, 'd', 'hl')).ino, fs.statSync(path.join(root, 'keep')).ino, 'a hard link to a file inside the root');
});

test('applyTar: device nodes only when asked', async (t) => {
  const members: Raw[] = [{ header: { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 } }];
  const e = await t.throwsAsync(applyTar(await tarFile(t, members), tmpDir(t)));
  t.regex(e!.message, /member null: a character-device \(device nodes are refused here\)$/);
  const root = tmpDir(t);
  await applyTar(await tarFile(t, members), root, { devices: true });
  const st = fs.lstatSync(path.join(root, 'null'));
  t.true(st.isCharacterDevice());
  t.is(st.rdev, fs.statSync('/dev/null').rdev);
  t.is(st.mode & 0o777, 0o666);
});

test('packTree → applyTar: symlinks, hard links, fifos and owners come back; overlay whiteouts are left out and reported; the system tar reads the tar', async (t) => {
  const src = tmpDir(t);
  fs.mkdirSync(path.join(src, 'etc'));
  fs.writeFileSync(path.join(src, 'etc', 'conf'), 'conf');
  fs.linkSync(path.join(src, 'etc', 'conf'), path.join(src, 'conf-link'));
  fs.symlinkSync('/etc/passwd', path.join(src, 'abs'));
  fs.symlinkSync('etc/conf', path.join(src, 'rel'));
  execFileSync('mkfifo', [path.join(src, 'fifo')]);
  execFileSync('mknod', [path.join(src, 'etc', 'gone'), 'c', '0', '0']); // a whiteout
  fs.chownSync(path.join(src, 'etc', 'conf'), 1000, 1001);
  const out = path.join(tmpDir(t), 'rootfs-diff.tar');
  const whiteouts: string[] = [];
  const r = await packTree(src, out, { filter: (rel, st) => (isWhiteout(st) ? (whiteouts.push(rel), false) : true) });
  t.deepEqual(whiteouts, ['etc/gone']);
  t.deepEqual(r.skipped, ['etc/gone']);
  const listing = execFileSync('tar', ['-tvf', out], { encoding: 'utf8' });
  t.regex(listing, /^hrw-r--r-- 0\/0 .* etc\/conf link to conf-link$|^hrw-r--r-- 1000\/1001 .* etc\/conf link to conf-link$/m);
  t.regex(listing, /abs -> \/etc\/passwd/);
  t.notRegex(listing, /gone/);
  const root = tmpDir(t);
  await applyTar(out, root);
  t.is(fs.statSync(path.join(root, 'etc', 'conf')).ino, fs.statSync(path.join(root, 'conf-link')).ino);
  t.is(fs.readlinkSync(path.join(root, 'abs')), '/etc/passwd');
  t.is(fs.readlinkSync(path.join(root, 'rel')), 'etc/conf');
  t.true(fs.lstatSync(path.join(root, 'fifo')).isFIFO());
  t.is(fs.statSync(path.join(root, 'etc', 'conf')).uid, 1000);
  t.false(fs.existsSync(path.join(root, 'etc', 'gone')));
  // a stream works as well as a file
  const root2 = tmpDir(t);
  await applyTar(fs.createReadStream(out), root2);
  t.deepEqual(describe(root2), describe(root));
});

// ---- tmpfs images of a dump

test('a tmpfs image is a gzip\'d tar GNU tar reads (names ./…, what is mounted below left out) and comes back whole, devices and links included; one GNU tar made comes back too', async (t) => {
  const src = tmpDir(t);
  fs.mkdirSync(path.join(src, 'shm'));
  fs.writeFileSync(path.join(src, 'shm', 'seg'), Buffer.alloc(70000, 3));
  fs.linkSync(path.join(src, 'shm', 'seg'), path.join(src, 'seg-link'));
  fs.symlinkSync('/proc/self/fd', path.join(src, 'fd'));
  execFileSync('mknod', ['-m', '666', path.join(src, 'null'), 'c', '1', '3']);
  fs.mkdirSync(path.join(src, 'pts'));
  execFileSync('mount', ['-t', 'tmpfs', 'stasis-test-below', path.join(src, 'pts')]);
  t.teardown(() => execFileSync('umount', [path.join(src, 'pts')]));
  fs.writeFileSync(path.join(src, 'pts', 'hidden'), 'not ours');
  fs.chmodSync(src, 0o1777);
  const img = path.join(tmpDir(t), 'tmpfs-dev-1.tar.gz.img');
  fs.writeFileSync(img, tmpfsImage(src));
  const listing = execFileSync('tar', ['-tzvf', img], { encoding: 'utf8' });
  t.regex(listing, /^drwxrwxrwt 0\/0 .* \.\/$/m);
  t.regex(listing, /^crw-rw-rw- 0\/0 +1,3 .* \.\/null$/m);
  t.regex(listing, / \.\/shm\/seg link to \.\/seg-link$/m);
  t.regex(listing, / \.\/pts\/?$/m);
  t.notRegex(listing, /hidden/);
  // GNU tar unpacks it as criu's restore does
  const byTar = tmpDir(t);
  execFileSync('tar', ['--extract', '--gzip', '--numeric-owner', '--preserve-permissions', '--file', img, '--directory', byTar]);
  const back = tmpDir(t);
  applyTmpfsImage(img, back);
  t.deepEqual(describe(back), describe(byTar));
  t.is(fs.lstatSync(back).mode & 0o7777, 0o1777, 'the root\'s mode');
  t.is(fs.lstatSync(path.join(back, 'null')).rdev, fs.statSync('/dev/null').rdev);
  t.is(fs.statSync(path.join(back, 'seg-link')).ino, fs.statSync(path.join(back, 'shm', 'seg')).ino);
  // an image GNU tar made (as criu 4.2 does)
  const gnu = path.join(tmpDir(t), 'gnu.tar.gz.img');
  execFileSync('tar', ['--create', '--gzip', '--numeric-owner', '--one-file-system', '--file', gnu, '--directory', src, '.']);
  const back2 = tmpDir(t);
  applyTmpfsImage(gnu, back2);
  t.deepEqual(describe(back2), describe(byTar));
  // garbage: one line naming the image
  fs.writeFileSync(gnu, 'not a tar file');
  t.throws(() => applyTmpfsImage(gnu, tmpDir(t)), { message: /gnu\.tar\.gz\.img: incorrect header check$/ });
});

test('a tmpfs image GNU tar made with --sparse (criu\'s) comes back with its data where it was and its holes as holes', async (t) => {
  const src = tmpDir(t);
  const one = path.join(src, 'one');
  const many = path.join(src, 'many');
  const fill = (f: string, at: number, n: number, byte: number) => {
    const fd = fs.openSync(f, fs.existsSync(f) ? 'r+' : 'w');
    fs.writeSync(fd, Buffer.alloc(n, byte), 0, n, at);
    fs.closeSync(fd);
  };
  fill(one, 40 * MiB, 5000, 1);
  fs.truncateSync(one, 64 * MiB + 3);
  // 60 pieces: the map goes on in extension blocks after the header
  for (let i = 0; i < 60; i++) fill(many, i * 65536, 100 + i, i + 1);
  fs.truncateSync(many, 60 * 65536 + 7);
  const img = path.join(tmpDir(t), 'tmpfs-dev-2.tar.gz.img');
  execFileSync('tar', ['--create', '--gzip', '--sparse', '--numeric-owner', '--file', img, '--directory', src, '.']);
  t.true(fs.statSync(img).size < MiB);
  const back = tmpDir(t);
  applyTmpfsImage(img, back);
  for (const f of ['one', 'many']) {
    t.true(fs.readFileSync(path.join(back, f)).equals(fs.readFileSync(path.join(src, f))), f);
    t.true(fs.statSync(path.join(back, f)).blocks * 512 < MiB, `${f}: holes kept`);
  }
});

test('tmpfsImage stores files with holes sparse (GNU pax sparse 1.0): GNU tar and applyTmpfsImage both give them back with their holes; a big tree is gzip\'d in several members GNU tar reads as one', async (t) => {
  const src = tmpDir(t);
  const fill = (f: string, at: number, data: Buffer) => {
    const fd = fs.openSync(f, fs.existsSync(f) ? 'r+' : 'w');
    fs.writeSync(fd, data, 0, data.length, at);
    fs.closeSync(fd);
  };
  fill(path.join(src, 'middle'), 40 * MiB, Buffer.alloc(5000, 1));
  fs.truncateSync(path.join(src, 'middle'), 64 * MiB + 3); // a hole at the end too
  for (let i = 0; i < 60; i++) fill(path.join(src, 'many'), i * 65536, Buffer.alloc(100 + i, i + 1));
  fs.writeFileSync(path.join(src, 'zeros'), '');
  fs.truncateSync(path.join(src, 'zeros'), 5 * MiB);
  // 20 MiB that do not compress: more than one gzip member
  fs.writeFileSync(path.join(src, 'random'), randomBytes(20 * MiB));
  const img = path.join(tmpDir(t), 'tmpfs-dev-3.tar.gz.img');
  fs.writeFileSync(img, tmpfsImage(src));
  const members = Number(execFileSync('python3', ['-c', [
    'import sys, zlib', 'b = open(sys.argv[1], "rb").read()', 'n = 0', 'while b:',
    '  d = zlib.decompressobj(31); d.decompress(b); b = d.unused_data; n += 1', 'print(n)',
  ].join('\n'), img], { encoding: 'utf8' }));
  t.is(members, 2, 'gzip members');
  t.true(fs.statSync(img).size < 22 * MiB, `${fs.statSync(img).size} bytes`);
  const byTar = tmpDir(t);
  execFileSync('tar', ['--extract', '--gzip', '--numeric-owner', '--preserve-permissions', '--file', img, '--directory', byTar]);
  const back = tmpDir(t);
  applyTmpfsImage(img, back);
  for (const f of ['middle', 'many', 'zeros', 'random']) {
    const want = fs.readFileSync(path.join(src, f));
    for (const [who, dir] of [['GNU tar', byTar], ['applyTmpfsImage', back]] as const) {
      t.true(fs.readFileSync(path.join(dir, f)).equals(want), `${who}: ${f}`);
      if (f !== 'random') t.true(fs.statSync(path.join(dir, f)).blocks * 512 < MiB, `${who}: ${f} keeps its holes`);
    }
  }
});
