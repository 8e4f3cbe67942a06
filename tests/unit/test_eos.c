/*
 * test_eos.c: the exactly-once bookkeeping without a broker: what is skipped after a restart,
 * what a checkpoint would store, and when a Kafka transaction is due. eos_start, eos_ensure_open,
 * eos_commit and eos_abort need Kafka and are not called; where a test needs an open Kafka
 * transaction it sets e.open and e.opened_ms by hand, and a "commit" is modelled as what
 * eos_commit does to the state once Kafka said yes (committed = eos_pending, open = false).
 */
#include "unit.h"

#include <time.h>

#include "checkpoint.h"
#include "clock.h"
#include "config.h"
#include "eos.h"

#define TXN_ID "outbox-relay-7300000000000000001-outbox_relay"


/* A configuration with only what eos reads. */
static relay_config make_cfg(int max_records, int max_ms, int status_interval_ms)
{
	relay_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.slot = "outbox_relay";
	cfg.checkpoint_topic = "outbox-relay.checkpoints";
	cfg.exactly_once = true;
	cfg.transaction_max_records = max_records;
	cfg.transaction_max_ms = max_ms;
	cfg.status_interval_ms = status_interval_ms;
	return cfg;
}

/* Limits that never fire by themselves within a test. */
static relay_config quiet_cfg(void) { return make_cfg(1000000, 60000, 3600000); }

static checkpoint cp_at(lsn_t lsn, lsn_t partial_nextlsn, uint64_t partial_rows)
{
	checkpoint cp = {.lsn = lsn, .partial_nextlsn = partial_nextlsn, .partial_rows = partial_rows};
	return cp;
}

#define assert_cp(cp_, lsn_, next_, rows_)                                                         \
	do {                                                                                       \
		checkpoint c_ = (cp_);                                                             \
		assert_int_equal(c_.lsn, (lsn_));                                                  \
		assert_int_equal(c_.partial_nextlsn, (next_));                                     \
		assert_int_equal(c_.partial_rows, (rows_));                                        \
	} while (0)

/* What eos_ensure_open does to the state once begin_transaction succeeded. */
static void fake_open(eos *e)
{
	if (e->open)
		return;
	e->open = true;
	e->opened_ms = clock_mono_ms();
	e->records = 0;
}

/* One row of the open PostgreSQL transaction that Kafka does not have yet: "produced". */
static void fake_produce(eos *e)
{
	fake_open(e);
	eos_produced(e);
	eos_row_done(e);
}

/* What eos_commit does to the state once commit_transaction succeeded. */
static checkpoint fake_commit(eos *e)
{
	checkpoint cp = eos_pending(e);
	e->open = false;
	e->committed = cp;
	e->last_commit_ms = clock_mono_ms();
	return cp;
}

static void test_init_copies_id_and_starts_empty(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	char id[] = TXN_ID;
	eos e;

	eos_init(&e, &cfg, id);
	assert_ptr_equal(e.cfg, &cfg);
	assert_non_null(e.txn_id);
	assert_ptr_not_equal(e.txn_id, id);
	id[0] = 'X'; /* a copy: the caller's buffer may go away */
	assert_string_equal(e.txn_id, TXN_ID);
	assert_null(e.kp);
	assert_false(e.open);
	assert_false(e.in_pg_txn);
	assert_int_equal(e.records, 0);
	assert_int_equal(e.done_lsn, 0);
	assert_cp(e.committed, 0, 0, 0);
	assert_cp(eos_pending(&e), 0, 0, 0);
	eos_free(&e);
}

