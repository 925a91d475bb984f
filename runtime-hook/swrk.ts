// `stasis swrk FD`: criu's RPC service on one end of a SOCK_SEQPACKET socketpair, as runc,
// go-criu and libcriu start it. One criu_req per record in, one criu_resp per record out; a
// request is served, then the process exits (0 if it succeeded) unless the client asked to
// keep the connection for the few request types that allow it. Read top to bottom, a DUMP or
// RESTORE is the conversation criu has: options taken from the request, the notifications in
// criu's order (each waits for the client's ack; a client that goes away fails the operation),
// then the final response.
//
// The notifications, as criu sends them:
//   DUMP:    pre-dump, [network-lock], query-ext-files, post-dump
//   RESTORE: pre-restore, [setup-namespaces(pid), post-setup-namespaces], post-restore(pid),
//            [network-unlock], pre-resume, post-resume
// (the bracketed ones for a tree with its own namespaces: a container).

import type { LockMethod } from '../net-ns/network-lock.js';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { decodeMessage, encodeMessage, type Message } from '../images/wire.js';
import { printable } from '../images/errors.js';
import { SYS } from '../sys/arch.js';
import { SysError } from '../sys/errno.js';
import { rawSyscall } from '../sys/native.js';
import { peerCred, recvRecord, sendRecord, setBlocking } from '../sys/seqpacket.js';
import { readNamespaces } from '../sys/proc/index.js';
import { withConfigFile } from './config-file.js';
import { Logger } from './log.js';
import { UsageError, joinNsFile, parseExternalNet } from './options.js';
import { VERSION } from './version.js';
import type { JoinNs } from '../task/restore.js';

/** criu_req_type (proto/rpc.proto). */
export const REQ = {
  EMPTY: 0, DUMP: 1, RESTORE: 2, CHECK: 3, PRE_DUMP: 4, PAGE_SERVER: 5, NOTIFY: 6,
  CPUINFO_DUMP: 7, CPUINFO_CHECK: 8, FEATURE_CHECK: 9, VERSION: 10, WAIT_PID: 11,
  PAGE_SERVER_CHLD: 12, SINGLE_PRE_DUMP: 13,
} as const;

/** The request types criu serves again on the same connection when keep_open is set. */
const KEEP_OPEN_ALLOWED: ReadonlySet<number> = new Set([
  REQ.PAGE_SERVER, REQ.PAGE_SERVER_CHLD, REQ.CPUINFO_DUMP, REQ.CPUINFO_CHECK, REQ.FEATURE_CHECK, REQ.VERSION,
]);

/**
 * The longest cr_errmsg sent, in bytes: go-criu reads responses into 8 KiB and silently
 * truncates, and an error that quotes what the client sent (a 64 KiB log_file name...) must not
 * grow with it.
 */
const MAX_ERRMSG = 4096;
const EOPNOTSUPP = 95;
const EBADRQC = 56;
const ECONNRESET = 104;
const CLONE_NEWNET = 0x40000000;
const DEFAULT_LOG_FILE = 'criu.log';

/** A failure to report: the message for cr_errmsg, and cr_errno when there is one. */
class RpcError extends Error {
  constructor(message: string, readonly errno?: number) {
    super(message);
  }
}

class NotifyFailed extends RpcError {}

function errnoOf(e: unknown): number | undefined {
  if (e instanceof RpcError) return e.errno;
  if (e instanceof SysError) return e.errno;
  return undefined;
}

function messageOf(e: unknown): string {
  return printable((e instanceof Error ? e.message : String(e)).split('\n')[0]!);
}

/**
 * `text` cut to at most `max` bytes of UTF-8 by an ellipsis in its middle: a message's beginning
 * (what failed) and its end (the errno, the reason) are kept, a long name quoted between is not.
 */
