// The kinds of open files stasis knows. Adding one: a module implementing FileKind, listed here.
import type { FileKind } from './kind.js';
import { pipeFile } from './pipe.js';
import { regFile } from './reg.js';

export const fileKinds: readonly FileKind[] = [regFile, pipeFile];

export function kindForLink(link: string): FileKind | undefined {
  return fileKinds.find((k) => k.claims(link));
}

export function kindForType(type: number): FileKind | undefined {
  return fileKinds.find((k) => k.type === type);
}
