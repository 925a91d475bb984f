// User namespaces of a dumped tree (userns-N.img): each one's uid and gid maps, relative to its
// parent as the kernel takes them when they are written (CRIU's userns_entry), with two fields
// of stasis's own that CRIU's images lack: the parent namespace (nesting) and whether setgroups
// is denied. Credentials of a task in one are kept as the task sees them (CRIU's choice too):
// stasis reads them on the host, so they are translated here through the maps.
//
// Restore: every namespace is made before any task enters it, parents first, each by a seed of
// its own that unshares it (inside its parent, entered first); its maps are written by stasis
// for a namespace of the host's, else by the parent's seed (the kernel takes a map only from a
// task in the namespace's parent). stasis keeps a descriptor of each. Tasks are cloned on the
// host, where they may choose their PIDs, and enter their namespace once they have cloned
// their children (tree.ts); their groups are set before (in a namespace denying setgroups they
// cannot be set after), the rest of their credentials after, inside (creds.ts). Their threads
// are cloned once they are inside (a threaded process cannot enter one), their TIDs chosen
// through the last PID of the pid namespace (restore/threads.ts).
//
// A container's user namespace (runc's with uid and gid mappings, Podman's --uidmap) owns its
// other namespaces: the root's, a child of stasis's, marked owns_tree_ns. Then the root's seed
// enters it (made and mapped first) and takes its root's ids before cloning the root with the
// tree's namespaces, so that they are made in it; every task is born there (its threads then
// get their TIDs by set_tid). Its mounts are made from inside (mount-ns/mounts.ts: options'
// ids through its maps, tmpfs contents written with ids it maps), and a task there, which may
// not take stasis's descriptors by pidfd_getfd, is sent them (sys/pass-fd.ts).
//
// An ipc or uts namespace nested in the tree (task/nested-ns.ts) may be owned by a user
// namespace of the tree: the owner lists it (owns_ns_ids), and it is made from inside the owner
// at restore. The container's own are listed by the root's too.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { ownerUserNs, parentUserNs } from '../sys/nsfs.js';
import { O_WRONLY } from '../sys/fcntl.js';
import { readNamespaces, readStatus } from '../sys/proc/index.js';
import { openInTask, writeAllInTask } from '../files/reg.js';
import { CLONE, openSeed } from './clone.js';
import { credsFromStatus, type CredsEntry } from './creds.js';

export interface IdExtent { first: number; lower_first: number; count: number }

export interface UsernsEntry {
  uid_map: IdExtent[];
  gid_map: IdExtent[];
  /** stasis's: the namespace this one is nested in (absent: the host's, the dumper's own). */
  parent_id?: number;
  /** stasis's: /proc/PID/setgroups says "deny". */
  setgroups_deny?: boolean;
  /** stasis's: the root's, owning the tree's own namespaces (made in it at restore). */
  owns_tree_ns?: boolean;
  /** stasis's: the ids of the tree's other namespaces this one owns. */
  owns_ns_ids?: number[];
}

export function usernsImageName(nsId: number): string {
  return `userns-${nsId}.img`;
}

/** The id a namespace gives one of the host's (overflowuid): what a task sees for an unmapped one. */
const OVERFLOW_ID = 65534;

/** /proc/PID/{uid,gid}_map as stasis reads it: the outer ids are the host's (stasis's namespace). */
function readMap(pid: number, which: 'uid' | 'gid'): IdExtent[] {
  return fs.readFileSync(`/proc/${pid}/${which}_map`, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const [first, lower, count] = l.trim().split(/\s+/).map(Number);
    return { first: first!, lower_first: lower!, count: count! };
  });
}

/** An id of the outer side (the host's, for a map as stasis reads it) as the namespace sees it. */
export function inside(map: readonly IdExtent[], outer: number): number | undefined {
  for (const e of map) if (outer >= e.lower_first && outer - e.lower_first < e.count) return e.first + outer - e.lower_first;
  return undefined;
}

/**
 * The host's ids as a user namespace sees them (the kernel's overflow id for one it does not
 * map), and the host's ids of its root (what a task there that opens the dump's images is).
 */
