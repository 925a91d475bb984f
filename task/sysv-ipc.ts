// The SysV IPC objects of an ipc namespace — shared memory segments, semaphore sets, message
// queues — in ipcns-shm-N.img, ipcns-sem-N.img and ipcns-msg-N.img (CRIU's format: each entry
// followed by the segment's bytes, the semaphore values, or the queued messages). Dump and
// restore side by side; the namespace's sysctls are in namespaces.ts.
//
// Both sides work from stasis's own main thread, which enters the namespace (sys/sysv.ts): the
// objects are read and made with the ordinary syscalls, each under the id it had (the
// namespace's KIND_next_id), with its key, owner, creator and mode. Segments attached in a
// process are VMAs (mm.ts) that name the segment's id, attached again once it exists.
//
// An ipc namespace owned by a user namespace of the tree keeps its objects' owners and creators
// as that namespace sees them (as CRIU keeps them, through the root's user namespace): stasis
// reads and sets the host's ids, translated through the owner's maps (`through`).

import fs from 'node:fs';
import { PAGE_SIZE } from '../sys/arch.js';
import {
  type ImageEntry, type Message, decodeImage, imageTypeByName, pagesFileName, queuedMessages, queuedMessagesPayload,
  readPagemap, semPayload, semValues as semImageValues, shmContents, shmPayload,
} from '../images/index.js';
import {
  SHM_DEST, type IpcPerm, asCreator, inIpcNamespaceOf, listSysv, msgCreate, msgPeekAll, msgSend, msgStat,
  semCreate, semSetValues, semStat, semValues, setNextId, setOwner, shmCreate, shmHugePageSize, shmRead, shmStat, shmWrite,
  withQueueBytes, type SysvKind,
} from '../sys/sysv.js';
import { inside, outside, type IdExtent } from './userns.js';

export interface SysvImages {
  shm: ImageEntry[];
  sem: ImageEntry[];
  msg: ImageEntry[];
}

/** shmget's SHM_HUGETLB; the log2 of the huge page size goes at SHM_HUGE_SHIFT (as mmap's MAP_HUGE_SHIFT). */
const SHM_HUGETLB = 0o4000;
const SHM_HUGE_SHIFT = 26;
/** mmap's MAP_HUGETLB, which criu sets in ipc_shm_entry.hugetlb_flag too. */
const MAP_HUGETLB = 0x40000;

/** The page size of a segment as ipc_shm_entry keeps it (hugetlb_flag, as criu writes it). */
export function shmPageSize(e: Message): bigint {
  const flag = Number(e.hugetlb_flag ?? 0);
  if (!(flag & SHM_HUGETLB)) return BigInt(PAGE_SIZE);
  const log = (flag >>> SHM_HUGE_SHIFT) & 0x3f;
  return log ? 1n << BigInt(log) : 2n << 20n;
}

/** hugetlb_flag for a segment of huge pages of `size` bytes. */
function hugetlbFlag(size: number): number {
  return (SHM_HUGETLB | MAP_HUGETLB | (Math.log2(size) << SHM_HUGE_SHIFT)) >>> 0;
}

export const SYSV_KINDS = ['shm', 'sem', 'msg'] as const satisfies readonly SysvKind[];

export function sysvImageName(kind: SysvKind, nsId: number): string {
  return `ipcns-${kind}-${nsId}.img`;
}

/** The maps of the user namespace owning an ipc namespace, the host's ids outside (task/userns.ts). */
export interface IdsThrough { uid: readonly IdExtent[]; gid: readonly IdExtent[] }

/** `p`'s ids through `through` (inward at dump, outward at restore); an id it does not map is refused. */
function translated(p: IpcPerm, through: IdsThrough | undefined, dir: typeof inside, what: string): IpcPerm {
  if (!through) return p;
  const id = (map: readonly IdExtent[], v: number, field: string) => {
    const x = dir(map, v);
    if (x === undefined) throw new Error(`${what}: its ${field} ${v} is not mapped in the user namespace owning its ipc namespace, which stasis cannot restore`);
    return x;
  };
  return {
    ...p, uid: id(through.uid, p.uid, 'uid'), gid: id(through.gid, p.gid, 'gid'),
    cuid: id(through.uid, p.cuid, 'creator uid'), cgid: id(through.gid, p.cgid, 'creator gid'),
  };
}

function desc(kind: SysvKind, id: number, p: IpcPerm, through?: IdsThrough): Message {
  const q = translated(p, through, inside, `SysV ${kind} ${id}`);
  return { key: q.key, uid: q.uid, gid: q.gid, cuid: q.cuid, cgid: q.cgid, mode: q.mode, id };
}

/**
 * Every SysV object in the ipc namespace of process `pid` (frozen, so nothing changes
 * meanwhile), its ids as the namespace's owner sees them (`through`, when not the host's).
 */
export function dumpSysvIpc(pid: number, through?: IdsThrough): SysvImages {
  return inIpcNamespaceOf(pid, () => {
    const ids = (kind: SysvKind, col: string) => listSysv(kind).map((row) => Number(row[col]));
    const shm = ids('shm', 'shmid').map((id): ImageEntry => {
      const st = shmStat(id);
      if (st.mode & SHM_DEST) {
        throw new Error(`SysV shared memory ${id} is marked for removal but still attached, which stasis cannot dump yet`);
      }
      const huge = shmHugePageSize(id);
      return {
        message: { desc: desc('shm', id, st, through), size: BigInt(st.size), ...(huge ? { hugetlb_flag: hugetlbFlag(huge) } : {}) },
        extra: shmPayload(shmRead(id, st.size, huge !== undefined)),
      };
    });
    const sem = ids('sem', 'semid').map((id): ImageEntry => {
      const st = semStat(id);
      return { message: { desc: desc('sem', id, st, through), nsems: st.nsems }, extra: semPayload(semValues(id, st.nsems)) };
    });
    const msgmax = Number(fs.readFileSync('/proc/sys/kernel/msgmax', 'utf8'));
    const msg = ids('msg', 'msqid').map((id): ImageEntry => {
      const st = msgStat(id);
      // The longest message may exceed today's msgmax if it was lowered after the send.
      const queued = msgPeekAll(id, st.qnum, Math.max(msgmax, st.cbytes));
      return {
        message: { desc: desc('msg', id, st, through), qbytes: st.qbytes, qnum: queued.length },
        extra: queuedMessagesPayload(queued),
      };
    });
    return { shm, sem, msg };
  });
}

