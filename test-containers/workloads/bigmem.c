/* bigmem: touches N MiB of anonymous memory with a pattern, prints "ready", then sleeps.
 *   bigmem MIB */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
  size_t words = mib << 17;
  uint64_t *p = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); return 1; }
  for (size_t i = 0; i < words; i++) p[i] = i * 0x9E3779B97F4A7C15ull;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready %p\n", (void *)p);
  for (;;) pause();
}
