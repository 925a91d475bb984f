import test from 'ava';
import { onTerminal, startWorkload } from '../../test-containers/launch.js';
import { stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

test.serial('a long dump shows its progress on a terminal, and prints nothing extra elsewhere', async (t) => {
  const w = await startWorkload('bigmem', ['256']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready /, 30_000);
  // On a terminal, with the line shown from the start.
  const onTty = await onTerminal([process.execPath, stasisBin, 'dump', '--leave-running', '-t', String(w.pid), '-D', tmpDir(t)],
    { ...process.env, STASIS_PROGRESS_DELAY_MS: '0' });
  t.teardown(() => onTty.kill());
  await onTty.exitOf(onTty.pid, 60_000);
  await onTty.finished; // the erased line has no newline: it comes with the reaper's last write
  const shown = onTty.lines.join('\n');
  t.regex(shown, new RegExp(`stasis dump: memory of ${w.pid}: \\d+ of 256 MiB \\(\\d+%\\)`));
  t.regex(shown, /\(100%\)/, 'the line reaches the end');
  // Not on a terminal: nothing but the (empty) result.
  const plain = await stasis(['dump', '--leave-running', '-t', String(w.pid), '-D', tmpDir(t)], {
    env: { ...process.env, STASIS_PROGRESS_DELAY_MS: '0' },
  });
  t.is(plain.exitCode, 0, plain.all);
  t.is(plain.all, '');
});
