// Damaged images must fail with an ImageError that names the file and the
// byte offset: no TypeError, no hang, no huge allocation.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { critJsonText } from '../../images/crit-json.js';
import { ImageError } from '../../images/errors.js';
import { decodeImage, encodeImage, imageOf } from '../../images/image.js';
import { encodeMessage } from '../../images/wire.js';
import { label, protobufFixtures, setDir } from './fixture-images.js';

const SLOW_MS = 1000;

/** Decodes a damaged copy: it either decodes (and can be shown and re-encoded) or fails with a proper ImageError. */
function checkDamaged(bytes: Uint8Array, name: string, what: string): 'ok' | ImageError {
  const started = performance.now();
  try {
    const image = decodeImage(bytes, name);
    critJsonText(image);
    encodeImage(image);
    return 'ok';
  } catch (e) {
    if (!(e instanceof ImageError)) throw new Error(`${what}: ${String(e)} instead of an ImageError`, { cause: e });
    if (!e.message.startsWith(`${name}: `) || !/ at offset \d+/.test(e.message)) {
      throw new Error(`${what}: message does not name the file and offset: ${e.message}`);
    }
    return e;
  } finally {
    const took = performance.now() - started;
    if (took > SLOW_MS) throw new Error(`${what}: decoding took ${took.toFixed(0)} ms`);
  }
}

test('a fixture image cut at any offset fails with file and offset, unless cut between entries', (t) => {
  t.timeout(100_000);
  let failures = 0;
  for (const f of protobufFixtures()) {
    const bytes = fs.readFileSync(f.path);
    const whole = decodeImage(bytes, f.name);
    const headLength = whole.offsets?.[0] ?? bytes.length;
    const boundaries = new Map<number, number>(); // cut offset -> entries left
    whole.offsets?.forEach((at, i) => boundaries.set(at, i));
    for (let cut = 0; cut < bytes.length; cut++) {
      const result = checkDamaged(bytes.subarray(0, cut), f.name, `${label(f)} cut at ${cut}`);
      const entriesLeft = boundaries.get(cut);
      if (entriesLeft !== undefined && cut >= headLength) {
        // A clean cut between entries is a valid, shorter image: no reader can tell.
        t.is(result, 'ok', `${label(f)} cut at entry boundary ${cut}`);
      } else if (result === 'ok') {
        failures++;
        t.fail(`${label(f)} cut at ${cut} decoded without error`);
      }
    }
  }
  t.is(failures, 0);
});

test('flipping bits of a fixture image never crashes or hangs the reader', (t) => {
  t.timeout(100_000);
  let decoded = 0;
  let rejected = 0;
  for (const f of protobufFixtures()) {
    const bytes = fs.readFileSync(f.path);
    for (let at = 0; at < bytes.length; at++) {
      // Every bit of the head and of the first entry's size; one bit per byte elsewhere.
      const bits = at < 12 ? [0, 1, 2, 3, 4, 5, 6, 7] : [at % 8];
      for (const bit of bits) {
        const copy = Uint8Array.from(bytes);
        copy[at] ^= 1 << bit;
        const result = checkDamaged(copy, f.name, `${label(f)} bit ${bit} of byte ${at} flipped`);
        if (result === 'ok') decoded++;
        else rejected++;
      }
    }
  }
  t.log(`${decoded} damaged copies still decoded, ${rejected} were rejected`);
  t.true(rejected > 0 && decoded > 0);
});

const core = () => fs.readFileSync(path.join(setDir('single'), 'core-2696.img'));

test('a truncated entry is reported with its offset and both sizes', (t) => {
  const bytes = core();
  const size = bytes.readUInt32LE(8);
  const e = t.throws(() => decodeImage(bytes.subarray(0, 42), 'core-2696.img'), { instanceOf: ImageError });
  t.is(e?.message, `core-2696.img: truncated entry at offset 8: need ${size} bytes, have 30`);
});