static void test_resume_sets_position_and_forgets_reading_state(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0x2000, 7);

	eos_init(&e, &cfg, TXN_ID);
	/* Whatever a session left behind... */
	e.open = true;
	e.records = 42;
	e.in_pg_txn = true;
	e.done_lsn = 0x5000;
	e.cur_nextlsn = 0x6000;
	e.cur_rows = 3;
	/* ...is forgotten; the committed position is the checkpoint's. */
	eos_resume(&e, &cp);
	assert_false(e.open);
	assert_false(e.in_pg_txn);
	assert_int_equal(e.records, 0);
	assert_int_equal(e.done_lsn, 0x1000);
	assert_cp(e.committed, 0x1000, 0x2000, 7);
	/* Resuming from the committed checkpoint itself (what a rewind does) is the same. */
	e.done_lsn = 0x1800;
	e.in_pg_txn = true;
	eos_resume(&e, &e.committed);
	assert_int_equal(e.done_lsn, 0x1000);
	assert_false(e.in_pg_txn);
	assert_cp(e.committed, 0x1000, 0x2000, 7);
	eos_free(&e);
}

static void test_begin_skips_transactions_ending_at_or_below_checkpoint(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_false(eos_pg_begin(&e, 0x0800));
	assert_false(e.in_pg_txn);
	assert_false(eos_pg_begin(&e, 0x1000)); /* ends exactly at the checkpoint: in Kafka */
	assert_false(e.in_pg_txn);
	/* A skipped transaction's C changes nothing. */
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x1000);
	assert_cp(eos_pending(&e), 0x1000, 0, 0);

	assert_true(eos_pg_begin(&e, 0x1001));
	assert_true(e.in_pg_txn);
	assert_int_equal(e.cur_nextlsn, 0x1001);
	assert_int_equal(e.cur_rows, 0);
	assert_int_equal(e.skip_rows, 0);
	eos_free(&e);
}

static void test_rows_of_a_new_transaction_are_all_published(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	for (int i = 1; i <= 5; i++) {
		assert_true(eos_pg_row(&e));
		assert_int_equal(e.cur_rows, i - 1); /* counted once Kafka has all its records */
		eos_produced(&e);
		eos_produced(&e); /* e.g. a delete and its tombstone: still one row */
		assert_int_equal(e.cur_rows, i - 1);
		eos_row_done(&e);
		assert_int_equal(e.cur_rows, i);
	}
	eos_pg_commit(&e);
	assert_false(e.in_pg_txn);
	assert_int_equal(e.done_lsn, 0x2000);
	eos_free(&e);
}

static void test_split_transaction_skips_its_counted_rows(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0x2000, 3);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_int_equal(e.skip_rows, 3);
	assert_false(eos_pg_row(&e));
	assert_false(eos_pg_row(&e));
	assert_false(eos_pg_row(&e));
	assert_true(eos_pg_row(&e)); /* the 4th row is not in Kafka yet */
	eos_produced(&e);
	eos_row_done(&e);
	assert_true(eos_pg_row(&e));
	eos_produced(&e);
	eos_row_done(&e);
	assert_int_equal(e.cur_rows, 5);
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x2000);
	assert_false(e.in_pg_txn);
	eos_free(&e);
}

static void test_split_count_belongs_to_its_transaction_only(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0x2000, 3);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	/* Another transaction (whatever its position) publishes all its rows. */
	assert_true(eos_pg_begin(&e, 0x1800));
	assert_int_equal(e.skip_rows, 0);
	assert_true(eos_pg_row(&e));
	eos_pg_commit(&e);
	assert_true(eos_pg_begin(&e, 0x3000));
	assert_int_equal(e.skip_rows, 0);
	assert_true(eos_pg_row(&e));
	eos_pg_commit(&e);

	/* All rows of the split transaction were in Kafka already: none is published again. */
	cp = cp_at(0x1000, 0x2000, 2);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_false(eos_pg_row(&e));
	assert_false(eos_pg_row(&e));
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x2000);
	eos_free(&e);
}

static void test_pg_commit_moves_done_lsn_forward_only(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	eos_idle_at(&e, 0x3000);
	assert_int_equal(e.done_lsn, 0x3000);
	/* A transaction ending below done_lsn (not possible from one stream, but harmless). */
	assert_true(eos_pg_begin(&e, 0x2000));
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x3000);
	assert_false(e.in_pg_txn);
	/* A second C without B changes nothing. */
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x3000);
	eos_free(&e);
}

