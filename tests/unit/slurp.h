/* For unit tests (after <cmocka.h>): a whole file read into memory, failing the test
 * when it cannot be. */
#ifndef HSM_TESTS_SLURP_H
#define HSM_TESTS_SLURP_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file, NUL-terminated (*len excludes the NUL); the caller frees it. */
static inline char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

#endif
