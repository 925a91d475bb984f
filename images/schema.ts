// The protobuf schema: our proto/*.proto files, for reflection only (encoding and decoding is
// done by wire.ts).
import path from 'node:path';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// Reflection is our own small model of the schema, built from protobufjs's JSON form of it:
// loading protobufjs itself costs a Node process ~35 ms before it can read an image, so it is
// only loaded (synchronously, through require) to parse the .proto files when the JSON bundle
// written at build time is missing or older than them.

export interface EnumType {
  kind: 'enum';
  name: string;
  values: Record<string, number>;
  valuesById: Record<number, string>;
}

export interface FieldInfo {
  name: string;
  id: number;
  type: string;
  repeated: boolean;
  required: boolean;
  packed: boolean;
  options?: Record<string, unknown>;
  /** The message or enum type of the field; null for scalars. */
  resolvedType: MessageType | EnumType | null;
  /** How the wire codec reads and writes it (set once types are resolved; see CODEC). */
  codec: number;
  /** Its wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
  wire: number;
}

/** FieldInfo.codec: one small number per way a value is coded, so the codec switches on it. */
export const CODEC = {
  UINT64: 1, INT64: 2, SINT64: 3, UINT32: 4, INT32: 5, SINT32: 6, BOOL: 7, ENUM: 8,
  FIXED: 9, STRING: 10, BYTES: 11, MESSAGE: 12,
} as const;

const SCALAR_CODEC: Record<string, [number, number]> = {
  uint64: [CODEC.UINT64, 0], int64: [CODEC.INT64, 0], sint64: [CODEC.SINT64, 0],
  uint32: [CODEC.UINT32, 0], int32: [CODEC.INT32, 0], sint32: [CODEC.SINT32, 0], bool: [CODEC.BOOL, 0],
  fixed64: [CODEC.FIXED, 1], sfixed64: [CODEC.FIXED, 1], double: [CODEC.FIXED, 1],
  fixed32: [CODEC.FIXED, 5], sfixed32: [CODEC.FIXED, 5], float: [CODEC.FIXED, 5],
  string: [CODEC.STRING, 2], bytes: [CODEC.BYTES, 2],
};

export interface MessageType {
  kind: 'message';
  name: string;
  fieldsArray: FieldInfo[];
  fieldsById: Record<number, FieldInfo>;
  fields: Record<string, FieldInfo>;
}

interface JsonNamespace { nested?: Record<string, JsonNode> }
type JsonFields = Record<string, { type: string; id: number; rule?: string; options?: Record<string, unknown> }>;
interface JsonNode extends JsonNamespace {
  fields?: JsonFields;
  values?: Record<string, number>;
}

interface Schema {
  /** Every type by its simple name at the top level (CRIU's names are global). */
  lookup(name: string): MessageType | EnumType | undefined;
}

/**
 * The schema compiled into this model's own data, with every field's type resolved: written
 * at build time (bundlePath), so that making a type at run time is parsing its fields and
 * linking them, with nothing looked up or worked out per field.
 */
interface CompiledSchema {
  /** Every type under a key of its own (its scopes' names and its own, joined by dots). */
  types: Record<string, CompiledType>;
  /** The keys of the types visible by simple name (the top level). */
  top: Record<string, string>;
}
type CompiledType =
  | { kind: 'enum'; name: string; values: Record<string, number> }
  | {
    kind: 'message'; name: string;
    /** JSON text of its FieldInfos (resolvedType null): parsed when the message is first made. */
    fields: string;
    /** The key of the type each message or enum field (by its index in `fields`) names. */
    refs: Record<number, string>;
  };

/** protobufjs's JSON schema → CompiledSchema; field types resolve from the innermost scope out. */
function compile(json: JsonNamespace): CompiledSchema {
  const types: Record<string, CompiledType> = {};
  const top: Record<string, string> = {};
  const kinds = new Map<string, 'message' | 'enum'>();
  const pending: { key: string; name: string; fields: JsonFields; chain: Record<string, string>[] }[] = [];
  const index = (ns: JsonNamespace, prefix: string, scopes: Record<string, string>[]) => {
    for (const [name, node] of Object.entries(ns.nested ?? {})) {
      const key = prefix + name;
      if (node.values) {
        scopes[0]![name] = key;
        kinds.set(key, 'enum');
        types[key] = { kind: 'enum', name, values: node.values };
      } else if (node.fields) {
        scopes[0]![name] = key;
        kinds.set(key, 'message');
        const chain = [{}, ...scopes]; // its own nested types first
        pending.push({ key, name, fields: node.fields, chain });
        index(node, `${key}.`, chain);
      } else if (node.nested) {
        index(node, `${key}.`, [{}, ...scopes]); // a package (google.protobuf): not visible by simple name
      }
    }
  };
  index(json, '', [top]);
  for (const { key, name, fields, chain } of pending) {
    const infos: FieldInfo[] = [];
    const refs: Record<number, string> = {};
    for (const [fname, f] of Object.entries(fields)) {
      const typeName = f.type.split('.').pop()!;
      const ref = chain.find((scope) => Object.hasOwn(scope, typeName))?.[typeName];
      const kind = ref === undefined ? undefined : kinds.get(ref);
      const [codec, wire] = kind === 'message' ? [CODEC.MESSAGE, 2] : kind === 'enum' ? [CODEC.ENUM, 0]
        : SCALAR_CODEC[f.type] ?? [0, 0];
      if (ref !== undefined) refs[infos.length] = ref;
      infos.push({
        name: fname, id: f.id, type: f.type, repeated: f.rule === 'repeated', required: f.rule === 'required',
        packed: f.options?.packed === true, resolvedType: null, codec, wire, ...(f.options ? { options: f.options } : {}),
      });
    }
    types[key] = { kind: 'message', name, fields: JSON.stringify(infos), refs };
  }
  // Only what a lookup can reach (not descriptor.proto's types, there for the field options).
  const reached: Record<string, CompiledType> = {};
  const reach = (key: string) => {
    if (Object.hasOwn(reached, key)) return;
    const t = types[key]!;
    reached[key] = t;
    if (t.kind === 'message') Object.values(t.refs).forEach(reach);
  };
  Object.values(top).forEach(reach);
  return { types: reached, top };
}

/** The model of a compiled schema: a type is made when first looked up (with the types its fields name). */
function buildSchema(c: CompiledSchema): Schema {
  const made = new Map<string, MessageType | EnumType>();
  const make = (key: string): MessageType | EnumType => {
    const had = made.get(key);
    if (had) return had;
    const e = c.types[key]!;
    if (e.kind === 'enum') {
      const valuesById: Record<number, string> = {};
      for (const [k, v] of Object.entries(e.values)) valuesById[v] ??= k;
      const t: EnumType = { kind: 'enum', name: e.name, values: e.values, valuesById };
      made.set(key, t);
      return t;
    }
    const fieldsArray = JSON.parse(e.fields) as FieldInfo[];
    const t: MessageType = { kind: 'message', name: e.name, fieldsArray, fieldsById: {}, fields: {} };
    made.set(key, t); // before its fields: a message may name itself
    for (let i = 0; i < fieldsArray.length; i++) {
      const field = fieldsArray[i]!;
      t.fieldsById[field.id] = field;
      t.fields[field.name] = field;
      const ref = e.refs[i];
      if (ref !== undefined) field.resolvedType = make(ref);
    }
    return t;
  };
  return { lookup: (name) => (Object.hasOwn(c.top, name) ? make(c.top[name]!) : undefined) };
}

/** proto/ at the repository root (this module runs from dist/images/). */
export const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto');

let root: Schema | undefined;

/** The .proto files parsed by protobufjs, as its JSON. */
function parseProtos(): JsonNamespace {
  const protobuf = createRequire(import.meta.url)('protobufjs') as typeof import('protobufjs');
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
  return r.toJSON() as JsonNamespace;
}

/**
 * The schema as protobufjs JSON, written by every build (scripts/bundle-protos.mjs, after tsc)
 * next to this module: loading it takes a third of the time parsing the .proto files does, and
 * every stasis command pays that before it can read or write an image. A .proto edited since
 * is only seen after a build, like the code.
 */
export const bundlePath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'proto-bundle.json');