static void test_pending_covers_whole_transactions_read(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_cp(eos_pending(&e), 0x1000, 0, 0);
	assert_true(eos_pg_begin(&e, 0x2000));
	/* Begun, no row yet: nothing of it counts. */
	assert_cp(eos_pending(&e), 0x1000, 0, 0);
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	/* Two rows read: a commit now stores them as a partial count. */
	assert_cp(eos_pending(&e), 0x1000, 0x2000, 2);
	eos_pg_commit(&e);
	assert_cp(eos_pending(&e), 0x2000, 0, 0);
	/* A transaction without outbox rows (add-tables filtered every change) moves it too. */
	assert_true(eos_pg_begin(&e, 0x2800));
	assert_cp(eos_pending(&e), 0x2000, 0, 0);
	eos_pg_commit(&e);
	assert_cp(eos_pending(&e), 0x2800, 0, 0);
	eos_free(&e);
}

static void test_pending_counts_skipped_rows_of_split_transaction(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0x2000, 3);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	for (int i = 0; i < 3; i++)
		assert_false(eos_pg_row(&e));
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	/* Three rows from the earlier Kafka transaction and two in this one. */
	assert_cp(eos_pending(&e), 0x1000, 0x2000, 5);
	cp = fake_commit(&e);
	assert_cp(cp, 0x1000, 0x2000, 5);
	/* The next row of the same transaction is counted on top. */
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	assert_cp(eos_pending(&e), 0x1000, 0x2000, 6);
	eos_pg_commit(&e);
	assert_cp(eos_pending(&e), 0x2000, 0, 0);
	eos_free(&e);
}

/*
 * After a restart inside a split transaction, keepalives come while the server reads its WAL
 * up to that transaction: their positions move done_lsn, and an idle checkpoint must still say
 * how many rows of the split transaction Kafka has.
 */
static void test_pending_carries_committed_partial_until_transaction_is_read(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0x2000, 3);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_cp(eos_pending(&e), 0x1000, 0x2000, 3);
	eos_idle_at(&e, 0x1500);
	assert_int_equal(e.done_lsn, 0x1500);
	assert_cp(eos_pending(&e), 0x1500, 0x2000, 3);
	/* An idle checkpoint stores it so: the count survives the next restart too. */
	cp = fake_commit(&e);
	assert_cp(cp, 0x1500, 0x2000, 3);
	eos_idle_at(&e, 0x1F00);
	assert_cp(eos_pending(&e), 0x1F00, 0x2000, 3);

	/* The split transaction is reached: until a row of it is read, the stored count holds. */
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_int_equal(e.skip_rows, 3);
	assert_cp(eos_pending(&e), 0x1F00, 0x2000, 3);
	for (int i = 0; i < 3; i++)
		assert_false(eos_pg_row(&e));
	assert_cp(eos_pending(&e), 0x1F00, 0x2000, 3);
	/* Read beyond the count: the count of this session replaces it. */
	fake_produce(&e);
	assert_true(eos_pg_row(&e));
	assert_cp(eos_pending(&e), 0x1F00, 0x2000, 4);
	/* Read to its end: whole, no partial any more. */
	eos_pg_commit(&e);
	assert_cp(eos_pending(&e), 0x2000, 0, 0);
	cp = fake_commit(&e);
	assert_cp(e.committed, 0x2000, 0, 0);
	eos_idle_at(&e, 0x2400);
	assert_cp(eos_pending(&e), 0x2400, 0, 0);
	eos_free(&e);
}

