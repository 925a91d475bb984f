import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { applyTar, removePaths, treeTar } from '../../oci-spec/rootfs-tar.js';
import { tmpDir } from '../helpers/stasis.js';

/** A tar stream of the given headers (file entries get `content`). */
function tarOf(entries: (Partial<tar.Header> & { name: string; content?: string })[]): Readable {
  const pack = tar.pack();
  for (const { content, ...h } of entries) pack.entry(h, content ?? '');
  pack.finalize();
  return pack as unknown as Readable;
}

test('a tree packed and applied elsewhere keeps its files, symlinks, hard links, owners, modes and times', async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'a', 'b'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a', 'b', 'f'), 'data');
  fs.chownSync(path.join(src, 'a', 'b', 'f'), 1234, 5678);
  fs.chmodSync(path.join(src, 'a', 'b', 'f'), 0o4751); // (after chown, which clears set-user-ID)
  fs.linkSync(path.join(src, 'a', 'b', 'f'), path.join(src, 'hard'));
  fs.symlinkSync('a/b/f', path.join(src, 'link'));
  fs.chmodSync(path.join(src, 'a'), 0o710);
  const when = new Date('2020-01-02T03:04:05Z');
  fs.utimesSync(path.join(src, 'a'), when, when);
  const dest = path.join(dir, 'dest');
  fs.mkdirSync(dest);
  const tt = treeTar(src);
  await applyTar(tt.stream, dest, 'test');
  t.deepEqual(await tt.done, []);
  const f = fs.statSync(path.join(dest, 'a', 'b', 'f'));
  t.is(f.mode & 0o7777, 0o4751);
  t.is(f.uid, 1234);
  t.is(f.gid, 5678);
  t.is(fs.readFileSync(path.join(dest, 'a', 'b', 'f'), 'utf8'), 'data');
  t.is(fs.statSync(path.join(dest, 'hard')).ino, f.ino, 'hard link kept');
  t.is(fs.readlinkSync(path.join(dest, 'link')), 'a/b/f');
  const a = fs.statSync(path.join(dest, 'a'));
  t.is(a.mode & 0o7777, 0o710);
  t.is(a.mtime.getTime(), when.getTime(), 'directory time set after its contents');
});

test('applying a tar never writes outside its directory: .. and absolute names, writes through a symlink, hard links out, device nodes are each refused in one line', async (t) => {
  const dir = tmpDir(t);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  const cases: [string, (Partial<tar.Header> & { name: string; content?: string })[], RegExp][] = [
    ['..', [{ name: '../outside/x', type: 'file', content: 'x' }], /entry "\.\.\/outside\/x" leads outside the root filesystem/],
    ['absolute', [{ name: `${outside}/x`, type: 'file', content: 'x' }], /leads outside the root filesystem/],
    ['through a symlink', [{ name: 'etc', type: 'symlink', linkname: outside }, { name: 'etc/x', type: 'file', content: 'x' }],
      /entry "etc\/x": "etc" on its way is not a directory/],
    ['hard link out', [{ name: 'h', type: 'link', linkname: '../outside/y' }], /hard link target "\.\.\/outside\/y" leads outside/],
    ['device', [{ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }], /entry "dev\/sda" is a block-device/],
  ];
  fs.writeFileSync(path.join(outside, 'y'), 'y');
  for (const [what, entries, re] of cases) {
    const dest = path.join(dir, `dest-${what.replace(/\W/g, '')}`);
    fs.mkdirSync(dest);
    const e = await t.throwsAsync(applyTar(tarOf(entries), dest, 'rootfs-diff.tar'), undefined, what);
    t.regex(e!.message, re, what);
    t.false(e!.message.includes('\n'));
    t.deepEqual(fs.readdirSync(outside), ['y'], `${what}: nothing written outside`);
  }
});

test('deleted paths are removed inside the tree only, never through a symlink', async (t) => {
  const dir = tmpDir(t);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'k');
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc', 'gone'), 'g');
  fs.symlinkSync(outside, path.join(root, 'link'));
  await removePaths(root, ['/etc/gone', '/link/keep'], 'deleted.files');
  t.false(fs.existsSync(path.join(root, 'etc', 'gone')));
  t.true(fs.existsSync(path.join(outside, 'keep')), 'not removed through the symlink');
  await t.throwsAsync(removePaths(root, ['/../outside/keep'], 'deleted.files'), { message: /leads outside/ });
  t.true(fs.existsSync(path.join(outside, 'keep')));
});
