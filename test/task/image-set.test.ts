// An image set belongs to one dump (stasis-manifest.json), and a restore that fails says which
// image and which object in it: a task's rseq area, a file name with control characters shown
// escaped on the one error line.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ImageDir, MANIFEST_FILE, imageFileName } from '../../images/index.js';
import { dumpedCounter, killPid, restoreUnderReaper, stasis, stasisBin } from '../helpers/stasis.js';

interface Dumped { dir: string; pid: number; key: string }


/** A restore that must fail: its one error line (checked to be one), and no process left. */
async function refused(t: ExecutionContext, a: Dumped, ...others: Dumped[]): Promise<string> {
  // Its stdout, given to the restored process were it restored by mistake, is /dev/null: a pipe
  // would keep this wait open.
  const r = await execa(process.execPath, [stasisBin, 'restore', '-d', '-D', a.dir, '--inherit-fd', `fd[1]:${a.key}`],
    { reject: false, stdout: 'ignore' });
  if (r.exitCode === 0) killPid(a.pid);
  t.is(r.exitCode, 1, r.stderr);
  t.is(r.stderr.split('\n').length, 1, r.stderr);
  for (const d of [a, ...others]) t.false(fs.existsSync(`/proc/${d.pid}`), `no process ${d.pid}`);
  return r.stderr;
}

const runId = async (dir: string) => String((await (await ImageDir.open(dir)).inventory()).dump_criu_run_id);

test.serial('a dump lists every image with its size and SHA-256 under its run id; crit still reads the directory', async (t) => {
  const a = await dumpedCounter(t);
  const m = JSON.parse(fs.readFileSync(path.join(a.dir, MANIFEST_FILE), 'utf8'));
  t.is(m.dump_criu_run_id, await runId(a.dir));
  const images = fs.readdirSync(a.dir).filter((f) => f.endsWith('.img')).sort();
  t.deepEqual(Object.keys(m.files).sort(), images);
  t.true(images.includes('inventory.img') && images.includes('pages-1.img'));
  for (const f of images) {
    const bytes = fs.readFileSync(path.join(a.dir, f));
    t.deepEqual(m.files[f], { size: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex') }, f);
  }
  const ps = await execa('crit', ['x', a.dir, 'ps'], { reject: false });
  t.is(ps.exitCode, 0, ps.stderr);
  t.regex(ps.stdout, new RegExp(`^\\s*${a.pid}\\s`, 'm'));
});

test.serial('an fdinfo image from another dump is refused before any process exists, naming it', async (t) => {
  const a = await dumpedCounter(t);
  const b = await dumpedCounter(t, 'read'); // descriptors of its own: a pipe
  fs.copyFileSync(path.join(b.dir, 'fdinfo-2.img'), path.join(a.dir, 'fdinfo-2.img'));
  t.regex(await refused(t, a, b), new RegExp(`^stasis: fdinfo-2\\.img: .* dump ${await runId(a.dir)} wrote.*: damaged, or from another dump$`));
});

test.serial('an inventory from another dump is refused: the run ids differ', async (t) => {
  const a = await dumpedCounter(t);
  const b = await dumpedCounter(t);
  const [ida, idb] = [await runId(a.dir), await runId(b.dir)];
  fs.copyFileSync(path.join(b.dir, 'inventory.img'), path.join(a.dir, 'inventory.img'));
  t.is(await refused(t, a, b),
    `stasis: inventory.img: of dump ${idb}, but the other images are of dump ${ida} (${MANIFEST_FILE}): files of two dumps`);
});

test.serial('an mm image from another dump, renamed to the process, is refused', async (t) => {
  const a = await dumpedCounter(t);
  const b = await dumpedCounter(t, 'read');
  // (Not ids-PID.img: two processes in the same namespaces have the same ids image.)
  const mmFile = imageFileName('MM', a.pid);
  const theirs = fs.readFileSync(path.join(b.dir, imageFileName('MM', b.pid)));
  t.false(theirs.equals(fs.readFileSync(path.join(a.dir, mmFile))));
  fs.writeFileSync(path.join(a.dir, mmFile), theirs);
  const id = await runId(a.dir);
  const ours = JSON.parse(fs.readFileSync(path.join(a.dir, MANIFEST_FILE), 'utf8')).files[mmFile];
  const line = await refused(t, a, b);
  if (ours.size === theirs.length) t.is(line, `stasis: ${mmFile}: its SHA-256 is not the one dump ${id} wrote: damaged, or from another dump`);
  else t.is(line, `stasis: ${mmFile}: ${theirs.length} bytes, but dump ${id} wrote ${ours.size}: damaged, or from another dump`);
});

test.serial('an image the dump did not write, dropped in from another dump, is refused', async (t) => {
  const a = await dumpedCounter(t);
  const b = await dumpedCounter(t, 'read');
  const stranger = imageFileName('CORE', b.pid);
  fs.copyFileSync(path.join(b.dir, stranger), path.join(a.dir, stranger));
  t.is(await refused(t, a, b),
    `stasis: ${stranger}: not an image of dump ${await runId(a.dir)} (not in ${MANIFEST_FILE}): from another dump?`);
});

test.serial('a damaged manifest is refused; a dump without one (as CRIU makes them) is restored', async (t) => {
  const a = await dumpedCounter(t);
  const manifest = path.join(a.dir, MANIFEST_FILE);
  fs.writeFileSync(manifest, fs.readFileSync(manifest).subarray(0, 100));
  t.regex(await refused(t, a), /^stasis: stasis-manifest\.json: damaged at offset 0: /);
  fs.rmSync(manifest);
  const r = await restoreUnderReaper(t, a.dir, a.key, a.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  await r.waitForLine(/^tick \d+$/); // counting on
});

test.serial('a failed rseq registration names the core image, the task and the area', async (t) => {
  const a = await dumpedCounter(t);
  fs.rmSync(path.join(a.dir, MANIFEST_FILE)); // edited on purpose, as one of CRIU's images could be
  const images = await ImageDir.open(a.dir);
  const name = imageFileName('CORE', a.pid);
  const core = await images.message(name);
  t.truthy(core.thread_core.rseq_entry, 'glibc registered an rseq area');
  core.thread_core.rseq_entry.rseq_abi_pointer = 0xffff800000000000n; // kernel space: EFAULT
  await images.writeMessages(name, [core]);
  t.regex(await refused(t, a), new RegExp(`^stasis: ${name}: task ${a.pid}: rseq area 0xffff800000000000 \\(32 bytes\\): EFAULT: rseq\\(0xffff800000000000, 32, 0, \\d+\\) in task ${a.pid}: Bad address$`));
});

test.serial('control characters of a file name are escaped on the error line', async (t) => {
  const a = await dumpedCounter(t);
  fs.rmSync(path.join(a.dir, MANIFEST_FILE));
  const images = await ImageDir.open(a.dir);
  const files = await images.messages('files.img');
  const mm = await images.message(imageFileName('MM', a.pid));
  const exe = files.find((f) => f.id === mm.exe_file_id)!;
  exe.reg.name = '/nonexistent/a\nb\x1b[31mc\td';
  delete exe.reg.size;
  await images.writeMessages('files.img', files);
  t.is(await refused(t, a), `stasis: mm-${a.pid}.img: task ${a.pid}: mm fields: cannot reopen /nonexistent/a\\nb\\x1b[31mc\\td in task ${a.pid}: ` +
    'no such file where the task looks (deleted, or outside its root or mount namespace)');
});
