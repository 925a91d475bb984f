// stats-dump and stats-restore hold what CRIU's hold: every page of the pages-*.img files counted
// (pages_written for private memory, shpages_written for shared memory objects: test runners
// compare their sum with the files), pages_scanned as CRIU 4.2 counts it, the memory times
// measured apart, and the restore's timings. The workload (shared-pages) holds memory of one kind
// at a time, or all of them, with a known number of pages written.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ImageDir, PAGE_SIZE, PE_PRESENT, decodeImage, readImageFileSync, type Message } from '../../images/index.js';
import { VMA, type VmaEntry } from '../../task/mm.js';
import { startWorkload } from '../../test-containers/launch.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { sharedDir } from '../helpers/paths.js';
import { selfCheckInContainer, selfCheckRoundTrip, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');
const TASK_SIZE = 0x7ffffffff000n;

type Kind = 'private' | 'anon' | 'memfd' | 'memfd-fd' | 'sysv' | 'all';

/**
 * The shared memory objects' pages each kind has in the pages files: the object's size and the
 * pages written. SysV segments are not among them: stasis keeps their contents in
 * ipcns-shm-N.img (CRIU 4.2 puts them in pages files, and counts them: see the CRIU test below).
 */
const SHARED: Record<Kind, { scanned: number; written: number }> = {
  private: { scanned: 0, written: 0 },
  anon: { scanned: 6, written: 3 },
  memfd: { scanned: 7, written: 4 },
  'memfd-fd': { scanned: 5, written: 2 },
  sysv: { scanned: 0, written: 0 },
  all: { scanned: 18, written: 9 },
};

/** The dump or restore entry of a stats file, its numbers as numbers. */
function statsOf(file: string): Record<string, number> {
  const image = decodeImage(readImageFileSync(file), path.basename(file));
  const entry = image.entries[0]!.message as Message;
  const inner = (entry.dump ?? entry.restore) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(inner).map(([k, v]) => [k, Number(v)]));
}

/** Pages the pages-*.img files hold, by their sizes (each a whole number of pages). */
function pagesInFiles(t: ExecutionContext, dir: string): number {
  let pages = 0;
  for (const f of fs.readdirSync(dir).filter((n) => /^pages-\d+\.img$/.test(n))) {
    const size = fs.statSync(path.join(dir, f)).size;
    t.is(size % PAGE_SIZE, 0, `${f} is ${size} bytes`);
    pages += size / PAGE_SIZE;
  }
  return pages;
}

/** Present pages the pagemaps name: of the processes (pagemap-PID.img) and of shared memory (pagemap-shmem-*.img). */
async function pagemapPages(dir: string): Promise<{ private: number; shared: number }> {
  const images = await ImageDir.open(dir);
  const out = { private: 0, shared: 0 };
  for (const f of fs.readdirSync(dir).filter((n) => /^pagemap-(shmem-)?\d+\.img$/.test(n))) {
    const { runs } = await images.pagemap(f);
    const n = runs.reduce((sum, r) => sum + (r.flags & PE_PRESENT ? r.nrPages : 0), 0);
    if (f.startsWith('pagemap-shmem-')) out.shared += n;
    else out.private += n;
  }
  return out;
}

/**
 * What CRIU 4.2's scan of private memory visits, worked out page by page from a dump's images:
 * in each private VMA below the task size (not the vvar area), one for each page saved and one
 * for each stretch of pages passed over; the vDSO, saved whole, all its pages.
 */
async function criuScanCount(dir: string): Promise<number> {
  const images = await ImageDir.open(dir);
  let n = 0;
  for (const f of fs.readdirSync(dir).filter((x) => /^mm-\d+\.img$/.test(x))) {
    const pid = f.slice(3, -4);
    const { runs } = await images.pagemap(`pagemap-${pid}.img`);
    const saved = new Set<bigint>();
    for (const r of runs) for (let i = 0; i < r.nrPages; i++) saved.add(BigInt(r.vaddr) + BigInt(i * PAGE_SIZE));
    for (const v of (await images.message(f)).vmas as VmaEntry[]) {
      const [start, end, status] = [BigInt(v.start), BigInt(v.end), Number(v.status)];
      if (!(status & VMA.REGULAR) || !(status & (VMA.ANON_PRIVATE | VMA.FILE_PRIVATE)) || status & VMA.VVAR || end > TASK_SIZE) continue;
      if (status & VMA.VDSO) {
        n += Number((end - start) / BigInt(PAGE_SIZE));
        continue;
      }
      let passing = false;
      for (let a = start; a < end; a += BigInt(PAGE_SIZE)) {
        if (saved.has(a)) {
          n++;
          passing = false;
        } else if (!passing) {
          n++;
          passing = true;
        }
      }
    }
  }
  return n;
}

/**
 * Asserts what stats-dump (in `workDir`, the images directory by default) says of a dump in `dir`
 * against its files; returns the stats.
 */
async function checkDumpStats(t: ExecutionContext, dir: string, kind: Kind, workDir = dir): Promise<Record<string, number>> {
  const s = statsOf(path.join(workDir, 'stats-dump'));
  const inFiles = pagesInFiles(t, dir);
  const mapped = await pagemapPages(dir);
  t.is(s.pages_written! + s.shpages_written!, inFiles, `${kind}: pages_written + shpages_written = the pages of pages-*.img`);
  t.is(mapped.private + mapped.shared, inFiles, `${kind}: the pagemaps name every page of the pages files`);
  t.is(s.pages_written, mapped.private, `${kind}: pages_written = the processes' pages`);
  t.is(s.shpages_written, SHARED[kind].written, `${kind}: shpages_written`);
  t.is(s.shpages_written, mapped.shared, `${kind}: shpages_written = the shared memory objects' pages`);
  t.is(s.shpages_scanned, SHARED[kind].scanned, `${kind}: shpages_scanned = the objects' sizes`);
  t.is(s.pages_scanned, await criuScanCount(dir), `${kind}: pages_scanned as CRIU 4.2 counts it`);
  t.true(s.memdump_time! > 0 && s.memwrite_time! > 0, `${kind}: memdump_time ${s.memdump_time}, memwrite_time ${s.memwrite_time}`);
  t.not(s.memdump_time, s.memwrite_time, `${kind}: memdump_time and memwrite_time are measured apart`);
  return s;
}

