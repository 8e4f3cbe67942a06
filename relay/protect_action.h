/* protect_action.h: what field protection does to one clear value: mask, keyed hash, encryption. */
#ifndef RELAY_PROTECT_ACTION_H
#define RELAY_PROTECT_ACTION_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* Both keys are 32 bytes (AES-256; the HMAC key the same size), given as 64 hex digits. */
#define PROTECT_KEY_BYTES 32

/* The ways a field is protected (protect[].action). */
typedef enum { PROTECT_DROP, PROTECT_MASK, PROTECT_HASH, PROTECT_ENCRYPT } protect_kind;

/* The action named by word ("drop", "mask", "hash", "encrypt"); -1 for another word. */
int protect_kind_of(const char *word);

/*
 * Reads a key from a credential's text: exactly 64 hex digits (trailing whitespace allowed).
 * 0, or -1 with why ("is 40 hex digits; it must be 64 (32 bytes)").
 */
int protect_key_parse(const char *text, unsigned char key[PROTECT_KEY_BYTES], char *why,
		      size_t whylen);

/*
 * Appends s[0..n) masked: every character (UTF-8 code point, counted by its first byte) but
 * the last keep_last becomes one '*'; the kept ones are copied as they are. A value of
 * keep_last characters or fewer is masked whole (kept, it would be in clear).
 */
void protect_mask(strbuf *out, const char *s, size_t n, int keep_last);

/*
 * The keyed contexts of the hash (Nettle's HMAC-SHA-256: its pads hashed once) and the
 * encryption (OpenSSL's AES-256-GCM: its key schedule and algorithm lookup, several microseconds
 * per keying), made once per run.
 */
typedef struct protect_crypto protect_crypto;

/*
 * The contexts for the keys given (NULL: that action is not used); NULL when out of memory or
 * when OpenSSL cannot make the cipher's. The caller may wipe its copies of the keys afterwards.
 */
protect_crypto *protect_crypto_new(const unsigned char *hash_key, const unsigned char *enc_key);
void protect_crypto_free(protect_crypto *c);

/* Appends HMAC-SHA-256(hash key, s[0..n)) as 64 lowercase hex digits; c must have the hash key. */
void protect_hash(protect_crypto *c, strbuf *out, const char *s, size_t n);

/*
 * Appends "enc:v1:<key_id>:<base64(nonce | ciphertext | tag)>": AES-256-GCM of s[0..n) under
 * the encryption key with a fresh random 96-bit nonce and a 128-bit tag, no associated data
 * (docs/privacy.md). -1 when OpenSSL fails (no randomness): the value must not be published.
 */
int protect_encrypt(protect_crypto *c, strbuf *out, const char *key_id, const char *s, size_t n);

/*
 * The reverse of protect_encrypt, for tests and tools: appends the clear text of an
 * "enc:v1:..." value under key. -1 when it is not such a value or does not authenticate.
 */
int protect_decrypt(strbuf *out, const unsigned char key[PROTECT_KEY_BYTES], const char *text,
		    size_t n);
/* protect_decrypt under the context's encryption key: -1 also when it has none. */
int protect_crypto_decrypt(protect_crypto *c, strbuf *out, const char *text, size_t n);

#endif
