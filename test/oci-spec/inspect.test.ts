// stasis inspect, memparse and diff on real dumps: a workload (inspectee) with a known string in
// memory, a file, a TCP and a unix socket open, and a child, dumped twice with stasis while it
// runs, packed into archives of the three layouts (Podman, CRI-O/kubelet, containerd) with each
// compression; and archives Podman itself exported. Every field is checked against what the dump
// holds, read here from the images themselves.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { decodeImage } from '../../images/image.js';
import { ImageDir } from '../../images/image-dir.js';
import { PAGE_SIZE, PE_PRESENT, pagemapImage } from '../../images/pagemap.js';
import { encodeImage } from '../../images/image.js';
import { packDirectory, readMembers } from '../../oci-spec/archive.js';
import { openCheckpoint } from '../../oci-spec/checkpoint-reader.js';
import { inspect, type CheckpointInfo, type ProcessNode } from '../../oci-spec/inspect.js';
import { searchMemory } from '../../oci-spec/memparse.js';
import { buildWorkload, underReaper, type Workload } from '../../test-containers/launch.js';
import { Podman } from '../../test-containers/podman.js';
import { stasis, stasisBin } from '../helpers/stasis.js';
import type { Compression } from '../../oci-spec/compression.js';

interface Fixture {
  root: string;
  work: string;
  mark: string;
  pid: number;
  child: number;
  port: number;
  counter: bigint;
  steady: bigint;
  argv: string[];
  /** The second child and the thread started between the two dumps. */
  child2: number;
  thread: number;
  /** Two dumps, the second 300 ms after the first, the workload running on after each. */
  d1: string;
  d2: string;
}

let fixture: Promise<Fixture> | undefined;
let workload: Workload | undefined;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-test-inspect-'));

/** The inspectee, dumped twice (stasis dump -R), then killed; made once for every test. */
function dumps(): Promise<Fixture> {
  fixture ??= (async () => {
    const work = path.join(root, 'work');
    fs.mkdirSync(work);
    const mark = `zebra${process.pid}q`;
    const argv = [buildWorkload('inspectee'), work, mark];
    workload = await underReaper(argv, { PATH: process.env.PATH, INSPECT_MARK: mark });
    const ready = (await workload.waitForLine(/^ready /)).split(' ');
    const f: Fixture = {
      root, work, mark, pid: workload.pid, child: Number(ready[2]), port: Number(ready[1]), argv,
      counter: BigInt(`0x${ready[3]}`), steady: BigInt(`0x${ready[4]}`), child2: 0, thread: 0, d1: path.join(root, 'd1'), d2: path.join(root, 'd2'),
    };
    for (const d of [f.d1, f.d2]) {
      const r = await stasis(['dump', '-t', String(f.pid), '-D', d, '-R']);
      if (r.exitCode !== 0) throw new Error(`dump into ${d}: ${r.all}`);
      if (d !== f.d1) continue;
      // Between the two: a second child, a thread and a file more.
      process.kill(f.pid, 'SIGUSR1');
      const grown = (await workload.waitForLine(/^grown /)).split(' ');
      [f.child2, f.thread] = [Number(grown[1]), Number(grown[2])];
      await new Promise((res) => setTimeout(res, 300));
    }
    await workload.kill();
    return f;
  })();
  return fixture;
}

test.after.always(async () => {
  await workload?.kill();
  fs.rmSync(root, { recursive: true, force: true });
});

type Layout = 'podman' | 'crio' | 'containerd';

const CREATED = '2026-12-01T10:20:30.123456789Z';
const CHECKPOINTED = '2026-12-01T10:25:00Z';
const SPEC_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/data', type: 'bind', source: '/srv/data' },
];

/**
 * A directory laid out as `layout` writes a checkpoint, around a copy of the images in `images`
 * (its stats-dump moved beside checkpoint/, as runtimes leave it in the work directory).
 */
