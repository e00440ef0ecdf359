// SPDX-License-Identifier: GPL-2.0
/*
 * memhog <MiB> <seed>: allocate <MiB> of anonymous memory, write a pattern
 * to every page, then read every page back and compare, twice. Run under a
 * memory limit smaller than <MiB>, the pages must go to swap and come back
 * intact. Exit 0 when all matched, 1 otherwise.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t word(uint64_t page, uint64_t i, uint64_t seed)
{
	return (page * 0x9e3779b97f4a7c15ULL) ^ (i * 0xbf58476d1ce4e5b9ULL) ^ seed;
}

int main(int argc, char **argv)
{
	size_t mib, pages, words, step, pg = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t seed, *mem;
	size_t p, i;
	int pass;

	if (argc != 3) {
		fprintf(stderr, "usage: memhog <MiB> <seed>\n");
		return 2;
	}
	mib = strtoul(argv[1], NULL, 10);
	seed = strtoull(argv[2], NULL, 10);
	pages = mib * 1024 * 1024 / pg;
	words = pg / sizeof(uint64_t);
	setvbuf(stdout, NULL, _IOLBF, 0);
	mem = mmap(NULL, pages * pg, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "memhog: mmap of %zu MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	/* Progress every 64 MiB, so a slow run shows how far it got. */
	step = 64UL * 1024 * 1024 / pg;
	for (p = 0; p < pages; p++) {
		for (i = 0; i < words; i++)
			mem[p * words + i] = word(p, i, seed);
		if (p % step == step - 1)
			printf("memhog: written %zu MiB\n", (p + 1) * pg >> 20);
	}
	for (pass = 0; pass < 2; pass++) {
		for (p = 0; p < pages; p++) {
			for (i = 0; i < words; i++)
				if (mem[p * words + i] != word(p, i, seed)) {
					fprintf(stderr, "memhog: pass %d: page %zu word %zu differs\n",
						pass, p, i);
					return 1;
				}
			if (p % step == step - 1)
				printf("memhog: pass %d: checked %zu MiB\n", pass,
				       (p + 1) * pg >> 20);
		}
	}
	printf("memhog: %zu MiB written and read back twice\n", mib);
	return 0;
}
