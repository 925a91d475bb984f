import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { cgroupHierarchyMount } from '../../cgroup/cgroups.js';
import { decodeMessage, encodeMessage, type Message } from '../../images/wire.js';
import { SysError } from '../../sys/errno.js';
import { recvRecord, sendRecord, seqpacketPair, setBlocking } from '../../sys/seqpacket.js';
import { startWorkload, underReaper, type Workload } from '../../test-containers/launch.js';
import { restoredFdDifferences, settledSnapshot } from '../../test-containers/fds.js';
import { alive, fdKey, killPid, lastTick, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';
import { LeftoverHierarchy } from '../../test-containers/cgroup-leftover.js';

const REQ = { EMPTY: 0, DUMP: 1, RESTORE: 2, PRE_DUMP: 4, NOTIFY: 6, FEATURE_CHECK: 9, VERSION: 10 } as const;

/** The client side of `stasis swrk 3`, as runc drives it: a SEQPACKET socketpair, our end polled. */
interface Swrk {
  server: Workload;
  send(req: Message): void;
  sendRaw(bytes: Uint8Array): void;
  recv(timeoutMs?: number): Promise<Message | undefined>;
  /** Ack notifications, collecting their names, until a response of another type arrives. */
  untilResponse(notified: string[], pids?: (number | undefined)[]): Promise<Message>;
  close(): void;
  exitCode(): Promise<number>;
}

/**
 * `stasis swrk 3` on a socket pair; `byPath`: started as runc starts it (bin/launch.sh first);
 * `env`: its environment.
 */
async function startSwrk(t: ExecutionContext, byPath = false, env?: NodeJS.ProcessEnv): Promise<Swrk> {
  const [ours, theirs] = seqpacketPair();
  let open = true;
  const close = () => {
    if (open) fs.closeSync(ours);
    open = false;
  };
  t.teardown(close);
  const server = await underReaper([...(byPath ? [] : [process.execPath]), stasisBin, 'swrk', '3'], env, [theirs]);
  fs.closeSync(theirs);
  t.teardown(() => server.kill());
  setBlocking(ours, false);
  const recv = async (timeoutMs = 30_000): Promise<Message | undefined> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const r = recvRecord(ours);
        return r && decodeMessage('criu_resp', r.data);
      } catch (e) {
        if (!(e instanceof SysError && e.code === 'EAGAIN')) throw e;
      }
      if (Date.now() > deadline) throw new Error(`no response from stasis swrk within ${timeoutMs} ms: ${server.lines.join(' | ')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const send = (req: Message) => sendRecord(ours, encodeMessage('criu_req', req));
  return {
    server, send, recv, close,
    sendRaw: (bytes) => sendRecord(ours, bytes),
    async untilResponse(notified, pids) {
      for (;;) {
        const m = await recv();
        if (!m) throw new Error('stasis swrk closed the connection');
        if (m.type !== REQ.NOTIFY) return m;
        notified.push(m.notify.script);
        pids?.push(m.notify.pid);
        send({ type: REQ.NOTIFY, notify_success: true });
      }
    },
    async exitCode() {
      const line = await server.exitOf(server.pid, 30_000);
      return line.startsWith('exit') ? Number(line.split(' ')[2]) : 128 + Number(line.split(' ')[2]);
    },
  };
}

/** A directory opened in this process, for images_dir_fd / work_dir_fd. */
function openDir(t: ExecutionContext, dir: string): number {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  t.teardown(() => fs.closeSync(fd));
  return fd;
}

test('VERSION is answered as CRIU 4.2 without a gitid, byte for byte what CRIU 4.2 sends', async (t) => {
  const c = await startSwrk(t);
  c.sendRaw(Uint8Array.from([0x08, 0x0a])); // runc's request, as recorded
  const m = await c.recv();
  t.like(m, { type: REQ.VERSION, success: true, version: { major_number: 4, minor_number: 2 } });
  t.false('gitid' in m!.version, 'a gitid would make clients read 4.3');
  t.deepEqual([...encodeMessage('criu_resp', m!)], [0x08, 0x0a, 0x10, 0x01, 0x52, 0x04, 0x08, 0x04, 0x10, 0x02]);
  t.is(await c.exitCode(), 0);
  // bin/stasis answers it before loading stasis, with the two records kept as bytes: the codec's.
  const records = createRequire(import.meta.url)(path.join(path.dirname(stasisBin), 'swrk-version.cjs')) as Record<string, Buffer>;
  t.deepEqual([...records.VERSION_REQUEST!], [...encodeMessage('criu_req', { type: REQ.VERSION })]);
  t.deepEqual([...records.VERSION_RESPONSE!], [...encodeMessage('criu_resp', m!)]);
});

test('started by its path, as runc starts it, VERSION is answered without Node and any other first request reaches stasis, no record file left behind', async (t) => {
  // A temporary directory of its own: other test files start stasis by its path meanwhile.
  const env = { ...process.env, TMPDIR: tmpDir(t) };
  const left = () => fs.readdirSync(env.TMPDIR);
  const v = await startSwrk(t, true, env);
  v.sendRaw(Uint8Array.from([0x08, 0x0a]));
  t.like(await v.recv(), { type: REQ.VERSION, success: true, version: { major_number: 4, minor_number: 2 } });
  t.is(await v.exitCode(), 0);
  const c = await startSwrk(t, true, env);
  c.send({ type: REQ.FEATURE_CHECK, keep_open: true, features: { mem_track: true } });
  t.like(await c.recv(), { type: REQ.FEATURE_CHECK, success: true, features: { mem_track: false } });
  c.send({ type: REQ.VERSION });
  t.like(await c.recv(), { type: REQ.VERSION, success: true });
  t.is(await c.exitCode(), 0);
  t.deepEqual(left(), [], 'no record file left');
});

test('FEATURE_CHECK says no memory tracking and no lazy pages, pidfd_store as the kernel has it; keep_open serves a second request', async (t) => {
  const c = await startSwrk(t);
  c.send({ type: REQ.FEATURE_CHECK, keep_open: true, features: { mem_track: true, lazy_pages: true, pidfd_store: true } });
  const m = await c.recv();
  t.like(m, { type: REQ.FEATURE_CHECK, success: true, features: { mem_track: false, lazy_pages: false, pidfd_store: true } });
  c.send({ type: REQ.FEATURE_CHECK, features: { mem_track: true } });
  t.like(await c.recv(), { type: REQ.FEATURE_CHECK, success: true, features: { mem_track: false, lazy_pages: false, pidfd_store: false } });
  t.is(await c.exitCode(), 0);
});

test('an unknown request type gets an EMPTY failure and a failed exit; PRE_DUMP is refused with EOPNOTSUPP', async (t) => {
  const c = await startSwrk(t);
  c.sendRaw(Uint8Array.from([0x08, 99]));
  t.like(await c.recv(), { type: REQ.EMPTY, success: false });
  t.is(await c.exitCode(), 1);

  const p = await startSwrk(t);
  p.send({ type: REQ.PRE_DUMP, opts: { images_dir_fd: -1, images_dir: '/nonexistent' } });
  const m = await p.recv();
  t.like(m, { type: REQ.PRE_DUMP, success: false, cr_errno: 95 });
  t.regex(m!.cr_errmsg, /pre-dump/);
  t.is(await p.exitCode(), 1);
});

/** The mount point of the v1 `pids` hierarchy. */
function pidsHierarchy(): string {
  const mount = cgroupHierarchyMount('pids');
  if (!mount) throw new Error('no v1 pids cgroup hierarchy on this machine');
  return mount;
}

test.serial('DUMP over RPC notifies pre-dump, query-ext-files, post-dump; RESTORE with rst_sibling=false brings the counter back into its cg_root', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);

  const fdsBefore = settledSnapshot(w.pid);
  const d = await startSwrk(t);
  // Unknown fields (72 = image_io_mode of newer clients) and container options that mean
  // nothing for a process in the host's namespaces are accepted.
  const opts = encodeMessage('criu_opts', {
    images_dir_fd: openDir(t, dir), pid: w.pid, log_level: 4, log_file: 'dump.log', notify_scripts: true,
    manage_cgroups: true, orphan_pts_master: true,
  });
  d.sendRaw(Buffer.concat([Buffer.from([0x08, REQ.DUMP, 0x12, opts.length + 3]), opts, Buffer.from([0xc0, 0x04, 0x01])]));
  const notified: string[] = [];
  const resp = await d.untilResponse(notified);
  t.deepEqual(notified, ['pre-dump', 'query-ext-files', 'post-dump']);
  t.like(resp, { type: REQ.DUMP, success: true, dump: { restored: false } }, resp.cr_errmsg);
  t.is(await d.exitCode(), 0);
  t.regex(await w.exitOf(w.pid), /^signal \d+ 9$/, 'the dumped counter was killed');
  t.true(fs.existsSync(path.join(dir, 'inventory.img')));
  t.regex(fs.readFileSync(path.join(dir, 'dump.log'), 'utf8'), /Dumping finished successfully/);
  const stoppedAt = lastTick(w.lines);

  // A cgroup of the test's for cg_root, removed once the restored counter is gone.
  const cgName = `stasis-test-${process.pid}-cg`;
  const cgDir = path.join(pidsHierarchy(), cgName);
  fs.mkdirSync(cgDir);
  t.teardown(async () => {
    for (let i = 0; i < 100; i++) {
      try {
        fs.rmdirSync(cgDir);
        return;
      } catch {
        await new Promise((res) => setTimeout(res, 20)); // the killed counter is still leaving it
      }
    }
  });
  // The restored counter's stdout is stasis's own (the reaper's pipe), through inherit_fd.
  const r = await startSwrk(t);
  t.teardown(() => killPid(w.pid));
  r.send({
    type: REQ.RESTORE,
    opts: {
      images_dir_fd: openDir(t, dir), log_level: 4, log_file: 'restore.log', notify_scripts: true,
      rst_sibling: false, inherit_fd: [{ key, fd: 1 }], manage_cgroups: true, cg_root: [{ ctrl: 'pids', path: `/${cgName}` }],
    },
  });
  const restored: string[] = [];
  const pids: (number | undefined)[] = [];
  const rr = await r.untilResponse(restored, pids);
  t.like(rr, { type: REQ.RESTORE, success: true, restore: { pid: w.pid } }, rr.cr_errmsg);
  t.deepEqual(restored, ['pre-restore', 'post-restore', 'pre-resume', 'post-resume']);
  t.deepEqual(pids, [undefined, w.pid, undefined, undefined], 'only post-restore carries the pid');
  t.is(await r.exitCode(), 0);
  t.deepEqual(restoredFdDifferences(fdsBefore, w.pid), [], 'the counter has its descriptors back with their flags and positions');
  await r.server.waitForLine(new RegExp(`^tick ${stoppedAt + 1}$`));
  await r.server.waitForLine(new RegExp(`^tick ${stoppedAt + 5}$`));
  t.true(alive(w.pid), 'running under its old PID, adopted by the reaper once stasis exited');
  t.regex(fs.readFileSync(`/proc/${w.pid}/cgroup`, 'utf8'), new RegExp(`:pids:/${cgName}$`, 'm'), 'in the cgroup cg_root names');
  t.deepEqual(r.server.lines.filter((l) => l.startsWith('ERR')), []);
  t.regex(fs.readFileSync(path.join(dir, 'restore.log'), 'utf8'), /Restore finished successfully/);
});

test.serial('a cg_root in a named v1 hierarchy mounted nowhere, in a cgroup stasis is not in: the hierarchy is mounted for the move, with a warning, and unmounted', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  const stoppedAt = lastTick(w.lines);

  // Its child cgroup is where the tree goes; removed once the restored counter is gone from it.
  const h = LeftoverHierarchy.create(`stasistest${process.pid}`);
  t.teardown(async () => {
    killPid(w.pid);
    while (alive(w.pid)) await new Promise((r) => setTimeout(r, 20));
    await h.destroy();
  });
  const r = await startSwrk(t);
  r.send({
    type: REQ.RESTORE,
    opts: {
      images_dir_fd: openDir(t, dir), log_level: 4, log_file: 'restore.log',
      inherit_fd: [{ key, fd: 1 }], manage_cgroups: true, cg_root: [{ ctrl: `name=${h.name}`, path: `/${h.child}` }],
    },
  });
  const rr = await r.untilResponse([]);
  t.like(rr, { type: REQ.RESTORE, success: true, restore: { pid: w.pid } }, rr.cr_errmsg);
  t.is(await r.exitCode(), 0);
  await r.server.waitForLine(new RegExp(`^tick ${stoppedAt + 2}$`));
  t.regex(fs.readFileSync(`/proc/${w.pid}/cgroup`, 'utf8'), new RegExp(`^\\d+:name=${h.name}:/${h.child}$`, 'm'), 'in the cgroup cg_root names');
  t.regex(fs.readFileSync(path.join(dir, 'restore.log'), 'utf8'),
    new RegExp(`Warn: cg_root name=${h.name}:/${h.child}: the hierarchy is mounted nowhere; mounted for the restore`));
  t.false(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes('stasis-cgroup-'), 'unmounted again');
  t.true(h.listed(), 'still mounted nowhere');
});

test.serial('a client that closes the socket during pre-dump fails the dump and leaves the counter running untraced', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const c = await startSwrk(t);
  c.send({ type: REQ.DUMP, opts: { images_dir_fd: openDir(t, dir), pid: w.pid, notify_scripts: true, log_file: 'dump.log' } });
  const m = await c.recv();
  t.like(m, { type: REQ.NOTIFY, notify: { script: 'pre-dump' } });
  c.close();
  t.is(await c.exitCode(), 1);
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 3}$`));
  const status = fs.readFileSync(`/proc/${w.pid}/status`, 'utf8');
  t.regex(status, /TracerPid:\s+0\n/, 'not traced');
  t.regex(status, /State:\s+[SR]/, 'not stopped');
  t.false(fs.existsSync(path.join(dir, 'inventory.img')));
  t.regex(fs.readFileSync(path.join(dir, 'dump.log'), 'utf8'), /closed the connection while pre-dump/);
});

