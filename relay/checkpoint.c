/* checkpoint.c: checkpoint records (JSON via jansson) and reading the newest one back from Kafka. */
#include "checkpoint.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka_admin.h"
#include "log.h"
#include "strbuf.h"
#include "txctx.h"
#include "xalloc.h"

/* How long loading may wait for the broker's metadata and topic creation. */
#define CHECKPOINT_TIMEOUT_MS 30000

void checkpoint_recovery_free(checkpoint_recovery *rec)
{
	free(rec->xids);
	free(rec->ends);
	free(rec->backfill);
	free(rec->txn_counts);
	memset(rec, 0, sizeof(*rec));
}

void checkpoint_extra_free(checkpoint_extra *x)
{
	checkpoint_recovery_free(&x->rec);
	free(x->state);
	x->state = NULL;
}

/* True when ends ascend up to lsn, so that each fits as a distance (put_ends). */
static bool ends_storable(const lsn_t *ends, size_t n, lsn_t lsn)
{
	for (size_t i = 0; i < n; i++)
		if (ends[i] > (i + 1 < n ? ends[i + 1] : lsn) || lsn - ends[i] > (lsn_t)INT64_MAX)
			return false;
	return true;
}

/* Appends v in decimal (the arrays' numbers: thousands a checkpoint, no printf each). */
static void put_number(strbuf *b, uint64_t v)
{
	char digits[20];
	size_t n = 0;

	do {
		digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	strbuf_addn(b, digits + sizeof(digits) - n, n);
}

/*
 * The xids' commit ends, compactly: each as its distance to the next one's end, the last one's
 * to the checkpoint's lsn (a few digits each, where the positions would take ten or more).
 */
static void put_ends(strbuf *b, const checkpoint_recovery *rec, lsn_t lsn)
{
	if (!rec->ends || !ends_storable(rec->ends, rec->n_xids, lsn))
		return;
	strbuf_add(b, ",\"ends\":[");
	for (size_t i = 0; i < rec->n_xids; i++) {
		lsn_t next = i + 1 < rec->n_xids ? rec->ends[i + 1] : lsn;
		if (i)
			strbuf_addc(b, ',');
		put_number(b, next - rec->ends[i]);
	}
	strbuf_addc(b, ']');
}

/*
 * The xids and their ends, as JSON text: at 1,000 transactions/s a checkpoint lists a thousand
 * of each, and a jansson value per number cost about 230 us per checkpoint against 20.
 */
static void put_xids(strbuf *b, const checkpoint_recovery *rec, lsn_t lsn)
{
	strbuf_add(b, ",\"xids\":[");
	for (size_t i = 0; i < rec->n_xids; i++) {
		if (i)
			strbuf_addc(b, ',');
		put_number(b, rec->xids[i]);
	}
	strbuf_addc(b, ']');
	put_ends(b, rec, lsn);
}

/* Adds the recovery fields that come before the xids to a checkpoint object. */
static void put_recovery_head(json_t *o, const checkpoint_recovery *rec)
{
	if (rec->creating)
		json_object_set_new(o, "creating", json_true());
	if (rec->deletes_in_txn)
		json_object_set_new(o, "deletes_in_txn", json_true());
	if (rec->commit_us > 0) {
		json_object_set_new(o, "commit_time_us", json_integer(rec->commit_us));
		json_object_set_new(o, "window_ms", json_integer(rec->window_ms));
	}
}

/* The recovery fields that come after the xids, as an object of their own. */
static json_t *recovery_tail(const checkpoint_recovery *rec)
{
	json_t *o = json_object();
	char a[LSN_TEXT_MAX];

	if (rec->commit_us > 0 && rec->xids_after != LSN_INVALID)
		json_object_set_new(o, "xids_after", json_string(lsn_format(rec->xids_after, a)));
	if (rec->backfill) {
		json_t *b = json_loads(rec->backfill, 0, NULL);
		if (b)
			json_object_set_new(o, "backfill", b);
	}
	if (rec->txn_counts) {
		json_t *c = json_loads(rec->txn_counts, 0, NULL);
		if (c)
			json_object_set_new(o, "txn_counts", c);
	}
	return o;
}

/*
 * Dumps object o (compact) onto b: its members alone, without the braces around them; -1 when
 * jansson cannot dump it.
 */
static int put_members(strbuf *b, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);

	if (!text)
		return -1;
	strbuf_addn(b, text + 1, strlen(text) - 2);
	free(text);
	return 0;
}

