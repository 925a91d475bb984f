// Raw payloads that follow some entries: queued pipe and socket data, TCP
// queues, SysV IPC contents, BPF map data and ghost file contents. The entry
// says how long its payload is; the image layer keeps the payload as the
// exact bytes of the file (padding included) so a rewrite is byte-identical,
// and the helpers below give the meaningful parts.
import { WireError } from './errors.js';
import type { ExtraKind } from './magic.js';
import { decodeMessage, encodeMessage, type Message } from './wire.js';

/** Payload kinds: the per-type ones, plus the two of ghost-file images. */
export type PayloadKind = ExtraKind | 'ghost-chunk' | 'ghost-content';

function roundUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function u32(buf: Uint8Array, at: number): number {
  return new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0, true);
}

function num(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0;
}

/**
 * Bytes of payload after `msg`, whose message ended at `at` in `buf`.
 * May exceed what the file holds; the caller checks. ipc-msg payloads are
 * walked here (their size is in the sub-entries) and may throw WireError.
 */
export function payloadLength(kind: PayloadKind, msg: Message, buf: Uint8Array, at: number): number {
  switch (kind) {
    case 'pipe-data':
      return num(msg.bytes);
    case 'sk-queue':
      return num(msg.length);
    case 'tcp-stream':
      return num(msg.inq_len) + num(msg.outq_len);
    case 'ipc-shm':
      // Segments dumped through pagemaps keep no copy here.
      return msg.in_pagemaps ? 0 : roundUp(num(msg.size), 4);
    case 'ipc-sem':
      return roundUp(2 * num(msg.nsems), 8);
    case 'bpfmap-data':
      return num(msg.keys_bytes) + num(msg.values_bytes);
    case 'ghost-chunk':
      return num(msg.len);
    case 'ghost-content':
      return buf.length - at;
    case 'ipc-msg': {
      let pos = at;
      for (let i = 0; i < num(msg.qnum); i++) {
        if (buf.length - pos < 4) throw new WireError(`truncated size of queued message ${i}`, pos);
        const size = u32(buf, pos);
        if (size > buf.length - pos - 4) throw new WireError(`truncated queued message ${i}`, pos);
        const m = decodeMessage('ipc_msg', buf.subarray(pos + 4, pos + 4 + size), pos + 4);
        pos += 4 + size + roundUp(num(m.msize), 8);
      }
      return pos - at;
    }
  }
}

/** The payload length `msg` announces, or undefined when only the payload itself tells. */
export function expectedPayloadLength(kind: PayloadKind, msg: Message): number | undefined {
  if (kind === 'ipc-msg' || kind === 'ghost-content') return undefined;
  return payloadLength(kind, msg, new Uint8Array(0), 0);
}

/** tcp-stream: the receive queue, then the send queue. */
export function tcpQueues(msg: Message, extra: Uint8Array): { inq: Uint8Array; outq: Uint8Array } {
  const inq = num(msg.inq_len);
  return { inq: extra.subarray(0, inq), outq: extra.subarray(inq, inq + num(msg.outq_len)) };
}

/** ipcns-shm: the segment's bytes, without the padding. */
export function shmContents(msg: Message, extra: Uint8Array): Uint8Array {
  return extra.subarray(0, num(msg.size));
}

/** ipcns-sem: the semaphore values. */
export function semValues(msg: Message, extra: Uint8Array): number[] {
  const dv = new DataView(extra.buffer, extra.byteOffset, extra.length);
  return Array.from({ length: num(msg.nsems) }, (_, i) => dv.getUint16(2 * i, true));
}

/** ipcns-msg: the queued messages with their text. */
export function queuedMessages(msg: Message, extra: Uint8Array): { msg: Message; data: Uint8Array }[] {
  const out: { msg: Message; data: Uint8Array }[] = [];
  let pos = 0;
  for (let i = 0; i < num(msg.qnum); i++) {
    const size = u32(extra, pos);
    const m = decodeMessage('ipc_msg', extra.subarray(pos + 4, pos + 4 + size));
    const dataAt = pos + 4 + size;
    out.push({ msg: m, data: extra.subarray(dataAt, dataAt + num(m.msize)) });
    pos = dataAt + roundUp(num(m.msize), 8);
  }
  return out;
}

function padTo(data: Uint8Array, align: number): Uint8Array {
  const out = new Uint8Array(roundUp(data.length, align));
  out.set(data);
  return out;
}

/** Builds the payload of an ipc_shm_entry (zero padding, as the kernel's pages give). */
export function shmPayload(contents: Uint8Array): Uint8Array {
  return padTo(contents, 4);
}

/** Builds the payload of an ipc_sem_entry. */
export function semPayload(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(roundUp(2 * values.length, 8));
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setUint16(2 * i, v, true));
  return out;
}

/** Builds the payload of an ipc_msg_entry from its messages. */
export function queuedMessagesPayload(messages: readonly { mtype: bigint; data: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const { mtype, data } of messages) {
    const body = encodeMessage('ipc_msg', { mtype, msize: data.length });
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, body.length, true);
    parts.push(size, body, padTo(data, 8));
  }
  return Buffer.concat(parts);
}
