// /proc/PID/cgroup: "hierarchy-id:controllers:path" per line. The path may itself contain ':'
// so only the first two colons split. On cgroup v2 the single line is "0::/path".
import { type ProcPid, lines, malformed, procPath, readProcText, udec } from './read.js';

export interface CgroupLine {
  /** Hierarchy id; 0 for the cgroup v2 unified hierarchy. */
  hierarchy: number;
  /** Controllers bound to it (`cpu`, `cpuacct`, `name=systemd`); empty for v2. */
  controllers: string[];
  /** The cgroup path relative to the hierarchy root (of the reader's cgroup namespace). */
  path: string;
}

export function parseCgroup(text: string, path = 'cgroup'): CgroupLine[] {
  return lines(text).map((line, i) => {
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (a <= 0 || b < 0) throw malformed(path, i + 1, 'not "id:controllers:path"', line);
    const controllers = line.slice(a + 1, b);
    return {
      hierarchy: udec(line.slice(0, a), 'hierarchy id', [path, i + 1, line]),
      controllers: controllers === '' ? [] : controllers.split(','),
      path: line.slice(b + 1),
    };
  });
}

/** `/proc/PID/cgroup`. */
export function readCgroup(pid: ProcPid): CgroupLine[] {
  const path = procPath(pid, 'cgroup');
  return parseCgroup(readProcText(path), path);
}
