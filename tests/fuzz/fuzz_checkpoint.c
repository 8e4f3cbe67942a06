/* fuzz_checkpoint.c: libFuzzer target for checkpoint_decode (relay/checkpoint.c), with an encode round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	checkpoint cp, again;
	char *text;

	if (checkpoint_decode((const char *)data, size, &cp) < 0)
		return 0;
	/* What the relay writes for a decoded position must read back as the same position. */
	text = checkpoint_encode(&cp, "s");
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(checkpoint_decode(text, strlen(text), &again) == 0);
	FUZZ_CHECK(again.lsn == cp.lsn && again.partial_nextlsn == cp.partial_nextlsn);
	if (cp.partial_nextlsn != LSN_INVALID)
		FUZZ_CHECK(again.partial_rows == cp.partial_rows);
	free(text);
	return 0;
}
