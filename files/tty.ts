// Terminals. A job started from a shell has the shell's terminal as stdin/stdout/stderr; criu
// dumps such a job only with --shell-job, and restores it onto the terminal criu itself runs
// on. stasis does the same: the dump records the terminal (tty_file_entry, its tty_info_entry
// with termios, window size, session and foreground group, and the /dev path as a reg entry);
// the restore gives the task stasis's own terminal (or the descriptor named by
// --inherit-fd fd[N]:tty[RDEV:DEV]). Without --shell-job a terminal is refused on both sides.
//
// A container run with a terminal (runc --console-socket) has a pseudo-terminal whose master is
// held outside, by whoever reads the console. With criu's orphan_pts_master it is dumped like
// the shell's terminal; on restore a new pair is opened in the container's own /dev/ptmx, the
// slave (with the saved termios and window size) becomes the tasks' descriptors and the
// controlling terminal again, and the master is handed to the runtime (orphan-pts-master).

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { addressOf, nativeBuffer, rawSyscall, takeTaskFd } from '../sys/native.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { FD_TYPE_REG, openInTask, regFileEntry, zeroFown } from './reg.js';
import { O_CLOEXEC, O_NOCTTY, O_RDWR } from '../sys/fcntl.js';

export const FD_TYPE_TTY = 11;
const TTY_INFO = 'tty-info.img';
const TTY_TYPE = { PTY: 1, CONSOLE: 2, VT: 3, SERIAL: 6 } as const;
const TCGETS2 = 0x802c542a;
const TIOCGWINSZ = 0x5413;
const TIOCGSID = 0x5429;
const TIOCGPGRP = 0x540f;
const TIOCGEXCL = 0x80045440;
const TCSETS2 = 0x402c542b;
const TIOCSWINSZ = 0x5414;
const TIOCSPTLCK = 0x40045431;
const TIOCGPTN = 0x80045430;
const TIOCSPGRP = 0x5410;
const PATH = /^\/dev\/(pts\/\d+|tty\w*|console)$/;

function isTerminal(fd: number): boolean {
  const b = nativeBuffer(44);
  return rawSyscall(SYS.ioctl, fd, TCGETS2, addressOf(b)) === 0n;
}


/** Run `fn` on a copy, in stasis, of the task's descriptor. */
function withTaskFd<T>(pid: number, fd: number, fn: (ours: number) => T): T {
  const ours = takeTaskFd(pid, fd);
  try {
    return fn(ours);
  } finally {
    rawSyscall(SYS.close, ours);
  }
}

function ttyInfo(f: OpenFd, id: number): Record<string, unknown> {
  const st = fs.statSync(`/proc/${f.pid}/fd/${f.fd}`);
  const m = /^\/dev\/pts\/(\d+)$/.exec(f.link);
  return withTaskFd(f.pid, f.fd, (fd) => {
    const t = nativeBuffer(44);
    rawSyscall(SYS.ioctl, fd, TCGETS2, addressOf(t));
    const ws = nativeBuffer(8);
    rawSyscall(SYS.ioctl, fd, TIOCGWINSZ, addressOf(ws));
    const int = nativeBuffer(4);
    const get = (req: number) => (rawSyscall(SYS.ioctl, fd, req, addressOf(int)) === 0n ? int.readInt32LE(0) : 0);
    const termios = {
      c_iflag: t.readUInt32LE(0), c_oflag: t.readUInt32LE(4), c_cflag: t.readUInt32LE(8),
      c_lflag: t.readUInt32LE(12), c_line: t.readUInt8(16),
      c_ispeed: t.readUInt32LE(36), c_ospeed: t.readUInt32LE(40),
      c_cc: [...t.subarray(17, 36)],
    };
    return {
      id, type: m ? TTY_TYPE.PTY : f.link === '/dev/console' ? TTY_TYPE.CONSOLE : /ttyS/.test(f.link) ? TTY_TYPE.SERIAL : TTY_TYPE.VT,
      locked: false, exclusive: get(TIOCGEXCL) !== 0, packet_mode: false,
      sid: Math.max(0, get(TIOCGSID)), pgrp: Math.max(0, get(TIOCGPGRP)), rdev: st.rdev,
      termios, termios_locked: termios,
      winsize: { ws_row: ws.readUInt16LE(0), ws_col: ws.readUInt16LE(2), ws_xpixel: ws.readUInt16LE(4), ws_ypixel: ws.readUInt16LE(6) },
      ...(m ? { pty: { index: Number(m[1]) } } : {}),
      dev: st.dev, uid: st.uid, gid: st.gid,
    };
  });
}

/**
 * A new pseudo-terminal in the task's /dev/ptmx for a pts whose master was outside the dump
 * (once per terminal; later descriptions reopen its slave). Returns the slave's fd in the task.
 */
