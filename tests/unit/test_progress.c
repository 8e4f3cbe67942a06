/* test_progress.c: the flush LSN tracker, against hand-checked cases and a simple reference model. */
#include "unit.h"

#include "progress.h"

static void test_init_and_idle(void **state)
{
	(void)state;
	progress p;

	progress_init(&p, 0x100);
	assert_int_equal(p.acked, 0x100);
	assert_true(progress_idle(&p));
	assert_int_equal(p.in_flight, 0);
	progress_free(&p);
	assert_null(p.ring);
}

static void test_in_order_acks(void **state)
{
	(void)state;
	progress p;
	uint64_t a, b;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x10);
	progress_produced(&p, a);
	progress_produced(&p, a);
	progress_commit(&p, a);
	b = progress_begin(&p, 0x20);
	assert_int_equal(b, a + 1);
	progress_produced(&p, b);
	progress_commit(&p, b);
	assert_false(progress_idle(&p));
	assert_int_equal(p.in_flight, 3);

	progress_acked(&p, a);
	assert_int_equal(p.acked, 0);
	progress_acked(&p, a);
	assert_int_equal(p.acked, 0x10);
	assert_false(progress_idle(&p));
	progress_acked(&p, b);
	assert_int_equal(p.acked, 0x20);
	assert_true(progress_idle(&p));
	assert_int_equal(p.in_flight, 0);
	progress_free(&p);
}

static void test_out_of_order_acks(void **state)
{
	(void)state;
	progress p;
	uint64_t t[3];

	progress_init(&p, 0);
	for (int i = 0; i < 3; i++) {
		t[i] = progress_begin(&p, (lsn_t)(0x100 * (i + 1)));
		progress_produced(&p, t[i]);
		progress_produced(&p, t[i]);
		progress_commit(&p, t[i]);
	}
	/* The last transaction finishes first: nothing moves until the earlier ones are done. */
	progress_acked(&p, t[2]);
	progress_acked(&p, t[2]);
	assert_int_equal(p.acked, 0);
	progress_acked(&p, t[1]);
	progress_acked(&p, t[0]);
	assert_int_equal(p.acked, 0);
	progress_acked(&p, t[1]);
	assert_int_equal(p.acked, 0);
	/* The first one completes: all three retire at once. */
	progress_acked(&p, t[0]);
	assert_int_equal(p.acked, 0x300);
	assert_true(progress_idle(&p));
	progress_free(&p);
}

static void test_acks_before_commit(void **state)
{
	(void)state;
	progress p;
	uint64_t a;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x50);
	progress_produced(&p, a);
	progress_acked(&p, a);
	/* All records so far are acknowledged but the transaction may still have more. */
	assert_int_equal(p.acked, 0);
	assert_false(progress_idle(&p));
	progress_produced(&p, a);
	progress_acked(&p, a);
	assert_int_equal(p.acked, 0);
	progress_commit(&p, a);
	assert_int_equal(p.acked, 0x50);
	assert_true(progress_idle(&p));
	progress_free(&p);
}

static void test_empty_transaction_completes_at_commit(void **state)
{
	(void)state;
	progress p;
	uint64_t a, b, c;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x10);
	progress_commit(&p, a);
	assert_int_equal(p.acked, 0x10);
	assert_true(progress_idle(&p));

	/* Behind an unfinished one, an empty transaction waits for it. */
	b = progress_begin(&p, 0x20);
	progress_produced(&p, b);
	progress_commit(&p, b);
	c = progress_begin(&p, 0x30);
	progress_commit(&p, c);
	assert_int_equal(p.acked, 0x10);
	progress_acked(&p, b);
	assert_int_equal(p.acked, 0x30);
	assert_true(progress_idle(&p));
	progress_free(&p);
}

static void test_acked_never_passes_unfinished_transaction(void **state)
{
	(void)state;
	progress p;
	uint64_t a, b;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x10); /* still open: no C yet */
	progress_produced(&p, a);
	progress_acked(&p, a);
	b = progress_begin(&p, 0x20);
	progress_commit(&p, b);
	assert_int_equal(p.acked, 0);
	assert_false(progress_idle(&p));
	progress_commit(&p, a);
	assert_int_equal(p.acked, 0x20);
	progress_free(&p);
}

