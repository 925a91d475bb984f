// `stasis show` must print what CRIU 4.2's `crit decode --pretty` printed.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { showImageFile, showCommand } from '../../images/show.js';
import { repoRoot } from '../helpers/paths.js';
import { label, protobufFixtures, setDir, type FixtureFile } from './fixture-images.js';

const run = promisify(execFile);
const stasis = path.join(repoRoot, 'bin/stasis');

/** Parsed JSON with the line breaks of base64 text taken out. */
function normalized(text: string): unknown {
  return JSON.parse(text, (_key, value) => (typeof value === 'string' ? value.replace(/\n/g, '') : value));
}

function withCritJson(): (FixtureFile & { critJson: string })[] {
  return protobufFixtures().filter((f): f is FixtureFile & { critJson: string } => f.critJson !== undefined);
}

test('show of every fixture image equals crit JSON', async (t) => {
  const files = withCritJson();
  t.true(files.length >= 70);
  for (const f of files) {
    const ours = await showImageFile(f.path);
    t.deepEqual(normalized(ours), normalized(fs.readFileSync(f.critJson, 'utf8')), label(f));
  }
});

test('show of every fixture image is crit JSON byte for byte', async (t) => {
  for (const f of withCritJson()) {
    t.is(await showImageFile(f.path), fs.readFileSync(f.critJson, 'utf8'), label(f));
  }
});

test('bin/stasis show prints crit JSON for every fixture image', async (t) => {
  t.timeout(90_000);
  const files = withCritJson();
  const queue = [...files];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const { stdout } = await run(process.execPath, [stasis, 'show', f.path], { maxBuffer: 64 << 20 });
      t.deepEqual(normalized(stdout), normalized(fs.readFileSync(f.critJson, 'utf8')), label(f));
    }
  };
  await Promise.all([worker(), worker(), worker()]);
});

test('stasis show -D summarises processes, threads, mappings and files', async (t) => {
  const { stdout } = await run(process.execPath, [stasis, 'show', '-D', setDir('threads')]);
  t.regex(stdout, /complete dump: images version 2/);
  t.regex(stdout, /Process 2694 "threads": alive, 4 threads/);
  for (const tid of [2694, 2700, 2701, 2702]) t.regex(stdout, new RegExp(`thread ${tid} "threads" ip 0x[0-9a-f]+`));
  t.regex(stdout, /memory: 29 mappings, 33 pages dumped in pages-1\.img/);
  t.regex(stdout, /files \(fdinfo-2\.img\): 5 descriptors/);

  const tree = (await run(process.execPath, [stasis, 'show', '-D', setDir('tree')])).stdout;
  t.regex(tree, /Process tree \(pstree\.img\): 3 processes, 3 threads/);
  t.regex(tree, /^ {4}2698 tree/m); // a child, indented under its parent
  t.regex(tree, /16 pages, 16\/16 pages dumped {2}memfd:\/dev\/zero shared memory 987/);
  t.regex(tree, /fd {3}3 {2}PIPE {6}pipe:\[257455\] \(r\)/);
  t.regex(tree, /unix stream established socket:\[257456\], peer socket:\[257457\]/);

  const runc = (await run(process.execPath, [stasis, 'show', '-D', setDir('runc-busybox')])).stdout;
  t.regex(runc, /namespaces: pid 9, net 10, ipc 11, uts 12, mnt 13, user 7 \(criu's\)/);
  t.regex(runc, /utsns-12\.img: hostname "runc"/);
  t.regex(runc, /mountpoints-13\.img: 25 mounts/);
  t.regex(runc, /^ {4}\/proc\/keys +tmpfs  external: \/dev\/null$/m, 'each mount: where, what, from where');
  t.regex(runc, /^ {4}\/proc\/sys +proc ro  \(\/sys of it\)$/m);
  t.regex(runc, /command line: sh -c "i=0; while true; do/);
});

test('stasis show reports a bad image in one stderr line and exits 1', async (t) => {
  const tmp = fs.mkdtempSync('/tmp/stasis-show-');
  try {
    const bytes = fs.readFileSync(path.join(setDir('single'), 'core-2696.img'));
    const cut = path.join(tmp, 'core-2696.img');
    fs.writeFileSync(cut, bytes.subarray(0, 40));
    const err = await t.throwsAsync(run(process.execPath, [stasis, 'show', cut]));
    const e = err as Error & { code?: number; stderr?: string };
    t.is(e.code, 1);
    t.is(e.stderr, `stasis show: ${cut}: truncated entry at offset 8: need ${bytes.readUInt32LE(8)} bytes, have 28\n`);

    const out: string[] = [];
    const code = await showCommand([path.join(setDir('single'), 'pages-1.img')], { write: () => 0 }, { write: (s: string) => out.push(s) });
    t.is(code, 1);
    t.is(out.length, 1);
    t.regex(out[0], /pages-1\.img: bad magic 0x[0-9a-f]{8} at offset 0/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