test('a garbage size field is bounded by the file length, not allocated', (t) => {
  const bytes = Buffer.from(core());
  bytes.writeUInt32LE(0xffffffff, 8);
  const e = t.throws(() => decodeImage(bytes, 'core-2696.img'), { instanceOf: ImageError });
  t.is(e?.message, `core-2696.img: truncated entry at offset 8: need 4294967295 bytes, have ${bytes.length - 12}`);
});

test('a bad magic is reported with the magic found', (t) => {
  const pages = fs.readFileSync(path.join(setDir('single'), 'pages-1.img'));
  const found = pages.readUInt32LE(0).toString(16).padStart(8, '0');
  t.throws(() => decodeImage(pages, 'pages-1.img'), { message: new RegExp(`^pages-1\\.img: bad magic 0x${found} at offset 0`) });

  const bytes = Buffer.from(core());
  bytes.writeUInt32LE(0x12345678, 4);
  t.throws(() => decodeImage(bytes, 'core-2696.img'), { message: 'core-2696.img: unknown image magic 0x12345678 at offset 4' });

  t.throws(() => decodeImage(bytes.subarray(0, 6), 'core-2696.img'), { message: 'core-2696.img: truncated header at offset 4: need 4 bytes, have 2' });
});

test('a protobuf error names the entry offset and the bad byte', (t) => {
  const bytes = Buffer.from(fs.readFileSync(path.join(setDir('tree'), 'pstree.img')));
  const second = 8 + 4 + bytes.readUInt32LE(8); // offset of the second entry
  bytes[second + 4] = 0x0f; // field 1 with wire type 7
  t.throws(() => decodeImage(bytes, 'pstree.img'), {
    message: `pstree.img: cannot decode pstree_entry (entry 1) at offset ${second}: unsupported wire type 7 at offset ${second + 5}`,
  });
});

test('a message without a required field is rejected', (t) => {
  const image = Buffer.from(encodeImage(imageOf('PSTREE', [])));
  const body = encodeMessage('pstree_entry', { pid: 1, ppid: 0, pgid: 1, sid: 1 }).subarray(0, 2); // pid only
  const size = Buffer.alloc(4);
  size.writeUInt32LE(body.length);
  t.throws(() => decodeImage(Buffer.concat([image, size, body]), 'pstree.img'), {
    message: 'pstree.img: cannot decode pstree_entry (entry 0) at offset 8: pstree_entry lacks required field ppid at offset 12',
  });
});

test('a cut payload is reported as such', (t) => {
  const bytes = fs.readFileSync(path.join(setDir('tree'), 'pipes-data.img'));
  const payloadAt = 8 + 4 + bytes.readUInt32LE(8);
  t.throws(() => decodeImage(bytes.subarray(0, payloadAt + 5), 'pipes-data.img'), {
    message: `pipes-data.img: truncated pipe-data payload at offset ${payloadAt}: need 14 bytes, have 5`,
  });
});

test('absurdly deep nesting is refused instead of exhausting the stack', (t) => {
  // cgroup_dir_entry.children nests cgroup_dir_entry: 200 levels of it.
  let dir = encodeMessage('cgroup_dir_entry', { dir_name: 'x' });
  for (let i = 0; i < 200; i++) {
    dir = Buffer.concat([Buffer.from([0x0a, 1, 0x78]), Buffer.from([0x12]), varint(dir.length), dir]);
  }
  const controller = Buffer.concat([Buffer.from([0x12]), varint(dir.length), dir]);
  const entry = Buffer.concat([Buffer.from([0x12]), varint(controller.length), controller]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(entry.length);
  const file = Buffer.concat([encodeImage(imageOf('CGROUP', [])), size, entry]);
  t.throws(() => decodeImage(file, 'cgroup.img'), { message: /^cgroup\.img: cannot decode cgroup_entry \(entry 0\) at offset 8: messages nested deeper than 64/ });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