test('a RESTORE that asks to join a namespace kind stasis cannot join is refused with a reason, not pretended', async (t) => {
  const dir = tmpDir(t);
  const c = await startSwrk(t);
  c.send({
    type: REQ.RESTORE,
    opts: { images_dir_fd: openDir(t, dir), root: '/run/runc/x/criu-root', join_ns: [{ ns: 'user', ns_file: '/proc/1/ns/user' }] },
  });
  const m = await c.recv();
  t.like(m, { type: REQ.RESTORE, success: false, cr_errno: 95, restore: { pid: -1 } });
  t.regex(m!.cr_errmsg, /^join_ns user: only ipc, uts, net and time namespaces can be joined$/);
  t.is(await c.exitCode(), 1);
});

test.serial('config_file settings fill in what the request leaves out; an option stasis does not know fails the request', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const conf = path.join(tmpDir(t), 'runc.conf');
  fs.writeFileSync(conf, '# as runc reads /etc/criu/runc.conf\nlog-file from-config.log\nv4\nleave-running\n');
  const c = await startSwrk(t);
  c.send({ type: REQ.DUMP, opts: { images_dir_fd: openDir(t, dir), pid: w.pid, config_file: conf } });
  t.like(await c.recv(), { type: REQ.DUMP, success: true });
  t.is(await c.exitCode(), 0);
  t.regex(fs.readFileSync(path.join(dir, 'from-config.log'), 'utf8'), /Dumping finished successfully/, 'its log-file and v4 were used');
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`)); // leave-running from the file

  fs.writeFileSync(conf, 'lazy-pages\n');
  const c2 = await startSwrk(t);
  c2.send({ type: REQ.DUMP, opts: { images_dir_fd: openDir(t, tmpDir(t)), pid: w.pid, config_file: conf } });
  const m = await c2.recv();
  t.like(m, { type: REQ.DUMP, success: false });
  t.regex(m!.cr_errmsg, /runc\.conf:1: option 'lazy-pages' is not supported by stasis/);
  t.is(await c2.exitCode(), 1);
  t.regex(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'), /TracerPid:\s+0\n/);
});

test.serial('a 70 KB DUMP request (1300 external mounts) is read whole and answered', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  // external mounts are matched against the tree's mount namespace: a tree in ours has none.
  const external = Array.from({ length: 1300 }, (_, i) => `mnt[/stasis-test/not-mounted/mountpoint-${String(i).padStart(4, '0')}]:key-${i}`);
  const req = { type: REQ.DUMP, opts: { images_dir_fd: openDir(t, dir), pid: w.pid, leave_running: true, log_file: 'dump.log', external } };
  const bytes = encodeMessage('criu_req', req);
  t.true(bytes.length > 70_000, `${bytes.length} bytes`);
  const c = await startSwrk(t);
  c.sendRaw(bytes);
  const m = await c.recv();
  t.like(m, { type: REQ.DUMP, success: true }, m?.cr_errmsg);
  t.is(await c.exitCode(), 0);
  t.true(fs.existsSync(path.join(dir, 'inventory.img')));
  t.true(alive(w.pid), 'left running');
});

test('an error quoting a 65 KB log_file name is cut to 4 KiB by an ellipsis, keeping its beginning and its reason', async (t) => {
  const dir = tmpDir(t);
  const c = await startSwrk(t);
  const name = 'l'.repeat(65 * 1024);
  c.send({ type: REQ.DUMP, opts: { images_dir_fd: openDir(t, dir), pid: 1, log_file: name } });
  const m = await c.recv();
  t.like(m, { type: REQ.DUMP, success: false });
  const msg = m!.cr_errmsg as string;
  t.true(Buffer.byteLength(msg) <= 4096, `${Buffer.byteLength(msg)} bytes`);
  t.regex(msg, /^\S.* … .*\S$/, 'an ellipsis in its middle');
  t.regex(msg, /log/i, 'it still says what failed');
  t.regex(msg, /ENAMETOOLONG|too long/, 'and why');
  t.is(await c.exitCode(), 1);
});

test('a record that is no criu_req gets an EMPTY failure naming it, and a failed exit', async (t) => {
  const c = await startSwrk(t);
  c.sendRaw(Uint8Array.from([0x08, 0x01, 0x12, 0x40, 0x00])); // opts of 64 bytes, 1 given
  const m = await c.recv();
  t.like(m, { type: REQ.EMPTY, success: false, cr_errno: 56 });
  t.regex(m!.cr_errmsg, /a record of 5 bytes is not a criu_req/);
  t.is(await c.exitCode(), 1);
});

test('a DUMP asking keep_open (which only some request types allow) is answered with a failure saying so', async (t) => {
  const c = await startSwrk(t);
  c.send({ type: REQ.DUMP, keep_open: true, opts: { images_dir_fd: -1, images_dir: '/nonexistent' } });
  const m = await c.recv();
  t.like(m, { type: REQ.DUMP, success: false, cr_errno: 56 });
  t.regex(m!.cr_errmsg, /keep_open is not allowed/);
  t.is(await c.exitCode(), 1);
});
