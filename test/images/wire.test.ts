// The protobuf codec and the schema behind it.
import test from 'ava';
import { messageToCrit } from '../../images/crit-json.js';
import { criuOption, messageType } from '../../images/schema.js';
import { decodeMessage, encodeMessage, unknownFields } from '../../images/wire.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('RPC messages use CRIU field numbers: a dump request', (t) => {
  const req = encodeMessage('criu_req', { type: 'DUMP', opts: { images_dir_fd: 5, log_level: 4 } });
  t.is(hex(req), '0801' + '1204' + '0805' + '4804');
  t.deepEqual(decodeMessage('criu_req', req), { type: 1, opts: { images_dir_fd: 5, log_level: 4 } });
  const resp = decodeMessage('criu_resp', Buffer.from('080a1001520708041002' + '1a0134', 'hex'));
  t.deepEqual(resp, { type: 10, success: true, version: { major_number: 4, minor_number: 2, gitid: '4' } });
});

test('fields unknown to our protos survive decoding and re-encoding, in field order', (t) => {
  // pstree_entry with an extra varint field 9 and an extra bytes field 7 between known ones.
  const wire = Buffer.from('0801' + '1000' + '1801' + '2001' + '2801' + '3a026869' + '4807', 'hex');
  const msg = decodeMessage('pstree_entry', wire);
  t.deepEqual(msg, { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] });
  t.deepEqual(unknownFields(msg).map((f) => f.id), [7, 9]);
  t.is(hex(encodeMessage('pstree_entry', msg)), hex(wire));
  t.deepEqual(messageToCrit('pstree_entry', msg), { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] }); // as crit: unknown fields are not shown
});

test('64-bit values keep every bit', (t) => {
  const max = 0xffffffffffffffffn;
  const rl = encodeMessage('rlimit_entry', { cur: max, max });
  t.deepEqual(decodeMessage('rlimit_entry', rl), { cur: max, max });
  const vma = { start: 0xffffffffff600000n, end: 0xffffffffff601000n, pgoff: 0n, shmid: 0n, prot: 4, flags: 0x22, status: 0x204, fd: -1n };
  t.deepEqual(decodeMessage('vma_entry', encodeMessage('vma_entry', vma)), vma);
  t.deepEqual(decodeMessage('thread_core_entry', encodeMessage('thread_core_entry', { futex_rla: 0n, futex_rla_len: 0, sched_nice: -20 })).sched_nice, -20);
  t.deepEqual(decodeMessage('inventory_entry', encodeMessage('criu_opts', { images_dir_fd: -1 })), { img_version: 0xffffffff });
});

test('repeated scalars are written unpacked, as CRIU does, and read in either form', (t) => {
  const unpacked = encodeMessage('pstree_entry', { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1, 2] });
  t.is(hex(unpacked), '08011000180120012801' + '2802');
  const packed = Buffer.from('08011000180120012a020102', 'hex');
  t.deepEqual(decodeMessage('pstree_entry', packed).threads, [1, 2]);
});

test('a string that is not UTF-8 is kept as bytes and written back unchanged', (t) => {
  const wire = Buffer.from('0a02ff00' + '1202' + '6869', 'hex'); // utsns_entry with a bad nodename
  const msg = decodeMessage('utsns_entry', wire);
  t.true(msg.nodename instanceof Uint8Array);
  t.is(msg.domainname, 'hi');
  t.is(hex(encodeMessage('utsns_entry', msg)), hex(wire));
});

test('encoding refuses a message without a required field, or a value of the wrong kind', (t) => {
  t.throws(() => encodeMessage('pstree_entry', { pid: 1 }), { message: 'pstree_entry.ppid is required' });
  t.throws(() => encodeMessage('fdinfo_entry', { id: 1, flags: 0, type: 'NOPE', fd: 0 }), { message: /no enum value named NOPE/ });
  t.throws(() => encodeMessage('rlimit_entry', { cur: 'x', max: 1n }), { message: /rlimit_entry\.cur: expected an integer/ });
});

test('crit presentation options are kept on the fields (proto/opts.proto)', (t) => {
  const vma = messageType('vma_entry').fields;
  t.is(criuOption(vma.prot, 'flags'), 'mmap.prot');
  t.is(criuOption(vma.start, 'hex'), true);
  const ghost = messageType('ghost_file_entry').fields;
  t.is(criuOption(ghost.rdev, 'dev'), true);
  t.is(criuOption(ghost.rdev, 'odev'), true);
  t.is(criuOption(messageType('unix_sk_entry').fields.name, 'conv'), 'unix_name');
  t.is(criuOption(messageType('inet_sk_entry').fields.src_addr, 'ipadd'), true);
  t.is(criuOption(messageType('task_core_entry').fields.task_state, 'dict'), 'gen');
});

test('crit shows dev numbers, addresses and socket names the way crit does', (t) => {
  t.deepEqual(messageToCrit('irmap_cache_entry', { dev: 0x0803, inode: 5n, path: '/x' }), { dev: '8:3', inode: 5n, path: '/x' });
  t.deepEqual(messageToCrit('fanotify_mount_mark_entry', { mnt_id: 1 }), { mnt_id: 1 });
  t.deepEqual(messageToCrit('sit_entry', { local: [0x0100007f], remote: [0x000080fe, 0, 0, 0x01000000] }), { local: ['127.0.0.1'], remote: ['fe80::1'] });
  const fown = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
  const opts = { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n };
  const usk = { id: 1, ino: 2, type: 5, state: 10, flags: 0, uflags: 0, backlog: 0, peer: 0, fown, opts, name: Buffer.from('\0sock=1') };
  const shown = messageToCrit('unix_sk_entry', usk);
  t.is(shown.type, 'SEQPACKET');
  t.is(shown.state, 'LISTEN');
  t.is(shown.name, '=00sock=3D1');
  t.is(messageToCrit('vma_entry', { start: 0n, end: 0n, pgoff: 0n, shmid: 0n, prot: 0, flags: 0x10022, status: 0x10201, fd: -1n }).flags, 'MAP_PRIVATE | MAP_ANON | 0x10000');
});
