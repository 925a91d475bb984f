// Every kind of file CRIU puts in an image directory: its magic, how its
// head looks, its file name pattern(s) and what its entries are.
//
// Head of a file:
//   inventory  one u32, INVENTORY_MAGIC
//   common     u32 IMG_COMMON_MAGIC, then the per-type magic
//   service    u32 IMG_SERVICE_MAGIC, then the per-type magic (stats, irmap-cache)
//   raw        nothing: the file is not made of protobuf entries (pages, tarballs, ip dumps)
// `name` is the name crit shows as "magic" in its JSON.

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;
export const INVENTORY_MAGIC = 0x58313116;
/** inventory.img_version of every current dump ("images v1.1": two-word heads). */
export const IMAGES_VERSION = 2;

export type HeadKind = 'inventory' | 'common' | 'service' | 'raw';

/** How the entries of a file follow one another. */
export type EntryLayout =
  | 'plain' // every entry is `message`
  | 'pagemap' // a pagemap_head, then pagemap_entry-s
  | 'ghost-file'; // a ghost_file_entry, then (with chunks) ghost_chunk_entry-s

/** Raw bytes that follow an entry; their length comes from the entry (see extra.ts). */
export type ExtraKind =
  | 'pipe-data' // pipe_data_entry.bytes
  | 'sk-queue' // sk_packet_entry.length
  | 'tcp-stream' // inq_len + outq_len
  | 'ipc-shm' // size, padded to 4 (none when in_pagemaps)
  | 'ipc-sem' // nsems u16 values, padded to 8
  | 'ipc-msg' // qnum x (u32 size, ipc_msg, msize bytes padded to 8)
  | 'bpfmap-data'; // keys_bytes + values_bytes

export interface ImageType {
  readonly name: string;
  readonly magic: number; // 0 for raw files
  readonly head: HeadKind;
  /** CRIU's printf-style file name patterns (%u, %lu, %d, %x, %s). */
  readonly files: readonly string[];
  readonly message?: string;
  readonly layout?: EntryLayout;
  readonly extra?: ExtraKind;
}

type Row = [name: string, magic: number, files: string | string[], message: string, more?: Partial<ImageType>];

// Per-process images.
const taskImages: Row[] = [
  ['PSTREE', 0x50273030, 'pstree.img', 'pstree_entry'],
  ['CORE', 0x55053847, 'core-%u.img', 'core_entry'],
  ['IDS', 0x54432030, 'ids-%u.img', 'task_kobj_ids_entry'],
  ['MM', 0x57492820, 'mm-%u.img', 'mm_entry'],
  ['PAGEMAP', 0x56084025, ['pagemap-%lu.img', 'pagemap-shmem-%lu.img'], 'pagemap_entry', { layout: 'pagemap' }],
  ['FDINFO', 0x56213732, 'fdinfo-%u.img', 'fdinfo_entry'],
  ['FS', 0x51403912, 'fs-%u.img', 'fs_entry'],
  ['SECCOMP', 0x64413049, 'seccomp.img', 'seccomp_entry'],
  // Legacy per-task files, folded into core_entry / mm_entry since.
  ['VMAS', 0x54123737, 'vmas-%u.img', 'vma_entry'],
  ['SIGACT', 0x55344201, 'sigacts-%u.img', 'sa_entry'],
  ['ITIMERS', 0x57464056, 'itimers-%u.img', 'itimer_entry'],
  ['POSIX_TIMERS', 0x52603957, 'posix-timers-%u.img', 'posix_timer_entry'],
  ['CREDS', 0x54023547, 'creds-%u.img', 'creds_entry'],
  ['RLIMIT', 0x57113925, 'rlimit-%u.img', 'rlimit_entry'],
  ['SIGNAL', 0x59255647, ['signal-s-%u.img', 'signal-p-%u.img'], 'signal_queue_entry'],
];