function layoutDir(images: string, layout: Layout, where: string): string {
  const dir = path.join(where, layout);
  fs.cpSync(images, path.join(dir, 'checkpoint'), { recursive: true });
  fs.renameSync(path.join(dir, 'checkpoint', 'stats-dump'), path.join(dir, 'stats-dump'));
  const json = (name: string, v: unknown) => fs.writeFileSync(path.join(dir, name), JSON.stringify(v));
  const config = {
    id: 'f00dcafe0123456789abcdef', name: 'inspectee-ctr', rootfsImageName: 'localhost/inspectee:1',
    rootfsImageRef: 'sha256:1234', runtime: 'runc', createdTime: CREATED, checkpointedTime: CHECKPOINTED,
  };
  const annotations: Record<string, Record<string, string>> = {
    podman: { 'io.container.manager': 'libpod' },
    crio: {
      'io.container.manager': 'cri-o', 'io.kubernetes.cri-o.Metadata': JSON.stringify({ name: 'web', attempt: 1 }),
      'io.kubernetes.cri-o.IP.0': '10.85.0.7', 'io.kubernetes.cri-o.Created': '2026-12-01T10:20:31Z',
      'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.name': 'frontend',
    },
    containerd: {
      'io.kubernetes.cri.container-name': 'worker', 'io.kubernetes.cri.sandbox-namespace': 'batch',
      'io.kubernetes.cri.sandbox-name': 'jobs',
    },
  };
  json('spec.dump', { ociVersion: '1.0.2', process: { args: ['/inspectee'] }, mounts: SPEC_MOUNTS, annotations: annotations[layout] });
  if (layout === 'podman') {
    // Podman's config.dump is its whole container config: more keys than checkpointctl reads.
    json('config.dump', { ...config, rootfsImageID: 'abcd', pod: '', networks: { podman: {} } });
    json('network.status', {
      podman: { interfaces: { eth0: { subnets: [{ ipnet: '10.88.0.5/16', gateway: '10.88.0.1' }], mac_address: '6a:1f:22:33:44:55' } } },
    });
  } else if (layout === 'crio') {
    json('config.dump', { ...config, restored: false });
    json('bind.mounts', [{ source: '/srv/data', destination: '/data', file_type: 'directory', permissions: 0o755 }]);
    fs.writeFileSync(path.join(dir, 'dump.log'), 'log\n');
  } else {
    json('config.dump', config);
    json('status.dump', { id: config.id, state: 'CONTAINER_RUNNING' });
    json('status', { Pid: 4242, CreatedAt: 1, StartedAt: 2 });
    fs.writeFileSync(path.join(dir, 'rootfs-diff.tar'), Buffer.alloc(3072, 1));
  }
  return dir;
}

/** What a checkpoint directory's images say, read here directly. */
async function expected(dir: string) {
  const images = await ImageDir.open(path.join(dir, 'checkpoint'));
  const procs = [];
  for (const e of await images.messages('pstree.img')) {
    const core = await images.message(`core-${e.pid}.img`);
    procs.push({ pid: Number(e.pid), ppid: Number(e.ppid), comm: String(core.tc.comm) });
  }
  let total = 0;
  let pages = 0;
  for (const n of fs.readdirSync(path.join(dir, 'checkpoint'))) {
    const size = fs.statSync(path.join(dir, 'checkpoint', n)).size;
    total += size;
    if (/^pages-\d+\.img$/.test(n)) pages += size;
  }
  const stats = decodeImage(fs.readFileSync(path.join(dir, 'stats-dump')), 'stats-dump').entries[0]!.message.dump;
  return { procs, total, pages, stats };
}

function flatten(n: ProcessNode | undefined): ProcessNode[] {
  return n ? [n, ...(n.children ?? []).flatMap(flatten)] : [];
}

