import test from 'ava';
import fs from 'node:fs';
import { stasis } from '../helpers/stasis.js';

test.serial('stasis demo: a bash counter loop is checkpointed, killed, restored, and counts on', async (t) => {
  const r = await stasis(['demo']);
  t.is(r.exitCode, 0, r.all);
  const m = /the count stopped at (\d+)/.exec(r.stdout);
  const after = /one second later the count is (\d+)/.exec(r.stdout);
  t.truthy(m && after, r.stdout);
  t.true(Number(after![1]) > Number(m![1]));
  t.regex(r.stdout, /restored it in [\d.]+ ms: PID (\d+) again/);
  const pid = Number(/PID (\d+), counting/.exec(r.stdout)![1]);
  t.false(fs.existsSync(`/proc/${pid}`), 'the demo leaves no process behind');
  const images = /The images stay in (\S+);/.exec(r.stdout)![1]!;
  t.true(fs.existsSync(`${images}/inventory.img`));
  fs.rmSync(images.replace(/\/images$/, ''), { recursive: true, force: true });
});