/*
 * The checkpoint's fields in order, jansson's text but for the xids and their ends, written in
 * between (the same bytes a jansson array would give). NULL when jansson cannot dump a part.
 */
static char *encode_recovery(json_t *o, const checkpoint_recovery *rec, lsn_t lsn)
{
	strbuf b = {0};
	json_t *tail = recovery_tail(rec);
	int bad;

	put_recovery_head(o, rec);
	strbuf_addc(&b, '{');
	bad = put_members(&b, o); /* never empty: "version" is there */
	if (!bad && rec->commit_us > 0)
		put_xids(&b, rec, lsn);
	if (!bad && json_object_size(tail) > 0) {
		strbuf_addc(&b, ',');
		bad = put_members(&b, tail);
	}
	strbuf_addc(&b, '}');
	json_decref(tail);
	if (bad)
		strbuf_free(&b);
	return bad ? NULL : strbuf_detach(&b);
}

char *checkpoint_encode_with(const checkpoint *cp, const checkpoint_recovery *rec, const char *slot)
{
	char a[LSN_TEXT_MAX], b[LSN_TEXT_MAX];
	json_t *o = json_pack("{s:i, s:s, s:s}", "version", 1, "slot", slot, "lsn", lsn_format(cp->lsn, a));
	char *text;

	if (!o) /* the slot is not UTF-8: jansson refuses it */
		return NULL;
	if (cp->tli)
		json_object_set_new(o, "tli", json_integer(cp->tli));

	if (cp->partial_nextlsn != LSN_INVALID) {
		json_t *p = json_pack("{s:s, s:I}", "nextlsn", lsn_format(cp->partial_nextlsn, b), "rows",
				      (json_int_t)cp->partial_rows);
		if (cp->partial_xid)
			json_object_set_new(p, "xid", json_integer(cp->partial_xid));
		json_object_set_new(o, "partial", p);
	}
	text = rec ? encode_recovery(o, rec, cp->lsn) : json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}

char *checkpoint_encode(const checkpoint *cp, const char *slot)
{
	return checkpoint_encode_with(cp, NULL, slot);
}

/* Reads "ends" (distances back from lsn, see put_ends) into rec; -1 when malformed. */
static int get_ends(json_t *ends, checkpoint_recovery *rec, lsn_t lsn)
{
	lsn_t at = lsn;

	if (!json_is_array(ends) || json_array_size(ends) != rec->n_xids)
		return -1;
	rec->ends = xcalloc(rec->n_xids + 1, sizeof(lsn_t));
	for (size_t i = rec->n_xids; i-- > 0;) {
		json_t *d = json_array_get(ends, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    (lsn_t)json_integer_value(d) > at)
			return -1;
		at -= (lsn_t)json_integer_value(d);
		rec->ends[i] = at;
	}
	return 0;
}

/* Reads the fork fields (the xids' ends, how far back the list is complete); -1 when malformed. */
static int get_fork_fields(json_t *o, checkpoint_recovery *rec, lsn_t lsn)
{
	json_t *ends = json_object_get(o, "ends"), *after = json_object_get(o, "xids_after");

	if (ends && get_ends(ends, rec, lsn) < 0)
		return -1;
	if (after && (!json_is_string(after) ||
		      !lsn_parse(json_string_value(after), json_string_length(after), &rec->xids_after)))
		return -1;
	return 0;
}

