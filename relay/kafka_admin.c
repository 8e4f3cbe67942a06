/* kafka_admin.c: metadata lookups and CreateTopics through librdkafka's admin API. */
#include "kafka_admin.h"

#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "log.h"

int kafka_admin_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err,
			   size_t errlen)
{
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
	int n = -1;

	if (e) {
		snprintf(err, errlen, "metadata of topic %s: %s", topic, rd_kafka_err2str(e));
	} else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
		n = 0;
	} else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		n = md->topics[0].partition_cnt;
	} else {
		snprintf(err, errlen, "topic %s: %s", topic,
			 rd_kafka_err2str(md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

/* The result of one CreateTopics event: its own error, or the topic's. */
static rd_kafka_resp_err_t create_result(rd_kafka_event_t *ev)
{
	const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
	size_t cnt = 0;
	const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
	rd_kafka_resp_err_t e = rd_kafka_event_error(ev);

	if (!e && cnt == 1)
		e = rd_kafka_topic_result_error(tr[0]);
	return e;
}

int kafka_admin_create(rd_kafka_t *rk, const char *topic, int partitions, int replication_factor,
		       const char *cleanup_policy, int timeout_ms, char *err, size_t errlen)
{
	char errstr[512];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, replication_factor, errstr,
							 sizeof(errstr));
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev = NULL;
	rd_kafka_resp_err_t e;
	int r = -1;

	if (!nt) {
		snprintf(err, errlen, "topic %s: %s", topic, errstr);
		goto done;
	}
	if (cleanup_policy)
		rd_kafka_NewTopic_set_config(nt, "cleanup.policy", cleanup_policy);
	/* Hand-off: CreateTopics copies nt; the result arrives on q. */
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, timeout_ms);
	e = ev ? create_result(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
	if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		snprintf(err, errlen, "creating topic %s: %s", topic, rd_kafka_err2str(e));
		goto done;
	}
	log_info("created topic %s%s%s", topic, cleanup_policy ? ", cleanup.policy=" : "",
		 cleanup_policy ? cleanup_policy : "");
	r = 0;
done:
	if (ev)
		rd_kafka_event_destroy(ev);
	if (nt)
		rd_kafka_NewTopic_destroy(nt);
	rd_kafka_queue_destroy(q);
	return r;
}

/* max.message.bytes of one DescribeConfigs result (0: not in it). */
static size_t max_bytes_of(rd_kafka_event_t *ev)
{
	const rd_kafka_DescribeConfigs_result_t *res = rd_kafka_event_DescribeConfigs_result(ev);
	size_t n_res = 0, n_cfg = 0;
	const rd_kafka_ConfigResource_t **rs = res ? rd_kafka_DescribeConfigs_result_resources(res, &n_res) : NULL;
	const rd_kafka_ConfigEntry_t **cs = n_res == 1 ? rd_kafka_ConfigResource_configs(rs[0], &n_cfg) : NULL;

	for (size_t i = 0; i < n_cfg; i++) {
		const char *v = rd_kafka_ConfigEntry_value(cs[i]);
		if (strcmp(rd_kafka_ConfigEntry_name(cs[i]), "max.message.bytes") == 0 && v)
			return (size_t)strtoull(v, NULL, 10);
	}
	return 0;
}

rd_kafka_queue_t *kafka_admin_describe_topic(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);

	/* Hand-off: DescribeConfigs copies the resource; the result arrives on q. */
	rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
	rd_kafka_ConfigResource_destroy(cr);
	return q;
}

int kafka_admin_max_message_bytes(rd_kafka_queue_t *q, const char *topic, int timeout_ms,
				  size_t *bytes, char *err, size_t errlen)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms);
	rd_kafka_resp_err_t e;

	*bytes = 0;
	if (!ev)
		return 0;
	e = rd_kafka_event_error(ev);
	if (!e)
		*bytes = max_bytes_of(ev);
	else
		snprintf(err, errlen, "describing topic %s: %s", topic, rd_kafka_err2str(e));
	rd_kafka_event_destroy(ev);
	return e ? -1 : 1;
}
