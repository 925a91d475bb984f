// A small image set built from nothing, covering every framing feature:
// plain entries, payloads of each kind, ghost files with and without chunks,
// a pagemap with its pages file and the service-headed stats file.
import { ImageDir, MANIFEST_FILE } from '../../images/image-dir.js';
import { queuedMessagesPayload, semPayload, shmPayload } from '../../images/extra.js';
import { PAGE_SIZE, PE_LAZY, PE_PRESENT, pagemapImage } from '../../images/pagemap.js';
import type { Message } from '../../images/wire.js';

const PID = 100;
const zeros = (n: number) => new Array<number>(n).fill(0);
const fown = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
const skOpts = { so_sndbuf: 212992, so_rcvbuf: 212992, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n };
const ipcDesc = (id: number) => ({ key: 0x1234 + id, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id });

function core(): Message {
  const gpregs = Object.fromEntries(
    ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di', 'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'].map(
      (r, i) => [r, BigInt(i) * 0x1000n],
    ),
  );
  return {
    mtype: 'X86_64',
    thread_info: {
      clear_tid_addr: 0x7f0000001000n,
      gpregs: { ...gpregs, ip: 0x401000n, mode: 'NATIVE' },
      fpregs: { cwd: 0x37f, swd: 0, twd: 0, fop: 0, rip: 0n, rdp: 0n, mxcsr: 0x1f80, mxcsr_mask: 0xffff, st_space: zeros(32), xmm_space: zeros(64) },
    },
    tc: {
      task_state: 1,
      exit_code: 0,
      personality: 0,
      flags: 0x400000,
      blk_sigset: 0x800n,
      comm: 'scratch',
      rlimits: { rlimits: Array.from({ length: 16 }, () => ({ cur: 0xffffffffffffffffn, max: 0xffffffffffffffffn })) },
      sigactions: Array.from({ length: 62 }, () => ({ sigaction: 0n, flags: 0n, restorer: 0n, mask: 0n })),
    },
    thread_core: {
      futex_rla: 0n,
      futex_rla_len: 24,
      sched_nice: -5,
      creds: { uid: 0, gid: 0, euid: 0, egid: 0, suid: 0, sgid: 0, fsuid: 0, fsgid: 0, cap_inh: [0, 0], cap_prm: [~0 >>> 0, 0x1ff], cap_eff: [~0 >>> 0, 0x1ff], cap_bnd: [~0 >>> 0, 0x1ff], secbits: 0, groups: [0] },
    },
  };
}

