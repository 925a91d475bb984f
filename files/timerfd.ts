// timerfd: clock, flags given to timerfd_settime, the time left to the next expiry, the period,
// and expirations not read yet (fdinfo, fs/timerfd.c). As criu does (timerfd.c and the
// restorer's timerfd_arm): the timer is re-armed with the time that was left — relative, or for
// TFD_TIMER_ABSTIME the clock's current value plus what was left — and the unread expirations
// are put back with TFD_IOC_SET_TICKS. An armed timer goes on firing at its period.

import { SYS } from '../sys/arch.js';
import { fdKind } from '../sys/proc/index.js';
import type { DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import { O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_TIMERFD = 17;
const TFD_TIMER_ABSTIME = 1;
/** _IOW('T', 0, u64) */
const TFD_IOC_SET_TICKS = 0x40085400;
const NSEC = 1_000_000_000n;

export const timerfdFile: FileKind = {
  type: FD_TYPE_TIMERFD,
  field: 'tfd',
  claims: ({ link }) => fdKind(link) === 'timerfd',
  dump(f: OpenFd): DumpedFile {
    const t = f.fdinfo.timerfd;
    if (!t) throw new Error(`fd ${f.fd} of task ${f.pid}: its fdinfo shows no timerfd state`);
    return {
      type: FD_TYPE_TIMERFD, field: 'tfd',
      entry: {
        flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), clockid: t.clockid, ticks: t.ticks,
        settime_flags: t.settimeFlags, vsec: t.itValue[0], vnsec: t.itValue[1],
        isec: t.itInterval[0], insec: t.itInterval[1],
      },
    };
  },
  inheritKey: (e) => `timerfd:${Number(e.id)}`,
  open(e, task: RestoreFilesTask): number {
    return Number(task.inj.callChecked(SYS.timerfd_create, Number(e.clockid), Number(e.flags) & O_NONBLOCK));
  },
  // Armed last, once every descriptor exists, so the time spent restoring others does not count.
  finish(e, fd, task: RestoreFilesTask): void {
    const inj = task.inj;
    const clockid = Number(e.clockid);
    const flags = Number(e.settime_flags);
    let value = BigInt(e.vsec as bigint) * NSEC + BigInt(e.vnsec as bigint);
    const interval = BigInt(e.isec as bigint) * NSEC + BigInt(e.insec as bigint);
    // A periodic timer caught exactly at its expiry shows 0 left; 0 would disarm it.
    if (value === 0n && interval !== 0n) value = 1n;
    if (value !== 0n && flags & TFD_TIMER_ABSTIME) {
      inj.callChecked(SYS.clock_gettime, clockid, inj.scratch(16));
      const now = inj.readScratch(16);
      value += now.readBigInt64LE(0) * NSEC + now.readBigInt64LE(8);
    }
    const spec = Buffer.alloc(32); // struct itimerspec: it_interval, it_value
    spec.writeBigInt64LE(interval / NSEC, 0);
    spec.writeBigInt64LE(interval % NSEC, 8);
    spec.writeBigInt64LE(value / NSEC, 16);
    spec.writeBigInt64LE(value % NSEC, 24);
    inj.callChecked(SYS.timerfd_settime, fd, flags, inj.writeScratch(spec, 0), 0);
    const ticks = BigInt(e.ticks as bigint);
    if (ticks !== 0n) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(ticks);
      inj.callChecked(SYS.ioctl, fd, TFD_IOC_SET_TICKS, inj.writeScratch(b, 0));
    }
  },
};