static void test_idle_position_moves_done_lsn_only_when_nothing_is_open(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	eos_idle_at(&e, 0x1200);
	assert_int_equal(e.done_lsn, 0x1200);
	/* Never backwards. */
	eos_idle_at(&e, 0x1100);
	assert_int_equal(e.done_lsn, 0x1200);
	eos_idle_at(&e, 0x1200);
	assert_int_equal(e.done_lsn, 0x1200);

	/* Inside a PostgreSQL transaction: no. */
	assert_true(eos_pg_begin(&e, 0x3000));
	eos_idle_at(&e, 0x2000);
	assert_int_equal(e.done_lsn, 0x1200);
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	eos_pg_commit(&e);
	assert_int_equal(e.done_lsn, 0x3000);
	/* A Kafka transaction open (its records not committed yet): no. */
	assert_true(e.open);
	eos_idle_at(&e, 0x3800);
	assert_int_equal(e.done_lsn, 0x3000);
	fake_commit(&e);
	assert_cp(e.committed, 0x3000, 0, 0);
	/* Committed and idle: yes. */
	eos_idle_at(&e, 0x3800);
	assert_int_equal(e.done_lsn, 0x3800);
	assert_cp(eos_pending(&e), 0x3800, 0, 0);
	/* done_lsn is only what a commit would store: the committed checkpoint stays. */
	assert_cp(e.committed, 0x3000, 0, 0);
	eos_free(&e);
}

static void test_commit_due_never_without_open_transaction(void **state)
{
	(void)state;
	relay_config cfg = make_cfg(1, 1, 1);
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	e.records = 100;
	e.opened_ms = clock_mono_ms() - 100000;
	assert_false(eos_commit_due(&e, false));
	assert_false(eos_commit_due(&e, true));
	eos_free(&e);
}

static void test_commit_due_by_record_bound(void **state)
{
	(void)state;
	relay_config cfg = make_cfg(3, 60000, 3600000);
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	for (int i = 1; i <= 2; i++) {
		assert_true(eos_pg_row(&e));
		fake_produce(&e);
		assert_false(eos_commit_due(&e, false));
	}
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	assert_int_equal(e.records, 3);
	/* Also in the middle of a PostgreSQL transaction: that is how a big one is split. */
	assert_true(e.in_pg_txn);
	assert_true(eos_commit_due(&e, false));
	assert_true(eos_commit_due(&e, true));
	e.records = 4;
	assert_true(eos_commit_due(&e, false));
	eos_free(&e);
}

static void test_commit_due_by_age(void **state)
{
	(void)state;
	relay_config cfg = make_cfg(1000000, 100, 3600000);
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	e.opened_ms = clock_mono_ms() + 100000; /* young for the whole test, whatever the machine */
	assert_false(eos_commit_due(&e, false));
	e.opened_ms = clock_mono_ms() - 100;
	assert_false(eos_commit_due(&e, false)); /* inside a PostgreSQL transaction: not yet */
	e.opened_ms = clock_mono_ms() - 100000;
	assert_true(eos_commit_due(&e, false)); /* a huge one arriving slowly: split */
	eos_pg_commit(&e);
	e.opened_ms = clock_mono_ms() - 100;
	assert_true(eos_commit_due(&e, false)); /* between transactions: by age */
	eos_free(&e);
}

static void test_commit_due_on_idle_input_only_between_transactions(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_true(eos_pg_row(&e));
	fake_produce(&e);
	e.opened_ms = clock_mono_ms() + 100000;
	/* Idle input inside a PostgreSQL transaction: wait for its end (or a bound). */
	assert_false(eos_commit_due(&e, true));
	assert_false(eos_commit_due(&e, false));
	eos_pg_commit(&e);
	assert_true(eos_commit_due(&e, true));
	assert_false(eos_commit_due(&e, false));
	/* A skipped transaction does not count as being inside one. */
	cp = cp_at(0x5000, 0, 0);
	eos_resume(&e, &cp);
	fake_open(&e);
	e.opened_ms = clock_mono_ms() + 100000;
	assert_false(eos_pg_begin(&e, 0x4000));
	assert_true(eos_commit_due(&e, true));
	eos_free(&e);
}