/* Reads the recovery fields of a checkpoint object at lsn; -1 when present but malformed. */
static int get_recovery(json_t *o, checkpoint_recovery *rec, lsn_t lsn)
{
	json_t *t = json_object_get(o, "commit_time_us"), *xids = json_object_get(o, "xids");
	json_t *w = json_object_get(o, "window_ms"), *b = json_object_get(o, "backfill"), *c;
	size_t i;
	json_t *x;

	rec->creating = json_is_true(json_object_get(o, "creating"));
	rec->deletes_in_txn = json_is_true(json_object_get(o, "deletes_in_txn"));
	if (t) {
		if (!json_is_integer(t) || !json_is_integer(w) || !json_is_array(xids) ||
		    json_integer_value(t) <= 0 || json_integer_value(w) < 0)
			return -1;
		rec->commit_us = json_integer_value(t);
		rec->window_ms = json_integer_value(w);
		rec->xids = xcalloc(json_array_size(xids) + 1, sizeof(uint32_t));
		json_array_foreach(xids, i, x) {
			if (!json_is_integer(x) || json_integer_value(x) < 0 ||
			    json_integer_value(x) > UINT32_MAX)
				return -1;
			rec->xids[rec->n_xids++] = (uint32_t)json_integer_value(x);
		}
		if (get_fork_fields(o, rec, lsn) < 0)
			return -1;
	}
	if (b) {
		if (!json_is_object(b))
			return -1;
		rec->backfill = json_dumps(b, JSON_COMPACT);
	}
	if ((c = json_object_get(o, "txn_counts"))) {
		if (!json_is_object(c))
			return -1;
		rec->txn_counts = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!txctx_counts_valid(rec->txn_counts, NULL)) {
			free(rec->txn_counts); /* kept out: the restart decides what that costs */
			rec->txn_counts = NULL;
			rec->txn_counts_bad = true;
		}
	}
	return 0;
}

/* Reads the optional timeline ("tli"); -1 when present but not one. */
static int get_timeline(json_t *o, checkpoint *cp)
{
	json_t *t = json_object_get(o, "tli");

	if (!t)
		return 0;
	if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > UINT32_MAX)
		return -1;
	cp->tli = (uint32_t)json_integer_value(t);
	return 0;
}

int checkpoint_decode_with(const char *text, size_t len, checkpoint *cp, checkpoint_recovery *rec)
{
	json_error_t jerr;
	json_t *o = json_loadb(text, len, 0, &jerr), *partial;
	const char *lsn = NULL, *next = NULL;
	json_int_t rows = 0;
	int r = -1;

	memset(cp, 0, sizeof(*cp));
	if (rec)
		checkpoint_recovery_free(rec);
	if (!o || json_unpack(o, "{s:s}", "lsn", &lsn) < 0 || !lsn_parse(lsn, strlen(lsn), &cp->lsn) ||
	    get_timeline(o, cp) < 0)
		goto done;
	partial = json_object_get(o, "partial");
	if (partial) {
		json_int_t xid = 0;
		if (json_unpack(partial, "{s:s, s:I, s?I}", "nextlsn", &next, "rows", &rows, "xid",
				&xid) < 0 ||
		    !lsn_parse(next, strlen(next), &cp->partial_nextlsn) || rows < 0 || xid < 0 ||
		    xid > UINT32_MAX)
			goto done;
		cp->partial_rows = (uint64_t)rows;
		cp->partial_xid = (uint32_t)xid;
	}
	if (rec && get_recovery(o, rec, cp->lsn) < 0)
		goto done;
	r = 0;
done:
	json_decref(o);
	if (r < 0 && rec)
		checkpoint_recovery_free(rec);
	return r;
}

int checkpoint_decode(const char *text, size_t len, checkpoint *cp)
{
	return checkpoint_decode_with(text, len, cp, NULL);
}

/*
 * A consumer with the file's connection settings (not the producer's own), with the given
 * isolation.level. No group: it reads with offsets it keeps itself and commits none, so the
 * relay's principal needs no group ACL (a group would also look up its coordinator for nothing).
 */
static rd_kafka_t *new_consumer(const relay_config *cfg, const char *isolation, char *err,
				size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];

	for (int i = 0; i < cfg->n_kafka; i++)
		rd_kafka_conf_set(conf, cfg->kafka[i].name, cfg->kafka[i].value, errstr, sizeof(errstr));
	/* A fetch out of range (the log start moved) starts over from the earliest offset: jumping
	 * to the end would reach the watermark without the newest checkpoint. */
	const char *fixed[][2] = {
		{"isolation.level", isolation}, {"enable.partition.eof", "true"},
		{"auto.offset.reset", "earliest"}, {"log_level", "3"},
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], errstr, sizeof(errstr));
	/* Hand-off: rd_kafka_new owns conf on success. */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
	if (!rk)
		rd_kafka_conf_destroy(conf);
	return rk;
}

