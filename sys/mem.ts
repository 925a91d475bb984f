// Reading and writing another process's memory: process_vm_readv/writev for bulk copies, and
// /proc/PID/mem for writes that must ignore page protections (the kernel uses FOLL_FORCE there,
// so read-only text and PROT_NONE pages can be written; process_vm_writev would get EFAULT).

import fs from 'node:fs';
import { SYS } from './arch.js';
import { SysError, isErrorResult } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall } from './native.js';

const IOV_MAX = 1024;

export interface RemoteRange {
  addr: bigint;
  len: number;
}

/**
 * Copy remote ranges into `dst` back to back (process_vm_readv, IOV_MAX ranges per call).
 * Returns the bytes copied; stops early, without throwing, at the first unreadable page.
 * `dst` must be a native buffer (nativeBuffer / Buffer.allocUnsafeSlow) or a pooled one
 * referenced for the duration of the call.
 */
/** iovec arrays for process_vm_readv, allocated once (calls are synchronous, one at a time). */
const localIov = nativeBuffer(16);
const remoteIov = nativeBuffer(16 * IOV_MAX);

export function readRanges(pid: number, ranges: readonly RemoteRange[], dst: Buffer,
  dstOffset = 0): number {
  const local = localIov;
  const remote = remoteIov;
  const base = addressOf(dst);
  let done = 0;
  for (let i = 0; i < ranges.length; i += IOV_MAX) {
    const chunk = ranges.slice(i, i + IOV_MAX);
    let want = 0;
    chunk.forEach((r, j) => {
      remote.writeBigUInt64LE(r.addr, j * 16);
      remote.writeBigUInt64LE(BigInt(r.len), j * 16 + 8);
      want += r.len;
    });
    if (dstOffset + done + want > dst.length) throw new RangeError('readRanges: destination too small');
    local.writeBigUInt64LE(base + BigInt(dstOffset + done), 0);
    local.writeBigUInt64LE(BigInt(want), 8);
    const r = rawSyscall(SYS.process_vm_readv, pid, addressOf(local), 1, addressOf(remote), chunk.length, 0);
    if (isErrorResult(r)) {
      if (done > 0 || r === -14n) return done; // EFAULT: nothing readable at the first range
      throw new SysError(Number(-r), `process_vm_readv(${pid}, 0x${chunk[0]!.addr.toString(16)})`);
    }
    done += Number(r);
    if (Number(r) < want) return done;
  }
  return done;
}

/** Read exactly `len` bytes at `addr`; throws naming the address when they are not all readable. */
export function readMemory(pid: number, addr: bigint, len: number): Buffer {
  // Small reads (registers' worth, scratch results) come from Node's pool: no buffer of its own
  // to collect for each. The kernel fills every byte or the read fails.
  const buf = len <= 4096 ? Buffer.allocUnsafe(len) : nativeBuffer(len);
  const n = readRanges(pid, [{ addr, len }], buf);
  if (n !== len) {
    throw new Error(`process ${pid}: only ${n} of ${len} bytes readable at 0x${addr.toString(16)}`);
  }
  return buf;
}

/** writeMemory's own memory: the bytes (grown as needed) and the two iovecs, at known addresses. */
let writeSrc = nativeBuffer(16384, false);
let writeSrcAt = addressOf(writeSrc);
const writeIovs = nativeBuffer(32);
const writeIovsAt = addressOf(writeIovs);

/** Write `data` at `addr` with process_vm_writev (the pages must be writable). */
export function writeMemory(pid: number, addr: bigint, data: Buffer): void {
  if (data.length > writeSrc.length) {
    writeSrc = nativeBuffer(data.length, false);
    writeSrcAt = addressOf(writeSrc);
  }
  data.copy(writeSrc);
  writeIovs.writeBigUInt64LE(writeSrcAt, 0);
  writeIovs.writeBigUInt64LE(BigInt(data.length), 8);
  writeIovs.writeBigUInt64LE(addr, 16);
  writeIovs.writeBigUInt64LE(BigInt(data.length), 24);
  const r = rawSyscall(SYS.process_vm_writev, pid, writeIovsAt, 1, writeIovsAt + 16n, 1, 0);
  if (isErrorResult(r)) throw new SysError(Number(-r), `process_vm_writev(${pid}, 0x${addr.toString(16)})`);
  if (Number(r) !== data.length) {
    throw new Error(`process ${pid}: wrote ${r} of ${data.length} bytes at 0x${addr.toString(16)}`);
  }
}

/** /proc/PID/mem, for reads and forced writes at any protection. */
export class ProcMem {
  private fd: number;
  constructor(readonly pid: number, writable = true) {
    this.fd = fs.openSync(`/proc/${pid}/mem`, writable ? 'r+' : 'r');
  }
  read(addr: bigint, len: number): Buffer {
    const buf = Buffer.alloc(len);
    this.readInto(addr, buf, 0, len);
    return buf;
  }
  /** Exactly `len` bytes at `addr` into `buf` at `at` (a read of a large range may come in parts). */
  readInto(addr: bigint, buf: Buffer, at: number, len: number): void {
    for (let done = 0; done < len;) {
      const n = fs.readSync(this.fd, buf, at + done, len - done, addr + BigInt(done));
      if (n <= 0) throw new Error(`/proc/${this.pid}/mem: short read at 0x${(addr + BigInt(done)).toString(16)}`);
      done += n;
    }
  }
  write(addr: bigint, data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      const n = fs.writeSync(this.fd, data, off, data.length - off, Number(addr) + off);
      if (n <= 0) throw new Error(`/proc/${this.pid}/mem: short write at 0x${(addr + BigInt(off)).toString(16)}`);
      off += n;
    }
  }
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
