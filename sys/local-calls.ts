// The TaskCalls of stasis itself: the same small questions the kinds in files/ ask a task
// (getsockopt, getsockname...), asked by stasis of a copy of the task's descriptor it holds
// (pidfd_getfd). For what belongs to the open file rather than to the task (a socket's options
// and addresses), the answers are the same, without a round trip into the task per call.

import { SYS, type SyscallSpec } from './arch.js';
import { checkedResults, injectedCallError, Questions, type TaskCalls } from './inject.js';
import { isErrorResult } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, type Arg } from './native.js';

export class LocalCalls implements TaskCalls {
  readonly pid = process.pid;
  readonly tgid = process.pid;
  private buf = nativeBuffer(64 * 1024);

  call(nr: number, ...args: Arg[]): bigint {
    return rawSyscall(nr, ...(args as [Arg, Arg, Arg, Arg, Arg, Arg]));
  }

  callChecked(nr: number, ...args: Arg[]): bigint {
    const r = this.call(nr, ...args);
    if (isErrorResult(r)) throw injectedCallError(this.pid, r, nr, args);
    return r;
  }

  callAll(calls: readonly SyscallSpec[]): bigint[] {
    return calls.map(([nr, ...args]) => this.call(nr, ...args));
  }

  callAllChecked(calls: readonly SyscallSpec[], mayFail?: ReadonlySet<number>): bigint[] {
    return checkedResults(this.pid, calls, this.callAll(calls), mayFail);
  }

  questions(): Questions {
    return new Questions(this);
  }

  scratch(size: number): bigint {
    if (size > this.buf.length) this.buf = nativeBuffer(size);
    return addressOf(this.buf);
  }

  readScratch(len: number, offset = 0): Buffer {
    return Buffer.from(this.buf.subarray(offset, offset + len));
  }

  writeScratch(data: Buffer, offset = 0): bigint {
    data.copy(this.buf, offset);
    return addressOf(this.buf) + BigInt(offset);
  }

  /** Close a descriptor of stasis's own (a copy taken for the questions). */
  close(fd: number): void {
    rawSyscall(SYS.close, fd);
  }
}
