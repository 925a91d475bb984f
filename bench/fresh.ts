// One dump or restore in a fresh stasis process (bench/child.ts) with the environment bin/stasis
// gives itself: its wall time and peak RSS, measured apart from the benchmark driver, and the
// wall time of the whole process (node's start, loading stasis, exit), as a command costs it.
import { createRequire } from 'node:module';
import path from 'node:path';
import { execa } from 'execa';

const here = path.dirname(new URL(import.meta.url).pathname);
const childJs = path.join(here, 'child.js');
const cliEnv = createRequire(import.meta.url)(path.join(here, '..', '..', 'bin', 'cli-env.cjs')) as Record<string, string>;

export async function freshStasis(args: string[]): Promise<{ ms: number; maxRssKiB: number; pid: number; processMs: number }> {
  const env: NodeJS.ProcessEnv = { ...cliEnv, ...process.env };
  delete env.NODE_EXTRA_CA_CERTS; // as bin/stasis's first line drops it
  const t0 = performance.now();
  const r = await execa(process.execPath, [childJs, ...args], { env, extendEnv: false });
  return { ...JSON.parse(r.stdout), processMs: performance.now() - t0 };
}
