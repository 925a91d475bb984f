// A container's rootfs in an archive (rootfs.ts) on plain directories: saved whole or as a diff
// against a base, put back over the base, and a hostile rootfs-diff.tar or deleted.files refused
// without writing or removing anything outside the new rootfs. (The overlay carriage needs a
// mount: container.test.ts.)
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import tar from 'tar-stream';
import { DELETED_FILES, ROOTFS_DIFF, restoreRootfs, saveRootfs } from '../../oci-spec/rootfs.js';
import { tmpDir } from '../helpers/stasis.js';

type Entry = Partial<tar.Header> & { name: string; content?: string };

/** A tar file of the given headers (file entries get `content`). */
async function tarFile(file: string, entries: Entry[]): Promise<void> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collecting = (async () => { for await (const c of pack) chunks.push(c as Buffer); })();
  for (const { content, ...h } of entries) pack.entry(h, content ?? '');
  pack.finalize();
  await collecting;
  fs.writeFileSync(file, Buffer.concat(chunks));
}

test('a whole rootfs saved and restored keeps its files, symlinks, hard links, fifos, owners, modes and times; a device node is not carried and is reported', async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'a', 'b'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a', 'b', 'f'), 'data');
  fs.chownSync(path.join(src, 'a', 'b', 'f'), 1234, 5678);
  fs.chmodSync(path.join(src, 'a', 'b', 'f'), 0o4751); // (after chown, which clears set-user-ID)
  fs.linkSync(path.join(src, 'a', 'b', 'f'), path.join(src, 'hard'));
  fs.symlinkSync('a/b/f', path.join(src, 'link'));
  execFileSync('mkfifo', [path.join(src, 'fifo')]);
  execFileSync('mknod', [path.join(src, 'null'), 'c', '1', '3']);
  fs.chmodSync(path.join(src, 'a'), 0o710);
  const when = new Date('2020-01-02T03:04:05Z');
  fs.utimesSync(path.join(src, 'a'), when, when);
  const out = path.join(dir, 'archive');
  fs.mkdirSync(out);
  const changes = await saveRootfs(src, out);
  t.deepEqual(changes, { carriage: 'whole', deleted: [], skipped: ['null'] });
  t.false(fs.existsSync(path.join(out, DELETED_FILES)));

  const dest = path.join(dir, 'dest');
  await restoreRootfs(dest, out);
  const f = fs.statSync(path.join(dest, 'a', 'b', 'f'));
  t.deepEqual([f.mode & 0o7777, f.uid, f.gid], [0o4751, 1234, 5678]);
  t.is(fs.readFileSync(path.join(dest, 'a', 'b', 'f'), 'utf8'), 'data');
  t.is(fs.statSync(path.join(dest, 'hard')).ino, f.ino, 'hard link kept');
  t.is(fs.readlinkSync(path.join(dest, 'link')), 'a/b/f');
  t.true(fs.lstatSync(path.join(dest, 'fifo')).isFIFO());
  t.false(fs.existsSync(path.join(dest, 'null')));
  const a = fs.statSync(path.join(dest, 'a'));
  t.is(a.mode & 0o7777, 0o710);
  t.is(a.mtime.getTime(), when.getTime(), 'directory time set after its contents');
});

test('a rootfs saved as a diff against a base carries only what changed, lists what is gone, and comes back whole over a copy of the base (device nodes of the base included)', async (t) => {
  const dir = tmpDir(t);
  const base = path.join(dir, 'base');
  fs.mkdirSync(path.join(base, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(base, 'gone-dir', 'sub'), { recursive: true });
  fs.mkdirSync(path.join(base, 'dev'));
  for (const f of ['passwd', 'group', 'motd']) fs.writeFileSync(path.join(base, 'etc', f), f);
  fs.writeFileSync(path.join(base, 'gone-dir', 'sub', 'x'), 'x');
  fs.writeFileSync(path.join(base, 'big'), Buffer.alloc(256 * 1024, 7));
  fs.symlinkSync('etc/passwd', path.join(base, 'link'));
  execFileSync('mknod', [path.join(base, 'dev', 'null'), 'c', '1', '3']);
  const rootfs = path.join(dir, 'rootfs');
  execFileSync('cp', ['-a', base, rootfs]);
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'changed');
  fs.rmSync(path.join(rootfs, 'etc', 'group'));
  fs.rmSync(path.join(rootfs, 'gone-dir'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'data', 'deep'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'data', 'deep', 'new'), 'new');
  fs.rmSync(path.join(rootfs, 'link'));
  fs.symlinkSync('etc/motd', path.join(rootfs, 'link'));

  const out = path.join(dir, 'archive');
  fs.mkdirSync(out);
  const changes = await saveRootfs(rootfs, out, base);
  t.deepEqual(changes, { carriage: 'diff', deleted: ['/etc/group', '/gone-dir'], skipped: [] });
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(out, DELETED_FILES), 'utf8')), ['/etc/group', '/gone-dir']);
  const listing = execFileSync('tar', ['-tf', path.join(out, ROOTFS_DIFF)], { encoding: 'utf8' }).trim().split('\n').sort();
  t.deepEqual(listing, ['data', 'data/deep', 'data/deep/new', 'etc', 'etc/motd', 'link']);

  const dest = path.join(dir, 'dest');
  await restoreRootfs(dest, out, base);
  t.deepEqual(fs.readdirSync(dest).sort(), ['big', 'data', 'dev', 'etc', 'link']);
  t.deepEqual(fs.readdirSync(path.join(dest, 'etc')).sort(), ['motd', 'passwd']);
  t.is(fs.readFileSync(path.join(dest, 'etc', 'motd'), 'utf8'), 'changed');
  t.is(fs.readFileSync(path.join(dest, 'data', 'deep', 'new'), 'utf8'), 'new');
  t.is(fs.readlinkSync(path.join(dest, 'link')), 'etc/motd');
  t.true(fs.readFileSync(path.join(dest, 'big')).equals(fs.readFileSync(path.join(base, 'big'))));
  t.true(fs.lstatSync(path.join(dest, 'dev', 'null')).isCharacterDevice(), 'the base is the user\'s own: its devices are copied');
  t.true(fs.existsSync(path.join(base, 'etc', 'group')), 'the base is left as it was');
});

