/* pipeline.c: the stages a built record passes before it is produced: transform, then encode. */
#include "pipeline.h"

#include <stdlib.h>

#include "capture.h"
#include "encode.h"
#include "transform.h"
#include "xalloc.h"

struct pipeline {
	transform *tf;
	encoders *enc;
};

pipeline *pipeline_new(const relay_config *cfg, char *err, size_t errlen)
{
	pipeline *p = xcalloc(1, sizeof(*p));

	if (!(p->tf = transform_new(cfg, err, errlen)) || !(p->enc = encode_new(cfg, err, errlen))) {
		pipeline_free(p);
		return NULL;
	}
	return p;
}

int pipeline_start(pipeline *p, const relay_config *cfg, char *err, size_t errlen)
{
	return encode_start(p->enc, cfg, err, errlen);
}

void pipeline_free(pipeline *p)
{
	if (!p)
		return;
	transform_free(p->tf);
	encode_free(p->enc);
	free(p);
}

/* Transform first, so an encoder sees the fields as they will be published. */
static int finish(pipeline *p, record *rec, const char **why)
{
	if (transform_apply(p->tf, rec, why) < 0)
		return ENCODE_REJECT;
	return encode_record(p->enc, rec, why);
}

int pipeline_finish(pipeline *p, record_kind kind, const char *source, const char *format,
		    route_msg *m, const char **why)
{
	record rec = {.kind = kind, .source = source, .format = format, .msg = m};
	return finish(p, &rec, why);
}

/* A captured table's record: the table and its entry's format go with it. */
int pipeline_finish_capture(pipeline *p, record_kind kind, const struct capture_table *t,
			    route_msg *m, const char **why)
{
	record rec = {.kind = kind, .source = t->name, .format = t->cfg->format, .table = t, .msg = m};
	return finish(p, &rec, why);
}

bool pipeline_can_hash(const pipeline *p) { return transform_can_hash(p->tf); }

transform *pipeline_transform(pipeline *p) { return p->tf; }

/* The transform stage knows which fields are protected: it protects dead letters too. */
void pipeline_dead_letter(pipeline *p, const char *source, route_msg *m)
{
	transform_dead_letter(p->tf, source, m);
}
