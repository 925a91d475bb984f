// Every option of criu 4.2's command line (its getopt table: `criu --help` and the man page
// describe them), and what stasis makes of each: supported (cli.ts acts on it), accepted with no
// effect here (`noEffect` says why; the log says so at -v3), or refused (`refused` says why, one
// line, exit 1). No option criu documents is an "unknown option". The README's option table is
// this list; test/runtime-hook/options.test.ts checks it against criu's own --help.

import type { OptionSpec } from './options.js';

const NO_PAGE_SERVER = 'only for a page server, which stasis does not have';
const NO_CGROUP_PROPS = 'stasis neither saves nor restores cgroups or their properties: a restored tree stays in the cgroups it is restored in (a runtime\'s), or goes where --cgroup-root says';

/** The values criu accepts for options that take one of a few words. */
export const CHOICES: Record<string, readonly string[]> = {
  'manage-cgroups': ['none', 'props', 'soft', 'full', 'strict', 'ignore'],
  'pre-dump-mode': ['splice', 'read'],
  'network-lock': ['iptables', 'nftables', 'skip'],
  'file-validation': ['filesize', 'buildid'],
  'empty-ns': ['net'],
};

export const OPTIONS: OptionSpec[] = [
  // Generic.
  { long: 'tree', short: 't', value: true },
  { long: 'images-dir', short: 'D', value: true },
  { long: 'work-dir', short: 'W', value: true },
  { long: 'log-file', short: 'o', value: true },
  { long: 'verbosity', short: 'v', optionalValue: true },
  { long: 'leave-running', short: 'R' },
  { long: 'leave-stopped', short: 's', refused: 'stasis leaves a dumped tree running (-R) or kills it' },
  { long: 'restore-detached', short: 'd', negatable: true },
  { long: 'daemon', negatable: true, alias: 'restore-detached' },
  { long: 'restore-sibling', short: 'S', negatable: true },
  { long: 'pidfile', value: true },
  { long: 'status-fd', value: true },
  { long: 'display-stats', negatable: true },
  { long: 'version', short: 'V' },
  { long: 'help', short: 'h' },
  { long: 'config', value: true },
  { long: 'no-default-config' },
  { long: 'timeout', value: true },
  { long: 'close', value: true, repeat: true, noEffect: 'stasis passes none of its own descriptors to a restored tree anyway (the value is checked)' },
  { long: 'shell-job', short: 'j', negatable: true },
  { long: 'file-locks', short: 'l', negatable: true },
  { long: 'ext-unix-sk', short: 'x', optionalValue: true },
  { long: 'inherit-fd', value: true, repeat: true },
  { long: 'link-remap', negatable: true },
  { long: 'feature', value: true },
  // Containers: criu's names.
  { long: 'root', short: 'r', value: true },
  { long: 'ext-mount-map', short: 'M', value: true, repeat: true },
  { long: 'external', value: true, repeat: true },
  { long: 'freeze-cgroup', value: true },
  { long: 'empty-ns', value: true },
  { long: 'join-ns', short: 'J', value: true, repeat: true },
  { long: 'manage-cgroups', optionalValue: true, noEffect: NO_CGROUP_PROPS },
  { long: 'cgroup-root', value: true, repeat: true },
  { long: 'cgroup-props', value: true, noEffect: NO_CGROUP_PROPS },
  { long: 'cgroup-props-file', value: true, noEffect: NO_CGROUP_PROPS },
  { long: 'cgroup-dump-controller', value: true, repeat: true, noEffect: NO_CGROUP_PROPS },
  { long: 'cgroup-yard', value: true, noEffect: 'stasis mounts no cgroup hierarchies of its own' },
  // Accepted as criu accepts them; what they ask for is what stasis does anyway, or has no meaning here.
  { long: 'tcp-established', negatable: true },
  { long: 'skip-in-flight', negatable: true },
  { long: 'evasive-devices', negatable: true, noEffect: 'device files are reopened by the path they had' },
  { long: 'pre-dump-mode', value: true, noEffect: 'only for pre-dump, which stasis does not have (the value is checked)' },
  { long: 'ghost-limit', value: true, noEffect: 'deleted files are kept up to stasis\'s own limit, criu\'s default (1 MiB)' },
  { long: 'ghost-fiemap', negatable: true, noEffect: 'deleted files\' contents are read whole' },
  { long: 'force-irmap', negatable: true, noEffect: 'an inotify watch\'s path is found through its file handle at dump' },
  { long: 'irmap-scan-path', value: true, repeat: true, noEffect: 'an inotify watch\'s path is found through its file handle at dump' },
  { long: 'log-pid', negatable: true, noEffect: 'one log is written for the whole tree' },
  { long: 'libdir', short: 'L', value: true, noEffect: 'stasis has no plugins' },
  { long: 'cpu-cap', optionalValue: true, noEffect: 'the CPU is not compared between dump and restore hosts beyond the XSAVE layout stasis checks itself' },
  { long: 'weak-sysctls', negatable: true, noEffect: 'the only sysctls stasis restores are an ipc namespace\'s, which every kernel it runs on has' },
  { long: 'deprecated', negatable: true, noEffect: 'stasis has no deprecated features to turn on' },
  { long: 'file-validation', value: true, noEffect: 'a file is checked by its size at restore, always (the value is checked)' },
  { long: 'skip-file-rwx-check', negatable: true, noEffect: 'stasis does not compare file permissions on restore' },
  { long: 'mntns-compat-mode', negatable: true, noEffect: 'stasis has one way of restoring mounts' },
  { long: 'network-lock', value: true },
  { long: 'unprivileged', negatable: true, noEffect: 'stasis needs the same privileges either way' },
  { long: 'allow-uprobes', negatable: true, noEffect: 'stasis has no special handling of uprobes mappings to turn on' },
  { long: 'auto-dedup', negatable: true, noEffect: 'stasis makes no incremental dumps, so images have nothing to deduplicate' },
  { long: 'extra', negatable: true, noEffect: 'stasis check tries every feature it relies on' },
  { long: 'experimental', negatable: true, noEffect: 'stasis check tries every feature it relies on' },
  { long: 'all', noEffect: 'stasis check tries every feature it relies on' },
  // Page server and TLS: no page server here.
  { long: 'address', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'port', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'ps-socket', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'tls-cacert', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'tls-cacrl', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'tls-cert', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'tls-key', value: true, noEffect: NO_PAGE_SERVER },
  { long: 'tls-no-cn-verify', noEffect: NO_PAGE_SERVER },
  // Refused: what they ask for, stasis cannot do.
  { long: 'page-server', negatable: true, refused: 'stasis has no page server: images are written to the images directory' },
  { long: 'tls', negatable: true, refused: 'stasis has no page server to secure' },
  { long: 'lazy-pages', refused: 'stasis has no lazy-pages server: memory is restored whole' },
  { long: 'track-mem', negatable: true, refused: 'stasis makes no incremental dumps (no memory change tracking)' },
  { long: 'prev-images-dir', value: true, refused: 'stasis makes no incremental dumps' },
  { long: 'stream', negatable: true, refused: 'stasis writes images to a directory, not to criu-image-streamer' },
  { long: 'tcp-close', negatable: true },
  { long: 'veth-pair', value: true, repeat: true, refused: 'veth pairs with a peer outside the dump are not supported' },
  { long: 'action-script', value: true, repeat: true, refused: 'stasis runs no action scripts' },
  { long: 'exec-cmd', refused: 'stasis cannot exec a command after a restore' },
  { long: 'skip-mnt', value: true, repeat: true, refused: 'stasis cannot leave a mount out of a mount namespace it dumps' },
  { long: 'enable-fs', value: true, repeat: true, refused: 'stasis does not dump the contents of mounts' },
  { long: 'enable-external-sharing', refused: 'mounts sharing propagation with mounts outside the dump are not restored' },
  { long: 'enable-external-masters', refused: 'mounts slave to mounts outside the dump are not restored' },
  { long: 'lsm-profile', value: true, refused: 'stasis cannot set LSM profiles' },
  { long: 'lsm-mount-context', value: true, refused: 'stasis cannot set LSM mount contexts' },
  { long: 'ms', refused: 'deprecated in criu itself (see check\'s options)' },
];

/** criu's actions that stasis does not have, and why. */
export const REFUSED_ACTIONS: Record<string, string> = {
  'pre-dump': 'stasis makes no incremental dumps: dump the tree with `dump`',
  'page-server': 'stasis has no page server: images are written to the images directory',
  'lazy-pages': 'stasis has no lazy-pages server: memory is restored whole',
  service: 'use `stasis swrk FD` (the RPC on a socket, as runc and libcriu start it)',
  dedup: 'stasis makes no incremental dumps, so images have nothing to deduplicate',
  cpuinfo: 'stasis writes no cpuinfo image; it checks the XSAVE layout itself at restore',
};