static void test_idle_checkpoint_due(void **state)
{
	(void)state;
	relay_config cfg = make_cfg(1000000, 60000, 10000);
	eos e;
	checkpoint cp = cp_at(0x1000, 0, 0);

	eos_init(&e, &cfg, TXN_ID);
	eos_resume(&e, &cp);
	/* Never committed in this process: due at once. */
	assert_true(eos_idle_checkpoint_due(&e));
	e.last_commit_ms = clock_mono_ms();
	assert_false(eos_idle_checkpoint_due(&e));
	e.last_commit_ms = clock_mono_ms() - 10000;
	assert_true(eos_idle_checkpoint_due(&e));
	/* Not with a Kafka transaction open (the next commit stores the position anyway)... */
	e.open = true;
	assert_false(eos_idle_checkpoint_due(&e));
	e.open = false;
	/* ...nor inside a PostgreSQL transaction. */
	assert_true(eos_pg_begin(&e, 0x2000));
	assert_false(eos_idle_checkpoint_due(&e));
	eos_pg_commit(&e);
	assert_true(eos_idle_checkpoint_due(&e));
	eos_free(&e);
}

/* ---- A model run: random transactions, commits, idle checkpoints and crashes. ---- */

#define MODEL_TXNS 400
#define MODEL_MAX_ROWS 40

typedef struct {
	lsn_t nextlsn;
	int rows;
	int published[MODEL_MAX_ROWS]; /* times each row reached a committed Kafka transaction */
} model_txn;

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A record in the open Kafka transaction: which row of which PostgreSQL transaction. */
typedef struct {
	int txn;
	int row;
} model_rec;

/*
 * Reads the stream the server would send after a restart from `from` (at or before the
 * committed checkpoint: a slot may lag), committing at random, with idle keepalives between
 * transactions, until a random crash or the end. Returns false on a crash.
 */
static bool model_session(eos *e, model_txn *t, int n, lsn_t from, model_rec *open_recs)
{
	size_t n_open = 0;

	for (int i = 0; i < n; i++) {
		if (t[i].nextlsn <= from)
			continue; /* the server does not send it */
		/* A keepalive between transactions, with nothing in flight: an idle position. */
		if (rnd() % 4 == 0) {
			lsn_t prev = i ? t[i - 1].nextlsn : 0;
			lsn_t ka = prev + 1 + rnd() % (t[i].nextlsn - prev - 0x80);
			if (!e->open) {
				eos_idle_at(e, ka);
				if (rnd() % 2 == 0)
					fake_commit(e);
			}
		}
		if (!eos_pg_begin(e, t[i].nextlsn))
			continue;
		for (int r = 0; r < t[i].rows; r++) {
			if (rnd() % 50 == 0)
				return false; /* crash: the open Kafka transaction is lost */
			if (!eos_pg_row(e))
				continue;
			fake_produce(e);
			open_recs[n_open].txn = i;
			open_recs[n_open].row = r;
			n_open++;
			/* A bound splits the transaction now and then. */
			if (rnd() % 8 == 0) {
				for (size_t k = 0; k < n_open; k++)
					t[open_recs[k].txn].published[open_recs[k].row]++;
				n_open = 0;
				fake_commit(e);
			}
		}
		eos_pg_commit(e);
		if (e->open && rnd() % 3 == 0) {
			for (size_t k = 0; k < n_open; k++)
				t[open_recs[k].txn].published[open_recs[k].row]++;
			n_open = 0;
			fake_commit(e);
		}
		if (rnd() % 60 == 0)
			return false;
	}
	/* The end of the input: the last commit. */
	for (size_t k = 0; k < n_open; k++)
		t[open_recs[k].txn].published[open_recs[k].row]++;
	fake_commit(e);
	return true;
}