export interface IdsInside {
  uid(host: number): number;
  gid(host: number): number;
  root: { uid: number; gid: number };
}

function idsInside(ns: { uid: IdExtent[]; gid: IdExtent[] }): IdsInside {
  return {
    uid: (v) => inside(ns.uid, v) ?? OVERFLOW_ID,
    gid: (v) => inside(ns.gid, v) ?? OVERFLOW_ID,
    root: { uid: outside(ns.uid, 0) ?? 0, gid: outside(ns.gid, 0) ?? 0 },
  };
}

/** An id of the namespace as the outer side (the host, for a map as stasis reads it) sees it. */
export function outside(map: readonly IdExtent[], inner: number): number | undefined {
  for (const e of map) if (inner >= e.first && inner - e.first < e.count) return e.lower_first + inner - e.first;
  return undefined;
}

/**
 * A map whose outer ids are the host's made relative to the parent namespace (whose own map,
 * host's ids outside, is `parent`): each extent split where the parent's extents split it.
 */
function relativeTo(map: readonly IdExtent[], parent: readonly IdExtent[], what: string): IdExtent[] {
  const out: IdExtent[] = [];
  for (const e of map) {
    let done = 0;
    while (done < e.count) {
      const host = e.lower_first + done;
      const p = parent.find((x) => host >= x.lower_first && host - x.lower_first < x.count);
      if (!p) throw new Error(`${what}: host id ${host} is not mapped in the parent namespace`);
      const n = Math.min(e.count - done, p.lower_first + p.count - host);
      out.push({ first: e.first + done, lower_first: p.first + host - p.lower_first, count: n });
      done += n;
    }
  }
  return out;
}

/** The other namespaces of a task, whose owner must be the host's user namespace for now. */
const OWNED_KINDS = ['pid', 'net', 'ipc', 'uts', 'mnt', 'cgroup', 'time'] as const;

interface SeenNs {
  ino: number;
  /** A process of the tree in it (its maps are read through that process's /proc). */
  pid: number;
  parentIno?: number;
  uid: IdExtent[];
  gid: IdExtent[];
  deny: boolean;
  /** The root's, owning the tree's own namespaces. */
  ownsTree?: boolean;
}

/** The dump's side: the user namespaces of the tree's processes, by inode. */
export class DumpedUserNamespaces {
  private readonly seen = new Map<number, SeenNs>();
  private readonly of = new Map<number, SeenNs>();
  /** The tree's other namespaces owned by one of these, by inode. */
  private readonly owners = new Map<number, SeenNs>();

  private constructor(private readonly hostIno: number) {}