/* Reading one partition of the checkpoint topic. */
typedef struct {
	int64_t end;  /* its high watermark when reading began: the true end, open transactions too */
	int64_t low;  /* its log start offset then */
	int64_t lso;  /* its last stable offset then (asked after end): an open transaction's first */
	int64_t start; /* where this window's read begins */
	int64_t pos;  /* the next offset to read */
	bool held;    /* the read stopped before end: an open transaction holds it (logged once) */
	bool seen_key;   /* this window held a committed record of the key (a tombstone too) */
	bool seen_state; /* ... and of "<key>.snapshot" */
} part_read;

/* The first partition whose read has not reached its end, or -1 when every one has. */
static int first_unread(int parts, const part_read *pr)
{
	for (int p = 0; p < parts; p++)
		if (pr[p].end > 0 && pr[p].pos < pr[p].end)
			return p;
	return -1;
}

/* How long asking for the partitions' ends may take in all, and one try at most. */
#define CHECKPOINT_ENDS_MS 10000
#define CHECKPOINT_ENDS_TRY_MS 2000

/* The tick of opts, when there is one: 0 goes on, -1 stops. */
static int call_tick(const checkpoint_read_opts *opts)
{
	return opts->tick ? opts->tick(opts->ctx) : 0;
}

/* How long the next try may take: CHECKPOINT_ENDS_TRY_MS, or what is left of the budget. */
static int try_ms(int64_t budget)
{
	int64_t left = budget - clock_mono_ms();
	return left >= CHECKPOINT_ENDS_TRY_MS ? CHECKPOINT_ENDS_TRY_MS : left > 0 ? (int)left : 1;
}

/*
 * The end of one partition, asked in tries of at most CHECKPOINT_ENDS_TRY_MS until the budget
 * (a clock_mono_ms time) passes, with the tick between tries: a slow broker neither stalls the
 * watchdog nor eats the wait for an open transaction. -1 when stopped by the tick.
 */
static int partition_end(rd_kafka_t *rk, const char *topic, int p, int64_t budget,
			 const checkpoint_read_opts *opts, int64_t *low, int64_t *end,
			 rd_kafka_resp_err_t *e)
{
	for (;;) {
		*e = rd_kafka_query_watermark_offsets(rk, topic, p, low, end, try_ms(budget));
		if (*e != RD_KAFKA_RESP_ERR__TIMED_OUT || clock_mono_ms() >= budget)
			break;
		if (call_tick(opts) < 0)
			return -1;
	}
	/* An end offset not known (negative) is no proof of an empty partition: ask again. */
	if (!*e && *end < 0)
		*e = RD_KAFKA_RESP_ERR__NO_OFFSET;
	return 0;
}

/*
 * The true end (high watermark) of each partition, within CHECKPOINT_ENDS_MS in all. librdkafka
 * (since 1.7.1) answers a read_committed handle with the last stable offset, which stops at the
 * first record of the oldest open transaction: on a shared topic another relay's, with this
 * relay's newest checkpoints possibly after it. So the ends come from a read_uncommitted handle
 * of their own. 0; -1 on an error (err says it); -2 when the tick stopped it.
 */
static int partition_ends(const relay_config *cfg, rd_kafka_t *committed, const char *topic,
			  int parts, part_read *pr, const checkpoint_read_opts *opts, char *err,
			  size_t errlen)
{
	/* Hand-off: this handle is ours for the queries only, destroyed below. */
	rd_kafka_t *rk = new_consumer(cfg, "read_uncommitted", err, errlen);
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
	int64_t budget = clock_mono_ms() + CHECKPOINT_ENDS_MS, low;
	int stopped = 0;

	if (!rk)
		return -1;
	for (int p = 0; p < parts && !e && !stopped; p++)
		stopped = partition_end(rk, topic, p, budget, opts, &pr[p].low, &pr[p].end, &e);
	rd_kafka_destroy(rk);
	/* The last stable offsets, after the ends: a transaction open when the window is read and
	 * begun before its end was open here too, so the window starts no later than its first
	 * record (a read_committed read begun past it would wait without knowing why). */
	for (int p = 0; p < parts && !e && !stopped; p++)
		stopped = partition_end(committed, topic, p, budget, opts, &low, &pr[p].lso, &e);
	if (stopped)
		return -2;
	if (e)
		snprintf(err, errlen, "checkpoint topic %s: %s (asking for the partitions' ends)", topic,
			 rd_kafka_err2str(e));
	return e ? -1 : 0;
}

