/* transform.c: the transform stage: changes a built record's fields before it is encoded. */
#include "transform.h"

/* No transform is configured yet: the stage is where field protection will plug in. */
int transform_apply(record *rec, const char **why)
{
	(void)rec;
	(void)why;
	return 0;
}