test('a hostile rootfs-diff.tar never writes outside the rootfs: .. and absolute names, writes through a symlink, hard links out, device nodes are each refused in one line', async (t) => {
  const dir = tmpDir(t);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'y'), 'y');
  const cases: [string, Entry[], RegExp][] = [
    ['..', [{ name: '../outside/x', type: 'file', content: 'x' }], /rootfs-diff\.tar: member \.\.\/outside\/x: "\.\." in its path$/],
    ['absolute', [{ name: `${outside}/x`, type: 'file', content: 'x' }], /member \/.*\/outside\/x: absolute path$/],
    ['through a symlink', [{ name: 'etc', type: 'symlink', linkname: outside }, { name: 'etc/x', type: 'file', content: 'x' }],
      /member etc\/x: etc is a symlink \(refusing to write through it\)$/],
    ['hard link out', [{ name: 'h', type: 'link', linkname: '../outside/y' }], /"\.\." in its path$/],
    ['hard link through a symlink', [{ name: 'o', type: 'symlink', linkname: outside }, { name: 'h', type: 'link', linkname: 'o/y' }],
      /member h \(a hard link to o\/y\): o is a symlink/],
    ['device', [{ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }], /member dev\/sda: a block-device \(device nodes are refused here\)$/],
  ];
  for (const [what, entries, re] of cases) {
    const from = path.join(dir, `archive-${what.replace(/\W/g, '')}`);
    fs.mkdirSync(from);
    await tarFile(path.join(from, ROOTFS_DIFF), entries);
    const e = await t.throwsAsync(restoreRootfs(path.join(dir, `dest-${what.replace(/\W/g, '')}`), from), undefined, what);
    t.regex(e!.message, re, what);
    t.false(e!.message.includes('\n'));
    t.deepEqual(fs.readdirSync(outside), ['y'], `${what}: nothing written outside`);
    t.is(fs.statSync(path.join(outside, 'y')).nlink, 1, `${what}: no link made to an outside file`);
  }
});

test('deleted.files\' paths are removed inside the rootfs only, never through a symlink; a path with .. is refused in one line', async (t) => {
  const dir = tmpDir(t);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'k');
  const base = path.join(dir, 'base');
  fs.mkdirSync(path.join(base, 'etc', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(base, 'etc', 'gone'), 'g');
  fs.writeFileSync(path.join(base, 'etc', 'sub', 'x'), 'x');
  fs.symlinkSync(outside, path.join(base, 'link'));
  const from = path.join(dir, 'archive');
  fs.mkdirSync(from);
  fs.writeFileSync(path.join(from, DELETED_FILES), JSON.stringify(['/etc/gone', '/etc/sub', '/link/keep', '/not/there']));
  const dest = path.join(dir, 'dest');
  await restoreRootfs(dest, from, base);
  t.deepEqual(fs.readdirSync(path.join(dest, 'etc')), []);
  t.is(fs.readlinkSync(path.join(dest, 'link')), outside);
  t.true(fs.existsSync(path.join(outside, 'keep')), 'not removed through the symlink');

  fs.writeFileSync(path.join(from, DELETED_FILES), JSON.stringify(['/../outside/keep']));
  const e = await t.throwsAsync(restoreRootfs(path.join(dir, 'dest2'), from, base));
  t.is(e!.message, 'deleted.files: path ../outside/keep: ".." in its path');
  t.true(fs.existsSync(path.join(outside, 'keep')));
  fs.writeFileSync(path.join(from, DELETED_FILES), '{"not": "a list"}');
  await t.throwsAsync(restoreRootfs(path.join(dir, 'dest3'), from), { message: 'deleted.files is not a JSON array of paths' });
});
