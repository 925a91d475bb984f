// Namespace links, /proc/PID/ns/KIND -> "KIND:[INODE]". Two tasks share a namespace when the
// inode numbers (st_ino of the link target) are equal; CRIU's ns ids are keyed by them.
import { type ProcPid, ProcError, malformed, procPath, readProcLink, udec } from './read.js';

export const NS_KINDS = [
  'pid', 'net', 'ipc', 'uts', 'mnt', 'user', 'cgroup', 'time', 'pid_for_children', 'time_for_children',
] as const;
export type NsKind = (typeof NS_KINDS)[number];

export interface NsLink {
  /** The link's name under ns/ (`pid_for_children`...). */
  kind: NsKind;
  /** The namespace type the link text names (`pid` for pid_for_children, `mnt`...). */
  type: string;
  /** The namespace inode: equal to fs.statSync('/proc/PID/ns/KIND').ino. */
  ino: number;
}

/** Parses a link target like `net:[4026531833]`. */
export function parseNsLink(kind: NsKind, target: string, path = `ns/${kind}`): NsLink {
  const m = /^([a-z_]+):\[(\d+)\]$/.exec(target);
  if (!m) throw malformed(path, undefined, 'namespace link is not "type:[inode]"', target);
  return { kind, type: m[1]!, ino: udec(m[2]!, 'namespace inode', [path, undefined, target]) };
}

/** One namespace link of a process. */
export function readNsLink(pid: ProcPid, kind: NsKind): NsLink {
  const path = procPath(pid, 'ns', kind);
  return parseNsLink(kind, readProcLink(path), path);
}

/**
 * Every namespace link of a process (or those of `kinds`). Kinds the kernel does not have (time before 5.6, cgroup
 * before 4.6) are absent from the result; pid_for_children of a process that has unshared its pid
 * namespace but not forked yet is absent too (the link reads as ENOENT).
 */
export function readNamespaces(pid: ProcPid, kinds: readonly NsKind[] = NS_KINDS): Partial<Record<NsKind, NsLink>> {
  const out: Partial<Record<NsKind, NsLink>> = {};
  for (const kind of kinds) {
    try {
      out[kind] = readNsLink(pid, kind);
    } catch (err) {
      if (err instanceof ProcError && err.code === 'ENOENT') continue;
      throw err;
    }
  }
  return out;
}
