/* test_xalloc.c: the allocator set-up at start: a user's glibc tunable wins, allocation still works. */
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static void test_user_fastbin_tunable_is_left_alone(void **state)
{
	(void)state;
	assert_true(xalloc_mxfast_chosen("glibc.malloc.mxfast=128"));
	assert_true(xalloc_mxfast_chosen("glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"));
}

static void test_other_tunables_do_not_stop_the_set_up(void **state)
{
	(void)state;
	assert_false(xalloc_mxfast_chosen(NULL));
	assert_false(xalloc_mxfast_chosen(""));
	assert_false(xalloc_mxfast_chosen("glibc.malloc.tcache_count=0"));
	assert_false(xalloc_mxfast_chosen("xglibc.malloc.mxfast=0"));
	assert_false(xalloc_mxfast_chosen("glibc.malloc.mxfast"));
}

/* Records' chunks as librdkafka churns them: many small ones, freed late and out of order. */
static void test_small_chunks_keep_their_contents_after_the_set_up(void **state)
{
	enum { N = 20000 };
	unsigned char **p = xcalloc(N, sizeof(*p));
	(void)state;

	xalloc_tune();
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			if (p[i])
				continue;
			size_t n = 16 + (size_t)(i * 7 + round) % 120;
			p[i] = xmalloc(n);
			memset(p[i], (int)(i & 0xff), n);
			p[i][0] = (unsigned char)n;
		}
		for (int i = round % 2; i < N; i += 2) {
			size_t n = p[i][0];
			for (size_t k = 1; k < n; k++)
				assert_int_equal(p[i][k], (unsigned char)(i & 0xff));
			free(p[i]);
			p[i] = NULL;
		}
	}
	for (int i = 0; i < N; i++)
		free(p[i]);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_fastbin_tunable_is_left_alone),
		cmocka_unit_test(test_other_tunables_do_not_stop_the_set_up),
		cmocka_unit_test(test_small_chunks_keep_their_contents_after_the_set_up),
	};
	return cmocka_run_group_tests_name("xalloc", tests, NULL, NULL);
}
