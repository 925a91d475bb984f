// /proc/PID/mountinfo (fs/proc_namespace.c show_mountinfo), one mount per line:
//   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2)(3)   (4)   (5)          (6)     (7...)    -  (8)  (9)       (10)
// Optional fields (7) run until a lone "-". Root, mount point and source escape space, tab,
// newline and backslash as \040 \011 \012 \134; they are decoded here.
import { type ProcPid, dec, lines, malformed, procPath, readProcText, udec, unescapeOctal } from './read.js';

export interface MountInfo {
  mntId: number;
  parentId: number;
  /** st_dev of files on this mount. */
  devMajor: number;
  devMinor: number;
  /** The directory of the filesystem that forms this mount's root. */
  root: string;
  /** Where it is mounted, relative to the reader's root. */
  mountPoint: string;
  /** Per-mount options: `rw`/`ro`, `nosuid`, `relatime`... */
  mountOptions: string[];
  /** `shared:N`: peer group N. */
  shared?: number;
  /** `master:N`: slave of peer group N. */
  master?: number;
  /** `propagate_from:N`: the nearest dominant peer group visible to the reader. */
  propagateFrom?: number;
  /** `unbindable`. */
  unbindable: boolean;
  /** The optional fields, raw (including any a newer kernel adds). */
  optional: string[];
  /** `ext4`, `proc`, `fuse.sshfs`... (type.subtype) */
  fstype: string;
  /** Mount source, or 'none'. */
  source: string;
  /** Superblock options, raw text (comma-separated; values may contain escapes). */
  superOptions: string;
}

/** Parses the text of a mountinfo file; `path` names it in errors. */
export function parseMountinfo(text: string, path = 'mountinfo'): MountInfo[] {
  return lines(text).map((line, i) => {
    const lineNo = i + 1;
    const where = [path, lineNo, line] as const;
    const t = line.split(' ');
    const dash = t.indexOf('-', 6);
    if (t.length < 10 || dash < 0 || t.length < dash + 4) throw malformed(path, lineNo, 'not a mountinfo line', line);
    const dev = /^(\d+):(\d+)$/.exec(t[2]!);
    if (!dev) throw malformed(path, lineNo, 'major:minor is not "N:N"', line);
    const m: MountInfo = {
      mntId: udec(t[0]!, 'mount id', where),
      parentId: udec(t[1]!, 'parent id', where),
      devMajor: udec(dev[1]!, 'major', where),
      devMinor: udec(dev[2]!, 'minor', where),
      root: unescapeOctal(t[3]!),
      mountPoint: unescapeOctal(t[4]!),
      mountOptions: t[5]!.split(','),
      unbindable: false,
      optional: t.slice(6, dash),
      fstype: unescapeOctal(t[dash + 1]!),
      source: unescapeOctal(t[dash + 2]!),
      superOptions: t.slice(dash + 3).join(' '),
    };
    for (const opt of m.optional) {
      const [tag, value] = opt.split(':');
      if (tag === 'shared') m.shared = dec(value ?? '', 'shared', where);
      else if (tag === 'master') m.master = dec(value ?? '', 'master', where);
      else if (tag === 'propagate_from') m.propagateFrom = dec(value ?? '', 'propagate_from', where);
      else if (tag === 'unbindable') m.unbindable = true;
    }
    return m;
  });
}

/** The mounts visible to a process (`/proc/PID/mountinfo`), in the kernel's order. */
export function readMountinfo(pid: ProcPid): MountInfo[] {
  const path = procPath(pid, 'mountinfo');
  return parseMountinfo(readProcText(path), path);
}
