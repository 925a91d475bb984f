// `stasis --help` and `stasis ACTION --help`: each action, and under it its options, one line each.
// The options are criu's names (criu-options.ts lists them all); those stasis accepts without
// effect, and those it refuses, are listed from there with the reason. test/runtime-hook/cli.test.ts
// checks that every option is described here.

import { CHOICES, OPTIONS } from './criu-options.js';
import type { OptionSpec } from './options.js';

interface ActionHelp {
  name: string;
  /** What follows the action's name on its usage line. */
  args: string;
  summary: string;
  /** [the option as typed, what it does]. */
  options: [string, string][];
}

const LOG: [string, string][] = [
  ['-W, --work-dir DIR', 'where the log and stats files go (default: the images directory)'],
  ['-o, --log-file FILE', 'write a log (relative to the work directory; - for none)'],
  ['-v, --verbosity[=N], -vN, -vv..', 'how much to log: 0 .. 4 (default 2); each v one more'],
  ['--display-stats', 'print timings and page counts when done'],
];

const ACTIONS: ActionHelp[] = [
  {
    name: 'dump', args: '-t PID -D DIR [options]', summary: 'checkpoint the process tree rooted at PID into DIR (then killed, unless -R)',
    options: [
      ['-t, --tree PID', 'the root of the tree to dump'],
      ['-D, --images-dir DIR', 'where the images go (created 0700 if missing)'],
      ...LOG,
      ['-R, --leave-running', 'let the tree run on after the dump'],
      ['-j, --shell-job', 'the tree is a shell job: its terminal and session are outside'],
      ['-l, --file-locks', 'dump file locks'],
      ['-x, --ext-unix-sk', 'allow unix sockets connected to processes outside the tree'],
      ['--link-remap', 'a file deleted while open may be linked back in place for the restore'],
      ['--tcp-established', 'dump established TCP connections (repair mode); the network is locked until they are restored'],
      ['--tcp-close', 'record established TCP connections without their state (restored closed)'],
      ['--skip-in-flight', 'leave out a TCP listener\'s connections not yet accepted'],
      ['--network-lock iptables|skip', 'how connections are locked while away (default iptables)'],
      ['--timeout SECONDS', 'give up if the tree is not frozen within this time'],
      ['--status-fd FD', 'write a zero byte to FD and close it once the images are written'],
      ['--freeze-cgroup DIR', 'freeze the tree through this cgroup instead of stopping each task'],
      ['-M, --ext-mount-map MOUNTPOINT:KEY', 'a mount from outside the container, saved as KEY'],
      ['--external mnt[MOUNTPOINT]:KEY', 'the same, in criu\'s other spelling'],
      ['--external net[INODE]:KEY', 'a network namespace left out of the dump'],
      ['--empty-ns net', 'leave the network namespace to the runtime'],
    ],
  },
  {
    name: 'restore', args: '-D DIR [options]', summary: 'bring back the tree dumped in DIR; waits for it unless -d',
    options: [
      ['-D, --images-dir DIR', 'the images to restore'],
      ...LOG,
      ['-d, --restore-detached', 'return once the tree runs, instead of waiting for it'],
      ['--daemon', 'the same as -d'],
      ['-S, --restore-sibling', 'with -d: the restored root becomes a child of stasis\'s parent'],
      ['--status-fd FD', 'write a zero byte to FD and close it once the tree runs'],
      ['--pidfile FILE', 'write the restored root\'s PID into FILE'],
      ['--inherit-fd fd[N]:KEY', 'our descriptor N where the tree had KEY (pipe:[123]...)'],
      ['-j, --shell-job', 'a tree dumped with -j: it joins our terminal and session'],
      ['--tcp-established', 'restore established TCP connections (the dump\'s lock is lifted once they are live)'],
      ['--tcp-close', 'restore established TCP connections closed'],
      ['-r, --root DIR', 'the container\'s root filesystem'],
      ['-M, --ext-mount-map KEY:HOSTPATH', 'what to mount where the dump saved KEY'],
      ['--external mnt[KEY]:HOSTPATH', 'the same, in criu\'s other spelling'],
      ['-J, --join-ns ipc|uts|net|time:NSFILE', 'restore into an existing namespace (a file or a PID)'],
      ['--cgroup-root [CTRL:]/PATH', 'put the restored tree into this cgroup (of CTRL\'s hierarchy; the v2 one without)'],
    ],
  },
  {
    name: 'check', args: '[--feature NAME]', summary: 'test the kernel features stasis relies on',
    options: [['--feature NAME', 'only whether criu\'s feature NAME is supported by stasis here (exit 0 or 1)']],
  },
  {
    name: 'show', args: 'FILE | -D DIR', summary: 'an image file as crit\'s JSON, or a summary of a dump',
    options: [['-D, --images-dir DIR', 'summarize the dump in DIR']],
  },
  {
    name: 'container', args: 'checkpoint ID --export FILE|--create-image DIR [options] | restore --import FILE|DIR [options]',
    summary: 'checkpoint a container through its runtime into an archive (Podman\'s layout); restore one into a fresh bundle',
    options: [
      ['checkpoint --export FILE', 'the archive to write'],
      ['checkpoint --create-image DIR', 'an OCI image layout to write, the archive its one layer (skopeo copy oci:DIR ... moves it)'],
      ['checkpoint --compress zstd|gzip|none', 'how the archive is compressed (default zstd)'],
      ['checkpoint --leave-running', 'let the container run on'],
      ['checkpoint --rootfs-diff-from DIR', 'a plain directory rootfs: carry only its changes against DIR'],
      ['restore --import FILE|DIR', 'the archive (ours, Podman\'s; compression found from its first bytes), or a checkpoint image\'s OCI layout'],
      ['restore --name NAME', 'the restored container\'s id (default: the archive\'s)'],
      ['restore --bundle DIR', 'the new bundle, made here (default /var/lib/stasis/containers/NAME)'],
      ['restore --rootfs DIR', 'the rootfs the archive\'s changes apply to (an image\'s, for a Podman archive)'],
      ['--runtime runc', 'the OCI runtime (runc)'],
      ['--runtime-root DIR', 'the runtime\'s state directory (its --root)'],
    ],
  },
  {
    name: 'inspect', args: 'ARCHIVE|DIR... [options] | --list [DIR...]',
    summary: 'what a container checkpoint holds (an archive of Podman, CRI-O/kubelet or containerd, or a directory), as checkpointctl shows it',
    options: [
      ['--format tree|json|yaml', 'how to show it (default tree; json has checkpointctl\'s field names)'],
      ['--ps-tree', 'the process tree'],
      ['--ps-tree-cmd', 'the process tree with command lines (read from the dumped memory)'],
      ['--ps-tree-env', 'the process tree with environment variables (read from the dumped memory)'],
      ['--files', 'open files of each process, with cwd and root'],
      ['--sockets', 'open sockets of each process'],
      ['--mounts', 'the container\'s mounts'],
      ['--stats', 'the dump\'s statistics (stats-dump)'],
      ['--metadata', 'pod, namespace and annotations'],
      ['--all', 'all of the above'],
      ['--pid N', 'only process N and those below it'],
      ['--summary', 'every image summarized, as show -D does (archives read in memory)'],
      ['--list [DIR...]', 'the checkpoint-* archives in DIR (default /var/lib/kubelet/checkpoints)'],
    ],
  },
  {
    name: 'memparse', args: 'ARCHIVE|DIR [-p PID] [--search STR | --search-regex RE] [-c N] [-o FILE]',
    summary: 'processes\' dumped memory: sizes, or one process\'s memory as a hex dump, or searched (nothing unpacked)',
    options: [
      ['-p, --pid PID', 'the process whose memory to show or search'],
      ['-s, --search STR', 'where STR occurs in its memory'],
      ['-r, --search-regex RE', 'where the regular expression RE matches'],
      ['-c, --context N', 'N bytes of memory around each match'],
      ['-o, --output FILE', 'write the hex dump of its memory to FILE'],
    ],
  },
  {
    name: 'diff', args: 'A B [--format tree|json|yaml]',
    summary: 'what changed between two checkpoints of a container: processes, threads, command lines, descriptors, sockets, mounts, memory pages',
    options: [['--format tree|json|yaml', 'how to show it (default tree)']],
  },
  { name: 'swrk', args: 'FD', summary: 'serve criu\'s RPC on the SOCK_SEQPACKET socket FD (runc, go-criu, libcriu)', options: [] },
  { name: 'demo', args: '', summary: 'checkpoint and restore a small counter, showing each step', options: [] },
];

