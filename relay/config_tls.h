/* config_tls.h: start-time checks of the schema registry's client certificate and key (mutual TLS). */
#ifndef RELAY_CONFIG_TLS_H
#define RELAY_CONFIG_TLS_H

#include <stdio.h>

#include "config.h"

/* The systemd credential holding the passphrase of schema_registry.key_file, if it has one. */
#define CONFIG_TLS_KEY_CREDENTIAL "schema-registry-key-password"

/*
 * Checks schema_registry.cert_file and key_file of cfg, which the file sets at cert_line and
 * key_line: both set or neither, an https url, a readable PEM certificate, a readable PEM
 * private key (decrypted with the credential CONFIG_TLS_KEY_CREDENTIAL when it is encrypted)
 * that is the certificate's. 0, or -1 after one "FILE:LINE: ..." line per problem to err.
 */
int config_tls_check(const relay_config *cfg, int cert_line, int key_line, FILE *err);

#endif