function loadBundle(): CompiledSchema | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(bundlePath, 'utf8')) as Partial<CompiledSchema>;
    return c.types && c.top ? c as CompiledSchema : undefined; // not one an older build wrote
  } catch {
    return undefined;
  }
}

/**
 * The schema parsed from the .proto files and compiled, as JSON for bundlePath. Each message's
 * fields are a string of their own JSON, parsed when the message is first used: the whole file
 * parses in a third of the time (a command uses a few dozen of its ~200 messages).
 */
export function schemaJson(): string {
  return JSON.stringify(compile(parseProtos()));
}

/** The loaded schema (CRIU's message names are global, there is no package). */
export function schema(): Schema {
  root ??= buildSchema(loadBundle() ?? compile(parseProtos()));
  return root;
}

/** A message type by CRIU name, e.g. `core_entry` or `criu_req`. */
export function messageType(name: string): MessageType {
  const t = schema().lookup(name);
  if (!isMessage(t)) throw new Error(`no protobuf message named ${name}`);
  return t;
}

export function isEnum(t: unknown): t is EnumType {
  return (t as EnumType | null)?.kind === 'enum';
}

export function isMessage(t: unknown): t is MessageType {
  return (t as MessageType | null)?.kind === 'message';
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
  if (!isEnum(e)) throw new Error(`no protobuf enum named ${enumName}`);
  return e.valuesById[n] ?? String(n);
}
