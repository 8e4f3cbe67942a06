/* publish_change.c: a captured table's records: a change (envelope, tombstone, key change), a snapshot row. */
#include "publish_change.h"

#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "encode.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "publish.h"
#include "refusal.h"
#include "route.h"
#include "snapshot.h"
#include "txn.h"
#include "w2j.h"
#include "xalloc.h"

/* True for the headers an encoder adds to describe the value's schema (a null value has none). */
static bool schema_header(const route_header *h)
{
	return (h->name_len == 9 && memcmp(h->name, "schema_id", 9) == 0) ||
	       (h->name_len == 14 && memcmp(h->name, "schema_subject", 14) == 0);
}

/*
 * A delete's record, then (tombstone) the same key with a null value for compacted topics,
 * without the schema headers of the delete's value (docs/schemas.md: a tombstone has none).
 */
static outcome produce_then_tombstone(relay *r, route_msg *m, bool tombstone,
					 rd_kafka_resp_err_t *refused)
{
	outcome e = publish_produce(r, m, false, refused);
	if (e != OUTCOME_OK || *refused || !tombstone)
		return e;
	route_msg t = *m;
	route_header *kept = xcalloc(m->n_headers + 1, sizeof(*kept));
	t.value = NULL;
	t.value_len = 0;
	t.n_headers = 0;
	for (size_t i = 0; i < m->n_headers; i++)
		if (!schema_header(&m->headers[i]))
			kept[t.n_headers++] = m->headers[i];
	t.headers = kept;
	e = publish_produce(r, &t, false, refused);
	free(kept);
	return e;
}

/*
 * The headers of m copied into one allocation (*blob, freed by the caller), m pointing at them:
 * the encoder's header array and texts are rewritten by the next record's encoding.
 */
static void own_headers(route_msg *m, char **blob)
{
	size_t size = sizeof(route_header) * (m->n_headers + 1);
	for (size_t i = 0; i < m->n_headers; i++)
		size += m->headers[i].name_len + m->headers[i].value_len;
	*blob = xmalloc(size);
	route_header *h = (route_header *)*blob;
	char *text = *blob + sizeof(route_header) * (m->n_headers + 1);
	for (size_t i = 0; i < m->n_headers; i++) {
		h[i] = m->headers[i];
		memcpy(text, h[i].name, h[i].name_len);
		h[i].name = text;
		text += h[i].name_len;
		if (h[i].value) {
			memcpy(text, h[i].value, h[i].value_len);
			h[i].value = text;
			text += h[i].value_len;
		}
	}
	m->headers = h;
}

/*
 * True when the table's values are binary once encoded (Avro): their text is checked for UTF-8
 * as built, before the pipeline, since the encoded bytes are not text.
 */
static bool binary_value(const capture_table *t)
{
	return strcmp(t->cfg->format, "json") != 0;
}

/* True when the key as built is not UTF-8 (an Avro key: its text, m->text_key, not its bytes). */
static bool key_not_utf8(const route_msg *m)
{
	const char *k = m->text_key ? m->text_key : m->key;
	size_t n = m->text_key ? m->text_key_len : m->key_len;

	return k && router_utf8_valid_prefix(k, n) != n;
}

/* True when the value as built (the JSON envelope) is not UTF-8. */
static bool built_not_utf8(const route_msg *m)
{
	return m->value && router_utf8_valid_prefix(m->value, m->value_len) != m->value_len;
}

/*
 * Why a key change cannot go out whole, or NULL. Its delete of the old key and its update are
 * checked before either is produced (text that is not UTF-8; a size librdkafka refuses), so the
 * change is published or dead-lettered as one unit: never the old key deleted without the update.
 */
static const char *key_change_unfit(relay *r, const capture_table *t, const route_msg *del,
				    const route_msg *upd)
{
	if ((!binary_value(t) && router_utf8_valid_prefix(del->value, del->value_len) != del->value_len) ||
	    key_not_utf8(del))
		return "invalid UTF-8 in the row (its text is not UTF-8)";
	size_t room = publish_context_room(r);

	if (!kafka_record_fits(r->kp, del, room))
		return "Broker: Message size too large (the delete of the old key of this key change; "
		       "nothing of the change was published)";
	if (!kafka_record_fits(r->kp, upd, room))
		return "Broker: Message size too large (the update of this key change; nothing of "
		       "the change was published)";
	return NULL;
}

