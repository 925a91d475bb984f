#!/usr/bin/env node
// Runs the ava suite with its TAP reporter, echoing every line, and ends with one plain summary
// line ("ava: N passed, N failed, N skipped") that CI logs can be read by. Exit code is ava's.
import { spawn } from 'node:child_process';
import readline from 'node:readline';

const ava = spawn('npx', ['ava', '--tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
const counts = { pass: 0, fail: 0, skip: 0 };
readline.createInterface({ input: ava.stdout }).on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const m = /^# (pass|fail|skip) +(\d+)/.exec(line);
  if (m) counts[m[1]] = Number(m[2]);
});
ava.on('exit', (code, signal) => {
  process.stdout.write(`ava: ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped\n`);
  process.exitCode = code ?? (signal ? 1 : 0);
});
