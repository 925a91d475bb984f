// One dump or restore in a fresh process, reporting its wall time and the process's peak RSS:
// what stasis itself costs, measured apart from the benchmark driver.
//   node dist/bench/child.js dump PID DIR | restore DIR
import { dump } from '../task/dump.js';
import { restore } from '../task/restore.js';

async function main(): Promise<void> {
  const [what, a, b] = process.argv.slice(2);
  const t0 = performance.now();
  let pid = 0;
  if (what === 'dump') await dump({ pid: Number(a), imagesDir: b! });
  else pid = (await restore({ imagesDir: a!, workDir: a! })).pid;
  const ms = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS, pid })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
});
