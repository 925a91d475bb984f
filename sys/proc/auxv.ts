// /proc/PID/auxv: the ELF auxiliary vector the task started with, as raw native-endian u64 words
// (type, value pairs ending with AT_NULL). CRIU saves the raw words in mm_entry.mm_saved_auxv and
// hands them back with PR_SET_MM_AUXV on restore. Reading it needs ptrace access to the task.
import { type ProcPid, malformed, procPath, readProcBytes } from './read.js';

/** Well-known a_type values (include/uapi/linux/auxvec.h, elf.h). */
export const AT = {
  NULL: 0, IGNORE: 1, EXECFD: 2, PHDR: 3, PHENT: 4, PHNUM: 5, PAGESZ: 6, BASE: 7, FLAGS: 8,
  ENTRY: 9, NOTELF: 10, UID: 11, EUID: 12, GID: 13, EGID: 14, PLATFORM: 15, HWCAP: 16, CLKTCK: 17,
  SECURE: 23, BASE_PLATFORM: 24, RANDOM: 25, HWCAP2: 26, RSEQ_FEATURE_SIZE: 27, RSEQ_ALIGN: 28,
  HWCAP3: 29, HWCAP4: 30, EXECFN: 31, SYSINFO_EHDR: 33, MINSIGSTKSZ: 51,
} as const;

/** The words of an auxv file. */
export function parseAuxv(bytes: Buffer, path = 'auxv'): bigint[] {
  if (bytes.length % 8 !== 0) throw malformed(path, undefined, `size ${bytes.length} is not a multiple of 8`);
  // Through a 64-bit view (of a copy where the bytes are not 8-aligned): no call per word.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : Uint8Array.from(bytes);
  return Array.from(new BigUint64Array(aligned.buffer, aligned.byteOffset, bytes.length / 8));
}

/** `/proc/PID/auxv` as raw u64 words. */
export function readAuxv(pid: ProcPid): bigint[] {
  const path = procPath(pid, 'auxv');
  return parseAuxv(readProcBytes(path), path);
}

/** The (type, value) pairs of auxv words up to and excluding AT_NULL. */
export function auxvEntries(words: readonly bigint[]): Map<number, bigint> {
  const out = new Map<number, bigint>();
  for (let i = 0; i + 1 < words.length; i += 2) {
    const type = Number(words[i]!);
    if (type === AT.NULL) break;
    out.set(type, words[i + 1]!);
  }
  return out;
}