  /**
   * The user namespaces of the live processes `pids` (stasis's own: `hostIno`), with what stasis
   * cannot restore refused in one line: a namespace nested in one no process of the tree is in
   * (its maps cannot be read), a threaded process in one and in a pid namespace not stasis's
   * (`hostPidIno`: its threads are cloned inside, their TIDs chosen through stasis's own pid
   * namespace's last PID), another namespace owned by one — but the container's own (see the
   * top) and the ipc and uts namespaces nested in the tree (`nested`, by inode), owned by one a
   * process of the tree is in. `external`: kinds of the tree's namespaces a runtime names as
   * external (joined again at restore, whoever owns them).
   */
  static read(pids: readonly { pid: number; threads: number }[], hostIno: number, hostPidIno: number,
    nested: ReadonlySet<number> = new Set(), external: ReadonlySet<string> = new Set()): DumpedUserNamespaces {
    const u = new DumpedUserNamespaces(hostIno);
    const threaded: { pid: number; threads: number }[] = [];
    for (const { pid, threads } of pids) {
      const links = readNamespaces(pid, ['user', 'pid']);
      const ino = links.user?.ino;
      if (ino === undefined || ino === hostIno) continue;
      if (threads > 1 && links.pid?.ino !== hostPidIno) threaded.push({ pid, threads });
      let ns = u.seen.get(ino);
      if (!ns) {
        ns = {
          ino, pid, parentIno: parentUserNs(pid), uid: readMap(pid, 'uid'), gid: readMap(pid, 'gid'),
          deny: fs.readFileSync(`/proc/${pid}/setgroups`, 'utf8').trim() === 'deny',
        };
        u.seen.set(ino, ns);
      }
      u.of.set(pid, ns);
    }
    // The tree's own namespaces (the root's, not stasis's) may all be owned by the root's user
    // namespace, a child of stasis's: a runtime's container with mappings, made in it at restore.
    // Any other owned by a user namespace of the tree is refused (any process's: one of the
    // host's may have entered such a namespace).
    const root = pids[0]?.pid;
    const rootNs = root !== undefined ? u.of.get(root) : undefined;
    const rootLinks = root !== undefined && rootNs ? readNamespaces(root, [...OWNED_KINDS]) : {};
    const hostLinks = rootNs ? readNamespaces(process.pid, [...OWNED_KINDS]) : {};
    const treeOwn = new Map<string, number>();
    if (rootNs && (rootNs.parentIno === undefined || rootNs.parentIno === hostIno)) {
      for (const kind of OWNED_KINDS) {
        const ino = (rootLinks as Record<string, { ino: number } | undefined>)[kind]?.ino;
        if (ino !== undefined && ino !== (hostLinks as Record<string, { ino: number } | undefined>)[kind]?.ino) treeOwn.set(kind, ino);
      }
    }
    const ownedByRoot = new Set<string>();
    /** Nested namespaces the host's user namespace owns, by inode: a process there. */
    const hostOwnedNested = new Map<number, number>();
    for (const { pid } of u.seen.size ? pids : []) {
      const links = readNamespaces(pid, [...OWNED_KINDS]) as Record<string, { ino: number } | undefined>;
      for (const kind of OWNED_KINDS) {
        if (!fs.existsSync(`/proc/${pid}/ns/${kind}`)) continue;
        const owner = ownerUserNs(pid, kind);
        const ino = links[kind]?.ino;
        if (ino !== undefined && nested.has(ino)) {
          if (owner === undefined || owner === hostIno) {
            hostOwnedNested.set(ino, pid);
          } else if (u.seen.has(owner)) {
            u.owners.set(ino, u.seen.get(owner)!);
          } else {
            throw new Error(`process ${pid}: its ${kind} namespace is owned by a user namespace no process of the tree is in, which stasis cannot restore`);
          }
          continue;
        }
        if (owner === undefined || owner === hostIno) continue;
        if (rootNs && owner === rootNs.ino && treeOwn.has(kind) && links[kind]?.ino === treeOwn.get(kind)) {
          ownedByRoot.add(kind);
          continue;
        }
        throw new Error(`process ${pid}: its ${kind} namespace is owned by a user namespace of the tree, which stasis cannot restore yet`);
      }
    }
    if (ownedByRoot.size) {
      // (a namespace the runtime names as external, joined again at restore, may be the host's:
      // a container joining a network namespace made outside it)
      const hostOwned = [...treeOwn.keys()].filter((k) => !ownedByRoot.has(k) && !external.has(k));
      if (hostOwned.length) {
        throw new Error(`process ${root}: its ${[...ownedByRoot].join(', ')} namespaces are owned by its user namespace but its ${hostOwned.join(', ')} not, which stasis cannot restore`);
      }
      if (u.seen.size > 1) throw new Error(`process ${root}: a user namespace nested in a container's (whose namespaces it owns), which stasis cannot restore yet`);
      rootNs!.ownsTree = true;
      for (const kind of ownedByRoot) u.owners.set(treeOwn.get(kind)!, rootNs!);
      // (its tasks, born in the container's user namespace, cannot enter one the host's owns)
      const [pid] = hostOwnedNested.values();
      if (pid !== undefined) {
        throw new Error(`process ${pid}: a namespace of its own that the host's user namespace owns, in a container whose user namespace owns its namespaces, which stasis cannot restore`);
      }
    }
    // Threads are cloned with their TIDs by a process in its pid namespace's owner (the
    // container's), else through stasis's own pid namespace's last PID.
    for (const { pid, threads } of threaded) {
      if (u.of.get(pid)?.ownsTree) continue;
      throw new Error(`process ${pid} has ${threads} threads in a user namespace of its own and a pid namespace of the tree's, which stasis cannot restore yet`);
    }
    for (const ns of u.seen.values()) {
      if (ns.parentIno !== undefined && ns.parentIno !== hostIno && !u.seen.has(ns.parentIno)) {
        throw new Error(`process ${ns.pid} is in a user namespace nested in one no process of the tree is in, which stasis cannot dump`);
      }
    }
    return u;
  }