for (const kind of ['private', 'anon', 'memfd', 'memfd-fd', 'sysv', 'all'] as const) {
  test.serial(`stats-dump counts every page the pages files hold, and stats-restore its timings (${kind} memory)`, async (t) => {
    const { dir } = await selfCheckRoundTrip(t, 'shared-pages', {
      args: (work) => [work, kind],
      afterDump: async (d) => {
        await checkDumpStats(t, d, kind);
      },
    });
    checkRestoreStats(t, statsOf(path.join(dir, 'stats-dump')), statsOf(path.join(dir, 'stats-restore')));
  });
}

/** Asserts stats-restore's entry `r` of a restore of one process whose dump said `dumped`. */
function checkRestoreStats(t: ExecutionContext, dumped: Record<string, number>, r: Record<string, number>): void {
  t.deepEqual(Object.keys(r).sort(), ['forking_time', 'pages_compared', 'pages_restored', 'pages_skipped_cow', 'restore_time']);
  // One process: nothing shared copy-on-write with a parent, nothing compared.
  t.is(r.pages_compared, 0);
  t.is(r.pages_skipped_cow, 0);
  t.true(r.forking_time! > 0, `forking_time ${r.forking_time}`);
  t.true(r.restore_time! > r.forking_time!, `restore_time ${r.restore_time} covers forking_time ${r.forking_time}`);
  // Every private page but the vDSO's (the running kernel's own is kept).
  t.true(r.pages_restored! > 0 && r.pages_restored! < dumped.pages_written!, `pages_restored ${r.pages_restored} of ${dumped.pages_written}`);
}

test.serial('in a container (runc checkpoint and restore through stasis): the stats files in the work directories count every page of the pages files', async (t) => {
  let dumped: Record<string, number> = {};
  const { dir } = await selfCheckInContainer(t, 'shared-pages', {
    args: ['sysv'],
    afterDump: async (images) => {
      dumped = await checkDumpStats(t, images, 'sysv', path.join(path.dirname(images), 'work'));
    },
  });
  checkRestoreStats(t, dumped, statsOf(path.join(dir, 'rwork', 'stats-restore')));
});

// Shared anonymous memory and memfds are not restored in a container yet (their pages file is
// reopened inside the container's mount namespace): the checkpoint alone.
test.serial('in a container: runc checkpoint through stasis counts the shared memory objects\' pages too', async (t) => {
  const dir = tmpDir(t, 'stasis-shared-pages-ct-');
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  c.withWorkload('shared-pages', ['/data', 'all']).privileged();
  const out = await c.run();
  await out.waitForLine(/^ready /);
  const images = path.join(dir, 'img');
  const ck = c.checkpoint(stasisBin, images, path.join(dir, 'work'));
  t.is(ck.code, 0, ck.stderr);
  await out.closed;
  await checkDumpStats(t, images, 'all', path.join(dir, 'work'));
});

test.serial('CRIU 4.2 counts the same workload\'s pages as stasis does: pages_scanned by the same rule, shared memory in shpages_*', async (t) => {
  for (const kind of ['anon', 'memfd', 'memfd-fd', 'sysv', 'all'] as const) {
    const counts: Record<string, Record<string, number>> = {};
    for (const tool of ['stasis', 'criu'] as const) {
      const dir = tmpDir(t);
      const work = tmpDir(t, 'stasis-shared-pages-');
      const w = await startWorkload('shared-pages', [work, kind]);
      t.teardown(() => w.kill());
      await w.waitForLine(/^ready /);
      const args = ['dump', '-t', String(w.pid), '-D', dir, '-o', 'dump.log'];
      const d = tool === 'stasis' ? await stasis(args) : await execa(criuBin, args, { reject: false, all: true });
      t.is(d.exitCode, 0, `${tool} dump (${kind}): ${d.all}`);
      await w.exitOf(w.pid);
      const s = statsOf(path.join(dir, 'stats-dump'));
      t.is(s.pages_written! + s.shpages_written!, pagesInFiles(t, dir), `${tool} (${kind}): the pages files`);
      t.is(s.pages_scanned, await criuScanCount(dir), `${tool} (${kind}): pages_scanned by CRIU 4.2's rule`);
      counts[tool] = s;
    }
    const [ours, criu] = [counts.stasis!, counts.criu!];
    // The one difference: CRIU keeps a SysV segment's pages in a pages file (5 pages, 2 written), stasis in ipcns-shm-N.img.
    const sysv = kind === 'sysv' || kind === 'all' ? { scanned: 5, written: 2 } : { scanned: 0, written: 0 };
    t.is(criu.shpages_scanned, ours.shpages_scanned! + sysv.scanned, `${kind}: shpages_scanned`);
    t.is(criu.shpages_written, ours.shpages_written! + sysv.written, `${kind}: shpages_written`);
    for (const field of ['pages_skipped_parent', 'pages_lazy', 'shpages_skipped_parent']) t.is(ours[field], criu[field], `${kind}: ${field}`);
  }
});
