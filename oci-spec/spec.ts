// The OCI runtime spec (a bundle's config.json, an archive's spec.dump) as typed data. Only the
// fields stasis reads are checked and typed; everything else is carried along untouched, so a
// spec read and written again is the spec it was (key order included).

import fs from 'node:fs';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [other: string]: unknown;
}

export interface OciNamespace {
  type: string;
  path?: string;
  [other: string]: unknown;
}

export interface OciSpec {
  ociVersion: string;
  root: { path: string; readonly?: boolean; [other: string]: unknown };
  process: { args: string[]; cwd: string; terminal?: boolean; env?: string[]; [other: string]: unknown };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: { namespaces?: OciNamespace[]; cgroupsPath?: string; [other: string]: unknown };
  [other: string]: unknown;
}

/** A spec that is not a usable OCI runtime spec: `where` says which file, the message what is wrong. */
export class SpecError extends Error {
  constructor(where: string, what: string) {
    super(`${where}: not a usable OCI runtime spec: ${what}`);
    this.name = 'SpecError';
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks of one object's fields, each failure naming the field by its path in the spec. */
class Fields {
  constructor(private readonly where: string) {}

  fail(what: string): never {
    throw new SpecError(this.where, what);
  }

  object(parent: Json, key: string, at: string, optional = false): Json | undefined {
    const v = parent[key];
    if (v === undefined && optional) return undefined;
    if (v === undefined) this.fail(`${at}${key} is missing`);
    if (!isObject(v)) this.fail(`${at}${key} is not an object`);
    return v;
  }

  string(parent: Json, key: string, at: string, optional = false): void {
    const v = parent[key];
    if (v === undefined && optional) return;
    if (v === undefined) this.fail(`${at}${key} is missing`);
    if (typeof v !== 'string') this.fail(`${at}${key} is not a string`);
  }

  boolean(parent: Json, key: string, at: string): void {
    const v = parent[key];
    if (v !== undefined && typeof v !== 'boolean') this.fail(`${at}${key} is not a boolean`);
  }

  strings(parent: Json, key: string, at: string, optional = false): void {
    const v = parent[key];
    if (v === undefined && optional) return;
    if (v === undefined) this.fail(`${at}${key} is missing`);
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) this.fail(`${at}${key} is not an array of strings`);
  }

  array(parent: Json, key: string, at: string): unknown[] | undefined {
    const v = parent[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.fail(`${at}${key} is not an array`);
    return v;
  }
}

/** Check the parsed JSON `value` as an OCI runtime spec; `where` names its source in errors. */
export function toSpec(value: unknown, where: string): OciSpec {
  const f: Fields = new Fields(where);
  if (!isObject(value)) f.fail('not a JSON object');
  f.string(value, 'ociVersion', '');
  const root = f.object(value, 'root', '')!;
  f.string(root, 'path', 'root.');
  if (root.path === '') f.fail('root.path is empty');
  f.boolean(root, 'readonly', 'root.');
  const proc = f.object(value, 'process', '')!;
  f.strings(proc, 'args', 'process.');
  if ((proc.args as string[]).length === 0) f.fail('process.args is empty');
  f.string(proc, 'cwd', 'process.');
  f.boolean(proc, 'terminal', 'process.');
  f.strings(proc, 'env', 'process.', true);
  f.string(value, 'hostname', '', true);
  const mounts = f.array(value, 'mounts', '') ?? [];
  mounts.forEach((m, i) => {
    const at = `mounts[${i}].`;
    if (!isObject(m)) f.fail(`mounts[${i}] is not an object`);
    f.string(m, 'destination', at);
    f.string(m, 'type', at, true);
    f.string(m, 'source', at, true);
    f.strings(m, 'options', at, true);
  });
  const annotations = f.object(value, 'annotations', '', true);
  if (annotations) {
    for (const [k, v] of Object.entries(annotations)) if (typeof v !== 'string') f.fail(`annotations["${k}"] is not a string`);
  }
  const linux = f.object(value, 'linux', '', true);
  if (linux) {
    f.string(linux, 'cgroupsPath', 'linux.', true);
    (f.array(linux, 'namespaces', 'linux.') ?? []).forEach((n, i) => {
      if (!isObject(n)) f.fail(`linux.namespaces[${i}] is not an object`);
      f.string(n, 'type', `linux.namespaces[${i}].`);
      f.string(n, 'path', `linux.namespaces[${i}].`, true);
    });
  }
  return value as unknown as OciSpec;
}

/** Parse spec text (config.json, spec.dump). */
export function parseSpec(text: string, where: string): OciSpec {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SpecError(where, `bad JSON (${(e as Error).message})`);
  }
  return toSpec(value, where);
}

/** Read and check a spec file. */
export function readSpec(file: string): OciSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SpecError(file, `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseSpec(text, file);
}

/** The spec as JSON text (indented as runc writes it). */
export function specText(spec: OciSpec): string {
  return JSON.stringify(spec, null, '\t');
}

/** A bind mount (type "bind", or options naming bind/rbind). */
export function isBindMount(m: OciMount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}
