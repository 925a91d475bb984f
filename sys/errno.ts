// errno numbers and names (asm-generic/errno-base.h, asm-generic/errno.h; x86_64 uses these),
// and the error type every sys/ call throws.

const NAMES = [
  '', 'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'ENXIO', 'E2BIG', 'ENOEXEC', 'EBADF', 'ECHILD',
  'EAGAIN', 'ENOMEM', 'EACCES', 'EFAULT', 'ENOTBLK', 'EBUSY', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR',
  'EISDIR', 'EINVAL', 'ENFILE', 'EMFILE', 'ENOTTY', 'ETXTBSY', 'EFBIG', 'ENOSPC', 'ESPIPE', 'EROFS',
  'EMLINK', 'EPIPE', 'EDOM', 'ERANGE', 'EDEADLK', 'ENAMETOOLONG', 'ENOLCK', 'ENOSYS', 'ENOTEMPTY',
  'ELOOP', '', 'ENOMSG', 'EIDRM', 'ECHRNG', 'EL2NSYNC', 'EL3HLT', 'EL3RST', 'ELNRNG', 'EUNATCH',
  'ENOCSI', 'EL2HLT', 'EBADE', 'EBADR', 'EXFULL', 'ENOANO', 'EBADRQC', 'EBADSLT', '', 'EBFONT',
  'ENOSTR', 'ENODATA', 'ETIME', 'ENOSR', 'ENONET', 'ENOPKG', 'EREMOTE', 'ENOLINK', 'EADV', 'ESRMNT',
  'ECOMM', 'EPROTO', 'EMULTIHOP', 'EDOTDOT', 'EBADMSG', 'EOVERFLOW', 'ENOTUNIQ', 'EBADFD',
  'EREMCHG', 'ELIBACC', 'ELIBBAD', 'ELIBSCN', 'ELIBMAX', 'ELIBEXEC', 'EILSEQ', 'ERESTART',
  'ESTRPIPE', 'EUSERS', 'ENOTSOCK', 'EDESTADDRREQ', 'EMSGSIZE', 'EPROTOTYPE', 'ENOPROTOOPT',
  'EPROTONOSUPPORT', 'ESOCKTNOSUPPORT', 'EOPNOTSUPP', 'EPFNOSUPPORT', 'EAFNOSUPPORT',
  'EADDRINUSE', 'EADDRNOTAVAIL', 'ENETDOWN', 'ENETUNREACH', 'ENETRESET', 'ECONNABORTED',
  'ECONNRESET', 'ENOBUFS', 'EISCONN', 'ENOTCONN', 'ESHUTDOWN', 'ETOOMANYREFS', 'ETIMEDOUT',
  'ECONNREFUSED', 'EHOSTDOWN', 'EHOSTUNREACH', 'EALREADY', 'EINPROGRESS', 'ESTALE', 'EUCLEAN',
  'ENOTNAM', 'ENAVAIL', 'EISNAM', 'EREMOTEIO', 'EDQUOT', 'ENOMEDIUM', 'EMEDIUMTYPE', 'ECANCELED',
  'ENOKEY', 'EKEYEXPIRED', 'EKEYREVOKED', 'EKEYREJECTED', 'EOWNERDEAD', 'ENOTRECOVERABLE',
  'ERFKILL', 'EHWPOISON',
];

/** Kernel-internal restart codes a task interrupted inside a syscall shows in its result register. */
export const ERESTARTSYS = 512;
export const ERESTARTNOINTR = 513;
export const ERESTARTNOHAND = 514;
export const ERESTART_RESTARTBLOCK = 516;
const KERNEL_ONLY: Record<number, string> = {
  512: 'ERESTARTSYS', 513: 'ERESTARTNOINTR', 514: 'ERESTARTNOHAND', 515: 'ENOIOCTLCMD',
  516: 'ERESTART_RESTARTBLOCK', 517: 'EPROBE_DEFER', 518: 'EOPENSTALE', 519: 'ENOPARAM',
  524: 'ENOTSUPP',
};

export function errnoName(errno: number): string {
  return NAMES[errno] || KERNEL_ONLY[errno] || `errno ${errno}`;
}

export function errnoNumber(name: string): number {
  const i = NAMES.indexOf(name);
  if (i > 0) return i;
  throw new Error(`unknown errno name ${name}`);
}

let strerror: ((e: number) => string) | undefined;
/** Installed by native.ts so this module stays free of koffi. */
export function setStrerror(fn: (e: number) => string): void {
  strerror = fn;
}

/**
 * A failed system call: `EPERM: ptrace(SEIZE, 1234): Operation not permitted`.
 * `what` says what was attempted, with its arguments, in the caller's words.
 */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly what: string;
  constructor(errno: number, what: string) {
    const code = errnoName(errno);
    const text = KERNEL_ONLY[errno] ? 'kernel restart code' : (strerror?.(errno) ?? 'error');
    super(`${code}: ${what}: ${text}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = code;
    this.what = what;
  }
}

/** True for a raw syscall result in [-4095, -1], the kernel's error range. */
export function isErrorResult(ret: bigint): boolean {
  return ret < 0n && ret >= -4095n;
}
