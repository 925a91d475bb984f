// ImageDir: lazy reading, atomic writing, inventory.img strictly last, and
// the pagemap -> pages-N.img mapping.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageDir } from '../../images/image-dir.js';
import { decodeImage, encodeImage } from '../../images/image.js';
import { PAGE_SIZE, PE_PARENT, PE_PRESENT, entryFlags, entryPageCount, pagemapEntry, pagemapImage, readPagemap } from '../../images/pagemap.js';
import { setDir } from './fixture-images.js';
import { writeScratchImages } from './scratch-images.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-imagedir-'));
}

const inventory = { img_version: 2, fdinfo_per_id: true, ns_per_id: true, lsmtype: 'NO_LSM', plugins_entry: {} };

test('an unfinished image directory never has inventory.img', async (t) => {
  const tmp = tmpDir();
  try {
    fs.writeFileSync(path.join(tmp, 'inventory.img'), 'stale, from an earlier dump');
    const dir = await ImageDir.create(tmp);
    t.false(await dir.isComplete(), 'create() removes a stale inventory.img');

    await dir.writeMessages('pstree.img', [{ pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] }]);
    t.false(await dir.isComplete());
    await t.throwsAsync(dir.writeMessages('inventory.img', [inventory]), { message: /written by commit\(\)/ });
    await t.throwsAsync(dir.writeRaw('inventory.img', new Uint8Array(4)), { message: /written by commit\(\)/ });
    await t.throwsAsync(dir.rawWriter('inventory.img'), { message: /written by commit\(\)/ });

    const pages = await dir.rawWriter('pages-1.img');
    await pages.write(new Uint8Array(PAGE_SIZE).fill(7));
    t.false(await dir.has('pages-1.img'), 'a file being streamed is not visible under its name');
    await t.throwsAsync(dir.commit(inventory), { message: /still writing pages-1\.img/ });
    t.false(await dir.isComplete());
    await pages.close();
    t.is((await dir.readRaw('pages-1.img')).length, PAGE_SIZE);

    // A failed write leaves neither the file nor a temporary behind.
    await t.throwsAsync(dir.writeMessages('core-1.img', [{ mtype: 'X86_64', tc: {} }]), { instanceOf: TypeError });
    t.false(await dir.has('core-1.img'));
    t.deepEqual(fs.readdirSync(tmp).sort(), ['pages-1.img', 'pstree.img']);

    await dir.commit(inventory);
    t.true(await dir.isComplete());
    t.deepEqual(await (await ImageDir.open(tmp)).names(), ['inventory.img', 'pages-1.img', 'pstree.img', 'stasis-manifest.json']);
    t.is((await (await ImageDir.open(tmp)).inventory()).img_version, 2);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('inventory.img is the last file to appear when a whole set is written', async (t) => {
  const tmp = tmpDir();
  const seen: string[] = [];
  const watcher = fs.watch(tmp, (_event, name) => {
    if (name && !name.startsWith('.') && !seen.includes(name)) seen.push(name);
  });
  try {
    const names = await writeScratchImages(await ImageDir.create(tmp));
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.true(names.length > 20);
    t.is(seen.at(-1), 'inventory.img');
  } finally {
    watcher.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('images are read on first use and kept', async (t) => {
  const dir = await ImageDir.open(setDir('tree'));
  const a = await dir.image('files.img');
  t.is(await dir.image('files.img'), a);
  t.is((await dir.messages('files.img')).length, 18);
  t.deepEqual(await dir.messages('tty-info.img'), [], 'a missing optional image reads as empty');
  await t.throwsAsync(dir.message('files.img'), { message: /^files\.img: expected one entry, found 18 at offset \d+/ });
});

test('pagemap runs locate their bytes in pages-N.img: the single workload heap pattern', async (t) => {
  const dir = await ImageDir.open(setDir('single'));
  const pagemap = await dir.pagemap('pagemap-2696.img');
  t.is(pagemap.pagesId, 1);
  // single.c fills a 1 MiB malloc() block with (i * 7 + 3): find where it landed in the pages file...
  const pattern = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 7 + 3) & 0xff));
  const pages = await dir.readRaw('pages-1.img');
  const at = pages.indexOf(pattern);
  t.not(at, -1);
  const run = pagemap.runs.find((r) => r.offset !== undefined && r.offset <= at && at < r.offset + r.nrPages * PAGE_SIZE);
  if (!run || run.offset === undefined) return t.fail('the pattern is outside every run');
  // ... then read the whole block back by address, through the pagemap.
  const vaddr = run.vaddr + BigInt(at - run.offset);
  t.is(vaddr % BigInt(PAGE_SIZE), 16n, 'malloc() puts its 16-byte header before the block');
  const block = await dir.readMemory(pagemap, vaddr, 1 << 20);
  t.is(block.findIndex((b, i) => b !== ((i * 7 + 3) & 0xff)), -1);
  const mm = await dir.message('mm-2696.img');
  t.true((mm.vmas as { start: bigint; end: bigint }[]).some((v) => v.start <= vaddr && vaddr + (1n << 20n) <= v.end));

  // The offsets add up to the size of the pages file.
  const total = pagemap.runs.reduce((n, r) => n + (r.flags & PE_PRESENT ? r.nrPages * PAGE_SIZE : 0), 0);
  t.is(pages.length, total);
  await t.throwsAsync(dir.readPages(1, total - 10, 20), { message: `pages-1.img: truncated pages at offset ${total - 10}: need 20 bytes, have 10` });
  await t.throwsAsync(dir.readMemory(pagemap, 0x1000n, 1), { message: 'memory at 0x1000 is not in pages-1.img' });
});

test('pagemap entries stasis writes carry the page count in both fields; readers prefer nr_pages', (t) => {
  t.deepEqual(pagemapEntry(0x1000n, 3, PE_PRESENT), { vaddr: 0x1000n, compat_nr_pages: 3, flags: PE_PRESENT, nr_pages: 3n });
  const image = decodeImage(encodeImage(pagemapImage(5, [{ vaddr: 0x2000n, nrPages: 2, flags: PE_PRESENT }])), 'pagemap-1.img');
  t.deepEqual(readPagemap(image), { pagesId: 5, runs: [{ vaddr: 0x2000n, nrPages: 2, flags: PE_PRESENT, offset: 0 }] });

  // CRIU 4.2 leaves compat_nr_pages 0; CRIU <= 4.1 has no nr_pages and may use in_parent / no flags.
  t.is(entryPageCount({ vaddr: 0n, compat_nr_pages: 0, nr_pages: 16n }), 16);
  t.is(entryPageCount({ vaddr: 0n, compat_nr_pages: 7 }), 7);
  t.is(entryFlags({ vaddr: 0n, compat_nr_pages: 1 }), PE_PRESENT);
  t.is(entryFlags({ vaddr: 0n, compat_nr_pages: 1, in_parent: true }), PE_PARENT);
});

test('shared memory is dumped once, in its own pagemap-shmem image', async (t) => {
  const dir = await ImageDir.open(setDir('tree'));
  const memfd = await dir.message('memfd.img');
  const shm = await dir.pagemap(`pagemap-shmem-${memfd.shmid}.img`);
  t.deepEqual(shm.runs, [{ vaddr: 0n, nrPages: 16, flags: PE_PRESENT, offset: 0 }]);
  t.is((await dir.readRaw(`pages-${shm.pagesId}.img`)).length, 16 * PAGE_SIZE);
});

test('commit() lists every image in stasis-manifest.json; checkDump() refuses a file changed, missing or not listed', async (t) => {
  const tmp = tmpDir();
  try {
    const dir = await ImageDir.create(tmp);
    await dir.writeMessages('pstree.img', [{ pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] }]);
    // Pages above 4 MiB are hashed on their size and a 4 KiB block every MiB, not whole.
    const pages = await dir.rawWriter('pages-1.img');
    await pages.write(new Uint8Array(5 << 20).fill(7));
    await pages.close();
    await dir.commit({ ...inventory, dump_criu_run_id: 'run-1' });
    const manifest = JSON.parse(fs.readFileSync(path.join(tmp, 'stasis-manifest.json'), 'utf8'));
    t.is(manifest.dump_criu_run_id, 'run-1');
    t.deepEqual(Object.keys(manifest.files).sort(), ['inventory.img', 'pages-1.img', 'pstree.img']);
    t.deepEqual(manifest.files['pages-1.img'].sampled, true);
    t.is(manifest.files['pstree.img'].size, fs.statSync(path.join(tmp, 'pstree.img')).size);
    await t.notThrowsAsync((await ImageDir.open(tmp)).checkDump());

    const file = path.join(tmp, 'pages-1.img');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([8]), 0, 1, (2 << 20) + 100); // inside the block sampled at 2 MiB
    await t.throwsAsync((await ImageDir.open(tmp)).checkDump(),
      { message: 'pages-1.img: its SHA-256 is not the one dump run-1 wrote: damaged, or from another dump' });
    fs.writeSync(fd, Buffer.from([7]), 0, 1, (2 << 20) + 100);
    fs.closeSync(fd);

    fs.writeFileSync(path.join(tmp, 'fdinfo-9.img'), fs.readFileSync(path.join(tmp, 'pstree.img')));
    await t.throwsAsync((await ImageDir.open(tmp)).checkDump(),
      { message: 'fdinfo-9.img: not an image of dump run-1 (not in stasis-manifest.json): from another dump?' });
    fs.rmSync(path.join(tmp, 'fdinfo-9.img'));
    fs.writeFileSync(path.join(tmp, 'stats-restore'), 'written by a restore, not an image');

    const pstree = fs.readFileSync(path.join(tmp, 'pstree.img'));
    fs.rmSync(path.join(tmp, 'pstree.img'));
    await t.throwsAsync((await ImageDir.open(tmp)).checkDump(), { message: 'pstree.img: missing (dump run-1 wrote it)' });
    fs.writeFileSync(path.join(tmp, 'pstree.img'), pstree.subarray(1));
    await t.throwsAsync((await ImageDir.open(tmp)).checkDump(),
      { message: `pstree.img: ${pstree.length - 1} bytes, but dump run-1 wrote ${pstree.length}: damaged, or from another dump` });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('a CRIU image set (no manifest) passes checkDump()', async (t) => {
  await t.notThrowsAsync((await ImageDir.open(setDir('tree'))).checkDump());
});