function openOrphanPts(task: RestoreFilesTask, info: Record<string, any>, flags: number): number {
  const { inj } = task;
  const id = Number(info.id);
  const made = task.orphanPts!.get(id);
  if (made) return openInTask(inj, `/dev/pts/${made.index}`, flags | O_NOCTTY);
  const master = openInTask(inj, '/dev/ptmx', O_RDWR | O_NOCTTY);
  try {
    const int = inj.writeScratch(Buffer.alloc(4));
    inj.callChecked(SYS.ioctl, master, TIOCSPTLCK, int);
    inj.callChecked(SYS.ioctl, master, TIOCGPTN, int);
    const index = inj.readScratch(4).readUInt32LE(0);
    // Without O_NOCTTY: in the session leader the slave becomes its controlling terminal.
    const slave = openInTask(inj, `/dev/pts/${index}`, flags & ~O_NOCTTY);
    const t = info.termios;
    if (t) {
      const b = Buffer.alloc(44);
      b.writeUInt32LE(t.c_iflag, 0); b.writeUInt32LE(t.c_oflag, 4); b.writeUInt32LE(t.c_cflag, 8);
      b.writeUInt32LE(t.c_lflag, 12); b.writeUInt8(t.c_line ?? 0, 16);
      Buffer.from((t.c_cc ?? []) as number[]).copy(b, 17, 0, 19);
      b.writeUInt32LE(t.c_ispeed ?? 0, 36); b.writeUInt32LE(t.c_ospeed ?? 0, 40);
      inj.callChecked(SYS.ioctl, slave, TCSETS2, inj.writeScratch(b));
    }
    const w = info.winsize;
    if (w) {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(w.ws_row, 0); b.writeUInt16LE(w.ws_col, 2); b.writeUInt16LE(w.ws_xpixel, 4); b.writeUInt16LE(w.ws_ypixel, 6);
      inj.callChecked(SYS.ioctl, slave, TIOCSWINSZ, inj.writeScratch(b));
    }
    // The session leader's group in the foreground, as a shell left it.
    const pgrp = Number(inj.call(SYS.getpgid, 0));
    if (pgrp > 0) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(pgrp);
      inj.call(SYS.ioctl, slave, TIOCSPGRP, inj.writeScratch(b));
    }
    task.orphanPts!.set(id, { index, master: takeTaskFd(inj.pid, master) });
    return slave;
  } finally {
    inj.call(SYS.close, master);
  }
}

export const ttyFile: FileKind = {
  type: FD_TYPE_TTY,
  field: 'tty',
  claims: ({ pid, fd, link }) => PATH.test(link) && fs.statSync(`/proc/${pid}/fd/${fd}`).isCharacterDevice(),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    if (!ctx.shellJob && !(ctx.orphanPts && /^\/dev\/pts\/\d+$/.test(f.link))) {
      throw new Error(`fd ${f.fd} of task ${f.pid} is the terminal ${f.link}: dump with --shell-job to keep it`);
    }
    const rdev = fs.statSync(`/proc/${f.pid}/fd/${f.fd}`).rdev;
    const infos = (ctx.memo.get('tty-infos') as Map<number, number> | undefined) ?? new Map<number, number>();
    ctx.memo.set('tty-infos', infos);
    let infoId = infos.get(rdev);
    if (infoId === undefined) {
      infoId = infos.size + 1;
      infos.set(rdev, infoId);
      ctx.addImageEntry(TTY_INFO, ttyInfo(f, infoId));
    }
    const regfId = ctx.addFile({
      type: FD_TYPE_REG, field: 'reg', entry: regFileEntry(f.link, `/proc/${f.pid}/fd/${f.fd}`, f.fdinfo.flags, 0n),
    });
    return {
      type: FD_TYPE_TTY, field: 'tty',
      entry: { tty_info_id: infoId, flags: f.fdinfo.flags & ~O_CLOEXEC, fown: zeroFown(), regf_id: regfId },
    };
  },
  inheritKey(e): string {
    return `tty-info:${Number(e.tty_info_id)}`;
  },
  open(e, task: RestoreFilesTask): number {
    const info = task.imageEntries(TTY_INFO).find((i) => Number(i.message.id) === Number(e.tty_info_id))?.message;
    if (info) {
      const key = `tty[${Number(info.rdev).toString(16)}:${Number(info.dev ?? 0).toString(16)}]`;
      const given = task.inherited(key);
      if (given !== undefined) return task.importGiven(given, Number(e.flags ?? 0));
    }
    if (info?.pty && task.orphanPts) return openOrphanPts(task, info, Number(e.flags ?? 0));
    if (!task.shellJob) throw new Error('the dump holds a terminal: restore with --shell-job (or hand one over with --inherit-fd)');
    const own = [0, 1, 2].find(isTerminal);
    if (own === undefined) throw new Error('--shell-job restores onto stasis\'s terminal, and stasis is not running on one');
    return task.importFd(own);
  },
};
