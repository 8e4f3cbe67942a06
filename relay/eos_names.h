/* eos_names.h: the Kafka transactional.id of a relay, for code that cannot include eos.h (jansson's JSON_* names clash). */
#ifndef RELAY_EOS_NAMES_H
#define RELAY_EOS_NAMES_H

#include "config.h"
#include "strbuf.h"

/*
 * Appends to out the transactional.id of the relay of cfg: the file's kafka transactional.id
 * when set, else "outbox-relay-<sysid>-<slot>" (sysid: the cluster's system identifier), so
 * that a second relay on the same slot fences the first. It is also the key of the checkpoint
 * records. Whole, whatever its length.
 */
void eos_transactional_id(const relay_config *cfg, const char *sysid, strbuf *out);

#endif
