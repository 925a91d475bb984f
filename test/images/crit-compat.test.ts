// Images stasis writes must be readable by CRIU's own tools. The machine has
// Debian's criu package, whose crit is from CRIU 3.17: it must decode our
// images (fields it does not know are skipped, as in any protobuf reader).
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ImageDir } from '../../images/image-dir.js';
import { decodeImage } from '../../images/image.js';
import { imageTypeForFile } from '../../images/magic.js';
import { showImageFile } from '../../images/show.js';
import { fixtureSets } from '../helpers/paths.js';
import { setDir } from './fixture-images.js';
import { writeScratchImages } from './scratch-images.js';

const run = promisify(execFile);
const CRIT = '/usr/bin/crit';
// .ci/run installs Debian's criu; without it these tests fail rather than pass unseen.
const critTest = test;

async function crit(file: string, pretty = false): Promise<string> {
  const { stdout } = await run(CRIT, ['decode', ...(pretty ? ['--pretty'] : []), '-i', file], { maxBuffer: 64 << 20 });
  return stdout;
}

/** Runs `fn` over `items`, three at a time (each crit is a Python start-up). */
async function each<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
  };
  await Promise.all([worker(), worker(), worker()]);
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-images-'));
}

critTest('crit 3.17 decodes every fixture image after stasis re-writes the set through ImageDir', async (t) => {
  t.timeout(120_000);
  for (const set of fixtureSets) {
    const tmp = tmpDir();
    try {
      const src = await ImageDir.open(setDir(set));
      const dst = await ImageDir.create(tmp);
      const protobufNames: string[] = [];
      for (const name of await src.names()) {
        if (name === 'inventory.img') continue;
        const type = imageTypeForFile(name);
        if (!type || type.head === 'raw') {
          await dst.writeRaw(name, await src.readRaw(name));
        } else {
          await dst.write(name, (await src.image(name)).entries);
          protobufNames.push(name);
        }
      }
      await dst.commit(await src.inventory());
      protobufNames.push('inventory.img');
      for (const name of await src.names()) {
        t.true((await dst.readRaw(name)).equals(await src.readRaw(name)), `${set}/${name} rewritten differently`);
      }
      await each(protobufNames, async (name) => {
        const out = await crit(path.join(tmp, name));
        t.notThrows(() => JSON.parse(out), `${set}/${name}`);
      });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
});

critTest('crit 3.17 decodes a small image set stasis builds from scratch, payloads included', async (t) => {
  t.timeout(60_000);
  const tmp = tmpDir();
  try {
    const names = await writeScratchImages(await ImageDir.create(tmp));
    t.true(names.includes('inventory.img') && names.includes('ghost-file-2.img'));
    // For these, crit 3.17 and 4.2 present every field alike, so its JSON
    // must be ours: a check of the payload framing by an independent reader.
    const sameInBoth = new Set([
      'pstree.img', 'fdinfo-1.img', 'fs-100.img', 'ids-100.img', 'utsns-1.img', 'timens-0.img', 'seccomp.img',
      'pipes-data.img', 'sk-queues.img', 'tcp-stream-abc.img', 'ipcns-shm-1.img', 'ipcns-sem-1.img',
      'ipcns-msg-1.img', 'ghost-file-1.img', 'ghost-file-2.img', 'files.img', 'stats-dump',
    ]);
    await each(names, async (name) => {
      const file = path.join(tmp, name);
      const theirs = await crit(file, true);
      if (sameInBoth.has(name)) t.deepEqual(JSON.parse(await showImageFile(file)), JSON.parse(theirs), name);
      else t.notThrows(() => JSON.parse(theirs), name);
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

critTest('crit 3.17 reads the page count of a pagemap stasis writes (it only knows field 2)', async (t) => {
  const tmp = tmpDir();
  try {
    await writeScratchImages(await ImageDir.create(tmp));
    const theirs = JSON.parse(await crit(path.join(tmp, 'pagemap-100.img'), true));
    t.deepEqual(theirs.entries.slice(1).map((e: { nr_pages: number }) => e.nr_pages), [2, 1, 1]);
    const ours = decodeImage(fs.readFileSync(path.join(tmp, 'pagemap-100.img')), 'pagemap-100.img');
    t.deepEqual(ours.entries.slice(1).map((e) => e.message.nr_pages), [2n, 1n, 1n]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