function boundedText(text: string, max = MAX_ERRMSG): string {
  const bytes = Buffer.from(text);
  if (bytes.length <= max) return text;
  const ellipsis = ' … ';
  const keep = Math.floor((max - Buffer.byteLength(ellipsis)) / 2);
  // Cut between characters: a UTF-8 continuation byte (10xxxxxx) never begins a piece.
  let end = keep;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  let start = bytes.length - keep;
  while (start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
  return `${bytes.subarray(0, end).toString()}${ellipsis}${bytes.subarray(start).toString()}`;
}

/** A record that is no criu_req. */
class BadRequest extends RpcError {}

/** The connection: records in and out, and the client's identity. */
class Client {
  readonly peer: number;
  constructor(readonly fd: number, private first?: Buffer) {
    this.peer = peerCred(fd).pid;
  }

  /** The next request; undefined when the client has closed the connection. */
  receive(): Message | undefined {
    let data: Buffer;
    if (this.first) {
      data = this.first;
      this.first = undefined;
    } else {
      // Any size: recvRecord learns each record's length before reading it.
      const r = recvRecord(this.fd);
      if (!r) return undefined;
      for (const f of r.fds) rawSyscall(SYS.close, f); // criu's requests carry none
      data = r.data;
    }
    try {
      return decodeMessage('criu_req', data);
    } catch (e) {
      throw new BadRequest(`a record of ${data.length} bytes is not a criu_req: ${messageOf(e)}`, EBADRQC);
    }
  }

  send(resp: Message, fds: readonly number[] = []): void {
    const bounded = typeof resp.cr_errmsg === 'string' ? { ...resp, cr_errmsg: boundedText(resp.cr_errmsg) } : resp;
    sendRecord(this.fd, encodeMessage('criu_resp', bounded), fds);
  }

  /** A notification, and the client's ack; a negative ack or a closed socket is a failure. */
  notify(script: string, pid?: number, fds: readonly number[] = []): Message {
    try {
      this.send({ type: REQ.NOTIFY, success: true, notify: { script, ...(pid !== undefined ? { pid } : {}) } }, fds);
    } catch (e) {
      throw new NotifyFailed(`${script} notification: ${messageOf(e)}`, (e as SysError).errno);
    }
    const ack = this.receive();
    if (!ack) throw new NotifyFailed(`the client closed the connection while ${script} was being notified`, ECONNRESET);
    if (ack.type !== REQ.NOTIFY || !ack.notify_success) throw new NotifyFailed(`the client reported ${script} as failed`);
    return ack;
  }
}

/**
 * `stasis swrk FD`: serve requests until one is done without keep_open. The exit status.
 * `first`: a request record already read from FD (see swrkFast).
 */
export async function swrk(fdArg: string, first?: Buffer | 'too-large'): Promise<number> {
  const fd = Number(fdArg);
  if (!/^\d+$/.test(fdArg)) throw new UsageError(`swrk wants a descriptor number, got '${fdArg}'`);
  setBlocking(fd, true);
  const client = new Client(fd, first === 'too-large' ? undefined : first);
  // Every request that arrives is answered, even one that cannot be read whole or decoded: with
  // criu's "invalid request" (an EMPTY failure), and a failed exit.
  if (first === 'too-large') {
    reply(client, { type: REQ.EMPTY, success: false, cr_errno: EBADRQC, cr_errmsg: 'the request is larger than stasis reads (8 MiB)' });
    return 1;
  }
  for (;;) {
    let req: Message | undefined;
    try {
      req = client.receive();
    } catch (e) {
      if (!(e instanceof BadRequest)) throw e;
      reply(client, { type: REQ.EMPTY, success: false, cr_errno: EBADRQC, cr_errmsg: e.message });
      return 1;
    }
    if (!req) return 1; // "Client exited unexpectedly"
    const type = Number(req.type);
    // keep_open on a type that does not allow it: criu gives up without answering; stasis says why.
    if (req.keep_open && !KEEP_OPEN_ALLOWED.has(type)) {
      reply(client, { type, success: false, cr_errno: EBADRQC, cr_errmsg: `keep_open is not allowed for request type ${type}` });
      return 1;
    }
    const ok = await serve(client, type, req);
    if (!ok || !req.keep_open) return ok ? 0 : 1;
  }
}

async function serve(client: Client, type: number, req: Message): Promise<boolean> {
  switch (type) {
    case REQ.VERSION:
      return reply(client, { type, success: true, version: versionMessage() });
    case REQ.FEATURE_CHECK:
      return featureCheck(client, req);
    case REQ.CHECK:
      return await check(client);
    case REQ.DUMP:
      return dumpRequest(client, req.opts);
    case REQ.RESTORE:
      return restoreRequest(client, req.opts);
    case REQ.PRE_DUMP:
    case REQ.SINGLE_PRE_DUMP:
      return refuse(client, type, 'pre-dumps (memory tracking, incremental dumps) are not supported by stasis');
    case REQ.PAGE_SERVER:
    case REQ.PAGE_SERVER_CHLD:
      return refuse(client, type, 'stasis has no page server');
    case REQ.CPUINFO_DUMP:
    case REQ.CPUINFO_CHECK:
      return refuse(client, type, 'stasis does not dump or check cpuinfo');
    case REQ.WAIT_PID:
      return refuse(client, type, 'WAIT_PID is not supported by stasis');
    default:
      // criu's "Invalid req": an EMPTY response, and a failed exit.
      reply(client, { type: REQ.EMPTY, success: false, cr_errmsg: `invalid request type ${type}` });
      return false;
  }
}

function reply(client: Client, resp: Message): boolean {
  try {
    client.send(resp);
    return resp.success === true;
  } catch {
    return false;
  }
}

function refuse(client: Client, type: number, why: string): boolean {
  reply(client, { type, success: false, cr_errno: EOPNOTSUPP, cr_errmsg: why });
  return false;
}

/** criu_version without a gitid: clients count a git build as the next minor release. */
function versionMessage(): Message {
  return {
    major_number: VERSION.major, minor_number: VERSION.minor,
    ...(VERSION.sublevel ? { sublevel: VERSION.sublevel } : {}),
  };
}

/**
 * What stasis can do here, asked feature by feature. mem_track is false whatever the kernel
 * offers (stasis has no pre-dump or incremental dump), and so is lazy_pages (no lazy-pages
 * daemon); pidfd_store is what the kernel answers to pidfd_open + pidfd_getfd.
 */
function featureCheck(client: Client, req: Message): boolean {
  const asked = req.features as Message | undefined;
  if (!asked) return reply(client, { type: REQ.FEATURE_CHECK, success: false, cr_errmsg: 'FEATURE_CHECK without features' });
  return reply(client, {
    type: REQ.FEATURE_CHECK, success: true,
    features: { mem_track: false, lazy_pages: false, pidfd_store: asked.pidfd_store === true && hasPidfdStore() },
  });
}

function hasPidfdStore(): boolean {
  const pidfd = rawSyscall(SYS.pidfd_open, process.pid, 0);
  if (pidfd < 0n) return false;
  const dup = rawSyscall(SYS.pidfd_getfd, pidfd, 0, 0);
  rawSyscall(SYS.close, pidfd);
  if (dup < 0n) return false;
  rawSyscall(SYS.close, dup);
  return true;
}

async function check(client: Client): Promise<boolean> {
  const out = new PassThrough();
  const lines: string[] = [];
  out.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
  let rc: number;
  try {
    rc = (await import('./check.js')).checkKernel(out);
  } catch (e) {
    return reply(client, { type: REQ.CHECK, success: false, cr_errmsg: messageOf(e) });
  }
  out.end();
  const failed = lines.filter((l) => l.startsWith('FAIL'));
  return reply(client, { type: REQ.CHECK, success: rc === 0, ...(failed.length ? { cr_errmsg: failed.join('; ') } : {}) });
}

// ---------------------------------------------------------------------------------------------
// Options shared by DUMP and RESTORE

/** What a DUMP or RESTORE request resolves to before anything is touched. */
interface Setup {
  /** The request's options, with its config_file's settings filled in. */
  o: Message;
  imagesDir: string;
  workDir: string;
  logger: Logger;
  /** Descriptors opened through /proc/<peer>/fd, closed when the request is done. */
  close(): void;
}

/**
 * A directory the client holds open, reached through /proc/<peer>/fd/N (runc opens it
 * O_CLOEXEC, so it is not inherited) and kept open here as /proc/self/fd/M.
 */
function openClientDir(peer: number, fd: number, what: string, held: number[]): string {
  let own: number;
  try {
    own = fs.openSync(`/proc/${peer}/fd/${fd}`, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (e) {
    throw new RpcError(`${what}: cannot open descriptor ${fd} of the client (process ${peer}): ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}`,
      (e as NodeJS.ErrnoException).errno === undefined ? undefined : -(e as NodeJS.ErrnoException).errno!);
  }
  held.push(own);
  return `/proc/${process.pid}/fd/${own}`;
}

function setup(client: Client, given: Message, action: 'dump' | 'restore'): Setup {
  const held: number[] = [];
  const close = () => { for (const f of held.splice(0)) fs.closeSync(f); };
  try {
    let o: Message;
    try {
      o = withConfigFile(given); // /etc/criu/runc.conf and the like
    } catch (e) {
      throw new RpcError(`config_file: ${messageOf(e)}`, EBADRQC);
    }
    let imagesDir: string;
    if (o.images_dir_fd !== undefined && o.images_dir_fd !== -1) imagesDir = openClientDir(client.peer, o.images_dir_fd, 'images_dir_fd', held);
    else if (typeof o.images_dir === 'string' && o.images_dir) imagesDir = o.images_dir;
    else throw new RpcError('neither images_dir_fd nor images_dir was given', EBADRQC);
    const workDir = o.work_dir_fd !== undefined ? openClientDir(client.peer, o.work_dir_fd, 'work_dir_fd', held) : imagesDir;
    let logFile: string | undefined;
    if (typeof o.log_file === 'string') {
      if (o.log_file.includes('/')) throw new RpcError(`log_file '${o.log_file}': no directories are allowed in its name`, EBADRQC);
      logFile = path.join(workDir, o.log_file);
    } else if (!o.log_to_stderr) {
      logFile = path.join(workDir, DEFAULT_LOG_FILE);
    }
    const logger = new Logger(Number(o.log_level ?? 2), logFile);
    logger.log(1, `stasis ${action} over RPC, requested by process ${client.peer}`);
    return { o, imagesDir, workDir, logger, close: () => { logger.close(); close(); } };
  } catch (e) {
    close();
    throw e;
  }
}

/**
 * Options that ask for what stasis cannot do: refused, never pretended. Everything else is
 * accepted — either stasis does it anyway, or it only concerns namespaces, mounts or cgroups
 * that a tree in the host's namespaces does not have (stasis's dump refuses trees that do).
 */
function refusals(o: Message, action: 'dump' | 'restore'): string[] {
  const out: string[] = [];
  if (o.lazy_pages) out.push('lazy_pages: stasis has no lazy-pages server');
  if (o.ps) out.push('ps: stasis has no page server');
  if (o.track_mem || o.parent_img) out.push('track_mem/parent_img: incremental dumps are not supported');
  if (o.leave_stopped) out.push('leave_stopped: stasis leaves a dumped tree running or kills it');
  if (action === 'restore') {
    for (const j of (o.join_ns ?? []) as { ns?: string }[]) {
      if (!['ipc', 'uts', 'net', 'time'].includes(j.ns ?? '')) out.push(`join_ns ${j.ns}: only ipc, uts, net and time namespaces can be joined`);
    }
    if (o.veths?.length) out.push('veths: veth pairs with a peer outside the dump are not supported yet');
    if (o.exec_cmd?.length) out.push('exec_cmd: stasis cannot exec a command after restore');
    if (typeof o.lsm_profile === 'string' && o.lsm_profile && !o.lsm_profile.startsWith('none:')) {
      out.push(`lsm_profile ${o.lsm_profile}: stasis cannot set LSM profiles`);
    }
  }
  return out;
}

/** The RPC's criu_network_lock_method: 1 iptables, 2 nftables, 3 skip. */
const RPC_LOCK_METHODS: Record<number, LockMethod> = { 1: 'iptables', 2: 'nftables', 3: 'skip' };

function ownNetNs(pid: number): boolean {
  try {
    return readNamespaces(pid).net?.ino !== readNamespaces('self').net?.ino;
  } catch {
    return false; // no such process: the dump says so
  }
}

/** external "net[INODE]:NAME": network namespaces left out of the dump, INODE → NAME. */
function externalNetns(o: Message): Map<number, string> {
  const out = new Map<number, string>();
  for (const x of (o.external ?? []) as string[]) {
    const net = parseExternalNet(x);
    if (net) out.set(...net);
  }
  return out;
}

/** ext_mnt {key, val} and external "mnt[KEY]:VAL" as one map, KEY → VAL. */
function externalMounts(o: Message): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, val } of (o.ext_mnt ?? []) as { key: string; val: string }[]) out.set(key, val);
  for (const x of (o.external ?? []) as string[]) {
    const m = /^mnt\[(.*)\]:(.*)$/.exec(x);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** Accepted options that stasis does not act on, said in the log so nobody is misled. */
function logIgnored(o: Message, logger: Logger): void {
  const noted: [boolean, string][] = [
    [!!o.manage_cgroups || o.manage_cgroups_mode !== undefined, 'manage_cgroups: cgroup properties are neither saved nor restored; the restored tree is put into the cgroups cg_root names'],
    [!!o.empty_ns && (o.empty_ns & ~CLONE_NEWNET) !== 0, `empty_ns 0x${Number(o.empty_ns ?? 0).toString(16)}: only the network namespace can be left empty`],
  ];
  for (const [yes, text] of noted) if (yes) logger.log(2, `Warn: ${text}`);
}

// ---------------------------------------------------------------------------------------------
// DUMP

async function dumpRequest(client: Client, given: Message | undefined): Promise<boolean> {
  const fail = (e: unknown, s?: Setup): boolean => {
    s?.logger.log(1, `Error: ${messageOf(e)}`);
    const errno = errnoOf(e);
    return reply(client, {
      type: REQ.DUMP, success: false, dump: { restored: false },
      ...(errno ? { cr_errno: errno } : {}), cr_errmsg: messageOf(e),
    }) && false;
  };
  if (!given) return fail(new RpcError('DUMP without options', EBADRQC));
  let s: Setup;
  try {
    s = setup(client, given, 'dump');
  } catch (e) {
    return fail(e);
  }
  const { o } = s;
  try {
    const refused = refusals(o, 'dump');
    if (refused.length) throw new RpcError(refused.join('; '), EOPNOTSUPP);
    logIgnored(o, s.logger);
    const pid = o.pid !== undefined && o.pid !== 0 ? Number(o.pid) : client.peer;
    const selfDump = pid === client.peer;
    const notify = o.notify_scripts === true;

    if (notify) client.notify('pre-dump');
    // A container's network is locked by its runtime (runc plugs it out on network-lock).
    if (notify && ownNetNs(pid)) client.notify('network-lock');
    const { dump } = await import('../task/dump.js');
    const r = await dump({
      pid, imagesDir: s.imagesDir, workDir: s.workDir, leaveRunning: o.leave_running === true,
      fileLocks: o.file_locks === true, extUnixSk: o.ext_unix_sk === true, log: (m) => s.logger.log(3, m),
      extMnt: externalMounts(o), externalNetns: externalNetns(o), emptyNs: Number(o.empty_ns ?? 0), orphanPtsMaster: o.orphan_pts_master === true,
      freezeCgroup: typeof o.freeze_cgroup === 'string' && o.freeze_cgroup ? o.freeze_cgroup : undefined,
      linkRemap: o.link_remap === true, seizeTimeoutMs: o.timeout ? Number(o.timeout) * 1000 : undefined,
      tcpEstablished: o.tcp_established === true, tcpClose: o.tcp_close === true, skipInFlight: o.tcp_skip_in_flight === true,
      networkLock: RPC_LOCK_METHODS[Number(o.network_lock ?? 1)] ?? 'iptables',
      // As criu: asked once the tree is frozen...
      afterSeize: () => {
        if (!notify) return;
        const ack = client.notify('query-ext-files');
        const ext = (ack.opts?.external ?? []) as string[];
        if (ext.length) s.logger.log(2, `Warn: external objects from query-ext-files ignored: ${ext.join(', ')}`);
      },
      // ...and post-dump with the images written and the tree still frozen: a client that
      // objects gets the tree resumed as it was.
      beforeRelease: () => {
        if (notify) client.notify('post-dump');
      },
    });
    s.logger.log(1, `Dumping finished successfully (${r.processes} processes, ${r.stats.pages_written} pages)`);
    // A self-dump that killed the caller has nobody to answer.
    if (selfDump && !o.leave_running) return true;
    return reply(client, { type: REQ.DUMP, success: true, dump: { restored: false } });
  } catch (e) {
    return fail(e, s);
  } finally {
    s.close();
  }
}

// ---------------------------------------------------------------------------------------------
// RESTORE

async function restoreRequest(client: Client, given: Message | undefined): Promise<boolean> {
  const fail = (e: unknown, s?: Setup): boolean => {
    s?.logger.log(1, `Error: ${messageOf(e)}`);
    const errno = errnoOf(e);
    return reply(client, {
      type: REQ.RESTORE, success: false, restore: { pid: -1 },
      ...(errno ? { cr_errno: errno } : {}), cr_errmsg: messageOf(e),
    }) && false;
  };
  if (!given) return fail(new RpcError('RESTORE without options', EBADRQC));
  let s: Setup;
  try {
    s = setup(client, given, 'restore');
  } catch (e) {
    return fail(e);
  }
  const { o } = s;
  try {
    const refused = refusals(o, 'restore');
    if (refused.length) throw new RpcError(refused.join('; '), EOPNOTSUPP);
    logIgnored(o, s.logger);
    // inherit_fd{key, fd}: fd is one of ours (inherited through exec), checked now as criu does.
    const inheritFds = new Map<string, number>();
    for (const { key, fd } of (o.inherit_fd ?? []) as { key: string; fd: number }[]) {
      try {
        fs.fstatSync(fd);
      } catch {
        throw new RpcError(`inherit_fd ${key}: descriptor ${fd} is not open in stasis`, 9 /* EBADF */);
      }
      inheritFds.set(key, fd);
    }
    const notify = o.notify_scripts === true;

    if (notify) client.notify('pre-restore');
    let container = false;
    const { restore } = await import('../task/restore.js');
    const r = await restore({
      imagesDir: s.imagesDir, workDir: s.workDir, inheritFds, siblingOfStasis: o.rst_sibling === true,
      tcpEstablished: o.tcp_established === true, tcpClose: o.tcp_close === true,
      log: (m) => s.logger.log(3, m), warn: (m) => s.logger.log(2, `Warn: ${m}`),
      root: typeof o.root === 'string' && o.root ? o.root : undefined, extMnt: externalMounts(o),
      joinNs: ((o.join_ns ?? []) as { ns: string; ns_file: string }[])
        .map((j) => ({ kind: j.ns as JoinNs['kind'], file: joinNsFile(j.ns, j.ns_file) })),
      cgRoots: o.manage_cgroups ? ((o.cg_root ?? []) as { ctrl?: string; path: string }[]).map((r) => ({ ctrl: r.ctrl ?? '', path: r.path })) : undefined,
      // The new terminal's master goes to the client (runc passes it on to --console-socket).
      orphanPtsMaster: o.orphan_pts_master === true ? (fd) => {
        if (!notify) throw new RpcError('orphan_pts_master needs notify_scripts: the master is sent with a notification', EBADRQC);
        client.notify('orphan-pts-master', undefined, [fd]);
      } : undefined,
      // runc runs its prestart hooks on setup-namespaces, with the container's init as pid.
      namespacesReady: (pid) => {
        container = true;
        if (!notify) return;
        client.notify('setup-namespaces', pid);
        client.notify('post-setup-namespaces');
      },
      // As criu: post-restore with the tree restored and still stopped (a client that rejects
      // it gets it killed), then pre-resume, whose failure criu only logs.
      beforeResume: (pid) => {
        if (!notify) return;
        client.notify('post-restore', pid);
        if (container) client.notify('network-unlock');
        try {
          client.notify('pre-resume');
        } catch (e) {
          s.logger.log(1, `Error: ${messageOf(e)}`);
        }
      },
    });
    if (notify) {
      try {
        client.notify('post-resume');
      } catch (e) {
        s.logger.log(1, `Error: ${messageOf(e)}`);
      }
    }
    s.logger.log(1, `Restore finished successfully (${r.processes} processes, root ${r.pid})`);
    return reply(client, { type: REQ.RESTORE, success: true, restore: { pid: r.pid } });
  } catch (e) {
    return fail(e, s);
  } finally {
    s.close();
  }
}