  get any(): boolean {
    return this.seen.size > 0;
  }

  /**
   * A container's user namespace (the root's, owning the tree's own namespaces), as what the
   * dump writes of its mounts needs it: the host's ids as it sees them (as CRIU writes them).
   */
  get container(): IdsInside | undefined {
    for (const ns of this.seen.values()) if (ns.ownsTree) return idsInside(ns);
    return undefined;
  }

  /**
   * The maps (the host's ids outside) of the user namespace of the tree owning the namespace of
   * inode `ino` (one of the tree's own, or nested in it); undefined when it is the host's.
   */
  ownerOf(ino: number): { uid: IdExtent[]; gid: IdExtent[] } | undefined {
    return this.owners.get(ino);
  }

  /**
   * `creds` (as stasis read them, the host's ids) as process `pid` sees them in its user
   * namespace; an id its namespace does not map is refused.
   */
  credsOf(pid: number, creds: CredsEntry): CredsEntry {
    const ns = this.of.get(pid);
    if (!ns) return creds;
    const id = (map: IdExtent[], host: number, what: string) => {
      const v = inside(map, host);
      if (v === undefined) throw new Error(`process ${pid}: its ${what} ${host} is not mapped in its user namespace, which stasis cannot restore`);
      return v;
    };
    return {
      ...creds,
      uid: id(ns.uid, creds.uid, 'uid'), euid: id(ns.uid, creds.euid, 'uid'), suid: id(ns.uid, creds.suid, 'uid'), fsuid: id(ns.uid, creds.fsuid, 'uid'),
      gid: id(ns.gid, creds.gid, 'gid'), egid: id(ns.gid, creds.egid, 'gid'), sgid: id(ns.gid, creds.sgid, 'gid'), fsgid: id(ns.gid, creds.fsgid, 'gid'),
      groups: creds.groups.map((g) => id(ns.gid, g, 'group')),
    };
  }

  /**
   * A zombie's credentials (as stasis read them) as it sees them, when it is in a user namespace
   * its restore is born in: the host's, or the container's that owns the tree's namespaces.
   * undefined for one in another (nested) user namespace: it dies with the credentials it is
   * born with there.
   */
  zombieCredsOf(pid: number, creds: CredsEntry): CredsEntry | undefined {
    const ino = readNamespaces(pid, ['user']).user?.ino;
    if (ino === undefined || ino === this.hostIno) return creds;
    const ns = this.seen.get(ino);
    if (!ns?.ownsTree) return undefined;
    this.of.set(pid, ns);
    return this.credsOf(pid, creds);
  }

  /** userns-N.img's entries, by namespace id (`idOf`: the id the dump gave a namespace's inode). */
  entries(idOf: (ino: number) => number): Map<number, UsernsEntry> {
    const out = new Map<number, UsernsEntry>();
    for (const ns of this.seen.values()) {
      const parent = ns.parentIno !== undefined && ns.parentIno !== this.hostIno ? this.seen.get(ns.parentIno)! : undefined;
      const what = `user namespace of process ${ns.pid}`;
      const e: UsernsEntry = {
        uid_map: parent ? relativeTo(ns.uid, parent.uid, what) : ns.uid,
        gid_map: parent ? relativeTo(ns.gid, parent.gid, what) : ns.gid,
      };
      if (parent) e.parent_id = idOf(parent.ino);
      if (ns.deny) e.setgroups_deny = true;
      if (ns.ownsTree) e.owns_tree_ns = true;
      const owned = [...this.owners].filter(([, o]) => o === ns).map(([ino]) => idOf(ino)).sort((a, b) => a - b);
      if (owned.length) e.owns_ns_ids = owned;
      out.set(idOf(ns.ino), e);
    }
    return out;
  }
}

