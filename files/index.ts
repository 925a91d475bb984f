// The kinds of open files stasis knows. Adding one: a module implementing FileKind, listed here.
// Order matters where links look alike: kinds that look deeper come before `reg`, which takes
// any path.
import type { FileKind } from './kind.js';
import { pipeFile } from './pipe.js';
import { regFile } from './reg.js';

export const fileKinds: readonly FileKind[] = [pipeFile, regFile];

export function kindFor(f: { pid: number; fd: number; link: string }): FileKind | undefined {
  return fileKinds.find((k) => k.claims(f));
}

export function kindForType(type: number): FileKind | undefined {
  return fileKinds.find((k) => k.type === type);
}
