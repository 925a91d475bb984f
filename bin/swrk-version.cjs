// `stasis swrk FD` started only to ask the version, as runc and Podman do once per command: the
// first record on the socket is read here, by bin/stasis before stasis itself is loaded (some
// 20 ms), and a version request is answered from here; anything else goes to the server.
const fs = require('node:fs');

/**
 * The whole conversation: the request record (criu_req{type: VERSION}) and stasis's answer
 * (criu_resp{type: VERSION, success, version{4, 2}} — runtime-hook/version.ts's VERSION), kept
 * as bytes so that no codec is needed. test/runtime-hook/swrk.test.ts checks them against it.
 */
const VERSION_REQUEST = Buffer.from('080a', 'hex');
const VERSION_RESPONSE = Buffer.from('080a1001520408041002', 'hex');
exports.VERSION_REQUEST = VERSION_REQUEST;
exports.VERSION_RESPONSE = VERSION_RESPONSE;

/**
 * The largest record read here. A read(2) takes one record and drops whatever of it does not fit
 * the buffer, so the buffer must hold any request: the kernel refuses to send a record larger than
 * the sender's SO_SNDBUF (at most twice net.core.wmem_max, 4 MiB by default, without
 * SO_SNDBUFFORCE). Untouched, its pages cost nothing.
 */
const MAX_RECORD = 8 * 1024 * 1024;
exports.MAX_RECORD = MAX_RECORD;

/**
 * Reads one record of the SOCK_SEQPACKET socket `fdArg`. Returns 'answered' for a version
 * request (the answer written), 'gone' when the client closed it, 'too-large' for a record that
 * filled MAX_RECORD (its end lost), the record otherwise, or undefined when it cannot be read this
 * way (non-blocking, not a socket...: the server reads it).
 */
exports.firstRecord = function firstRecord(fdArg) {
  if (!/^\d+$/.test(fdArg)) return undefined;
  const buf = Buffer.allocUnsafe(MAX_RECORD);
  let n;
  try {
    n = fs.readSync(Number(fdArg), buf, 0, buf.length, null);
  } catch {
    return undefined;
  }
  if (n === 0) return 'gone';
  if (n === MAX_RECORD) return 'too-large';
  const first = Buffer.from(buf.subarray(0, n)); // not the whole 8 MiB kept alive for it
  if (!first.equals(VERSION_REQUEST)) return first;
  fs.writeSync(Number(fdArg), VERSION_RESPONSE);
  return 'answered';
};

/**
 * The first record as bin/launch.sh hands it over: file `file` (a stasis-swrk.XXXXXX file of
 * the temporary directory, a regular file of stasis's user, checked so that the variable cannot
 * name another), read and removed. 'too-large' when it filled MAX_RECORD, as firstRecord says.
 */
exports.recordFrom = function recordFrom(file) {
  const os = require('node:os');
  const path = require('node:path');
  const st = fs.lstatSync(file);
  if (!/^stasis-swrk\.[A-Za-z0-9]{6}$/.test(path.basename(file)) || path.dirname(file) !== path.resolve(os.tmpdir())
    || !st.isFile() || st.uid !== process.geteuid()) {
    throw new Error(`STASIS_SWRK_FIRST names ${file}, not a record bin/launch.sh wrote`);
  }
  const record = fs.readFileSync(file);
  fs.unlinkSync(file);
  return record.length >= MAX_RECORD ? 'too-large' : record;
};
