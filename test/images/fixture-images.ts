// The image files of the CRIU 4.2 fixture sets, for the image-layer tests.
import fs from 'node:fs';
import path from 'node:path';
import { fixturesDir, fixtureSets } from '../helpers/paths.js';
import { imageTypeForFile } from '../../images/magic.js';

export interface FixtureFile {
  set: string;
  name: string;
  path: string;
  /** crit's JSON for the file (protobuf images only). */
  critJson?: string;
}

/** Every file of every fixture image directory. */
export function fixtureFiles(): FixtureFile[] {
  return fixtureSets.flatMap((set) => {
    const dir = path.join(fixturesDir, set, 'images');
    return fs
      .readdirSync(dir)
      .sort()
      .map((name) => {
        const json = path.join(fixturesDir, set, 'crit-json', `${name}.json`);
        return { set, name, path: path.join(dir, name), critJson: fs.existsSync(json) ? json : undefined };
      });
  });
}

/** The protobuf images (not pages, tarballs or runc's descriptors.json). */
export function protobufFixtures(): FixtureFile[] {
  return fixtureFiles().filter((f) => {
    const type = imageTypeForFile(f.name);
    return type !== undefined && type.head !== 'raw';
  });
}

export function setDir(set: string): string {
  return path.join(fixturesDir, set, 'images');
}

export function label(f: FixtureFile): string {
  return `${f.set}/${f.name}`;
}
