// The test's ends of workloads/tcp-client.c's connections (its byte patterns, its protocol).

import net from 'node:net';

const SERVER_BYTES = 512 * 1024;
const clientByte = (i: number) => (i * 7 + Math.floor(i / 4093)) & 0xff;
const serverByte = (i: number) => (i * 13 + Math.floor(i / 1021) + 5) & 0xff;

/**
 * The test's end of one connection of workloads/tcp-client.c: it sends SERVER_BYTES of its
 * pattern at once and reads nothing until `resume()`; then it checks the workload's pattern and
 * trailer ("END N") and answers "OK N". `events` records errors, ends and closes.
 */
export class PatternPeer {
  readonly events: string[] = [];
  private expected = -1;
  private received = Buffer.alloc(0);
  verdict = '';

  /** `bytes`: how much of its pattern it sends (what the workload's CONN spec says). */
  constructor(readonly socket: net.Socket, bytes = SERVER_BYTES) {
    socket.pause();
    socket.on('error', (e) => this.events.push(`error ${(e as NodeJS.ErrnoException).code}`));
    socket.on('close', () => this.events.push('close'));
    socket.on('end', () => this.events.push('end'));
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = serverByte(i);
    socket.write(data);
    socket.on('data', (c: Buffer) => {
      this.received = Buffer.concat([this.received, c]);
      const trailer = Buffer.from(`END ${this.expected}\n`);
      if (this.expected >= 0 && this.received.length >= this.expected + trailer.length && !this.verdict) {
        let bad = -1;
        for (let i = 0; i < this.expected; i++) if (this.received[i] !== clientByte(i)) { bad = i; break; }
        const tail = this.received.subarray(this.expected).toString();
        this.verdict = bad >= 0 ? `byte ${bad} differs` : tail !== trailer.toString() ? `trailer '${tail}'` : 'ok';
        socket.write(this.verdict === 'ok' ? `OK ${this.expected}\n` : `BAD ${this.verdict}\n`);
      }
    });
  }

  /** The workload said how much it sent (its `ready` line). */
  expect(n: number): void {
    this.expected = n;
  }

  get receivedBytes(): number {
    return this.received.length;
  }
}

/** A server of PatternPeers taking one connection. */
export async function patternServer(host: string, bytes?: number) {
  let peer: PatternPeer | undefined;
  let expected = -1;
  const server = net.createServer((s) => {
    peer = new PatternPeer(s, bytes);
    if (expected >= 0) peer.expect(expected);
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get events() { return peer?.events ?? []; },
    expect(n: number) { expected = n; peer?.expect(n); },
    resume() { peer?.socket.resume(); },
    write(text: string) { peer?.socket.write(text); },
    get verdict() { return peer?.verdict ?? ''; },
    get receivedBytes() { return peer?.receivedBytes ?? 0; },
    close() { peer?.socket.destroy(); server.close(); },
  };
}