/** The fields of an inspect JSON that hold for every layout of the inspectee's dump. */
async function checkCommon(t: import('ava').ExecutionContext, info: CheckpointInfo, dir: string, f: Fixture) {
  const want = await expected(dir);
  t.is(info.checkpoint_size.total_size, want.total, 'checkpoint size: every file under checkpoint/');
  t.is(info.checkpoint_size.memory_pages_size, want.pages, 'memory pages size: the pages files');
  t.deepEqual(info.statistics, {
    freezing_time: Number(want.stats.freezing_time), frozen_time: Number(want.stats.frozen_time),
    memdump_time: Number(want.stats.memdump_time), memwrite_time: Number(want.stats.memwrite_time),
    pages_scanned: Number(want.stats.pages_scanned), pages_written: Number(want.stats.pages_written),
  }, 'statistics: stats-dump\'s values');
  const procs = flatten(info.process_tree);
  t.deepEqual(procs.map((p) => p.pid).sort(), want.procs.map((p) => p.pid).sort(), 'every process of pstree.img');
  t.deepEqual(procs.map((p) => [p.pid, p.command]).sort(), want.procs.map((p) => [p.pid, p.comm]).sort(), 'commands: core\'s comm');
  t.is(info.process_tree!.pid, f.pid, 'the tree is rooted at the workload');
  t.deepEqual(info.process_tree!.children?.map((c) => c.pid), [f.child], 'its child below it');
  for (const p of procs) {
    t.is(p.task_state, 'Alive');
    t.is(p.cmdline, f.argv.join(' '), `${p.pid}: the command line, read from the dumped memory`);
    t.is(p.environment_variables?.INSPECT_MARK, f.mark, `${p.pid}: the environment, read from the dumped memory`);
  }
  const files = info.file_descriptors!.find((x) => x.pid === f.pid)!.open_files!;
  const fd = (n: string) => files.find((o) => o.fd === n);
  t.deepEqual(fd('5'), { type: 'REG', fd: '5', path: path.join(f.work, 'notes.txt') });
  t.is(fd('6')?.type, 'INETSK');
  t.is(fd('7')?.type, 'UNIXSK');
  t.is(fd('cwd')?.path, process.cwd());
  t.is(fd('root')?.path, '/');
  t.falsy(info.file_descriptors!.find((x) => x.pid === f.child)!.open_files!.find((o) => o.fd === '5'), 'the child closed the file');
  const sockets = info.sockets!.find((x) => x.pid === f.pid)!.open_sockets!;
  const tcp = sockets.find((s) => s.fd === 6)!;
  t.is(tcp.protocol, 'TCP');
  t.like(tcp.data, { type: 'TCP', state: 'LISTEN', src: '127.0.0.1', src_port: f.port, dst: '0.0.0.0', dst_port: 0 });
  t.regex(tcp.data.send_buf ?? '', /^\d+(\.\d)? (B|KiB|MiB)$/);
  const unix = sockets.find((s) => s.fd === 7)!;
  t.like(unix, { protocol: 'UNIX', data: { type: 'UNIX', address: path.join(f.work, 'sock'), state: 'LISTEN' } });
  t.falsy(info.sockets!.find((x) => x.pid === f.child), 'the child has no sockets');
}