/** A user namespace made for the restore: stasis's descriptor of it, its maps with the host's ids outside. */
export interface MadeUserNs {
  fd: number;
  uid: IdExtent[];
  gid: IdExtent[];
}

/**
 * A warning when the container's root directory `root` (as the host sees it) is owned by a host
 * uid its user namespace `ns` does not map: the runtime gave the container other ids than its
 * dump has (Podman's `restore --import --name` of a --userns=auto container picks a new range),
 * and inside it its own files are nobody's.
 */
export function unmappedRootWarning(ns: MadeUserNs, root: string): string | undefined {
  const owner = fs.statSync(root).uid;
  if (inside(ns.uid, owner) !== undefined) return undefined;
  return `the container's root ${root} is owned by host uid ${owner}, which its user namespace as dumped (uid map ${mapText(ns.uid).toString().trim().replace(/\n/g, ', ')}) does not map: its files are nobody's inside`;
}

function mapText(map: readonly IdExtent[]): Buffer {
  return Buffer.from(map.map((e) => `${e.first} ${e.lower_first} ${e.count}\n`).join(''));
}

/**
 * Every user namespace of `entries` made and mapped, parents first (see the top). The seeds go
 * once all are made; stasis keeps a descriptor of each (closed by the caller).
 */
export function makeUserNamespaces(entries: ReadonlyMap<number, UsernsEntry>): Map<number, MadeUserNs> {
  const seeds = new Map<number, ReturnType<typeof openSeed>>();
  const fds = new Map<number, number>();
  const made = new Map<number, MadeUserNs>();
  const make = (id: number, chain: number[]) => {
    if (seeds.has(id)) return;
    const e = entries.get(id);
    if (!e) throw new Error(`${usernsImageName(chain.at(-1) ?? id)}: its parent, user namespace ${id}, is not in the dump`);
    if (chain.includes(id)) throw new Error(`${usernsImageName(id)}: nested in itself`);
    if (e.parent_id !== undefined) make(e.parent_id, [...chain, id]);
    const seed = openSeed(false, false);
    seeds.set(id, seed);
    const { inj } = seed;
    if (e.parent_id !== undefined) {
      inj.callChecked(SYS.setns, fds.get(e.parent_id)!, CLONE.NEWUSER);
      // Its creator's ids must be mapped in the parent (the host's root is not, there).
      const parent = entries.get(e.parent_id)!;
      if (!parent.gid_map.length || !parent.uid_map.length) throw new Error(`${usernsImageName(e.parent_id)}: no ids mapped, no namespace can be made in it`);
      inj.callChecked(SYS.setresgid, parent.gid_map[0]!.first, parent.gid_map[0]!.first, parent.gid_map[0]!.first);
      inj.callChecked(SYS.setresuid, parent.uid_map[0]!.first, parent.uid_map[0]!.first, parent.uid_map[0]!.first);
    }
    inj.callChecked(SYS.unshare, CLONE.NEWUSER);
    const files: [string, Buffer][] = [
      ...(e.setgroups_deny ? [['setgroups', Buffer.from('deny')] as [string, Buffer]] : []),
      ['uid_map', mapText(e.uid_map)], ['gid_map', mapText(e.gid_map)],
    ];
    for (const [name, text] of files) {
      const path = `/proc/${seed.pid}/${name}`;
      if (e.parent_id === undefined) {
        fs.writeFileSync(path, text);
      } else {
        // Only a task of the parent namespace may write the maps: the parent's seed.
        const writer = seeds.get(e.parent_id)!.inj;
        const fd = openInTask(writer, path, O_WRONLY);
        try {
          writeAllInTask(writer, fd, text, path);
        } finally {
          writer.call(SYS.close, fd);
        }
      }
    }
    // Opened before the next seed is spawned: its copy of stasis's descriptors has it.
    fds.set(id, fs.openSync(`/proc/${seed.pid}/ns/user`, 'r'));
    made.set(id, { fd: fds.get(id)!, uid: readMap(seed.pid, 'uid'), gid: readMap(seed.pid, 'gid') });
  };
  try {
    for (const id of entries.keys()) make(id, []);
  } catch (e) {
    for (const fd of fds.values()) fs.closeSync(fd);
    throw e;
  } finally {
    for (const seed of [...seeds.values()].reverse()) seed.close();
  }
  return made;
}

