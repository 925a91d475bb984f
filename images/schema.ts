// The protobuf schema: our proto/*.proto files, loaded once with protobufjs
// for reflection only. Encoding and decoding is done by wire.ts.
import path from 'node:path';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export type MessageType = protobuf.Type;
export type EnumType = protobuf.Enum;
export type FieldInfo = protobuf.Field;

/** proto/ at the repository root (this module runs from dist/images/). */
export const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto');

let root: protobuf.Root | undefined;

function loadRoot(): protobuf.Root {
  const r = new protobuf.Root();
  // opts.proto extends FieldOptions; protobufjs ships descriptor.proto.
  const pbDir = path.dirname(createRequire(import.meta.url).resolve('protobufjs/package.json'));
  const resolve = r.resolvePath.bind(r);
  r.resolvePath = (origin, target) =>
    target === 'google/protobuf/descriptor.proto'
      ? path.join(pbDir, 'google/protobuf/descriptor.proto')
      : resolve(origin, target);
  const files = fs
    .readdirSync(protoDir)
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => path.join(protoDir, f));
  r.loadSync(files, { keepCase: true });
  r.resolveAll();
  return r;
}

/**
 * The schema as protobufjs JSON, written at build time (scripts/bundle-protos.mjs) next to
 * this module: loading it takes a third of the time parsing the .proto files does, and every
 * stasis command pays that before it can read or write an image.
 */
export const bundlePath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'proto-bundle.json');

function loadBundle(): protobuf.Root | undefined {
  try {
    const built = fs.statSync(bundlePath).mtimeMs;
    const stale = fs.readdirSync(protoDir).some((f) => f.endsWith('.proto') && fs.statSync(path.join(protoDir, f)).mtimeMs > built);
    if (stale) return undefined;
    const r = protobuf.Root.fromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
    r.resolveAll();
    return r;
  } catch {
    return undefined;
  }
}

/** The schema parsed from the .proto files, as JSON for bundlePath. */
export function schemaJson(): string {
  return JSON.stringify(loadRoot().toJSON());
}

/** The loaded schema (CRIU's message names are global, there is no package). */
export function schema(): protobuf.Root {
  root ??= loadBundle() ?? loadRoot();
  return root;
}

/** A message type by CRIU name, e.g. `core_entry` or `criu_req`. */
export function messageType(name: string): MessageType {
  const t = schema().lookup(name);
  if (!(t instanceof protobuf.Type)) throw new Error(`no protobuf message named ${name}`);
  return t;
}

export function isEnum(t: unknown): t is EnumType {
  return t instanceof protobuf.Enum;
}

export function isMessage(t: unknown): t is MessageType {
  return t instanceof protobuf.Type;
}

const sortedFields = new WeakMap<MessageType, FieldInfo[]>();

/** Fields in field-number order: the order CRIU (protobuf-c) writes them in. */
export function fieldsByNumber(t: MessageType): FieldInfo[] {
  let fields = sortedFields.get(t);
  if (!fields) {
    fields = [...t.fieldsArray].sort((a, b) => a.id - b.id);
    sortedFields.set(t, fields);
  }
  return fields;
}

/** A crit presentation option of a field, e.g. criuOption(f, 'hex'). */
export function criuOption(field: FieldInfo, name: string): unknown {
  return field.options?.[`(criu).${name}`];
}

/** The name of value `n` of enum `enumName` (the number itself if it has none). */
export function enumValueName(enumName: string, n: number): string {
  const e = schema().lookup(enumName);
  if (!(e instanceof protobuf.Enum)) throw new Error(`no protobuf enum named ${enumName}`);
  return e.valuesById[n] ?? String(n);
}