static void test_lost_record_holds_acked(void **state)
{
	(void)state;
	progress p;
	uint64_t a, b, c;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x10);
	progress_produced(&p, a);
	progress_commit(&p, a);
	b = progress_begin(&p, 0x20);
	progress_produced(&p, b);
	progress_produced(&p, b);
	progress_commit(&p, b);
	c = progress_begin(&p, 0x30);
	progress_produced(&p, c);
	progress_commit(&p, c);
	assert_int_equal(p.in_flight, 4);

	progress_acked(&p, a);
	assert_int_equal(p.acked, 0x10);
	progress_lost(&p, b);
	progress_acked(&p, b);
	progress_acked(&p, c);
	/* Every report is in (nothing in flight) but b lost a record: acked stays before it. */
	assert_int_equal(p.in_flight, 0);
	assert_int_equal(p.acked, 0x10);
	assert_false(progress_idle(&p));
	/* Neither does an idle keepalive move it. */
	progress_skip_to(&p, 0x1000);
	assert_int_equal(p.acked, 0x10);
	/* Reports for unknown sequence numbers are ignored. */
	progress_lost(&p, c + 5);
	progress_lost(&p, a);
	assert_int_equal(p.in_flight, 0);
	progress_free(&p);
}

static void test_skip_to_only_when_idle(void **state)
{
	(void)state;
	progress p;
	uint64_t a;

	progress_init(&p, 0x100);
	progress_skip_to(&p, 0x200);
	assert_int_equal(p.acked, 0x200);
	/* Never backwards. */
	progress_skip_to(&p, 0x150);
	assert_int_equal(p.acked, 0x200);

	a = progress_begin(&p, 0x300);
	progress_skip_to(&p, 0x400);
	assert_int_equal(p.acked, 0x200);
	progress_produced(&p, a);
	progress_commit(&p, a);
	progress_skip_to(&p, 0x400);
	assert_int_equal(p.acked, 0x200);
	progress_acked(&p, a);
	assert_int_equal(p.acked, 0x300);
	progress_skip_to(&p, 0x400);
	assert_int_equal(p.acked, 0x400);

	/* A transaction whose nextlsn is behind acked does not move it back. */
	a = progress_begin(&p, 0x380);
	progress_commit(&p, a);
	assert_int_equal(p.acked, 0x400);
	progress_free(&p);
}

static void test_reset_forgets_unfinished(void **state)
{
	(void)state;
	progress p;
	uint64_t a, b, c;

	progress_init(&p, 0);
	a = progress_begin(&p, 0x10);
	progress_produced(&p, a);
	progress_commit(&p, a);
	progress_acked(&p, a);
	b = progress_begin(&p, 0x20);
	progress_produced(&p, b);
	progress_produced(&p, b);
	progress_commit(&p, b);
	c = progress_begin(&p, 0x30);
	progress_produced(&p, c);
	assert_int_equal(p.acked, 0x10);

	progress_reset(&p);
	assert_true(progress_idle(&p));
	assert_int_equal(p.in_flight, 0);
	assert_int_equal(p.acked, 0x10);

	/* Late reports for the forgotten transactions change nothing. */
	progress_acked(&p, b);
	progress_acked(&p, b);
	progress_acked(&p, c);
	progress_lost(&p, c);
	assert_int_equal(p.acked, 0x10);
	assert_int_equal(p.in_flight, 0);
	assert_true(progress_idle(&p));

	/* The transactions read again get new sequence numbers and work as before. */
	uint64_t b2 = progress_begin(&p, 0x20);
	assert_true(b2 > c);
	progress_produced(&p, b2);
	progress_commit(&p, b2);
	progress_acked(&p, b); /* stale: ignored */
	assert_int_equal(p.acked, 0x10);
	assert_int_equal(p.in_flight, 1);
	progress_acked(&p, b2);
	assert_int_equal(p.acked, 0x20);
	assert_true(progress_idle(&p));
	progress_free(&p);
}

/* The reference: a plain array of transactions; acked is the end of the finished prefix. */
typedef struct {
	lsn_t nextlsn;
	int produced;
	int acked;
	bool committed;
	bool lost;
} ref_txn;

static lsn_t ref_acked(const ref_txn *t, size_t n, lsn_t start)
{
	lsn_t acked = start;
	for (size_t i = 0; i < n; i++) {
		if (!t[i].committed || t[i].lost || t[i].acked < t[i].produced)
			break;
		if (t[i].nextlsn > acked)
			acked = t[i].nextlsn;
	}
	return acked;
}

static uint64_t rnd_state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545F4914F6CDD1Dull;
}