/** Which segment ids exist in the dump, with their sizes (to check attached VMAs against). */
export function dumpedSegments(images: SysvImages): Map<number, number> {
  return new Map(images.shm.map((e) => [Number((e.message.desc as Message).id), Number(e.message.size)]));
}

/**
 * CRIU 4.2 keeps a segment's bytes as it keeps shared anonymous memory (in_pagemaps): in
 * pagemap-shmem-ID.img (offsets into the segment) and a pages file. They are read into the entry
 * (its holes zero), as stasis's dumps have them; `file` gives an image's path in the dump.
 */
export function shmPagesFromPagemaps(shm: readonly ImageEntry[], file: (name: string) => string): void {
  for (const e of shm) {
    if (!e.message.in_pagemaps) continue;
    const id = Number((e.message.desc as Message).id);
    const size = Number(e.message.size);
    const name = `pagemap-shmem-${id}.img`;
    const bytes = Buffer.alloc(size);
    if (fs.existsSync(file(name))) {
      const map = readPagemap({ type: imageTypeByName('PAGEMAP'), entries: decodeImage(fs.readFileSync(file(name)), name).entries });
      const fd = fs.openSync(file(pagesFileName(map.pagesId)), 'r');
      try {
        for (const r of map.runs) {
          if (r.offset === undefined || Number(r.vaddr) >= size) continue;
          const len = Math.min(r.nrPages * PAGE_SIZE, size - Number(r.vaddr));
          if (fs.readSync(fd, bytes, Number(r.vaddr), len, r.offset) !== len) throw new Error(`${name}: its pages file ends early`);
        }
      } finally {
        fs.closeSync(fd);
      }
    } // (none: CRIU saved no page of it, all zero)
    e.message.in_pagemaps = false;
    e.extra = bytes;
  }
}

function perm(kind: SysvKind, d: Message, through?: IdsThrough): IpcPerm {
  return translated({
    key: Number(d.key), uid: Number(d.uid), gid: Number(d.gid), cuid: Number(d.cuid), cgid: Number(d.cgid),
    mode: Number(d.mode),
  }, through, outside, `SysV ${kind} ${d.id}`);
}

/**
 * Make every object again in the (new, empty) ipc namespace of process `pid`, under its old
 * id, once the namespace's sysctls are set. Making them uses up the KIND_next_id values, so
 * those the dump had set (`vars`) are put back afterwards. `through`: the maps of the user
 * namespace owning it, when not the host's (the images' ids are as it sees them).
 */
export function restoreSysvIpc(pid: number, images: SysvImages, vars?: Record<string, unknown>, through?: IdsThrough): void {
  inIpcNamespaceOf(pid, () => {
    const make = (kind: SysvKind, d: Message, create: (p: IpcPerm) => number): number => {
      const p = perm(kind, d, through);
      const want = Number(d.id);
      setNextId(kind, want);
      const got = asCreator(p.cuid, p.cgid, () => create(p));
      if (got !== want) throw new Error(`SysV ${kind} ${want} came back as ${got}`);
      return got;
    };
    for (const e of images.shm) {
      const d = e.message.desc as Message;
      const size = Number(e.message.size);
      if (e.message.in_pagemaps) throw new Error(`SysV shared memory ${d.id} has its pages in a pagemap, which stasis cannot restore yet`);
      const huge = shmPageSize(e.message) !== BigInt(PAGE_SIZE)
        ? (SHM_HUGETLB | (Number(e.message.hugetlb_flag) & (0x3f << SHM_HUGE_SHIFT))) >>> 0 : 0;
      const id = make('shm', d, (p) => shmCreate(p.key, size, p.mode, huge));
      shmWrite(id, Buffer.from(shmContents(e.message, e.extra ?? new Uint8Array())));
      setOwner('shm', id, perm('shm', d, through));
    }
    for (const e of images.sem) {
      const d = e.message.desc as Message;
      const id = make('sem', d, (p) => semCreate(p.key, Number(e.message.nsems), p.mode));
      semSetValues(id, semImageValues(e.message, e.extra ?? new Uint8Array()));
      setOwner('sem', id, perm('sem', d, through));
    }
    for (const e of images.msg) {
      const d = e.message.desc as Message;
      const id = make('msg', d, (p) => msgCreate(p.key, p.mode));
      // The queue's own limit first, so that a queue fuller than the default limit refills.
      setOwner('msg', id, { uid: 0, gid: 0, mode: 0o600 }, withQueueBytes(Number(e.message.qbytes)));
      for (const m of queuedMessages(e.message, e.extra ?? new Uint8Array())) {
        msgSend(id, { mtype: BigInt(m.msg.mtype as bigint | number), data: Buffer.from(m.data) });
      }
      setOwner('msg', id, perm('msg', d, through), withQueueBytes(Number(e.message.qbytes)));
    }
    for (const kind of SYSV_KINDS) {
      const next = vars?.[`${kind}_next_id`];
      if (next !== undefined && Number(next) >= 0) setNextId(kind, Number(next));
    }
  });
}
