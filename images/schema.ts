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

function setCodec(field: FieldInfo): void {
  const [codec, wire] = field.resolvedType?.kind === 'message' ? [CODEC.MESSAGE, 2]
    : field.resolvedType?.kind === 'enum' ? [CODEC.ENUM, 0]
      : SCALAR_CODEC[field.type] ?? [0, 0];
  field.codec = codec;
  field.wire = wire;
}

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
  /** A message's fields; in the build's bundle, their JSON text (see schemaJson). */
  fields?: JsonFields | string;
  values?: Record<string, number>;
}

interface Schema {
  /** Every type by its simple name at the top level (CRIU's names are global). */
  lookup(name: string): MessageType | EnumType | undefined;
}

/** A named type of the JSON schema, made into a MessageType or EnumType when first looked up. */
interface Entry {
  node: JsonNode;
  name: string;
  /** The scopes its fields' types are looked up in, innermost first (its own nested types first). */
  chain: Map<string, Entry>[];
  made?: MessageType | EnumType;
}

/**
 * The model of a protobufjs JSON schema; field types resolve from the innermost scope out. Only
 * the names are indexed up front: a type is built when first looked up (with the types its
 * fields name), so a command pays for the few dozen messages it uses, not for all of them.
 */
function buildSchema(json: JsonNamespace): Schema {
  const top = new Map<string, Entry>();
  const index = (ns: JsonNamespace, scopes: Map<string, Entry>[]) => {
    const here = scopes[0]!;
    for (const [name, node] of Object.entries(ns.nested ?? {})) {
      if (node.values || node.fields) {
        const inner = new Map<string, Entry>();
        const chain = node.fields ? [inner, ...scopes] : scopes; // one per message, shared by its fields
        here.set(name, { node, name, chain });
        if (node.fields && node.nested) index(node, chain);
      } else if (node.nested) {
        index(node, [new Map(), ...scopes]); // a package (google.protobuf): not visible by simple name
      }
    }
  };
  index(json, [top]);
  const make = (e: Entry): MessageType | EnumType => {
    if (e.made) return e.made;
    const { node, name } = e;
    if (node.values) {
      const valuesById: Record<number, string> = {};
      for (const [k, v] of Object.entries(node.values)) valuesById[v] ??= k;
      return (e.made = { kind: 'enum', name, values: node.values, valuesById });
    }
    const t: MessageType = { kind: 'message', name, fieldsArray: [], fieldsById: {}, fields: {} };
    e.made = t; // before its fields: a message may name itself
    const fields = typeof node.fields === 'string' ? JSON.parse(node.fields) as JsonFields : node.fields!;
    for (const [fname, f] of Object.entries(fields)) {
      const field: FieldInfo = {
        name: fname, id: f.id, type: f.type, repeated: f.rule === 'repeated', required: f.rule === 'required',
        packed: f.options?.packed === true, resolvedType: null, codec: 0, wire: 0,
      };
      if (f.options) field.options = f.options;
      t.fieldsArray.push(field);
      t.fieldsById[f.id] = field;
      t.fields[fname] = field;
      const typeName = f.type.split('.').pop()!;
      for (const scope of e.chain) {
        const named = scope.get(typeName);
        if (named) {
          field.resolvedType = make(named);
          break;
        }
      }
      setCodec(field);
    }
    return t;
  };
  return { lookup: (name) => { const e = top.get(name); return e && make(e); } };
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

function loadBundle(): JsonNamespace | undefined {
  try {
    return JSON.parse(fs.readFileSync(bundlePath, 'utf8')) as JsonNamespace;
  } catch {
    return undefined;
  }
}

/**
 * The schema parsed from the .proto files, as JSON for bundlePath, each message's fields as a
 * string of their own JSON: parsed when the message is first used, and the whole file parses
 * in a third of the time (a command uses a few dozen of its ~200 messages).
 */
export function schemaJson(): string {
  const lazy = (ns: JsonNamespace) => {
    for (const node of Object.values(ns.nested ?? {})) {
      if (node.fields) node.fields = JSON.stringify(node.fields);
      lazy(node);
    }
  };
  const json = parseProtos();
  lazy(json);
  return JSON.stringify(json);
}

/** The loaded schema (CRIU's message names are global, there is no package). */
export function schema(): Schema {
  root ??= buildSchema(loadBundle() ?? parseProtos());
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
