/* config_tls.c: start-time checks of the schema registry's client certificate and key (mutual TLS). */
#include "config_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* What the passphrase callback had and whether OpenSSL asked for it (the key is encrypted). */
typedef struct {
	const char *passphrase; /* NULL: the credential is not there (or none is wanted) */
	bool asked;
	int room; /* > 0: the passphrase did not fit OpenSSL's buffer of room bytes (with its NUL) */
} key_pass;

/*
 * OpenSSL's passphrase callback: the credential's text, never a prompt on the terminal (with a
 * NULL callback OpenSSL asks on /dev/tty). libcurl's own callback takes a passphrase only when
 * it is shorter than size, so the same limit here: what passes this check passes libcurl's.
 */
static int give_passphrase(char *buf, int size, int rwflag, void *opaque)
{
	key_pass *kp = opaque;
	(void)rwflag;

	kp->asked = true;
	if (!kp->passphrase)
		return -1;
	size_t n = strlen(kp->passphrase);
	if (size <= 0 || n >= (size_t)size) {
		kp->room = size;
		return -1;
	}
	memcpy(buf, kp->passphrase, n);
	return (int)n;
}

/*
 * The PEM file of key (e.g. "cert_file") opened for reading; NULL after saying why. Only a
 * regular file: a FIFO or a terminal would block the load, a directory reads as nothing.
 */
static FILE *open_pem(const relay_config *cfg, const char *key, const char *file, int line,
		      FILE *err)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	FILE *f;

	if (fd < 0) {
		fprintf(err, "%s:%d: schema_registry.%s \"%s\" cannot be read: %s\n", cfg->path, line,
			key, file, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(err, "%s:%d: schema_registry.%s \"%s\" is not a regular file\n", cfg->path,
			line, key, file);
		close(fd);
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (!(f = fdopen(fd, "r")))
		close(fd);
	return f;
}

/* The first certificate of a PEM file; NULL after saying why at FILE:LINE. */
static X509 *read_cert(const relay_config *cfg, int line, FILE *err)
{
	const char *file = cfg->registry_cert_file;
	FILE *f = open_pem(cfg, "cert_file", file, line, err);
	key_pass none = {0}; /* a PEM block with an encryption header: refused, not prompted for */
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, give_passphrase, &none);
	fclose(f);
	if (!x && none.asked)
		fprintf(err, "%s:%d: schema_registry.cert_file \"%s\" holds an encrypted certificate; "
			"give it in plain PEM (only the key may be encrypted)\n", cfg->path, line, file);
	else if (!x)
		fprintf(err, "%s:%d: schema_registry.cert_file \"%s\" holds no PEM certificate\n",
			cfg->path, line, file);
	return x;
}

/* The private key of a PEM file, decrypted with the credential; NULL after saying why. */
static EVP_PKEY *read_key(const relay_config *cfg, int line, FILE *err)
{
	const char *file = cfg->registry_key_file;
	FILE *f = open_pem(cfg, "key_file", file, line, err);
	key_pass kp = {0};
	char io[4096]; /* stdio's buffer holds the key's text: ours, wiped after */
	EVP_PKEY *k;

	if (!f)
		return NULL;
	setvbuf(f, io, _IOFBF, sizeof(io));
	char *pass = config_read_credential(CONFIG_TLS_KEY_CREDENTIAL);
	kp.passphrase = pass;
	k = PEM_read_PrivateKey(f, NULL, give_passphrase, &kp);
	fclose(f);
	explicit_bzero(io, sizeof(io));
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	if (!k && kp.asked && !kp.passphrase)
		fprintf(err, "%s:%d: schema_registry.key_file \"%s\" is encrypted: its passphrase comes "
			"from the systemd credential " CONFIG_TLS_KEY_CREDENTIAL ", which is not there\n",
			cfg->path, line, file);
	else if (!k && kp.room > 0)
		fprintf(err, "%s:%d: schema_registry.key_file \"%s\": the passphrase of the credential "
			CONFIG_TLS_KEY_CREDENTIAL " is too long (at most %d bytes)\n", cfg->path, line,
			file, kp.room - 1);
	else if (!k && kp.asked)
		fprintf(err, "%s:%d: schema_registry.key_file \"%s\" cannot be decrypted with the "
			"passphrase of the credential " CONFIG_TLS_KEY_CREDENTIAL "\n", cfg->path, line,
			file);
	else if (!k)
		fprintf(err, "%s:%d: schema_registry.key_file \"%s\" holds no PEM private key\n",
			cfg->path, line, file);
	return k;
}

/* Both files set or neither, and only for an https registry; 0 or -1 after saying why. */
static int check_pairing(const relay_config *cfg, int cert_line, int key_line, FILE *err)
{
	bool cert = cfg->registry_cert_file[0], key = cfg->registry_key_file[0];

	if (cert && !key) {
		fprintf(err, "%s:%d: schema_registry.cert_file needs schema_registry.key_file (the "
			"certificate's private key)\n", cfg->path, cert_line);
		return -1;
	}
	if (key && !cert) {
		fprintf(err, "%s:%d: schema_registry.key_file needs schema_registry.cert_file (the "
			"client certificate)\n", cfg->path, key_line);
		return -1;
	}
	if (cert && strncasecmp(cfg->registry_url, "https://", 8) != 0) {
		fprintf(err, "%s:%d: schema_registry.cert_file needs an https schema_registry.url "
			"(a client certificate is shown only over TLS)\n", cfg->path, cert_line);
		return -1;
	}
	return 0;
}

int config_tls_check(const relay_config *cfg, int cert_line, int key_line, FILE *err)
{
	if (check_pairing(cfg, cert_line, key_line, err) < 0)
		return -1;
	if (!cfg->registry_cert_file[0])
		return 0;
	X509 *x = read_cert(cfg, cert_line, err);
	EVP_PKEY *k = read_key(cfg, key_line, err);
	int rc = x && k ? 0 : -1;

	if (x && k && X509_check_private_key(x, k) != 1) {
		fprintf(err, "%s:%d: schema_registry.key_file \"%s\" is not the private key of the "
			"certificate in schema_registry.cert_file \"%s\"\n", cfg->path, key_line,
			cfg->registry_key_file, cfg->registry_cert_file);
		rc = -1;
	}
	X509_free(x);
	EVP_PKEY_free(k);
	ERR_clear_error(); /* the queue would name these failures in later, unrelated errors */
	return rc;
}
