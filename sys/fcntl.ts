// open(2) flags and fcntl(2) commands (asm-generic/fcntl.h; x86_64 uses these), in one place.

export const F_ADD_SEALS = 1033;
export const F_DUPFD_CLOEXEC = 1030;
export const F_GETFD = 1;
export const F_GETFL = 3;
export const F_GETPIPE_SZ = 1032;
export const F_GETOWN_EX = 16;
export const F_GETOWNER_UIDS = 17;
export const F_GETSIG = 11;
export const F_GET_SEALS = 1034;
export const F_OFD_SETLK = 37;
export const F_RDLCK = 0;
export const F_SETFD = 2;
export const F_SETFL = 4;
export const F_SETLK = 6;
export const F_SETOWN_EX = 15;
export const F_SETPIPE_SZ = 1031;
export const F_SETSIG = 10;
export const F_WRLCK = 1;
export const O_ACCMODE = 3;
export const O_APPEND = 0o2000;
export const O_ASYNC = 0o20000;
export const O_DIRECT = 0o40000;
export const O_CLOEXEC = 0o2000000;
export const O_CREAT = 0o100;
export const O_DIRECTORY = 0o200000;
export const O_EXCL = 0o200;
export const O_LARGEFILE = 0o100000;
export const O_NOATIME = 0o1000000;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_PATH = 0o10000000;
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_TRUNC = 0o1000;
export const O_WRONLY = 1;

/** The status flags F_SETFL changes (the kernel's SETFL_MASK); the rest are the open's for good. */
export const SETFL_MASK = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