/* Shuffles the pending acknowledgements (sequence numbers). */
static void shuffle(uint64_t *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(rnd() % i);
		uint64_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* Opens n transactions (the ring must grow past 1024), then acks everything in random order. */
static void run_model(size_t n, bool interleave_commits)
{
	progress p;
	ref_txn *ref = calloc(n, sizeof(ref_txn));
	uint64_t *acks = NULL;
	size_t n_acks = 0, cap = 0;
	uint64_t base;

	assert_non_null(ref);
	progress_init(&p, 7);
	base = p.tail;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = progress_begin(&p, (lsn_t)(1000 + i * 16));
		assert_int_equal(seq, base + i);
		ref[i].nextlsn = (lsn_t)(1000 + i * 16);
		int k = (int)(rnd() % 4); /* 0 to 3 records */
		for (int j = 0; j < k; j++) {
			progress_produced(&p, seq);
			ref[i].produced++;
			if (n_acks == cap) {
				cap = cap ? cap * 2 : 1024;
				acks = realloc(acks, cap * sizeof(uint64_t));
				assert_non_null(acks);
			}
			acks[n_acks++] = seq;
		}
		if (!interleave_commits || rnd() % 2) {
			progress_commit(&p, seq);
			ref[i].committed = true;
		}
		assert_int_equal(p.acked, ref_acked(ref, n, 7));
	}
	assert_true(p.cap > 1024);
	assert_int_equal(p.in_flight, n_acks);
	shuffle(acks, n_acks);
	size_t next_commit = 0;
	for (size_t a = 0; a < n_acks; a++) {
		progress_acked(&p, acks[a]);
		ref[acks[a] - base].acked++;
		/* Now and then, commit the oldest transactions still open. */
		while (interleave_commits && rnd() % 3 == 0 && next_commit < n) {
			if (!ref[next_commit].committed) {
				progress_commit(&p, base + next_commit);
				ref[next_commit].committed = true;
			}
			next_commit++;
		}
		if (p.acked != ref_acked(ref, n, 7))
			fail_msg("after ack %zu: acked %llx, reference %llx", a,
				 (unsigned long long)p.acked, (unsigned long long)ref_acked(ref, n, 7));
		assert_int_equal(p.in_flight, n_acks - a - 1);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ref[i].committed) {
			progress_commit(&p, base + i);
			ref[i].committed = true;
			assert_int_equal(p.acked, ref_acked(ref, n, 7));
		}
	}
	assert_int_equal(p.acked, 1000 + (n - 1) * 16);
	assert_true(progress_idle(&p));
	free(acks);
	free(ref);
	progress_free(&p);
}

static void test_ring_growth_random_acks(void **state)
{
	(void)state;
	run_model(3000, false);
	run_model(1025, false);
	run_model(5000, true);
}

/* Many rounds through a small window: sequence numbers wrap the ring many times. */
static void test_ring_wraps_in_steady_state(void **state)
{
	(void)state;
	progress p;
	uint64_t window[8];
	size_t n = 0;

	progress_init(&p, 0);
	for (uint64_t i = 0; i < 20000; i++) {
		uint64_t seq = progress_begin(&p, (lsn_t)(i + 1) * 8);
		progress_produced(&p, seq);
		progress_commit(&p, seq);
		window[n++] = seq;
		if (n == 8) {
			shuffle(window, n);
			for (size_t k = 0; k < n; k++)
				progress_acked(&p, window[k]);
			n = 0;
			assert_int_equal(p.acked, (lsn_t)(i + 1) * 8);
			assert_true(progress_idle(&p));
		}
	}
	assert_int_equal(p.cap, 1024);
	progress_free(&p);
}

/* The lost-record rule checked against the model: random losses over many transactions. */
static void test_random_losses(void **state)
{
	(void)state;
	enum { N = 1500 };
	progress p;
	ref_txn *ref = calloc(N, sizeof(ref_txn));
	uint64_t base;

	assert_non_null(ref);
	progress_init(&p, 0);
	base = p.tail;
	for (size_t i = 0; i < N; i++) {
		uint64_t seq = progress_begin(&p, (lsn_t)(i + 1));
		ref[i].nextlsn = (lsn_t)(i + 1);
		progress_produced(&p, seq);
		ref[i].produced = 1;
		progress_commit(&p, seq);
		ref[i].committed = true;
	}
	for (size_t i = 0; i < N; i++) {
		if (rnd() % 500 == 0) {
			progress_lost(&p, base + i);
			ref[i].lost = true;
		} else {
			progress_acked(&p, base + i);
			ref[i].acked = 1;
		}
		assert_int_equal(p.acked, ref_acked(ref, N, 0));
	}
	assert_int_equal(p.in_flight, 0);
	free(ref);
	progress_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_idle),
		cmocka_unit_test(test_in_order_acks),
		cmocka_unit_test(test_out_of_order_acks),
		cmocka_unit_test(test_acks_before_commit),
		cmocka_unit_test(test_empty_transaction_completes_at_commit),
		cmocka_unit_test(test_acked_never_passes_unfinished_transaction),
		cmocka_unit_test(test_lost_record_holds_acked),
		cmocka_unit_test(test_skip_to_only_when_idle),
		cmocka_unit_test(test_reset_forgets_unfinished),
		cmocka_unit_test(test_ring_growth_random_acks),
		cmocka_unit_test(test_ring_wraps_in_steady_state),
		cmocka_unit_test(test_random_losses),
	};
	return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