/* Keeps the newest value of the "<key>.snapshot" record (a tombstone clears it). */
static void keep_state(const rd_kafka_message_t *m, const char *key, size_t klen, part_read *r,
		       char **state)
{
	if (m->err || m->key_len != klen + 9 || memcmp(m->key, key, klen) != 0 ||
	    memcmp((const char *)m->key + klen, ".snapshot", 9) != 0)
		return;
	r->seen_state = true;
	free(*state);
	*state = m->payload ? xstrndup(m->payload, m->len) : NULL;
}

/*
 * The read of a partition came to its last stable offset before its end: a read_committed
 * consumer cannot pass an open transaction, it waits for its commit or abort. Said once per
 * read, so that an operator knows what the start waits for; info, since on a busy shared topic
 * a wait of a few milliseconds for another relay's commit is routine (the timeout warns).
 */
static void note_held(const rd_kafka_message_t *m, part_read *r, const checkpoint_read_opts *opts)
{
	if (r->held || m->offset >= r->end)
		return;
	r->held = true;
	if (opts->partial_ok) /* the caller reports it (`status`), the log stays quiet */
		return;
	log_info("checkpoint topic %s: an open Kafka transaction at offset %lld of partition %d "
		 "holds the read of this relay's checkpoint back (another relay's, or a dead one's: "
		 "the broker aborts it after its transaction.timeout.ms, 60 s by default); waiting up "
		 "to %d s for it to end", rd_kafka_topic_name(m->rkt), (long long)m->offset,
		 (int)m->partition, opts->wait_ms / 1000);
}

/*
 * Applies one message or event of the checkpoint topic to what was read; -1 when malformed,
 * -2 when the relay may not read the topic (retrying would not help until the ACL is there).
 */
static int take_message(const rd_kafka_message_t *m, const char *key, size_t klen, part_read *pr,
			const checkpoint_read_opts *opts, checkpoint *cp, checkpoint_result *r,
			checkpoint_extra *x)
{
	if (x)
		keep_state(m, key, klen, &pr[m->partition], &x->state);
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		/* At the last stable offset, past the commit and abort markers before it (control
		 * records take offsets too): the end, once no transaction is open before it. */
		pr[m->partition].pos = m->offset;
		note_held(m, &pr[m->partition], opts);
		return 0;
	}
	if (m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
		return -2;
	if (m->err) {
		log_warn("reading checkpoint topic %s: %s", rd_kafka_topic_name(m->rkt),
			 rd_kafka_message_errstr(m));
		return 0;
	}
	pr[m->partition].pos = m->offset + 1;
	if (m->key_len != klen || memcmp(m->key, key, klen) != 0)
		return 0;
	pr[m->partition].seen_key = true;
	if (!m->payload) {
		*r = CHECKPOINT_NONE; /* a tombstone: the operator reset this relay's position */
		if (x)
			checkpoint_recovery_free(&x->rec);
		return 0;
	}
	if (checkpoint_decode_with(m->payload, m->len, cp, x ? &x->rec : NULL) < 0)
		return -1;
	*r = CHECKPOINT_FOUND;
	return 0;
}

/* Says why the end of partition p was not reached in time: an open transaction, or a slow broker. */
static void explain_unread(const char *topic, int p, const part_read *r, int wait_ms, char *err,
			   size_t errlen)
{
	if (r->held)
		snprintf(err, errlen, "reading checkpoint topic %s: an open Kafka transaction at offset "
			 "%lld of partition %d (another relay's, or a dead one's) did not end within %d s; "
			 "this relay's newest checkpoint may lie after it, so the relay does not start from "
			 "an older one. The broker aborts a dead producer's transaction after its "
			 "transaction.timeout.ms (60 s by default) and its next abort check (up to 10 s)",
			 topic, (long long)r->pos, p, wait_ms / 1000);
	else
		snprintf(err, errlen, "reading checkpoint topic %s: the end of partition %d (offset "
			 "%lld) was not reached within %d s", topic, p, (long long)r->end, wait_ms / 1000);
}

