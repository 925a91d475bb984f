// One dump or restore in a fresh process, reporting its wall time and the process's peak RSS:
// what stasis itself costs, measured apart from the benchmark driver. stasis is loaded as
// bin/stasis loads it (bin/load.cjs), before the clock starts.
//   node dist/bench/child.js dump PID DIR | restore DIR
import { createRequire } from 'node:module';
import path from 'node:path';

type Stasis = typeof import('../runtime-hook/entry.js');
const binDir = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'bin');
const { loadStasis } = createRequire(import.meta.url)(path.join(binDir, 'load.cjs')) as { loadStasis(): Promise<Stasis> };

async function main(): Promise<void> {
  const { dump, restore } = await loadStasis();
  const [what, a, b] = process.argv.slice(2);
  const t0 = performance.now();
  let pid = 0;
  if (what === 'dump') await dump({ pid: Number(a), imagesDir: b! });
  else pid = (await restore({ imagesDir: a!, workDir: a! })).pid;
  const ms = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS, pid })}\n`);
  process.exit(); // as bin/stasis does
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
});