const GENERAL: [string, string][] = [
  ['-h, --help', 'this text; `stasis ACTION --help` for one action'],
  ['-V, --version', 'the CRIU version stasis stands in for, and stasis\'s own'],
  ['--config FILE', 'read options from FILE too (one a line, without dashes)'],
  ['--no-default-config', 'skip /etc/criu/default.conf and ~/.criu/default.conf'],
];

/** How an option is typed: `-x, --long VALUE` or `--long[=VALUE]`. */
function usage(o: OptionSpec): string {
  const arg = CHOICES[o.long]?.join('|') ?? 'VALUE';
  return `${o.short ? `-${o.short}, ` : ''}--${o.long}${o.value ? ` ${arg}` : o.optionalValue ? `[=${arg}]` : ''}`;
}

/** criu's options that stasis accepts without effect, or refuses, each with why. */
function otherOptions(): string {
  const noEffect = OPTIONS.filter((o) => o.noEffect).map((o): [string, string] => [usage(o), o.noEffect!]);
  const refused = OPTIONS.filter((o) => o.refused).map((o): [string, string] => [usage(o), o.refused!]);
  return `\ncriu's options accepted with no effect here:\n${table(noEffect)}` +
    `\ncriu's options refused (exit 1), and why:\n${table(refused)}`;
}

/** Options longer than this push their text along instead of widening the column. */
const OPTION_COLUMN = 34;

function table(rows: [string, string][]): string {
  return rows.map(([o, d]) => `    ${o.padEnd(OPTION_COLUMN)}  ${d}\n`).join('');
}

function actionText(a: ActionHelp): string {
  return `  ${[a.name, a.args].filter(Boolean).join(' ')}\n      ${a.summary}\n${table(a.options)}`;
}

/** Whether `name` is an action with help of its own. */
export function hasHelp(name: string): boolean {
  return ACTIONS.some((a) => a.name === name);
}

/** The help for `action`, or for all of them. */
export function helpText(action?: string): string {
  const one = ACTIONS.find((a) => a.name === action);
  if (one) return `usage: stasis ${[one.name, one.args].filter(Boolean).join(' ')}\n  ${one.summary}\n${table(one.options)}`;
  return 'usage: stasis ACTION [options]  (criu\'s actions and options: stasis stands in for criu)\n\n' +
    `actions:\n${ACTIONS.map(actionText).join('')}\noptions of every action:\n${table(GENERAL)}${otherOptions()}`;
}
