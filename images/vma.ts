// vma_entry.status bits (criu/include/image.h): how CRIU classified a mapping.
export const VMA_AREA_REGULAR = 1 << 0;
export const VMA_AREA_STACK = 1 << 1; // defined, no longer set
export const VMA_AREA_VSYSCALL = 1 << 2;
export const VMA_AREA_VDSO = 1 << 3;
export const VMA_AREA_HEAP = 1 << 5;
export const VMA_FILE_PRIVATE = 1 << 6;
export const VMA_FILE_SHARED = 1 << 7;
export const VMA_ANON_SHARED = 1 << 8;
export const VMA_ANON_PRIVATE = 1 << 9;
export const VMA_AREA_SYSVIPC = 1 << 10;
export const VMA_AREA_SOCKET = 1 << 11; // packet socket ring
export const VMA_AREA_VVAR = 1 << 12;
export const VMA_AREA_AIORING = 1 << 13;
export const VMA_AREA_MEMFD = 1 << 14;
export const VMA_AREA_SHSTK = 1 << 15;
export const VMA_AREA_GUARD = 1 << 16; // MADV_GUARD_INSTALL ranges, listed after the real VMAs
export const VMA_AREA_UPROBES = 1 << 17;
