// A container as its OCI runtime knows it: `runc --root R state ID` (the OCI state, plus runc's
// rootfs and created time), checked field by field. (The runtime runs through node:child_process:
// execa does not go into stasis's one-file build, scripts/bundle.mjs.)

import { execFile } from 'node:child_process';

export interface RuntimeOptions {
  /** The runtime's executable (default runc, found through PATH). */
  runtime?: string;
  /** Its state directory (`--root`); the runtime's own default when undefined. */
  runtimeRoot?: string;
}

export interface RuntimeState {
  id: string;
  /** Host PID of the container's init (0 once stopped). */
  pid: number;
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  bundle: string;
  rootfs: string;
  /** RFC 3339 time the runtime created the container. */
  created: string;
  annotations: Record<string, string>;
}

/** No such container, or the runtime could not say: the message is one line. */
export class RuntimeStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuntimeStateError';
  }
}

const STATUSES = ['creating', 'created', 'running', 'paused', 'stopped'];

/** The runtime's global arguments for `opts`. */
export function runtimeArgs(opts: RuntimeOptions): string[] {
  return opts.runtimeRoot ? ['--root', opts.runtimeRoot] : [];
}

/**
 * The last meaningful line a runtime printed (runc logs JSON or logfmt), the first line of its
 * message only (runc's "criu failed" goes on with the log's path).
 */
export function runtimeMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines[lines.length - 1] ?? '';
  let msg = last;
  try {
    const j = JSON.parse(last) as { msg?: string };
    if (j.msg) msg = j.msg;
  } catch {
    const m = /msg="((?:[^"\\]|\\.)*)"/.exec(last);
    if (m) msg = m[1]!.replace(/\\"/g, '"').replace(/\\n/g, '\n');
  }
  return msg.split('\n')[0]!.trim();
}

/** Check the JSON `runc state` printed. */
export function toRuntimeState(value: unknown, id: string): RuntimeState {
  const bad = (what: string): never => {
    throw new RuntimeStateError(`the runtime's state of container ${id}: ${what}`);
  };
  if (typeof value !== 'object' || value === null) bad('not a JSON object');
  const v = value as Record<string, unknown>;
  for (const k of ['id', 'status', 'bundle']) if (typeof v[k] !== 'string') bad(`${k} is missing or not a string`);
  if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid < 0) bad('pid is missing or not a PID');
  if (!STATUSES.includes(v.status as string)) bad(`unknown status "${String(v.status)}"`);
  const annotations = v.annotations ?? {};
  if (typeof annotations !== 'object' || annotations === null) bad('annotations is not an object');
  return {
    id: v.id as string, pid: v.pid as number, status: v.status as RuntimeState['status'], bundle: v.bundle as string,
    rootfs: typeof v.rootfs === 'string' ? v.rootfs : '', created: typeof v.created === 'string' ? v.created : '',
    annotations: annotations as Record<string, string>,
  };
}

/** `RUNTIME ARGS` run to its end: exit code (undefined: it could not be run), stdout, stderr. */
export function runRuntimeCommand(runtime: string, args: string[]): Promise<{ exitCode?: number; stdout: string; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(runtime, args, { encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = (err as NodeJS.ErrnoException & { code?: unknown } | null)?.code;
      if (err && typeof code !== 'number') resolve({ stdout, stderr, error: err.message.split('\n')[0] });
      else resolve({ exitCode: typeof code === 'number' ? code : 0, stdout, stderr });
    }).stdin?.end();
  });
}

/** `RUNTIME [--root R] state ID`. */
export async function runtimeState(id: string, opts: RuntimeOptions = {}): Promise<RuntimeState> {
  const runtime = opts.runtime ?? 'runc';
  const r = await runRuntimeCommand(runtime, [...runtimeArgs(opts), 'state', id]);
  if (r.exitCode === undefined) throw new RuntimeStateError(`cannot run ${runtime}: ${r.error}`);
  if (r.exitCode !== 0) {
    const msg = runtimeMessage(r.stderr);
    if (/does not exist|not exist/.test(msg)) {
      throw new RuntimeStateError(`no container "${id}" in ${runtime}${opts.runtimeRoot ? ` (--root ${opts.runtimeRoot})` : ''}`);
    }
    throw new RuntimeStateError(`${runtime} state ${id}: ${msg || `exit ${r.exitCode}`}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(r.stdout);
  } catch {
    throw new RuntimeStateError(`${runtime} state ${id} printed no JSON`);
  }
  return toRuntimeState(value, id);
}