/* True when every partition not read to its end stopped at an open transaction. */
static bool all_unread_held(int parts, const part_read *pr)
{
	for (int p = 0; p < parts; p++)
		if (pr[p].end > 0 && pr[p].pos < pr[p].end && !pr[p].held)
			return false;
	return true;
}

/*
 * The wait is over with partition p unread: an error, or (partial_ok, every unread partition
 * held by an open transaction) what was read, x->incomplete saying where the read stopped.
 */
static checkpoint_result give_up(const char *topic, int parts, const part_read *pr,
				 const checkpoint_read_opts *opts, checkpoint_result r,
				 checkpoint_extra *x, char *err, size_t errlen)
{
	int p = first_unread(parts, pr);

	if (opts->partial_ok && x && all_unread_held(parts, pr)) {
		snprintf(x->incomplete, sizeof(x->incomplete),
			 "an open transaction at offset %lld of partition %d", (long long)pr[p].pos, p);
		return r;
	}
	explain_unread(topic, p, &pr[p], opts->wait_ms, err, errlen);
	return CHECKPOINT_ERROR;
}

/* Takes one message or event, if one comes within 200 ms; -1 (err set) when reading must end. */
static int take_next(rd_kafka_queue_t *q, const char *topic, const char *key, part_read *pr,
		     const checkpoint_read_opts *opts, checkpoint *cp, checkpoint_result *r,
		     checkpoint_extra *x, char *err, size_t errlen)
{
	rd_kafka_message_t *m = rd_kafka_consume_queue(q, 200);
	int taken;

	if (!m)
		return 0;
	taken = take_message(m, key, strlen(key), pr, opts, cp, r, x);
	if (taken == -1)
		snprintf(err, errlen, "checkpoint topic %s holds a malformed record for %s "
			 "at offset %lld", topic, key, (long long)m->offset);
	else if (taken == -2)
		snprintf(err, errlen, "reading checkpoint topic %s: %s (Kafka authorization: "
			 "the relay's principal needs an ACL allowing READ on the topic)", topic,
			 rd_kafka_err2str(m->err));
	rd_kafka_message_destroy(m);
	return taken < 0 ? -1 : 0;
}

/* How far the read has come over all partitions: it moved when this grows. */
static int64_t read_progress(int parts, const part_read *pr)
{
	int64_t sum = 0;

	for (int p = 0; p < parts; p++)
		sum += pr[p].pos;
	return sum;
}

/* How often the tick is called while records keep coming (and whenever none came in a slice). */
#define CHECKPOINT_TICK_MS 100

/* Starts reading every partition at its window's start into q; -1 (err set) on an error. */
static int start_window(rd_kafka_topic_t *rkt, rd_kafka_queue_t *q, int parts, part_read *pr,
			int *started, char *err, size_t errlen)
{
	for (; *started < parts; (*started)++) {
		part_read *w = &pr[*started];
		w->pos = w->start;
		w->held = w->seen_key = w->seen_state = false;
		if (rd_kafka_consume_start_queue(rkt, *started, w->start, q) < 0) {
			snprintf(err, errlen, "checkpoint topic %s: %s", rd_kafka_topic_name(rkt),
				 rd_kafka_err2str(rd_kafka_last_error()));
			return -1;
		}
	}
	return 0;
}

/*
 * Reads every partition from its window's start up to the end it had when reading began (its
 * high watermark, asked of a read_uncommitted handle). The read_committed consumer stops before
 * an open transaction until it ends, so this waits for it, up to opts->wait_ms: reaching the end
 * is the only proof of having seen this relay's newest checkpoint, and an error (retried) is
 * better than an older one. The tick is called at every slice.
 */
