import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseSpec, readSpec, specText, SpecError } from '../../oci-spec/spec.js';
import { runtimeState, RuntimeStateError } from '../../oci-spec/runtime-state.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { tmpDir } from '../helpers/stasis.js';

/** runc's own generated spec, from a real bundle. */
function runcSpec(t: import('ava').ExecutionContext): { file: string; text: string } {
  const c = RuncContainer.create(tmpDir(t));
  const file = path.join(c.bundle, 'config.json');
  return { file, text: fs.readFileSync(file, 'utf8') };
}

test('runc\'s generated config.json reads typed, and written back it is the same JSON, unknown fields included', (t) => {
  const { file, text } = runcSpec(t);
  const spec = readSpec(file);
  t.is(spec.root.path, 'rootfs');
  t.is(spec.process.args[0], 'sh');
  t.is(spec.process.cwd, '/');
  t.true((spec.mounts ?? []).some((m) => m.destination === '/proc' && m.type === 'proc'));
  t.true((spec.linux?.namespaces ?? []).some((n) => n.type === 'pid'));
  t.deepEqual(JSON.parse(specText(spec)), JSON.parse(text));
  // Fields stasis does not type are kept as they were.
  const withExtra = parseSpec(JSON.stringify({ ...JSON.parse(text), vm: { hypervisor: { path: '/x' } }, 'x-unknown': [1, 2] }), 'extra');
  t.deepEqual(JSON.parse(specText(withExtra)).vm, { hypervisor: { path: '/x' } });
  t.deepEqual(JSON.parse(specText(withExtra))['x-unknown'], [1, 2]);
  t.is(Object.keys(JSON.parse(specText(withExtra)))[0], 'ociVersion', 'key order kept');
});

test('a bad spec is one line naming the file and the field: missing or wrong-typed ociVersion, root.path, process.args, mounts, annotations', (t) => {
  const { text } = runcSpec(t);
  const good = JSON.parse(text);
  const cases: [string, (s: any) => void, RegExp][] = [
    ['no ociVersion', (s) => delete s.ociVersion, /ociVersion is missing/],
    ['ociVersion a number', (s) => { s.ociVersion = 1; }, /ociVersion is not a string/],
    ['no root', (s) => delete s.root, /root is missing/],
    ['no root.path', (s) => delete s.root.path, /root\.path is missing/],
    ['root.readonly a string', (s) => { s.root.readonly = 'yes'; }, /root\.readonly is not a boolean/],
    ['no process.args', (s) => delete s.process.args, /process\.args is missing/],
    ['process.args empty', (s) => { s.process.args = []; }, /process\.args is empty/],
    ['process.args of numbers', (s) => { s.process.args = [1]; }, /process\.args is not an array of strings/],
    ['mounts an object', (s) => { s.mounts = {}; }, /mounts is not an array/],
    ['a mount without destination', (s) => { delete s.mounts[1].destination; }, /mounts\[1\]\.destination is missing/],
    ['an annotation not a string', (s) => { s.annotations = { a: 1 }; }, /annotations\["a"\] is not a string/],
    ['a namespace without type', (s) => { delete s.linux.namespaces[0].type; }, /linux\.namespaces\[0\]\.type is missing/],
  ];
  for (const [what, change, re] of cases) {
    const s = structuredClone(good);
    change(s);
    const e = t.throws(() => parseSpec(JSON.stringify(s), 'bundle/config.json'), { instanceOf: SpecError }, what);
    t.regex(e!.message, /^bundle\/config\.json: not a usable OCI runtime spec: /, what);
    t.regex(e!.message, re, what);
    t.false(e!.message.includes('\n'), what);
  }
  t.throws(() => parseSpec('{"ociVersion": ', 'f'), { message: /^f: not a usable OCI runtime spec: bad JSON/ });
  t.throws(() => parseSpec('[]', 'f'), { message: /not a JSON object/ });
  t.throws(() => readSpec('/nonexistent/config.json'), { message: /^\/nonexistent\/config\.json: .*cannot read it \(ENOENT\)$/ });
});

test.serial('runc state of a running busybox container: id, pid, status, bundle, rootfs, created; an unknown container is one clear line', async (t) => {
  const c = RuncContainer.create(tmpDir(t));
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 1$/);
  const st = await runtimeState(c.id, { runtimeRoot: c.stateRoot });
  t.is(st.id, c.id);
  t.is(st.status, 'running');
  t.is(st.pid, c.state()!.pid);
  t.is(st.bundle, c.bundle);
  t.is(st.rootfs, path.join(c.bundle, 'rootfs'));
  t.false(Number.isNaN(Date.parse(st.created)));
  t.deepEqual(st.annotations, {});
  const e = await t.throwsAsync(runtimeState('stasis-test-none', { runtimeRoot: c.stateRoot }), { instanceOf: RuntimeStateError });
  t.is(e!.message, `no container "stasis-test-none" in runc (--root ${c.stateRoot})`);
  await t.throwsAsync(runtimeState('x', { runtime: '/nonexistent/runc' }), { message: /^cannot run \/nonexistent\/runc: / });
});