// File descriptions and their data.
const fileImages: Row[] = [
  ['FILES', 0x56303138, 'files.img', 'file_entry'],
  ['PIPES_DATA', 0x56453709, 'pipes-data.img', 'pipe_data_entry', { extra: 'pipe-data' }],
  ['FIFO_DATA', 0x59333054, 'fifo-data.img', 'pipe_data_entry', { extra: 'pipe-data' }],
  ['SK_QUEUES', 0x56264026, 'sk-queues.img', 'sk_packet_entry', { extra: 'sk-queue' }],
  ['TCP_STREAM', 0x51465506, 'tcp-stream-%x.img', 'tcp_stream_entry', { extra: 'tcp-stream' }],
  ['REMAP_FPATH', 0x59133954, 'remap-fpath.img', 'remap_file_path_entry'],
  ['GHOST_FILE', 0x52583605, 'ghost-file-%x.img', 'ghost_file_entry', { layout: 'ghost-file' }],
  ['MEMFD_INODE', 0x48453499, 'memfd.img', 'memfd_inode_entry'],
  ['EVENTPOLL_TFD', 0x44433746, 'eventpoll-tfd.img', 'eventpoll_tfd_entry'],
  ['INOTIFY_WD', 0x54562009, 'inotify-wd.img', 'inotify_wd_entry'],
  ['FANOTIFY_MARK', 0x56506035, 'fanotify-mark.img', 'fanotify_mark_entry'],
  ['TTY_INFO', 0x59453036, 'tty-info.img', 'tty_info_entry'],
  ['TTY_DATA', 0x59413026, 'tty-data.img', 'tty_data_entry'],
  ['FILE_LOCKS', 0x54323616, 'filelocks.img', 'file_lock_entry'],
  ['BPFMAP_DATA', 0x64324033, 'bpfmap-data.img', 'bpfmap_data_entry', { extra: 'bpfmap-data' }],
  ['PIDFD', 0x54435556, 'pidfd.img', 'pidfd_entry'],
  // Legacy per-kind description files, all in files.img nowadays.
  ['REG_FILES', 0x50363636, 'reg-files.img', 'reg_file_entry'],
  ['EXT_FILES', 0x59255641, 'ext-files.img', 'ext_file_entry'],
  ['NS_FILES', 0x61394011, 'ns-files.img', 'ns_file_entry'],
  ['EVENTFD_FILE', 0x44523722, 'eventfd.img', 'eventfd_file_entry'],
  ['EVENTPOLL_FILE', 0x45023858, 'eventpoll.img', 'eventpoll_file_entry'],
  ['SIGNALFD', 0x57323820, 'signalfd.img', 'signalfd_entry'],
  ['TIMERFD', 0x50493712, 'timerfd.img', 'timerfd_entry'],
  ['INOTIFY_FILE', 0x48424431, 'inotify.img', 'inotify_file_entry'],
  ['FANOTIFY_FILE', 0x55096122, 'fanotify.img', 'fanotify_file_entry'],
  ['PIPES', 0x56513555, 'pipes.img', 'pipe_entry'],
  ['FIFO', 0x58364939, 'fifo.img', 'fifo_entry'],
  ['UNIXSK', 0x54373943, 'unixsk.img', 'unix_sk_entry'],
  ['INETSK', 0x56443851, 'inetsk.img', 'inet_sk_entry'],
  ['PACKETSK', 0x60454618, 'packetsk.img', 'packet_sock_entry'],
  ['NETLINK_SK', 0x58005614, 'netlinksk.img', 'netlink_sk_entry'],
  ['TUNFILE', 0x57143751, 'tunfile.img', 'tunfile_entry'],
  ['TTY_FILES', 0x59433025, 'tty.img', 'tty_file_entry'],
  ['BPFMAP_FILE', 0x57506142, 'bpfmap-file.img', 'bpfmap_file_entry'],
];

// Namespaces and other global state; N is a namespace id.
const nsImages: Row[] = [
  ['UTSNS', 0x54473203, 'utsns-%u.img', 'utsns_entry'],
  ['IPC_VAR', 0x53115007, 'ipcns-var-%u.img', 'ipc_var_entry'],
  ['IPCNS_SHM', 0x46283044, 'ipcns-shm-%u.img', 'ipc_shm_entry', { extra: 'ipc-shm' }],
  ['IPCNS_MSG', 0x55453737, 'ipcns-msg-%u.img', 'ipc_msg_entry', { extra: 'ipc-msg' }],
  ['IPCNS_SEM', 0x59573019, 'ipcns-sem-%u.img', 'ipc_sem_entry', { extra: 'ipc-sem' }],
  ['MNTS', 0x55563928, 'mountpoints-%u.img', 'mnt_entry'],
  ['NETDEV', 0x57373951, 'netdev-%u.img', 'net_device_entry'],
  ['NETNS', 0x55933752, 'netns-%u.img', 'netns_entry'],
  ['USERNS', 0x55474906, 'userns-%u.img', 'userns_entry'],
  ['TIMENS', 0x43114433, 'timens-%u.img', 'timens_entry'],
  ['PIDNS', 0x61157326, 'pidns-%u.img', 'pidns_entry'],
  ['CGROUP', 0x59383330, 'cgroup.img', 'cgroup_entry'],
  ['AUTOFS', 0x49353943, 'autofs-%u.img', 'autofs_entry'],
  ['BINFMT_MISC', 0x67343323, ['binfmt-misc.img', 'binfmt-misc-%u.img'], 'binfmt_misc_entry'],
  ['APPARMOR', 0x59423047, 'apparmor.img', 'apparmor_entry'],
  ['CPUINFO', 0x61404013, 'cpuinfo.img', 'cpuinfo_entry'],
];

