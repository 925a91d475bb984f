// The Node API (api.ts, package.json `exports`) used as a user's project uses it: stasis packed
// with `npm pack`, unpacked into the project's node_modules, imported by its name. An ES module
// script dumps a counter, reads its images, restores it, and the counter counts on; its errors
// are typed; and TypeScript type-checks a user's file against the package's declarations.

import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload, underReaper } from '../../test-containers/launch.js';
import { repoRoot } from '../helpers/paths.js';
import { fdKey, killPid, lastTick, tmpDir } from '../helpers/stasis.js';

/**
 * A user's project with stasis installed from its `npm pack` tarball (the build is in the
 * tarball: no install scripts run), its dependencies being this repository's, and @types/node.
 */
function userProject(t: ExecutionContext): string {
  const dir = tmpDir(t, 'stasis-api-user-');
  const packed = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repoRoot, encoding: 'utf8' });
  if (packed.status !== 0) throw new Error(`npm pack: ${packed.stderr}`);
  const tarball = path.join(dir, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(path.join(modules, 'stasis'), { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', path.join(modules, 'stasis'), '--strip-components=1']);
  for (const e of fs.readdirSync(path.join(repoRoot, 'node_modules'))) {
    if (e.startsWith('.') || e === '@types') continue;
    fs.symlinkSync(path.join(repoRoot, 'node_modules', e), path.join(modules, e));
  }
  fs.mkdirSync(path.join(modules, '@types'));
  fs.symlinkSync(path.join(repoRoot, 'node_modules/@types/node'), path.join(modules, '@types/node'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module', dependencies: { stasis: '0.1.0' } }));
  return dir;
}

const USER_SCRIPT = `
import fs from 'node:fs';
import { dump, restore, openImages, StasisError } from 'stasis';

const [pid, key, dir] = process.argv.slice(2);
const d = await dump({ pid: Number(pid), imagesDir: dir, notify: { postDump() { console.log('post-dump'); } } });
console.log(\`dumped \${d.pid} processes \${d.processes} pages \${d.stats.pages_written}\`);
const images = await openImages(dir);
console.log(\`pstree \${(await images.messages('pstree.img'))[0].pid}\`);
// The dump killed it; its PID is free again once its parent has reaped it.
while (fs.existsSync(\`/proc/\${pid}\`)) await new Promise((r) => setTimeout(r, 10));
const r = await restore({
  imagesDir: dir, inheritFd: [{ key, fd: 1 }], rstSibling: true,
  notify: { postRestore(p) { console.log(\`post-restore \${p}\`); } },
});
console.log(\`restored \${r.pid}\`);
const bad = [
  () => dump({ pid: 4194305, imagesDir: dir + '-never' }),
  () => restore({ imagesDir: '/nonexistent-stasis-images' }),
  () => dump({ pid: 1, imagesDir: dir, lazyPages: true }),
];
for (const call of bad) {
  try {
    await call();
    console.log('no error');
  } catch (e) {
    console.log(\`error \${e instanceof StasisError} \${e.constructor.name}: \${e.message}\`);
  }
}
`;

test.serial('a user\'s project imports stasis by name: dumps a counter, reads its images, restores it, and it counts on; errors are typed', async (t) => {
  const project = userProject(t);
  fs.writeFileSync(path.join(project, 'user.mjs'), USER_SCRIPT);
  const images = path.join(tmpDir(t, 'stasis-api-img-'), 'images');

  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);
  // The script runs under a reaper of its own: the restored counter (rstSibling) becomes the
  // reaper's child and writes into its pipe, which the script hands it as its stdout.
  const u = await underReaper([process.execPath, path.join(project, 'user.mjs'), String(w.pid), key, images]);
  t.teardown(async () => {
    killPid(w.pid);
    await u.kill();
  });
  t.is(await u.exitOf(u.pid, 60_000), `exit ${u.pid} 0`, u.lines.join('\n'));
  const before = lastTick(w.lines);
  t.true(u.lines.includes('post-dump'), 'notify.postDump was called');
  t.regex(u.lines.find((l) => l.startsWith('dumped ')) ?? '', new RegExp(`^dumped ${w.pid} processes 1 pages [1-9]\\d*$`));
  t.true(u.lines.includes(`pstree ${w.pid}`), 'openImages read pstree.img');
  t.true(u.lines.includes(`post-restore ${w.pid}`), 'notify.postRestore got the PID');
  t.true(u.lines.includes(`restored ${w.pid}`));
  await u.waitForLine(new RegExp(`^tick ${before + 3}$`));
  t.false(u.lines.includes('tick 1'), 'the restored counter went on from where it was');

  const errors = u.lines.filter((l) => l.startsWith('error ') || l === 'no error');
  t.is(errors.length, 3, errors.join('\n'));
  t.is(errors[0], 'error true DumpError: dump of 4194305: process 4194305 does not exist');
  t.regex(errors[1]!, /^error true RestoreError: \/nonexistent-stasis-images: /);
  t.regex(errors[2]!, /^error true UsageError: dump: unknown option 'lazyPages'/);
});

const GOOD_TS = `
import {
  dump, restore, openImages, readCheckpointImage, createCheckpointImage, StasisError, SysError, DumpError, ImageError,
  type DumpOptions, type RestoreResult, type CheckpointImage, type Notify,
} from 'stasis';

export async function cycle(pid: number, dir: string): Promise<number> {
  const notify: Notify = { postDump: () => undefined, postRestore: (p: number) => void p };
  const opts: DumpOptions = { pid, imagesDir: dir, leaveRunning: true, extMnt: [{ key: '/a', val: '/b' }], external: ['net[4026531840]:extNet'], notify };
  const d = await dump(opts);
  const pages: number = d.stats.pages_written;
  const r: RestoreResult = await restore({
    imagesDir: dir, inheritFd: [{ key: 'pipe:[1]', fd: 1 }], joinNs: [{ ns: 'uts', nsFile: '1' }], cgRoot: [{ path: '/x' }], rstSibling: true,
  });
  const images = await openImages(dir);
  const inventory = await images.inventory();
  const made: CheckpointImage = await createCheckpointImage('/a.tar.zst', '/image', { containerName: 'c', tag: 'latest' });
  const read = await readCheckpointImage(made.layout, { tag: 'latest' });
  const name: string = read.annotations['org.criu.checkpoint.container.name'] ?? read.containerName;
  try {
    await dump({ pid: 1, imagesDir: dir });
  } catch (e) {
    if (e instanceof SysError) return e.errno;
    if (e instanceof DumpError) return e.pid;
    if (e instanceof ImageError) return e.offset;
    if (e instanceof StasisError) return e.message.length;
  }
  return r.pid + pages + Object.keys(inventory).length + name.length;
}
`;

const BAD_TS = `
import { dump, restore } from 'stasis';
await dump({ pid: '1', imagesDir: '/x' });
await restore({ imagesDir: '/x', inheritFd: [{ key: 1, fd: 1 }] });
await dump({ pid: 1, imagesDir: '/x', lazyPages: true });
await restore({ imagesDir: '/x', joinNs: [{ ns: 'pid', nsFile: '1' }] });
`;

test('a user\'s TypeScript file type-checks against the package\'s declarations, and misuse does not', (t) => {
  const project = userProject(t);
  const tsconfig = {
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
  };
  const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
  const check = (file: string, text: string) => {
    fs.writeFileSync(path.join(project, file), text);
    fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: [file] }));
    return spawnSync(process.execPath, [tsc, '-p', project], { cwd: project, encoding: 'utf8' });
  };
  const good = check('good.ts', GOOD_TS);
  t.is(good.status, 0, good.stdout);
  const bad = check('bad.ts', BAD_TS);
  t.not(bad.status, 0);
  const errors = bad.stdout.split('\n').filter((l) => /^bad\.ts\(\d+,\d+\): error/.test(l)).map((l) => /^bad\.ts\((\d+),/.exec(l)![1]);
  t.deepEqual(errors, ['3', '4', '5', '6'], `one type error on each line of misuse:\n${bad.stdout}`);
});
