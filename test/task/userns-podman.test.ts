// Podman containers whose root is not the host's root (`--uidmap 0:100000:65536 --gidmap
// 0:100000:65536`, and `--userns=auto`), stasis as Podman's criu: the userns-ct workload (a
// counter, files owned by several of the container's uids, its ids, capabilities and /proc/self
// maps) checkpointed and restored in place, then exported, removed and restored from the archive;
// it counts on each time and checks itself at the end. The host's view is checked too: the
// restored task's maps and the owners of its files as host ids.
//
// --userns=auto takes its ranges from the subordinate ids of the user `containers`
// (/etc/subuid, /etc/subgid): the test gives it one for its run when it has none, and takes
// exactly that line away after.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { buildWorkload } from '../../test-containers/launch.js';
import { Podman, withLog } from '../../test-containers/podman.js';
import { stasisBin, tmpDir } from '../helpers/stasis.js';

const CT_ITEMS = ['counter', 'counter-on', 'owner-mine', 'owner-theirs', 'owner-others', 'owner-root', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid', 'mine-fd'];

/** The tick numbers in a container's log lines. */
function ticks(lines: string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
}

/** The container's first task's uid_map and gid_map as the host sees them. */
function hostMaps(pm: Podman, name: string): string[][] {
  const pid = pm.pidOf(name);
  return ['uid_map', 'gid_map'].map((map) => fs.readFileSync(`/proc/${pid}/${map}`, 'utf8').trim().split(/\s+/));
}

/**
 * The container's first task as the host sees it: its maps as `maps`, one range from container
 * id 0; its files' owners as host ids through them.
 */
function hostView(t: ExecutionContext, pm: Podman, name: string, maps: string[][], when: string): void {
  t.deepEqual(hostMaps(pm, name), maps, `${when}: uid_map, gid_map`);
  const [uid, gid] = maps.map((m) => Number(m[1]));
  const owner = (f: string) => {
    const st = fs.statSync(path.join(`/proc/${pm.pidOf(name)}/root/data`, f));
    return [st.uid - uid!, st.gid - gid!];
  };
  t.deepEqual(owner('mine'), [0, 0], `${when}: mine`);
  t.deepEqual(owner('theirs'), [1000, 1000], `${when}: theirs`);
  t.deepEqual(owner('others'), [4242, 4343], `${when}: others`);
}

/** What a process Podman starts in the container sees: its ids, its maps, the files' owners. */
function insideView(pm: Podman, name: string): string {
  const r = pm.run(['exec', name, '/bin/sh', '-c', 'id; cat /proc/self/uid_map /proc/self/gid_map; stat -c "%n %u:%g" /data/mine /data/theirs /data/others']);
  if (r.code !== 0) throw new Error(`podman exec: ${r.out}`);
  return r.out.replace(/\r\n/g, '\n');
}

/** Subordinate uids and gids for the user `containers` (what --userns=auto takes from) for the test's run. */
function autoRanges(t: ExecutionContext): void {
  for (const file of ['/etc/subuid', '/etc/subgid']) subordinateIds(t, file, 'containers:300000:262144');
}

/** A subordinate id range for the user `containers` in `file` for the test's run, if it has none. */
function subordinateIds(t: ExecutionContext, file: string, line: string): void {
  if (fs.readFileSync(file, 'utf8').split('\n').some((l) => l.startsWith('containers:'))) return;
  fs.appendFileSync(file, `${line}\n`);
  t.teardown(() => {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const at = lines.indexOf(line);
    if (at >= 0) fs.writeFileSync(file, [...lines.slice(0, at), ...lines.slice(at + 1)].join('\n'));
  });
}

const roundTrips = test.macro(async (t, userns: string[], maps?: string[][]) => {
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox({ 'bin/userns-ct': buildWorkload('userns-ct', 'static') }, ['data']);
  const name = `stasis-test-userns-${process.pid}`;
  const run = pm.run(['run', '-d', '--name', name, ...userns, pm.image, '/bin/userns-ct', '/data']);
  t.is(run.code, 0, run.out);
  await pm.waitForLog(name, /^tick 2$/);
  const mapped = maps ?? hostMaps(pm, name);
  t.true(mapped.every((m) => m[0] === '0' && Number(m[1]) > 0 && Number(m[2]) >= 65536), `one range from 0: ${mapped.join(' / ')}`);
  hostView(t, pm, name, mapped, 'before');
  const inside = insideView(pm, name);
  t.regex(inside, /^uid=0\b.*\n\s*0\s+[1-9]\d*\s+65536\n\s*0\s+[1-9]\d*\s+65536\n\/data\/mine 0:0\n\/data\/theirs 1000:1000\n\/data\/others 4242:4343\n$/);

  const archive = path.join(dir, 'userns.tar.zst');
  const rounds: [string, string[], () => void, string[]][] = [
    ['checkpoint/restore', ['container', 'checkpoint', name], () => {}, ['container', 'restore', name]],
    ['export/import', ['container', 'checkpoint', '--export', archive, name], () => t.is(pm.run(['rm', name]).code, 0), ['container', 'restore', '--import', archive]],
  ];
  for (const [round, checkpoint, between, restore] of rounds) {
    const ck = pm.run(checkpoint);
    t.is(ck.code, 0, `${round}: ${withLog(ck.out)}`);
    const before = Math.max(...ticks(pm.logs(name)));
    between();
    const rst = pm.run(restore);
    t.is(rst.code, 0, `${round}: ${withLog(rst.out)}`);
    const after = ticks(await pm.waitForLog(name, (lines) => ticks(lines).some((n) => n > before))).filter((n) => n > before);
    t.is(after[0], before + 1, `${round}: the counter goes on from ${before}`);
    hostView(t, pm, name, mapped, round);
    t.is(insideView(pm, name), inside, `${round}: as a process started in it sees it`);
  }
  t.is(ticks(pm.logs(name)).filter((n) => n === 1).length, 1, 'never started over');

  t.is(pm.run(['exec', name, '/bin/touch', '/data/check']).code, 0);
  const lines = await pm.waitForLog(name, /^result /, 20_000);
  t.deepEqual(lines.filter((l) => l.startsWith('FAIL')), []);
  for (const item of CT_ITEMS) t.true(lines.includes(`ok ${item}`), item);
});

test.serial('a Podman container with --uidmap/--gidmap 0:100000:65536 counts on after checkpoint/restore and after checkpoint --export, rm and restore --import through stasis, its ids, maps and files\' owners as before',
  roundTrips, ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'], [['0', '100000', '65536'], ['0', '100000', '65536']]);

test.serial('a Podman container with --uidmap/--gidmap 0:100000:65536 and a terminal (-t) counts on after checkpoint/restore and after checkpoint --export, rm and restore --import through stasis, its ids, maps and files\' owners as before',
  roundTrips, ['-t', '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'], [['0', '100000', '65536'], ['0', '100000', '65536']]);

test.serial('a Podman container with --uidmap/--gidmap 0:100000:65536 on Podman\'s bridge network counts on after checkpoint/restore and after checkpoint --export, rm and restore --import through stasis, its ids, maps and files\' owners as before', async (t) => {
  const bridge = 'cni-podman0';
  const hadBridge = fs.existsSync(`/sys/class/net/${bridge}`);
  t.teardown(() => {
    if (!hadBridge && fs.existsSync(`/sys/class/net/${bridge}`)) execFileSync('ip', ['link', 'del', bridge]);
  });
  await roundTrips.exec(t, ['--network', 'bridge', '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'], [['0', '100000', '65536'], ['0', '100000', '65536']]);
});

test.serial('a Podman container with --userns=auto (its range picked by Podman from the subordinate ids of `containers`) counts on after checkpoint/restore and after checkpoint --export, rm and restore --import through stasis, its ids, maps and files\' owners as before', async (t) => {
  autoRanges(t);
  await roundTrips.exec(t, ['--userns=auto:size=65536']);
});

test.serial('a --userns=auto container\'s archive restored under a new name beside it (Podman picks it another range): the dumped maps come back, and the restore log warns that the root is not mapped', async (t) => {
  autoRanges(t);
  const dir = tmpDir(t);
  const pm = new Podman(dir, stasisBin);
  t.teardown(() => pm.destroy());
  pm.importBusybox({ 'bin/userns-ct': buildWorkload('userns-ct', 'static') }, ['data']);
  const name = `stasis-test-userns-${process.pid}`;
  t.is(pm.run(['run', '-d', '--name', name, '--userns=auto:size=65536', pm.image, '/bin/userns-ct', '/data']).code, 0);
  await pm.waitForLog(name, /^tick 2$/);
  const maps = hostMaps(pm, name);
  const archive = path.join(dir, 'auto.tar.zst');
  const ex = pm.run(['container', 'checkpoint', '--leave-running', '--export', archive, name]);
  t.is(ex.code, 0, withLog(ex.out));
  const imp = pm.run(['container', 'restore', '--keep', '--import', archive, '--name', `${name}-2`]);
  t.is(imp.code, 0, withLog(imp.out));
  const id = imp.out.trim().split('\n').pop()!;
  t.not(pm.run(['inspect', '-f', '{{.HostConfig.IDMappings.UIDMap}}', `${name}-2`]).out.trim(), `[0:${maps[0]![1]}:65536]`, 'another range');
  t.deepEqual(hostMaps(pm, `${name}-2`), maps, 'the dumped maps');
  const log = fs.readFileSync(path.join(dir, 'graph', 'overlay-containers', id, 'userdata', 'restore.log'), 'utf8');
  t.regex(log, new RegExp(`Warn: the container's root \\S+ is owned by host uid \\d+, which its user namespace as dumped \\(uid map 0 ${maps[0]![1]} 65536\\) does not map`));
});