/* A key as capture built it, before the transform stage protected it (snapshots compare these). */
typedef struct {
	const char *ptr;
	size_t len;
} clear_key;

/*
 * The records of a key change once checked: the delete (and tombstone) of the old key, then the
 * update under the new key. A refusal before any of them went out dead-letters the change
 * whole; one after that cannot be taken back, so it stops the relay before the open Kafka
 * transaction commits. keys: the old and new keys as built (a pending snapshot learns of them).
 */
static outcome produce_key_change(relay *r, const capture_table *t, const w2j_record *rec,
				     route_msg *del, route_msg *upd, const clear_key keys[2],
				     const char *data, size_t len)
{
	uint64_t out = r->records_out;
	rd_kafka_resp_err_t refused;
	outcome e;

	if (r->snap)
		snapshot_saw_change(r->snap, t, rec->xid, keys[0].ptr, keys[0].len);
	e = produce_then_tombstone(r, del, t->cfg->tombstones, &refused);
	if (refused && r->records_out == out)
		return publish_refused(r, REFUSED_KEY_CHANGE_WHOLE, t->name, rec, data, len, refused, upd);
	if (e == OUTCOME_OK && !refused) {
		if (r->snap)
			snapshot_saw_change(r->snap, t, rec->xid, keys[1].ptr, keys[1].len);
		e = publish_produce(r, upd, false, &refused);
	}
	if (refused)
		return publish_refused(r, REFUSED_KEY_CHANGE_PART, t->name, rec, data, len, refused, upd);
	return e;
}

/*
 * An update that changed the key (del: its delete of the old key, as built): checked whole,
 * then published, or dead-lettered whole. The delete is copied, since building the update
 * reuses capture's buffers.
 */
static outcome publish_key_change(relay *r, const capture_table *t, const w2j_record *rec,
				     const route_msg *built, const char *data, size_t len)
{
	route_msg del = *built, upd;
	clear_key keys[2] = {{built->key, built->key_len}, {NULL, 0}};
	char *copy, *headers;
	const char *why = NULL;
	int enc;
	outcome e;

	if (binary_value(t) && built_not_utf8(&del))
		return publish_reject_row(r, t->name, rec, data, len,
					  "invalid UTF-8 in the row (its text is not UTF-8)", &del);
	if ((enc = pipeline_finish_capture(r->pipe, RECORD_CHANGE, t, &del, &why)) == ENCODE_REJECT)
		return publish_reject_row(r, t->name, rec, data, len, why, &del);
	if (enc != ENCODE_OK)
		return publish_held(r, t->name, rec, enc, why);
	/* Key, value and headers (Avro: schema_id, schema_subject, which may differ from the
	 * update's: a variant schema) are copied, the key as built and an Avro key's text: the
	 * update's build and encoding rewrite capture's and the encoder's buffers. */
	own_headers(&del, &headers);
	copy = xmalloc(del.key_len + del.value_len + keys[0].len + del.text_key_len + 1);
	memcpy(copy, del.key, del.key_len);
	memcpy(copy + del.key_len, del.value, del.value_len);
	memcpy(copy + del.key_len + del.value_len, keys[0].ptr, keys[0].len);
	if (del.text_key)
		memcpy(copy + del.key_len + del.value_len + keys[0].len, del.text_key, del.text_key_len);
	del.key = copy;
	del.value = copy + del.key_len;
	keys[0].ptr = copy + del.key_len + del.value_len;
	if (del.text_key)
		del.text_key = keys[0].ptr + keys[0].len;
	if (capture_build(r->cap, t, rec, &upd, &why) == 0) {
		keys[1] = (clear_key){upd.key, upd.key_len}; /* capture's until its next call */
		if ((enc = pipeline_finish_capture(r->pipe, RECORD_CHANGE, t, &upd, &why)) == ENCODE_OK)
			why = key_change_unfit(r, t, &del, &upd);
	}
	if (enc != ENCODE_OK && enc != ENCODE_REJECT)
		e = publish_held(r, t->name, rec, enc, why);
	else if (why)
		e = publish_reject_row(r, t->name, rec, data, len, why, &upd);
	else
		e = produce_key_change(r, t, rec, &del, &upd, keys, data, len);
	free(copy);
	free(headers);
	return e;
}

