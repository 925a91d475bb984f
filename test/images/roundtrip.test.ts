// Decoding a fixture image and encoding it again must give CRIU's bytes back.
import test from 'ava';
import fs from 'node:fs';
import { decodeImage, encodeImage } from '../../images/image.js';
import { imageTypeForFile } from '../../images/magic.js';
import { unknownFields, type Message } from '../../images/wire.js';
import { fixtureFiles, label, protobufFixtures } from './fixture-images.js';

test('every protobuf image of the CRIU 4.2 fixtures re-encodes to identical bytes', (t) => {
  const files = protobufFixtures();
  t.true(files.length >= 70, `only ${files.length} fixture images found`);
  for (const f of files) {
    const bytes = fs.readFileSync(f.path);
    const again = Buffer.from(encodeImage(decodeImage(bytes, f.name)));
    if (!again.equals(bytes)) {
      const at = again.findIndex((b, i) => b !== bytes[i]);
      t.fail(`${label(f)}: re-encoded ${again.length} bytes differ from the ${bytes.length} on disk (first at offset ${at})`);
    }
  }
  t.pass();
});

function unknownPaths(msg: Message, where: string, out: string[]): void {
  for (const u of unknownFields(msg)) out.push(`${where} field ${u.id}`);
  for (const [key, value] of Object.entries(msg)) {
    for (const [i, v] of (Array.isArray(value) ? value : [value]).entries()) {
      if (v && typeof v === 'object' && !(v instanceof Uint8Array)) unknownPaths(v as Message, `${where}.${key}[${i}]`, out);
    }
  }
}

test('our protos describe every field CRIU 4.2 wrote in the fixtures', (t) => {
  const unknown: string[] = [];
  for (const f of protobufFixtures()) {
    decodeImage(fs.readFileSync(f.path), f.name).entries.forEach((e, i) => unknownPaths(e.message, `${label(f)}#${i}`, unknown));
  }
  t.deepEqual(unknown, []);
});

test('every file in the fixture directories has a known image type', (t) => {
  const unknown = fixtureFiles()
    .filter((f) => f.name !== 'descriptors.json') // runc's own file
    .filter((f) => !imageTypeForFile(f.name))
    .map(label);
  t.deepEqual(unknown, []);
  t.is(imageTypeForFile('pages-1.img')?.head, 'raw');
  t.is(imageTypeForFile('tmpfs-dev-41.tar.gz.img')?.name, 'TMPFS_DEV');
  t.is(imageTypeForFile('pagemap-shmem-987.img')?.name, 'PAGEMAP');
  t.is(imageTypeForFile('stats-dump')?.head, 'service');
});