static checkpoint_result read_window(rd_kafka_t *rk, const char *topic, int parts, part_read *pr,
				     const char *key, const checkpoint_read_opts *opts,
				     checkpoint *cp, checkpoint_extra *x, char *err, size_t errlen)
{
	/* Hand-off: the topic handle and queue are ours, destroyed below after consume_stop. */
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	checkpoint_result r = CHECKPOINT_NONE;
	int64_t deadline, last_move, moved;
	int started = 0;

	if (!rkt) {
		snprintf(err, errlen, "reading checkpoint topic %s: out of memory", topic);
		rd_kafka_queue_destroy(q);
		return CHECKPOINT_ERROR;
	}
	/* The read may take up to CHECKPOINT_WAIT_MS (or wait_ms when longer) while it moves;
	 * opts->wait_ms is how long it waits without moving (behind an open transaction): a short
	 * wait (`status`) still reads a long window to its end. */
	last_move = clock_mono_ms();
	deadline = last_move + (opts->wait_ms > CHECKPOINT_WAIT_MS ? opts->wait_ms : CHECKPOINT_WAIT_MS);
	if (start_window(rkt, q, parts, pr, &started, err, errlen) < 0)
		r = CHECKPOINT_ERROR;
	moved = read_progress(parts, pr);
	int64_t ticked = last_move;
	while (r != CHECKPOINT_ERROR && first_unread(parts, pr) >= 0) {
		int64_t now = clock_mono_ms(), at = read_progress(parts, pr);
		/* Once a slice, not once a record: the relay's tick waits up to 1 ms (loop_wait), which
		 * made a read of 30,000 records take 30 s and more. */
		if (now - ticked >= CHECKPOINT_TICK_MS) {
			ticked = now;
			if (call_tick(opts) < 0) {
				r = CHECKPOINT_STOPPED;
				break;
			}
		}
		if (at != moved)
			moved = at, last_move = now;
		if (now > deadline || now - last_move > opts->wait_ms) {
			r = give_up(topic, parts, pr, opts, r, x, err, errlen);
			break;
		}
		if (take_next(q, topic, key, pr, opts, cp, &r, x, err, errlen) < 0)
			r = CHECKPOINT_ERROR;
	}
	while (started-- > 0)
		rd_kafka_consume_stop(rkt, started);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_queue_destroy(q);
	return r;
}

int64_t checkpoint_window_start(int64_t low, int64_t end, int64_t lso, int64_t span)
{
	int64_t start = (lso < end ? lso : end) - span;

	return start > low ? start : low;
}

/* Sets each partition's window: the span offsets before its end or its last stable offset. */
static void set_windows(int parts, part_read *pr, int64_t span)
{
	for (int p = 0; p < parts; p++)
		pr[p].start = checkpoint_window_start(pr[p].low, pr[p].end, pr[p].lso, span);
}

bool checkpoint_window_enough(bool key_seen, bool key_reset, bool state_seen, bool want_state,
			      bool whole)
{
	return whole || (key_seen && (key_reset || state_seen || !want_state));
}

/* True when the window read has what is asked (checkpoint_window_enough); r is what it found. */
static bool window_enough(int parts, const part_read *pr, checkpoint_result r, bool want_state)
{
	bool key = false, state = false, whole = true;

	for (int p = 0; p < parts; p++) {
		key = key || pr[p].seen_key;
		state = state || pr[p].seen_state;
		whole = whole && (pr[p].start <= pr[p].low || pr[p].end <= 0);
	}
	return checkpoint_window_enough(key, r == CHECKPOINT_NONE, state, want_state, whole);
}

/*
 * The newest committed checkpoint of key, read backwards in growing windows: the last
 * CHECKPOINT_WINDOW offsets of each partition to its end, then CHECKPOINT_WINDOW_GROWTH times
 * as many, until a window holds the key's record (or tombstone), and the "<key>.snapshot"
 * record when x asks for it (opts->no_state not set), or reaches the log start. A window is
 * read to the end like the whole topic was, so start-up time and memory (librdkafka prefetches
 * up to 64 MB ahead) follow the window, not the topic's length.
 */