/*
 * A change of a captured table: its envelope record, then (for a delete, when asked) a
 * tombstone, both in one Kafka transaction; a pending snapshot chunk learns of the key.
 */
static outcome publish_change_records(relay *r, const capture_table *t, const w2j_record *rec,
					 const char *data, size_t len)
{
	route_msg m;
	const char *why = NULL;
	rd_kafka_resp_err_t refused;
	int enc = ENCODE_OK;
	outcome e;

	clear_key key;

	if (capture_build(r->cap, t, rec, &m, &why) < 0)
		return publish_reject_row(r, t->name, rec, data, len, why, &m);
	key = (clear_key){m.key, m.key_len}; /* as built: snapshot rows' keys are compared to it */
	if ((enc = pipeline_finish_capture(r->pipe, RECORD_CHANGE, t, &m, &why)) == ENCODE_REJECT)
		return publish_reject_row(r, t->name, rec, data, len, why, &m);
	if (enc != ENCODE_OK)
		return publish_held(r, t->name, rec, enc, why);
	if (r->snap && rec->action == W2J_TRUNCATE)
		snapshot_saw_truncate(r->snap, t, rec->xid);
	else if (r->snap && key.ptr)
		snapshot_saw_change(r->snap, t, rec->xid, key.ptr, key.len);
	e = produce_then_tombstone(r, &m, rec->action == W2J_DELETE && t->cfg->tombstones && m.key,
				   &refused);
	if (refused)
		return publish_refused(r, REFUSED_CHANGE, t->name, rec, data, len, refused, &m);
	return e;
}

/* A change, as one group: a key change (checked whole first), or the change's own records. */
outcome publish_change(relay *r, const capture_table *t, const w2j_record *rec,
				 const char *data, size_t len)
{
	route_msg del;
	outcome e;

	metrics_rows_read(1);
	txn_group_begin(r);
	if (refusal_is_row(&r->refusal, r->txn_end, r->cur_row)) {
		const char *why;
		capture_build(r->cap, t, rec, &del, &why); /* for its key */
		e = publish_reject_refused(r, t->name, rec, data, len, &del);
	} else if (capture_build_key_change(r->cap, t, rec, &del)) {
		e = publish_key_change(r, t, rec, &del, data, len);
	} else {
		e = publish_change_records(r, t, rec, data, len);
	}
	return txn_group_end(r, e, true);
}

/*
 * One row a snapshot chunk read, at its watermark (rec): built, passed through the pipeline and
 * produced, or dead-lettered with the row as PostgreSQL printed it.
 */
outcome publish_snapshot_row(relay *r, const capture_table *t, const w2j_record *rec,
				const snapshot_row *row)
{
	route_msg m;
	const char *why = NULL;
	rd_kafka_resp_err_t refused;
	int enc = ENCODE_OK;
	outcome e;

	metrics_rows_read(1);
	capture_build_snapshot(r->cap, t, row->key, row->key_len, row->row, row->row_len, rec->lsn,
			       &rec->timestamp, &m);
	bool bad_text = binary_value(t) && built_not_utf8(&m);
	if (!bad_text &&
	    (enc = pipeline_finish_capture(r->pipe, RECORD_SNAPSHOT_ROW, t, &m, &why)) == ENCODE_REJECT)
		return publish_reject_row(r, t->name, rec, row->row, row->row_len, why, &m);
	if (!bad_text && enc != ENCODE_OK)
		return publish_held(r, t->name, rec, enc, why);
	if (bad_text || (!binary_value(t) && built_not_utf8(&m)) || key_not_utf8(&m))
		return publish_reject_row(r, t->name, rec, row->row, row->row_len,
					  "invalid UTF-8 in a snapshot row (its text is not UTF-8)", &m);
	e = publish_produce(r, &m, false, &refused);
	if (refused)
		e = publish_refused(r, REFUSED_SNAPSHOT_ROW, t->name, rec, row->row, row->row_len,
				    refused, &m);
	return e;
}
