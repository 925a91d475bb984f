// The client of the tcp-migration benchmark, a process of its own (so that nothing the benchmark
// does, such as waiting for `runc checkpoint`, delays it): one connection to HOST:PORT, 8 bytes
// sent every millisecond, the time of each answer noted. Driven over the IPC channel of fork():
//   'mark'    — the measured span starts now;
//   'finish'  — once 200 more answers came (or 10 s passed), it answers { gap, after }: the
//               largest gap between two answers since the mark (ms) and the answers since finish.
// It prints `connected` on the channel once the connection is up.

import net from 'node:net';

const [host, port] = [process.argv[2]!, Number(process.argv[3])];
const answers: number[] = [];
let pending = 0;
let from = Infinity;

const s = net.connect(port, host);
s.setNoDelay(true);
s.on('error', (e) => { process.send?.({ error: e.message }); process.exit(1); });
s.on('data', (d: Buffer) => {
  const now = performance.now();
  for (let n = Math.floor((pending + d.length) / 8) - Math.floor(pending / 8); n > 0; n--) answers.push(now);
  pending += d.length;
});
s.once('connect', () => {
  setInterval(() => s.write(Buffer.alloc(8)), 1);
  process.send?.('connected');
});

process.on('message', (m) => {
  if (m === 'mark') from = performance.now();
  if (m === 'finish') {
    const resumed = answers.length;
    const until = performance.now() + 10_000;
    const poll = setInterval(() => {
      if (answers.length < resumed + 200 && performance.now() < until) return;
      clearInterval(poll);
      const seen = answers.filter((a) => a >= from - 50);
      let gap = 0;
      let at = 0;
      for (let i = 1; i < seen.length; i++) if (seen[i]! - seen[i - 1]! > gap) [gap, at] = [seen[i]! - seen[i - 1]!, seen[i - 1]!];
      process.send?.({ gap, after: answers.length - resumed, at: performance.timeOrigin + at });
    }, 20);
  }
});
process.on('disconnect', () => process.exit(0));