/**
 * A task of the tree enters its user namespace (`fd`: the namespace's descriptor in the task):
 * its groups first, on the host (see the top), then setns(). Returns its credentials once in,
 * as it sees them (what restoreCreds starts from).
 */
export function enterUserNs(inj: Injector, ns: MadeUserNs, fd: number, groups: readonly number[], what: string): CredsEntry {
  const host = groups.map((g) => {
    const v = outside(ns.gid, g);
    if (v === undefined) throw new Error(`${what}: group ${g} is not mapped in its user namespace`);
    return v;
  });
  const b = Buffer.alloc(Math.max(4, host.length * 4));
  host.forEach((g, i) => b.writeUInt32LE(g, i * 4));
  inj.callChecked(SYS.setgroups, host.length, inj.writeScratch(b));
  inj.callChecked(SYS.setns, fd, CLONE.NEWUSER);
  // setns() gave it every capability in the namespace, no securebits; its ids are as they were.
  return credsSeenIn(ns, credsFromStatus(readStatus(inj.pid), 0));
}

/** Credentials `c` (the host's ids) as user namespace `ns` sees them. */
function credsSeenIn(ns: MadeUserNs, c: CredsEntry): CredsEntry {
  const { uid: u, gid: g } = idsInside(ns);
  return {
    ...c, uid: u(c.uid), euid: u(c.euid), suid: u(c.suid), fsuid: u(c.fsuid),
    gid: g(c.gid), egid: g(c.egid), sgid: g(c.sgid), fsgid: g(c.fsgid), groups: c.groups.map(g),
  };
}

/**
 * The seed of the tree's root enters the root's user namespace when it owns the tree's own
 * namespaces (`fd`: its descriptor in the seed), before it clones the root with them: no groups,
 * then setns(), then the namespace's root's ids (0 inside, or its first mapped ones), so that
 * the root starts as the container's init did, every capability in the namespace.
 */
export function enterOwningUserNs(inj: Injector, ns: MadeUserNs, fd: number): void {
  inj.callChecked(SYS.setgroups, 0, 0);
  inj.callChecked(SYS.setns, fd, CLONE.NEWUSER);
  inj.call(SYS.close, fd);
  const gid = outside(ns.gid, 0) !== undefined ? 0 : inside(ns.gid, ns.gid[0]!.lower_first)!;
  const uid = outside(ns.uid, 0) !== undefined ? 0 : inside(ns.uid, ns.uid[0]!.lower_first)!;
  inj.callChecked(SYS.setresgid, gid, gid, gid);
  inj.callChecked(SYS.setresuid, uid, uid, uid);
}

/**
 * A task born in its user namespace (the root's, owning the tree's namespaces) gets its groups
 * there, as it sees them; returns its credentials as it sees them (what restoreCreds starts from).
 */
export function groupsInside(inj: Injector, ns: MadeUserNs, groups: readonly number[]): CredsEntry {
  const now = credsSeenIn(ns, credsFromStatus(readStatus(inj.pid), 0)).groups;
  if (now.length !== groups.length || now.some((x, i) => x !== groups[i])) {
    const b = Buffer.alloc(Math.max(4, groups.length * 4));
    groups.forEach((x, i) => b.writeUInt32LE(x, i * 4));
    inj.callChecked(SYS.setgroups, groups.length, inj.writeScratch(b));
  }
  return credsSeenIn(ns, credsFromStatus(readStatus(inj.pid), 0));
}