static checkpoint_result read_newest(const relay_config *cfg, rd_kafka_t *rk, const char *topic,
				     int parts, const char *key, const checkpoint_read_opts *opts,
				     checkpoint *cp, checkpoint_extra *x, char *err, size_t errlen)
{
	part_read *pr = calloc((size_t)parts, sizeof(part_read));
	checkpoint_result r;
	int ends;

	if (!pr) {
		snprintf(err, errlen, "reading checkpoint topic %s: out of memory", topic);
		return CHECKPOINT_ERROR;
	}
	if ((ends = partition_ends(cfg, rk, topic, parts, pr, opts, err, errlen)) < 0) {
		free(pr);
		return ends == -2 ? CHECKPOINT_STOPPED : CHECKPOINT_ERROR;
	}
	for (int64_t span = CHECKPOINT_WINDOW;; span *= CHECKPOINT_WINDOW_GROWTH) {
		set_windows(parts, pr, span);
		memset(cp, 0, sizeof(*cp));
		if (x) {
			checkpoint_extra_free(x);
			x->incomplete[0] = '\0';
		}
		r = read_window(rk, topic, parts, pr, key, opts, cp, x, err, errlen);
		/* A read that stopped at an open transaction (partial_ok) looks further back too: the
		 * newest checkpoint before it may lie before the window. */
		if (r == CHECKPOINT_ERROR || r == CHECKPOINT_STOPPED ||
		    window_enough(parts, pr, r, x && !opts->no_state))
			break;
		log_info("checkpoint topic %s: the newest records of %s are not among the last %lld "
			 "offsets; reading %d times as far back", topic, key, (long long)span,
			 CHECKPOINT_WINDOW_GROWTH);
	}
	free(pr);
	return r;
}
checkpoint_result checkpoint_load(const relay_config *cfg, const char *topic, const char *key,
				  bool create, checkpoint *cp, char *err, size_t errlen)
{
	return checkpoint_load_state(cfg, topic, key, create, NULL, cp, NULL, err, errlen);
}

/* The topic's partition count, after creating it when missing and create is true; 0: missing. */
static int topic_parts(rd_kafka_t *rk, const char *topic, bool create, char *err, size_t errlen)
{
	int parts = kafka_admin_partitions(rk, topic, CHECKPOINT_TIMEOUT_MS, err, errlen);
	if (parts != 0 || !create)
		return parts;
	/* Compacted, one partition: the newest checkpoint of each relay is kept. */
	if (kafka_admin_create(rk, topic, 1, -1, "compact", CHECKPOINT_TIMEOUT_MS, err, errlen) < 0)
		return -1;
	parts = kafka_admin_partitions(rk, topic, CHECKPOINT_TIMEOUT_MS, err, errlen);
	if (parts == 0)
		snprintf(err, errlen, "checkpoint topic %s was created but is not visible yet", topic);
	return parts;
}

int checkpoint_create_topic(const relay_config *cfg, const char *topic, char *err, size_t errlen)
{
	rd_kafka_t *rk = new_consumer(cfg, "read_committed", err, errlen);
	int parts = rk ? topic_parts(rk, topic, true, err, errlen) : -1;

	if (rk)
		rd_kafka_destroy(rk);
	return parts > 0 ? 0 : -1;
}

checkpoint_result checkpoint_load_state(const relay_config *cfg, const char *topic, const char *key,
					bool create, const checkpoint_read_opts *opts, checkpoint *cp,
					checkpoint_extra *x, char *err, size_t errlen)
{
	static const checkpoint_read_opts start = {.wait_ms = CHECKPOINT_WAIT_MS};
	rd_kafka_t *rk = new_consumer(cfg, "read_committed", err, errlen);
	checkpoint_result r = CHECKPOINT_ERROR;
	int parts;

	memset(cp, 0, sizeof(*cp));
	if (x)
		memset(x, 0, sizeof(*x));
	if (!rk)
		return CHECKPOINT_ERROR;
	parts = topic_parts(rk, topic, create, err, errlen);
	if (parts == 0 && !create) {
		snprintf(err, errlen, "checkpoint topic %s does not exist, but the slot does: it "
			 "was deleted or renamed? Refusing to start from the slot alone. If an HA manager "
			 "made the slot before the relay's first start, set postgresql.adopt_slot (see "
			 "docs/exactly-once.md)", topic);
		r = CHECKPOINT_NO_TOPIC;
	} else if (parts > 0) {
		r = read_newest(cfg, rk, topic, parts, key, opts ? opts : &start, cp, x, err, errlen);
	}
	if (x && r != CHECKPOINT_FOUND)
		checkpoint_extra_free(x);
	rd_kafka_destroy(rk);
	return r;
}
