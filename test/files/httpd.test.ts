import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { underReaper } from '../../test-containers/launch.js';
import { alive, fdKey, restoreUnderReaper, stasis, tmpDir } from '../helpers/stasis.js';

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** busybox httpd forks per request: wait until every child is gone. */
function idle(pid: number): boolean {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim() === '';
}

test.serial('a restored busybox httpd answers a GET with the file\'s content on its old port', async (t) => {
  const dir = tmpDir(t);
  const www = tmpDir(t, 'stasis-www-');
  const content = `hello from a restored httpd ${process.pid}\n`;
  fs.writeFileSync(path.join(www, 'index.html'), content);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/index.html`;
  const w = await underReaper(['/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', www]);
  t.teardown(() => w.kill());
  const before = await until('httpd to serve', async () => (await get(url)).body);
  t.is(before, content);
  await until('httpd to be idle', () => (idle(w.pid) ? true : undefined));

  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  await t.throwsAsync(get(url), undefined, 'nobody listens while the server is dumped');

  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.true(alive(w.pid), 'running under its old PID');
  t.deepEqual(await get(url), { status: 200, body: content });
  t.deepEqual(await get(url), { status: 200, body: content }, 'and keeps serving');
});
