/* txctx.c: the transaction context of published records: xid, commit LSN, index, counts per topic. */
#include "txctx.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Forgets the counts per topic (keeps the array for the next transaction). */
static void clear_topics(txctx *t)
{
	for (size_t i = 0; i < t->n_topics; i++)
		free(t->topics[i].topic);
	t->n_topics = 0;
	t->last = 0;
}

/* The relay's end: the counts per topic and their array. */
void txctx_free(txctx *t)
{
	clear_topics(t);
	free(t->topics);
	memset(t, 0, sizeof(*t));
}

/* A transaction's B record: its identity; nothing of it is counted yet. */
void txctx_begin(txctx *t, uint64_t xid, lsn_t commit_lsn, int64_t commit_ms)
{
	clear_topics(t);
	t->xid = xid;
	t->commit_lsn = commit_lsn;
	t->commit_ms = commit_ms;
	t->records = 0;
	t->begun = false;
	t->begin_sent = false;
	t->uncounted = false;
}

/* Decimal text without printf's cost (this runs once per record). */
static void put_u64(char *buf, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
}

/* The next record's headers: the index is the count so far, so it is known before producing. */
void txctx_peek(const txctx *t, txctx_headers *out)
{
	put_u64(out->xid, t->xid);
	lsn_format(t->commit_lsn, out->lsn);
	put_u64(out->index, t->records);
}

/* The count of topic, added when absent; the last one used is tried first. */
static txctx_topic *topic_slot(txctx *t, const char *topic)
{
	if (t->last < t->n_topics && strcmp(t->topics[t->last].topic, topic) == 0)
		return &t->topics[t->last];
	for (size_t i = 0; i < t->n_topics; i++)
		if (strcmp(t->topics[i].topic, topic) == 0)
			return &t->topics[t->last = i];
	if (t->n_topics == t->cap_topics) {
		t->cap_topics = t->cap_topics ? t->cap_topics * 2 : 4;
		t->topics = xrealloc(t->topics, t->cap_topics * sizeof(*t->topics));
	}
	t->last = t->n_topics++;
	t->topics[t->last] = (txctx_topic){.topic = xstrdup(topic), .n = 0};
	return &t->topics[t->last];
}

/* Kafka took one more record of the transaction. */
void txctx_count(txctx *t, const char *topic)
{
	topic_slot(t, topic)->n++;
	t->records++;
}

/* xid and commit LSN together: the xid alone wraps around. */
const char *txctx_id(const txctx *t, char *buf, size_t len)
{
	char a[LSN_TEXT_MAX];
	snprintf(buf, len, "%" PRIu64 ":%s", t->xid, lsn_format(t->commit_lsn, a));
	return buf;
}

/* The members BEGIN and END share. */
static json_t *meta_object(const txctx *t, const char *status)
{
	char id[64], a[LSN_TEXT_MAX];
	json_t *o = json_object();

	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "id", json_string(txctx_id(t, id, sizeof(id))));
	json_object_set_new(o, "xid", json_integer((json_int_t)t->xid));
	json_object_set_new(o, "commit_lsn", json_string(lsn_format(t->commit_lsn, a)));
	json_object_set_new(o, "ts_ms", t->commit_ms > 0 ? json_integer(t->commit_ms) : json_null());
	return o;
}

/* Appends o as compact JSON to out and frees it. */
static void put_json(json_t *o, strbuf *out)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	strbuf_add(out, text);
	free(text);
	json_decref(o);
}

/* BEGIN: Debezium's members, event_count and data_collections null as there. */
void txctx_begin_json(const txctx *t, strbuf *out)
{
	json_t *o = meta_object(t, "BEGIN");
	json_object_set_new(o, "event_count", json_null());
	json_object_set_new(o, "data_collections", json_null());
	put_json(o, out);
}

/* END: the total and one {data_collection, event_count} per topic, in first-use order. */
void txctx_end_json(const txctx *t, strbuf *out)
{
	json_t *o = meta_object(t, "END"), *list = json_array();

	for (size_t i = 0; i < t->n_topics; i++)
		json_array_append_new(list, json_pack("{s:s, s:I}", "data_collection",
						      t->topics[i].topic, "event_count",
						      (json_int_t)t->topics[i].n));
	json_object_set_new(o, "event_count", json_integer((json_int_t)t->records));
	json_object_set_new(o, "data_collections", list);
	put_json(o, out);
}

/* For a split transaction's checkpoint: enough to count on after a restart, and to check. */
char *txctx_counts_json(const txctx *t, uint64_t rows)
{
	json_t *o, *topics;
	char *text;

	if (t->uncounted)
		return NULL; /* a count from here would pass for the whole transaction's */
	o = json_object();
	topics = json_object();
	for (size_t i = 0; i < t->n_topics; i++)
		json_object_set_new(topics, t->topics[i].topic, json_integer((json_int_t)t->topics[i].n));
	json_object_set_new(o, "records", json_integer((json_int_t)t->records));
	json_object_set_new(o, "rows", json_integer((json_int_t)rows));
	json_object_set_new(o, "begun", json_boolean(t->begin_sent));
	json_object_set_new(o, "topics", topics);
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

/* A count: a JSON integer of 0 or more. */
static bool is_count(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* The counts' shape and sums: each topic a count, their sum (no overflow) the records. */
static bool counts_ok(const json_t *o)
{
	const json_t *topics = json_object_get(o, "topics"), *v;
	const char *name;
	uint64_t sum = 0;

	if (!is_count(json_object_get(o, "records")) || !is_count(json_object_get(o, "rows")) ||
	    !json_is_boolean(json_object_get(o, "begun")) || !json_is_object(topics))
		return false;
	json_object_foreach((json_t *)topics, name, v) {
		if (!is_count(v) || (uint64_t)json_integer_value(v) > UINT64_MAX - sum)
			return false;
		sum += (uint64_t)json_integer_value(v);
	}
	return sum == (uint64_t)json_integer_value(json_object_get(o, "records"));
}

/* Checked where a checkpoint is decoded, so that a restart finds only usable counts. */
bool txctx_counts_valid(const char *text, uint64_t *rows)
{
	json_t *o = text ? json_loads(text, 0, NULL) : NULL;
	bool ok = json_is_object(o) && counts_ok(o);

	if (ok && rows)
		*rows = (uint64_t)json_integer_value(json_object_get(o, "rows"));
	json_decref(o);
	return ok;
}

/* A split transaction read again: counts on from its checkpoint; nothing half-restored. */
int txctx_restore(txctx *t, const char *text, uint64_t rows)
{
	json_t *o, *v;
	const char *name;

	clear_topics(t);
	t->records = 0;
	t->begun = false;
	t->begin_sent = false;
	t->uncounted = true;
	if (!text)
		return 0;
	o = json_loads(text, 0, NULL);
	if (!json_is_object(o) || !counts_ok(o) ||
	    (uint64_t)json_integer_value(json_object_get(o, "rows")) != rows) {
		json_decref(o);
		return -1;
	}
	t->uncounted = false;
	t->records = (uint64_t)json_integer_value(json_object_get(o, "records"));
	json_object_foreach(json_object_get(o, "topics"), name, v)
		topic_slot(t, name)->n = (uint64_t)json_integer_value(v);
	t->begin_sent = json_is_true(json_object_get(o, "begun"));
	t->begun = t->begin_sent;
	json_decref(o);
	return 0;
}
