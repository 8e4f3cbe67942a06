/* test_kafka_log.c: librdkafka's log lines at the relay's levels: one event, one line at error. */
#include "unit.h"

#include "kafka.h"

static void test_restated_errors_go_to_debug(void **state)
{
	(void)state;
	/* A fenced producer: the relay says "Kafka transaction failed for good: ..." itself. */
	assert_int_equal(kafka_log_level(3, "TXNERR"), LOG_LVL_DEBUG);
	assert_int_equal(kafka_log_level(3, "ADDPARTS"), LOG_LVL_DEBUG);
	assert_int_equal(kafka_log_level(3, "FATAL"), LOG_LVL_DEBUG);
	assert_int_equal(kafka_log_level(4, "TXNERR"), LOG_LVL_DEBUG);
}

static void test_only_reports_keep_their_level(void **state)
{
	(void)state;
	/* Broker unreachable, TLS, SASL: librdkafka's line is the only report. */
	assert_int_equal(kafka_log_level(3, "FAIL"), LOG_LVL_ERROR);
	assert_int_equal(kafka_log_level(3, "SSL"), LOG_LVL_ERROR);
	assert_int_equal(kafka_log_level(3, "SASL"), LOG_LVL_ERROR);
	assert_int_equal(kafka_log_level(4, "FAIL"), LOG_LVL_WARN);
	assert_int_equal(kafka_log_level(5, "CONFWARN"), LOG_LVL_INFO);
	assert_int_equal(kafka_log_level(6, "TXNERR"), LOG_LVL_INFO);
	assert_int_equal(kafka_log_level(7, "EOS"), LOG_LVL_DEBUG);
	/* A facility is matched whole. */
	assert_int_equal(kafka_log_level(3, "FATALX"), LOG_LVL_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restated_errors_go_to_debug),
		cmocka_unit_test(test_only_reports_keep_their_level),
	};
	return cmocka_run_group_tests_name("kafka_log", tests, NULL, NULL);
}