async function cli(args: string[]) {
  const r = await stasis(args);
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const LAYOUT_CASES: [Layout, Compression][] = [
  ['podman', 'zstd'], ['podman', 'gzip'], ['podman', 'none'], ['crio', 'none'], ['containerd', 'none'], ['containerd', 'zstd'],
];

for (const [layout, compression] of LAYOUT_CASES) {
  test(`inspect of a ${layout}-layout archive (${compression}) of a real dump: json, yaml and tree show what the dump holds`, async (t) => {
    const f = await dumps();
    const where = fs.mkdtempSync(path.join(root, `${layout}-${compression}-`));
    const dir = layoutDir(f.d1, layout, where);
    const archive = path.join(where, `ckpt.tar${compression === 'none' ? '' : compression === 'gzip' ? '.gz' : '.zst'}`);
    await packDirectory(dir, archive, { compression });

    const json = await cli(['inspect', archive, '--all', '--format', 'json']);
    t.is(json.code, 0, json.stderr);
    const [info] = JSON.parse(json.stdout) as CheckpointInfo[];
    await checkCommon(t, info!, dir, f);
    t.deepEqual(info!.mounts, SPEC_MOUNTS, 'mounts: spec.dump\'s');
    t.is(info!.image, 'localhost/inspectee:1');
    t.is(info!.id, 'f00dcafe0123456789abcdef');
    t.is(info!.runtime, 'runc');
    t.is(info!.checkpointed, CHECKPOINTED);
    if (layout === 'podman') {
      t.like(info, { engine: 'Podman', container_name: 'inspectee-ctr', created: '2026-12-01T10:20:30Z', ip: '10.88.0.5', mac: '6a:1f:22:33:44:55' });
      t.deepEqual(info!.networks, [{ name: 'podman', interfaces: { eth0: { ip: '10.88.0.5', mac: '6a:1f:22:33:44:55', gateway: '10.88.0.1' } } }]);
      t.is(info!.checkpoint_size.root_fs_diff_size, undefined);
    } else if (layout === 'crio') {
      t.like(info, { engine: 'CRI-O', container_name: 'web', created: '2026-12-01T10:20:31Z', ip: '10.85.0.7' });
      t.like(info!.metadata, { pod_name: 'frontend', kubernetes_namespace: 'shop' });
    } else {
      t.like(info, { engine: 'containerd', container_name: 'worker', created: '2026-12-01T10:20:30Z' });
      t.like(info!.metadata, { pod_name: 'jobs', kubernetes_namespace: 'batch' });
      t.is(info!.checkpoint_size.root_fs_diff_size, 3072);
    }
    // The Node API gives the same data.
    t.deepEqual(JSON.parse(JSON.stringify(await inspect(archive, { all: true }))), [info]);
    // The unpacked directory reads the same.
    const fromDir = JSON.parse((await cli(['inspect', dir, '--all', '--format', 'json'])).stdout) as CheckpointInfo[];
    t.deepEqual({ ...fromDir[0], checkpoint_path: archive }, info);

    const yaml = await cli(['inspect', archive, '--all', '--format', 'yaml']);
    t.is(yaml.code, 0, yaml.stderr);
    t.deepEqual(YAML.parse(yaml.stdout), [info], 'yaml holds the same as json');

    const tree = await cli(['inspect', archive, '--all']);
    t.is(tree.code, 0, tree.stderr);
    const lines = tree.stdout.split('\n');
    const has = (re: RegExp, what: string) => t.true(lines.some((l) => re.test(l)), `${what}: ${re}`);
    has(new RegExp(`^${info!.container_name}$`), 'the container name heads the tree');
    has(new RegExp(`── Engine: ${info!.engine}$`), 'engine');
    has(/── Checkpoint size: \d+\.\d KiB$/, 'checkpoint size');
    has(new RegExp(`── Memory pages written: ${info!.statistics!.pages_written}$`), 'stats');
    has(new RegExp(`── \\[${f.pid}\\]  inspectee$`), 'the root process');
    has(new RegExp(`── \\[${f.child}\\]  inspectee$`), 'the child');
    has(new RegExp(`── Command line: ${f.argv.join(' ').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`), 'command line');
    has(new RegExp(`── INSPECT_MARK=${f.mark}$`), 'environment');
    has(new RegExp(`── \\[REG 5\\]  ${path.join(f.work, 'notes.txt')}$`), 'the open file');
    has(new RegExp(`── \\[TCP \\(LISTEN\\)\\] fd 6  127\\.0\\.0\\.1:${f.port} -> 0\\.0\\.0\\.0:0`), 'the TCP socket');
    has(/── Destination: \/data$/, 'a mount');
  });
}

test('inspect --list finds the kubelet-named archives in a directory, with namespace, pod and container', async (t) => {
  const f = await dumps();
  const where = fs.mkdtempSync(path.join(root, 'list-'));
  const dir = layoutDir(f.d1, 'crio', where);
  const ckpts = path.join(where, 'checkpoints');
  fs.mkdirSync(ckpts);
  const name = 'checkpoint-frontend_shop-web-2026-12-01T10:25:00Z.tar';
  await packDirectory(dir, path.join(ckpts, name), { compression: 'none' });
  fs.writeFileSync(path.join(ckpts, 'unrelated.txt'), 'x');
  const r = await cli(['inspect', '--list', ckpts, '--format', 'json']);
  t.is(r.code, 0, r.stderr);
  t.like(JSON.parse(r.stdout), [{ namespace: 'shop', pod: 'frontend', container: 'web', engine: 'CRI-O', checkpointed: CHECKPOINTED, checkpoint_name: name }]);
  const tree = await cli(['inspect', '--list', ckpts]);
  t.regex(tree.stdout, /^Namespace\s+Pod\s+Container\s+Engine\s+Time Checkpointed\s+Checkpoint Name$/m);
  t.regex(tree.stdout, new RegExp(`^shop\\s+frontend\\s+web\\s+CRI-O\\s+${CHECKPOINTED}\\s+${name.replace(/[.]/g, '\\.')}$`, 'm'));
});

test('memparse lists each process\'s dumped memory, finds the string the workload keeps in memory, and writes its memory out', async (t) => {
  const f = await dumps();
  const where = fs.mkdtempSync(path.join(root, 'memparse-'));
  const archive = path.join(where, 'ckpt.tar.zst');
  await packDirectory(layoutDir(f.d1, 'podman', where), archive, { compression: 'zstd' });
  const images = await ImageDir.open(f.d1);
  const sizeOf = async (pid: number) => (await images.pagemap(`pagemap-${pid}.img`)).runs
    .reduce((s, r) => s + (r.flags & PE_PRESENT ? r.nrPages * PAGE_SIZE : 0), 0);

  const table = await cli(['memparse', archive]);
  t.is(table.code, 0, table.stderr);
  for (const pid of [f.pid, f.child]) {
    const kib = ((await sizeOf(pid)) / 1024).toFixed(1);
    t.regex(table.stdout, new RegExp(`^${pid}\\s+inspectee\\s+${kib.replace('.', '\\.')} KiB$`, 'm'), `process ${pid}'s memory size`);
  }

  for (const source of [archive, f.d1]) {
    const found = await cli(['memparse', source, '-p', String(f.pid), '--search', `needle:${f.mark}`, '-c', '4']);
    t.is(found.code, 0, found.stderr);
    t.regex(found.stdout, /: 1 match\n/, `${source}: the heap buffer holds it once`);
    t.regex(found.stdout, new RegExp(`^0x[0-9a-f]{16}  \\.{0,4}needle:${f.mark}`, 'm'));
    const re = await cli(['memparse', source, '-p', String(f.pid), '--search-regex', `INSPECT_MARK=${f.mark.slice(0, 5)}[a-z0-9]+`]);
    t.regex(re.stdout, new RegExp(`^0x[0-9a-f]{16}  INSPECT_MARK=${f.mark}$`, 'm'), `${source}: the environment string, by regex`);
  }
  // The steady buffer repeats the alphabet across 32 pages: every occurrence is found once, those
  // that straddle a page or a chunk of the stream too, with their context.
  const end = f.steady + 32n * 4096n;
  for (const source of [archive, f.d1]) {
    const all = await searchMemory(source, f.pid, /abcdefghijklmnopqrstuvwxyz/g, 30);
    const inSteady = all.filter((m) => m.address >= f.steady && m.address < end);
    t.is(inSteady.length, Math.floor((32 * 4096 - 26) / 26) + 1, `${source}: every alphabet in the steady buffer`);
    t.true(inSteady.every((m, i) => m.address === f.steady + BigInt(26 * i)), 'at its place, in order, once each');
    const inside = inSteady.filter((m) => m.address >= f.steady + 30n && m.address + 56n <= end);
    t.true(inside.every((m) => m.context.length === 86 && m.contextAddress === m.address - 30n), 'with 30 bytes each side');
  }
  const none = await cli(['memparse', archive, '-p', String(f.child), '--search', 'no-such-string-anywhere-42']);
  t.is(none.code, 0);
  t.regex(none.stdout, /: 0 matches/);

  const out = path.join(where, 'mem.txt');
  const dump = await cli(['memparse', archive, '-p', String(f.pid), '-o', out]);
  t.is(dump.code, 0, dump.stderr);
  const rows = fs.readFileSync(out, 'utf8').split('\n').filter((l) => /^[0-9a-f]{16}  /.test(l));
  t.is(rows.length, (await sizeOf(f.pid)) / 16, 'one row for each 16 bytes of dumped memory');
  const steadyRow = rows.find((l) => l.startsWith(f.steady.toString(16).padStart(16, '0')));
  t.truthy(steadyRow, 'the steady buffer\'s first row is there');
  t.true(steadyRow!.endsWith('|abcdefghijklmnop|'));

  const bad = await cli(['memparse', archive, '-p', '999999']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^stasis memparse: .*no process with PID 999999/);
  t.is(bad.stderr.trim().split('\n').length, 1);
});

test('diff of two checkpoints of a running counter reports the counter\'s page changed and not the pages that stayed the same', async (t) => {
  const f = await dumps();
  const where = fs.mkdtempSync(path.join(root, 'diff-'));
  const a = path.join(where, 'a.tar.zst');
  const b = path.join(where, 'b.tar');
  await packDirectory(layoutDir(f.d1, 'podman', fs.mkdtempSync(path.join(where, 'a-'))), a, { compression: 'zstd' });
  await packDirectory(layoutDir(f.d2, 'podman', fs.mkdtempSync(path.join(where, 'b-'))), b, { compression: 'none' });
  const r = await cli(['diff', a, b, '--format', 'json']);
  t.is(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  t.deepEqual(d.processes_added, [{ pid: f.child2, command: 'inspectee' }], 'the child forked between the two');
  t.deepEqual(d.processes_gone, []);
  const p = d.processes.find((x: { pid: number }) => x.pid === f.pid);
  t.falsy(p.cmdline, 'same command line');
  t.deepEqual(p.threads_added, [f.thread], 'the thread started between the two');
  t.deepEqual(p.fds_added, [`8 REG ${path.join(f.work, 'more.txt')}`], 'the file opened between the two');
  t.falsy(p.fds_gone ?? p.fds_changed ?? p.sockets_added ?? p.sockets_gone, 'the other descriptors and sockets as they were');
  t.falsy(d.processes.find((x: { pid: number }) => x.pid === f.child).threads_added);
  const changed: string[] = p.memory.mappings.flatMap((m: { changed: string[] }) => m.changed);
  t.true(changed.includes(f.counter.toString(16)), 'the counter\'s page changed');
  for (let i = 0n; i < 32n; i++) t.false(changed.includes((f.steady + i * 4096n).toString(16)), 'the steady buffer did not');
  t.true(p.memory.pages_unchanged >= 32, 'unchanged pages are counted as such');
  t.true(p.memory.pages_changed < p.memory.pages_unchanged, 'most pages stayed the same');
  const tree = await cli(['diff', a, b]);
  t.regex(tree.stdout, new RegExp(`── ${f.counter.toString(16)}$`, 'm'), 'the tree lists the counter\'s page');
  t.regex(tree.stdout, new RegExp(`processes added \\(1\\)\n.*── \\[${f.child2}\\]  inspectee`), 'and the new child');
  const same = await cli(['diff', a, a, '--format', 'json']);
  const s = JSON.parse(same.stdout);
  t.true(s.processes.every((x: { memory: { pages_changed: number } }) => x.memory.pages_changed === 0), 'a checkpoint against itself: no page changed');
  t.deepEqual([s.processes_added, s.processes_gone], [[], []]);
});

test('inspect --summary of an archive, read in memory, says what show -D says of the directory; --pid narrows to one process', async (t) => {
  const f = await dumps();
  const where = fs.mkdtempSync(path.join(root, 'summary-'));
  const dir = layoutDir(f.d1, 'containerd', where);
  const archive = path.join(where, 'ckpt.tar.gz');
  await packDirectory(dir, archive, { compression: 'gzip' });
  const shown = await cli(['show', '-D', path.join(dir, 'checkpoint')]);
  t.is(shown.code, 0, shown.stderr);
  const r = await cli(['inspect', archive, '--summary', '--ps-tree-cmd', '--format', 'json']);
  t.is(r.code, 0, r.stderr);
  const [info] = JSON.parse(r.stdout) as CheckpointInfo[];
  const body = (text: string) => text.trimEnd().split('\n').slice(1).join('\n');
  t.is(body(info!.images_summary!), body(shown.stdout), 'the same summary, command lines included');
  t.regex(info!.images_summary!, new RegExp(`command line: ${f.argv[0]!.replace(/[.]/g, '\\.')} `));

  const one = await cli(['inspect', archive, '--ps-tree', '--files', '--sockets', '--pid', String(f.child), '--format', 'json']);
  t.is(one.code, 0, one.stderr);
  const [narrow] = JSON.parse(one.stdout) as CheckpointInfo[];
  t.like(narrow!.process_tree, { pid: f.child, command: 'inspectee' });
  t.is(narrow!.process_tree!.children, undefined);
  t.deepEqual(narrow!.file_descriptors!.map((x) => x.pid), [f.child]);
  t.deepEqual(narrow!.sockets, []);
  const missing = await cli(['inspect', archive, '--ps-tree', '--pid', '99999999']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /no process with PID 99999999/);
});

/** Bytes this process has read through read(2) and pread(2) so far. */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

test('inspect of an archive with 1 GiB of pages reads none of them for the tree, files and sockets, and only the pages it needs for command lines', async (t) => {
  const f = await dumps();
  const where = fs.mkdtempSync(path.join(root, 'big-'));
  const dir = layoutDir(f.d1, 'podman', where);
  // A shared memory object's pages: a pagemap naming pages-999.img, 1 GiB, a sparse file.
  const GiB = 1 << 30;
  fs.writeFileSync(path.join(dir, 'checkpoint', 'pagemap-shmem-999.img'),
    encodeImage(pagemapImage(999, [{ vaddr: 0n, nrPages: GiB / PAGE_SIZE, flags: PE_PRESENT }])));
  fs.writeFileSync(path.join(dir, 'checkpoint', 'pages-999.img'), '');
  fs.truncateSync(path.join(dir, 'checkpoint', 'pages-999.img'), GiB);
  for (const compression of ['none', 'zstd'] as const) {
    const archive = path.join(where, `big.tar.${compression}`);
    await packDirectory(dir, archive, { compression });
    if (compression === 'none') t.true(fs.statSync(archive).size > GiB);

    const before = bytesRead();
    const [info] = await inspect(archive, { psTree: true, files: true, sockets: true, mounts: true, stats: true });
    const read = bytesRead() - before;
    t.is(info!.checkpoint_size.total_size, (await expected(dir)).total, 'the size of the pages not read comes from their pagemaps');
    t.is(flatten(info!.process_tree).length, 2);
    t.truthy(info!.sockets?.length);
    if (compression === 'none') t.true(read < 16 << 20, `read ${read} bytes of a ${fs.statSync(archive).size}-byte archive`);
    const ckpt = await openCheckpoint(archive);
    t.is(ckpt.stoppedBefore, 'checkpoint/pages-1.img', 'the reading stopped at the first pages member');

    const before2 = bytesRead();
    const [withCmd] = await inspect(archive, { psTreeCmd: true });
    const read2 = bytesRead() - before2;
    t.is(withCmd!.process_tree!.cmdline, f.argv.join(' '));
    if (compression === 'none') t.true(read2 < 32 << 20, `with command lines: read ${read2} bytes, not the 1 GiB pages file`);
    fs.rmSync(archive);
  }
});

test('inspect and memparse refuse what is not a checkpoint in one line, exit 1', async (t) => {
  const where = fs.mkdtempSync(path.join(root, 'bad-'));
  const notTar = path.join(where, 'x.tar');
  fs.writeFileSync(notTar, 'not an archive at all'.repeat(40));
  const emptyDir = path.join(where, 'empty');
  fs.mkdirSync(emptyDir);
  for (const args of [['inspect', notTar], ['inspect', emptyDir], ['inspect', path.join(where, 'missing')], ['memparse', emptyDir],
    ['inspect', emptyDir, '--format', 'xml'], ['inspect', '--bogus', emptyDir], ['diff', emptyDir], ['inspect']]) {
    const r = await cli(args);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, new RegExp(`^stasis ${args[0]}: `), args.join(' '));
    t.true(r.stderr.split('\n')[0]!.length < 300);
  }
});

test('inspect and memparse of archives Podman exported (zstd, gzip, none) of a running busybox container', async (t) => {
  const dir = fs.mkdtempSync(path.join(root, 'podman-'));
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox();
  const name = `stasis-test-inspect-${process.pid}`;
  const mark = `podmark${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, '-e', `MARK=${mark}`, pm.image, '/bin/sh', '-c', 'while true; do sleep 0.2; done']);
  t.is(run.code, 0, run.out);
  t.teardown(() => pm.run(['rm', '-f', '-t', '0', name]));
  const id = pm.run(['inspect', '-f', '{{.Id}}', name]).out.trim();
  for (const compression of ['zstd', 'gzip', 'none'] as const) {
    const archive = path.join(dir, `export-${compression}.tar`);
    const ck = pm.run(['container', 'checkpoint', '--leave-running', '--export', archive, '--compress', compression, name]);
    t.is(ck.code, 0, ck.out);
    // What the archive holds, read here member by member.
    let statsDump: Buffer | undefined;
    let total = 0;
    let pages = 0;
    for await (const m of readMembers(archive, (n, _s, type) => type === 'file' && (n === 'stats-dump' || n.startsWith('checkpoint/')))) {
      if (m.name === 'stats-dump') statsDump = m.data;
      else {
        total += m.size;
        if (/^checkpoint\/pages-/.test(m.name)) pages += m.size;
      }
    }
    const stats = decodeImage(statsDump!, 'stats-dump').entries[0]!.message.dump;

    const r = await cli(['inspect', archive, '--all', '--format', 'json']);
    t.is(r.code, 0, r.stderr);
    const [info] = JSON.parse(r.stdout) as CheckpointInfo[];
    t.like(info, { engine: 'Podman', container_name: name, id, runtime: 'runc', image: `${pm.image}` });
    t.regex(info!.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
    t.is(info!.checkpoint_size.total_size, total);
    t.is(info!.checkpoint_size.memory_pages_size, pages);
    t.is(info!.statistics!.pages_written, Number(stats.pages_written));
    t.is(info!.statistics!.frozen_time, Number(stats.frozen_time));
    const rootProc = info!.process_tree!;
    t.is(rootProc.command, 'sh');
    t.is(rootProc.pid, 1, 'pids as the container saw them');
    t.is(rootProc.cmdline, '/bin/sh -c while true; do sleep 0.2; done');
    t.is(rootProc.environment_variables?.MARK, mark);
    t.true(info!.mounts!.some((m) => m.destination === '/proc' && m.type === 'proc'), 'spec.dump\'s mounts');
    t.truthy(info!.file_descriptors!.find((x) => x.pid === 1)?.open_files?.find((o) => o.fd === 'root'));
    const yaml = await cli(['inspect', archive, '--all', '--format', 'yaml']);
    t.deepEqual(YAML.parse(yaml.stdout), [info]);
    const tree = await cli(['inspect', archive, '--ps-tree-cmd']);
    t.regex(tree.stdout, new RegExp(`^${name}$`, 'm'));
    t.regex(tree.stdout, /── \[1\]  sh\n/);

    const found = await cli(['memparse', archive, '-p', '1', '--search', mark]);
    t.is(found.code, 0, found.stderr);
    t.regex(found.stdout, /: [1-9]\d* match/, `memparse finds MARK=${mark} in sh's memory (${compression})`);
  }
});