static void test_model_every_row_exactly_once_across_crashes(void **state)
{
	(void)state;
	relay_config cfg = quiet_cfg();
	model_txn *t = calloc(MODEL_TXNS, sizeof(model_txn));
	model_rec *open_recs = calloc(MODEL_TXNS * MODEL_MAX_ROWS, sizeof(model_rec));
	eos e;
	int crashes = 0, rounds;

	assert_non_null(t);
	assert_non_null(open_recs);
	for (int seed = 1; seed <= 20; seed++) {
		rng_state = 0x9E3779B97F4A7C15ull * (uint64_t)seed;
		memset(t, 0, MODEL_TXNS * sizeof(model_txn));
		for (int i = 0; i < MODEL_TXNS; i++) {
			t[i].nextlsn = (lsn_t)(i + 1) * 0x1000;
			/* Mostly small, some without outbox rows, some big ones that get split. */
			t[i].rows = rnd() % 10 == 0 ? MODEL_MAX_ROWS : (int)(rnd() % 4);
		}
		/* First start: no checkpoint, the slot was just created. */
		checkpoint cp = cp_at(0x800, 0, 0);
		eos_init(&e, &cfg, TXN_ID);
		for (rounds = 0; rounds < 10000; rounds++) {
			/* A restart loads the checkpoint from Kafka: through its JSON form. */
			char *text = checkpoint_encode(&cp, cfg.slot);
			assert_non_null(text);
			assert_int_equal(checkpoint_decode(text, strlen(text), &cp), 0);
			free(text);
			eos_resume(&e, &cp);
			/* The slot was confirmed at or before the checkpoint. */
			lsn_t from = cp.lsn > 0x800 && rnd() % 2 ? cp.lsn - rnd() % (cp.lsn - 0x800) : cp.lsn;
			if (model_session(&e, t, MODEL_TXNS, from, open_recs))
				break;
			crashes++;
			cp = e.committed;
		}
		assert_true(rounds < 10000);
		for (int i = 0; i < MODEL_TXNS; i++)
			for (int r = 0; r < t[i].rows; r++)
				if (t[i].published[r] != 1)
					fail_msg("seed %d: row %d of the transaction ending at %llx was published "
						 "%d times", seed, r, (unsigned long long)t[i].nextlsn,
						 t[i].published[r]);
		assert_cp(e.committed, t[MODEL_TXNS - 1].nextlsn, 0, 0);
		eos_free(&e);
	}
	assert_true(crashes > 20); /* the model did exercise restarts */
	free(open_recs);
	free(t);
}

/* The transactional.id: derived from the cluster and slot, or the file's, whole at any length. */
static void test_transactional_id_derived_or_set(void **state)
{
	relay_config cfg = quiet_cfg();
	strbuf id = {0};
	char longer[2000];
	kafka_property set = {"transactional.id", longer, 1};

	(void)state;
	eos_transactional_id(&cfg, "7300000000000000001", &id);
	assert_string_equal(strbuf_str(&id), TXN_ID);
	strbuf_free(&id);
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	cfg.kafka = &set;
	cfg.n_kafka = 1;
	eos_transactional_id(&cfg, "7300000000000000001", &id);
	assert_string_equal(strbuf_str(&id), longer);
	strbuf_free(&id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transactional_id_derived_or_set),
		cmocka_unit_test(test_init_copies_id_and_starts_empty),
		cmocka_unit_test(test_resume_sets_position_and_forgets_reading_state),
		cmocka_unit_test(test_begin_skips_transactions_ending_at_or_below_checkpoint),
		cmocka_unit_test(test_rows_of_a_new_transaction_are_all_published),
		cmocka_unit_test(test_split_transaction_skips_its_counted_rows),
		cmocka_unit_test(test_split_count_belongs_to_its_transaction_only),
		cmocka_unit_test(test_pg_commit_moves_done_lsn_forward_only),
		cmocka_unit_test(test_pending_covers_whole_transactions_read),
		cmocka_unit_test(test_pending_counts_skipped_rows_of_split_transaction),
		cmocka_unit_test(test_pending_carries_committed_partial_until_transaction_is_read),
		cmocka_unit_test(test_idle_position_moves_done_lsn_only_when_nothing_is_open),
		cmocka_unit_test(test_commit_due_never_without_open_transaction),
		cmocka_unit_test(test_commit_due_by_record_bound),
		cmocka_unit_test(test_commit_due_by_age),
		cmocka_unit_test(test_commit_due_on_idle_input_only_between_transactions),
		cmocka_unit_test(test_idle_checkpoint_due),
		cmocka_unit_test(test_model_every_row_exactly_once_across_crashes),
	};
	return cmocka_run_group_tests_name("eos", tests, NULL, NULL);
}
