// `stasis demo`: the whole cycle on a small shell counter, narrated. Starts `bash` counting into a
// file (it sleeps with `read -t` on a pipe from us, so it never forks), checkpoints it, kills it,
// restores it, and shows the count going on from where it was.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { dump } from '../task/dump.js';
import { restore } from '../task/restore.js';
import { kill, pipe, prctl } from '../sys/native.js';
import { SIGKILL, waitTask } from '../sys/ptrace.js';

const PR_SET_CHILD_SUBREAPER = 36;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`demo: timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The count: the last whole line of the file. The counter appends each number as a line (a
 * file rewritten in place would be empty for a moment, between bash's truncating open and its
 * write, and could be read so, or even dumped so).
 */
function readCount(file: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.slice(0, text.lastIndexOf('\n')).split('\n');
  const n = Number(lines[lines.length - 1]);
  return n > 0 ? n : undefined;
}

export async function demo(out: NodeJS.WritableStream): Promise<number> {
  const say = (s: string) => out.write(`${s}\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-demo-'));
  const countFile = path.join(dir, 'count');
  const pidFile = path.join(dir, 'pid');
  const imagesDir = path.join(dir, 'images');
  // The counter is orphaned on purpose (setsid -f) and lands with us as its subreaper: it is not
  // a child Node's libuv knows about, which would otherwise swallow its ptrace stops.
  prctl('PR_SET_CHILD_SUBREAPER', PR_SET_CHILD_SUBREAPER, 1);
  const [rd, wr] = pipe();
  const script = `echo $$ > ${pidFile}; n=0; while :; do n=$((n+1)); echo $n >> ${countFile}; read -t 0.2 -u 0 _; done`;
  const starter = spawn('setsid', ['-f', 'bash', '-c', script], { stdio: [rd, 'ignore', 'ignore'] });
  await new Promise((r) => starter.on('exit', r));
  const pid = await waitFor('the counter to start', () => readCount(pidFile));
  let restored = 0;
  try {
    say(`1. started a shell counter: bash, PID ${pid}, counting 5 times a second into ${countFile}`);
    const now = await waitFor('the counter to reach 3', () => ((readCount(countFile) ?? 0) >= 3 ? readCount(countFile) : undefined));
    say(`   count is now ${now}`);

    const d = await dump({ pid, imagesDir });
    const atDump = readCount(countFile)!;
    say(`2. checkpointed it into ${imagesDir}: ${(d.stats.frozen_time / 1000).toFixed(1)} ms frozen, ` +
      `${d.stats.pages_written} pages, ${(d.imageBytes / 1024).toFixed(0)} KiB of images`);
    say(`   the process was killed after the dump (as criu does); the count stopped at ${atDump}`);
    await sleep(500);
    say(`   half a second later the count is still ${readCount(countFile)}`);

    const key = fs.readlinkSync(`/proc/self/fd/${rd}`);
    const r = await restore({ imagesDir, inheritFds: new Map([[key, rd]]) });
    restored = r.pid;
    say(`3. restored it in ${r.timeMs.toFixed(1)} ms: PID ${r.pid} again, ${r.pages} pages back in place`);
    await sleep(1000);
    const after = readCount(countFile)!;
    say(`   one second later the count is ${after}: it went on from ${atDump}`);
    say(`\nThe images stay in ${imagesDir}; look at them with: stasis show -D ${imagesDir}`);
    return after > atDump ? 0 : 1;
  } finally {
    for (const p of [restored, pid]) {
      if (!p) continue;
      try {
        kill(p, SIGKILL);
        waitTask(p, { timeoutMs: 2000 });
      } catch {
        // gone
      }
    }
    fs.closeSync(rd);
    fs.closeSync(wr);
    fs.rmSync(countFile, { force: true });
    fs.rmSync(pidFile, { force: true });
  }
}
