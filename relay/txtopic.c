/* txtopic.c: the transaction topic: a BEGIN and an END record for each PostgreSQL transaction. */
#include "txtopic.h"

#include <string.h>

#include "publish.h"
#include "strbuf.h"
#include "txctx.h"

/* One record of the transaction topic, keyed by the transaction's id. */
static outcome produce_meta(relay *r, const strbuf *value)
{
	char id[64];
	route_msg m;

	memset(&m, 0, sizeof(m));
	m.topic = r->cfg->transaction_topic;
	m.key = txctx_id(&r->tx, id, sizeof(id));
	m.key_len = strlen(id);
	m.value = strbuf_str(value);
	m.value_len = value->len;
	return publish_produce_meta(r, &m);
}

/* Before the transaction's first record, so that a consumer sees BEGIN first. */
outcome txtopic_begin(relay *r)
{
	strbuf v = {0};
	outcome e = OUTCOME_OK;

	if (r->cfg->transaction_topic[0]) {
		txctx_begin_json(&r->tx, &v);
		e = produce_meta(r, &v);
		strbuf_free(&v);
	}
	if (e == OUTCOME_OK) {
		r->tx.begun = true;
		r->tx.begin_sent = r->cfg->transaction_topic[0] != '\0';
	}
	return e;
}

/* After its last record: the counts are complete only now. */
outcome txtopic_end(relay *r)
{
	strbuf v = {0};
	outcome e;

	if (!r->cfg->transaction_topic[0] || !r->tx.begun)
		return OUTCOME_OK;
	txctx_end_json(&r->tx, &v);
	e = produce_meta(r, &v);
	strbuf_free(&v);
	return e;
}
