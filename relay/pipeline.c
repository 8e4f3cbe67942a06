/* pipeline.c: the stages a built record passes before it is produced: transform, then encode. */
#include "pipeline.h"

#include "encode.h"
#include "transform.h"

/* Transform first, so an encoder sees the fields as they will be published. */
int pipeline_finish_as(record_kind kind, const char *source, const char *format, route_msg *m,
		       const char **why)
{
	record rec = {.kind = kind, .source = source, .format = format, .msg = m};

	if (transform_apply(&rec, why) < 0)
		return -1;
	return encode_record(&rec, why);
}

/* Captured tables and snapshot rows are JSON. */
int pipeline_finish(record_kind kind, const char *source, route_msg *m, const char **why)
{
	return pipeline_finish_as(kind, source, NULL, m, why);
}
