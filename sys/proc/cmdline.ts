// /proc/PID/cmdline and /proc/PID/environ: NUL-terminated strings read from the task's memory
// (arg_start..arg_end, env_start..env_end). environ needs ptrace access to the task.
import { type ProcPid, procPath, readProcBytes } from './read.js';

/** Splits NUL-separated strings; a final terminator does not make an extra empty string. */
export function splitNul(bytes: Buffer): string[] {
  if (bytes.length === 0) return [];
  const text = bytes.toString('utf8');
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** argv of a process (empty for kernel threads and zombies). */
export function readCmdline(pid: ProcPid): string[] {
  return splitNul(readProcBytes(procPath(pid, 'cmdline')));
}

/** The initial environment of a process as `NAME=value` strings. */
export function readEnviron(pid: ProcPid): string[] {
  return splitNul(readProcBytes(procPath(pid, 'environ')));
}

/** `NAME=value` strings as a Map (the first '=' splits; the first of duplicates wins, as getenv does). */
export function environMap(env: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of env) {
    const eq = e.indexOf('=');
    const name = eq < 0 ? e : e.slice(0, eq);
    if (!out.has(name)) out.set(name, eq < 0 ? '' : e.slice(eq + 1));
  }
  return out;
}