/** Writes the set into `dir` (inventory.img last) and returns the protobuf image names. */
export async function writeScratchImages(dir: ImageDir): Promise<string[]> {
  const heap = 0x600000n;
  const pages = Buffer.alloc(3 * PAGE_SIZE, 0xab);
  await dir.writeRaw('pages-1.img', pages);
  await dir.write(`pagemap-${PID}.img`, pagemapImage(1, [
    { vaddr: heap, nrPages: 2, flags: PE_PRESENT },
    { vaddr: heap + 0x3000n, nrPages: 1, flags: PE_LAZY },
    { vaddr: heap + 0x4000n, nrPages: 1, flags: PE_PRESENT | PE_LAZY },
  ]).entries);
  const images: [string, Message[]][] = [
    ['pstree.img', [{ pid: PID, ppid: 0, pgid: PID, sid: PID, threads: [PID] }]],
    [`core-${PID}.img`, [core()]],
    [`ids-${PID}.img`, [{ vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1, pid_ns_id: 1, net_ns_id: 2, mnt_ns_id: 3 }]],
    [`mm-${PID}.img`, [{
      mm_start_code: 0x400000n, mm_end_code: 0x401000n, mm_start_data: 0n, mm_end_data: 0n, mm_start_stack: 0x7ffe0000n,
      mm_start_brk: heap, mm_brk: heap + 0x5000n, mm_arg_start: 0n, mm_arg_end: 0n, mm_env_start: 0n, mm_env_end: 0n,
      exe_file_id: 1, mm_saved_auxv: [33n, 0x7fff0000n, 0n, 0n],
      vmas: [{ start: heap, end: heap + 0x5000n, pgoff: 0n, shmid: 0n, prot: 3, flags: 0x22, status: 0x221, fd: -1n }],
    }]],
    [`fs-${PID}.img`, [{ cwd_id: 2, root_id: 2, umask: 0o22 }]],
    ['fdinfo-1.img', [
      { id: 3, flags: 0, type: 'PIPE', fd: 0 },
      { id: 4, flags: 1, type: 'UNIXSK', fd: 3 },
      { id: 5, flags: 0, type: 'INETSK', fd: 4 },
    ]],
    ['files.img', [
      { type: 'REG', id: 1, reg: { id: 1, flags: 0o100000, pos: 0n, fown, name: '/bin/scratch', size: 4096n, mode: 0o100755 } },
      { type: 'REG', id: 2, reg: { id: 2, flags: 0o200000, pos: 0n, fown, name: '/', mode: 0o40755 } },
      { type: 'PIPE', id: 3, pipe: { id: 3, pipe_id: 4242, flags: 0, fown } },
      { type: 'UNIXSK', id: 4, usk: { id: 4, ino: 77, type: 1, state: 1, flags: 2, uflags: 0, backlog: 0, peer: 78, fown, opts: skOpts, name: Buffer.from('\0abstract=name\n') } },
      { type: 'INETSK', id: 5, isk: { id: 5, ino: 0xabc, family: 2, type: 1, proto: 6, state: 1, src_port: 80, dst_port: 4000, flags: 0, backlog: 0, src_addr: [0x0100007f], dst_addr: [0x0100007f], fown, opts: skOpts } },
    ]],
    ['utsns-1.img', [{ nodename: 'scratch', domainname: '(none)' }]],
    ['timens-0.img', [{ monotonic: { tv_sec: 100n, tv_nsec: 5n }, boottime: { tv_sec: 120n, tv_nsec: 7n } }]],
    ['seccomp.img', [{}]],
    ['stats-dump', [{ dump: { freezing_time: 1, frozen_time: 2, memdump_time: 3, memwrite_time: 4, pages_scanned: 5n, pages_skipped_parent: 0n, pages_written: 3n, pages_lazy: 1n } }]],
  ];
  for (const [name, messages] of images) await dir.writeMessages(name, messages);

  const queued = Buffer.from('fourteen bytes');
  await dir.write('pipes-data.img', [{ message: { pipe_id: 4242, bytes: queued.length }, extra: queued }]);
  const packet = Buffer.from('sixteen bytes!!!');
  await dir.write('sk-queues.img', [{ message: { id_for: 4, length: packet.length }, extra: packet }]);
  const inq = Buffer.from('received');
  const outq = Buffer.from('not yet sent');
  await dir.write('tcp-stream-abc.img', [{
    message: { inq_len: inq.length, inq_seq: 1000, outq_len: outq.length, outq_seq: 2000, opt_mask: 7, snd_wscale: 7, mss_clamp: 1460 },
    extra: Buffer.concat([inq, outq]),
  }]);
  const shm = Buffer.from('shared segment');
  await dir.write('ipcns-shm-1.img', [{ message: { desc: ipcDesc(1), size: BigInt(shm.length) }, extra: shmPayload(shm) }]);
  await dir.write('ipcns-sem-1.img', [{ message: { desc: ipcDesc(2), nsems: 3 }, extra: semPayload([1, 2, 65535]) }]);
  const msgs = [{ mtype: 1n, data: Buffer.from('first') }, { mtype: 2n, data: Buffer.from('second message') }];
  await dir.write('ipcns-msg-1.img', [{ message: { desc: ipcDesc(3), qbytes: 16384, qnum: msgs.length }, extra: queuedMessagesPayload(msgs) }]);
  await dir.write('ghost-file-1.img', [{ message: { uid: 0, gid: 0, mode: 0o100644, size: 5n }, extra: Buffer.from('ghost') }]);
  await dir.write('ghost-file-2.img', [
    { message: { uid: 0, gid: 0, mode: 0o100644, chunks: true, size: 8192n } },
    { message: { len: 3n, off: 0n }, extra: Buffer.from('abc') },
    { message: { len: 2n, off: 4096n }, extra: Buffer.from('de') },
  ]);

  await dir.commit({
    img_version: 2,
    fdinfo_per_id: true,
    root_ids: { vm_id: 1, files_id: 1, fs_id: 1, sighand_id: 1 },
    ns_per_id: true,
    root_cg_set: 1,
    lsmtype: 'NO_LSM',
    network_lock_method: 0,
    plugins_entry: {},
    dump_criu_run_id: 'scratch-run',
  });
  return (await dir.names()).filter((n) => !n.startsWith('pages-') && n !== MANIFEST_FILE);
}