function build(rows: Row[], head: HeadKind): ImageType[] {
  return rows.map(([name, magic, files, message, more]) => ({
    name,
    magic,
    head,
    files: typeof files === 'string' ? [files] : files,
    message,
    layout: 'plain',
    ...more,
  }));
}

function raw(name: string, file: string): ImageType {
  return { name, magic: 0, head: 'raw', files: [file] };
}

export const imageTypes: readonly ImageType[] = [
  { name: 'INVENTORY', magic: INVENTORY_MAGIC, head: 'inventory', files: ['inventory.img'], message: 'inventory_entry', layout: 'plain' },
  ...build(taskImages, 'common'),
  ...build(fileImages, 'common'),
  ...build(nsImages, 'common'),
  // Written into the work dir, not the images dir.
  ...build(
    [
      ['STATS', 0x57093306, 'stats-%s', 'stats_entry'],
      ['IRMAP_CACHE', 0x57004059, 'irmap-cache', 'irmap_cache_entry'],
    ],
    'service',
  ),
  raw('PAGES', 'pages-%u.img'),
  raw('IFADDR', 'ifaddr-%u.img'),
  raw('ROUTE', 'route-%u.img'),
  raw('ROUTE6', 'route6-%u.img'),
  raw('RULE', 'rule-%u.img'),
  raw('IPTABLES', 'iptables-%u.img'),
  raw('IP6TABLES', 'ip6tables-%u.img'),
  raw('NFTABLES', 'nftables-%u.img'),
  raw('NETNF_CT', 'netns-ct-%u.img'),
  raw('NETNF_EXP', 'netns-exp-%u.img'),
  raw('TMPFS_IMG', 'tmpfs-%u.tar.gz.img'),
  raw('TMPFS_DEV', 'tmpfs-dev-%u.tar.gz.img'),
];

const byName = new Map(imageTypes.map((t) => [t.name, t]));
const byMagic = new Map(imageTypes.filter((t) => t.head !== 'raw').map((t) => [t.magic, t]));

const patternRegexps = imageTypes.flatMap((t) =>
  t.files.map((pattern) => {
    const re = pattern
      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
      .replace(/%l?u/g, '\\d+')
      .replace(/%l?d/g, '-?\\d+')
      .replace(/%x/g, '[0-9a-f]+')
      .replace(/%s/g, '[^/]+');
    return { type: t, re: new RegExp(`^${re}$`) };
  }),
);

/** The type of an image by crit's magic name ('CORE', 'PAGEMAP', ...). */
export function imageTypeByName(name: string): ImageType {
  const t = byName.get(name);
  if (!t) throw new Error(`unknown image type ${name}`);
  return t;
}

/** The type whose per-type magic is `magic` (raw files have none). */
export function imageTypeByMagic(magic: number): ImageType | undefined {
  return byMagic.get(magic >>> 0);
}

/** The type of a file by its name (base name), e.g. 'core-1.img' -> CORE. */
export function imageTypeForFile(fileName: string): ImageType | undefined {
  const base = fileName.slice(fileName.lastIndexOf('/') + 1);
  return patternRegexps.find(({ re }) => re.test(base))?.type;
}

/**
 * A file name from a pattern of `type`: imageFileName('CORE', 2696) is
 * 'core-2696.img'. `variant` picks among several patterns (pagemap-shmem).
 */
export function imageFileName(typeName: string, arg?: number | bigint | string, variant = 0): string {
  const pattern = imageTypeByName(typeName).files[variant];
  if (pattern === undefined) throw new Error(`${typeName} has no file name pattern #${variant}`);
  return pattern.replace(/%(l?u|l?d|x|s)/, (spec) => {
    if (arg === undefined) throw new Error(`${pattern} needs an argument`);
    return spec === '%x' ? BigInt(arg).toString(16) : String(arg);
  });
}
