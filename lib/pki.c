#include "lib/fdio.h"
#include "lib/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/hsmxattr.h"

#define PKI_CA_KEY  "ca.key"
#define PKI_CA_CERT "ca.crt"
/* Sites whose clocks run a little behind must accept a certificate made just now. */
#define PKI_BACKDATE_S	 (60L * 60)
#define PKI_SERIAL_BYTES 16
#define PKI_HOST_MAX	 253 /* longest DNS name */

/* The reason OpenSSL gave for its last failure, or fallback when it gave none; empties
 * the error queue so a later failure does not report a stale cause. */
static const char *pki_ossl_reason(char *buf, size_t len, const char *fallback)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", fallback);
	ERR_clear_error();
	return buf;
}

#define PKI_OSSL_ERR(err, errlen, fmt, ...)                                                   \
	do {                                                                                  \
		char reason_[256];                                                            \
		snprintf(err, errlen, fmt ": %s", __VA_ARGS__,                                \
			 pki_ossl_reason(reason_, sizeof(reason_), "unknown OpenSSL error")); \
	} while (0)

static int pki_path(char *out, size_t outlen, const char *dir, const char *base, const char *ext,
		    char *err, size_t errlen)
{
	int n = snprintf(out, outlen, "%s/%s%s", dir, base, ext);

	if (n < 0 || (size_t)n >= outlen) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	return 0;
}

static int pki_days_valid(int days, char *err, size_t errlen)
{
	if (days < 1 || days > PKI_DAYS_MAX) {
		snprintf(err, errlen, "validity of %d days: must be 1..%d", days, PKI_DAYS_MAX);
		return -1;
	}
	return 0;
}

/* A CA or site file must not exist yet; anything but a clean ENOENT refuses. */
static int pki_must_not_exist(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (lstat(path, &st) == 0) {
		snprintf(err, errlen, "%s: already exists (remove it first to replace it)", path);
		return -1;
	}
	if (errno != ENOENT) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* mkdir -p: only the last component gets 0700, since the parents (/etc/hsmd) may hold
 * files other programs read. An existing dir keeps its mode. */
static int pki_mkdirs(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	size_t len = strlen(dir);
	char *p;

	if (len == 0 || len >= sizeof(path)) {
		snprintf(err, errlen, "%s: bad directory name", dir);
		return -1;
	}
	memcpy(path, dir, len + 1);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';
	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", path);
		return -1;
	}
	return 0;
}

static int pki_fsync_dir(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", dir, strerror(errno));
		return -1;
	}
	if (fsync(fd) < 0) {
		snprintf(err, errlen, "%s: cannot fsync: %s", dir, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		snprintf(err, errlen, "%s: cannot close: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Creates path (never replacing anything) with exactly mode, whatever the umask, and
 * makes the bytes durable. On failure nothing is left behind. */
static int pki_write_new(const char *path, mode_t mode, const char *data, size_t len, char *err,
			 size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	const char *what;

	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	what = "chmod";
	if (fchmod(fd, mode) < 0)
		goto fail;
	what = "write";
	if (fd_write_all(fd, data, len) < 0)
		goto fail;
	what = "fsync";
	if (fsync(fd) < 0)
		goto fail;
	what = "close";
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "%s: cannot %s: %s", path, what, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (unlink(path) < 0 && errno != ENOENT) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, " (and cannot remove it: %s)", strerror(errno));
	}
	return -1;
}

/* Serialises key and cert into memory first so that an encoding failure never leaves a
 * file behind, then writes key then certificate; a failed certificate removes the key. */
static int pki_write_pair(const char *key_path, const char *cert_path, EVP_PKEY *key, X509 *cert,
			  char *err, size_t errlen)
{
	/* secmem: the key's PEM is wiped when the BIO is freed. */
	BIO *kb = BIO_new(BIO_s_secmem());
	BIO *cb = BIO_new(BIO_s_mem());
	char *kdata, *cdata;
	long klen, clen;
	int rc = -1;

	if (!kb || !cb) {
		snprintf(err, errlen, "%s: out of memory", key_path);
		goto out;
	}
	if (!PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot encode key", key_path);
		goto out;
	}
	if (!PEM_write_bio_X509(cb, cert)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot encode certificate", cert_path);
		goto out;
	}
	klen = BIO_get_mem_data(kb, &kdata);
	clen = BIO_get_mem_data(cb, &cdata);
	if (klen <= 0 || clen <= 0) {
		snprintf(err, errlen, "%s: empty PEM encoding", klen <= 0 ? key_path : cert_path);
		goto out;
	}
	if (pki_write_new(key_path, 0600, kdata, (size_t)klen, err, errlen) < 0)
		goto out;
	if (pki_write_new(cert_path, 0644, cdata, (size_t)clen, err, errlen) < 0) {
		if (unlink(key_path) < 0) {
			size_t used = strlen(err);

			snprintf(err + used, errlen - used, "; %s left behind: %s", key_path,
				 strerror(errno));
		}
		goto out;
	}
	rc = 0;
out:
	BIO_free(kb);
	BIO_free(cb);
	return rc;
}

static EVP_PKEY *pki_keygen(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (!key)
		PKI_OSSL_ERR(err, errlen, "%s: cannot generate a P-256 key", path);
	return key;
}

static int pki_set_serial(X509 *x, const char *path, char *err, size_t errlen)
{
	unsigned char raw[PKI_SERIAL_BYTES];
	ASN1_INTEGER *serial = NULL;
	BIGNUM *bn = NULL;
	int rc = -1;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot get random serial", path);
		return -1;
	}
	/* A zero serial is invalid (RFC 5280); 2^-128 odds, but cheap to rule out. */
	raw[sizeof(raw) - 1] |= 1;
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (bn)
		serial = BN_to_ASN1_INTEGER(bn, NULL);
	if (!serial || !X509_set_serialNumber(x, serial))
		PKI_OSSL_ERR(err, errlen, "%s: cannot set serial", path);
	else
		rc = 0;
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return rc;
}

static X509_NAME *pki_cn_name(const char *cn, const char *path, char *err, size_t errlen)
{
	X509_NAME *n = X509_NAME_new();

	if (!n || !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
					      (const unsigned char *)cn, -1, -1, 0)) {
		PKI_OSSL_ERR(err, errlen, "%s: bad common name \"%s\"", path, cn);
		X509_NAME_free(n);
		return NULL;
	}
	return n;
}

/* A new certificate with everything but the extensions and the signature. */
static X509 *pki_cert_new(const char *cn, X509 *issuer, EVP_PKEY *key, int days, const char *path,
			  char *err, size_t errlen)
{
	X509 *x = X509_new();
	X509_NAME *subject = NULL;

	if (!x) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	if (!X509_set_version(x, X509_VERSION_3)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot set version", path);
		goto fail;
	}
	if (pki_set_serial(x, path, err, errlen) < 0)
		goto fail;
	subject = pki_cn_name(cn, path, err, errlen);
	if (!subject)
		goto fail;
	if (!X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot set names", path);
		goto fail;
	}
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_S) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot set validity", path);
		goto fail;
	}
	if (!X509_set_pubkey(x, key)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot set public key", path);
		goto fail;
	}
	X509_NAME_free(subject);
	return x;
fail:
	X509_NAME_free(subject);
	X509_free(x);
	return NULL;
}

/* Adds one extension written in OpenSSL's config syntax; values are constants of this
 * file, never user input (the subjectAltName is built by hand for that reason). */
static int pki_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, const char *path,
		       char *err, size_t errlen)
{
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
	int ok = ext && X509_add_ext(x, ext, -1);

	X509_EXTENSION_free(ext);
	if (!ok) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot add %s = %s", path, OBJ_nid2sn(nid), value);
		return -1;
	}
	return 0;
}

static int pki_sign(X509 *x, EVP_PKEY *key, const char *path, char *err, size_t errlen)
{
	if (X509_sign(x, key, EVP_sha256()) <= 0) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot sign", path);
		return -1;
	}
	return 0;
}

int pki_ca_init(const char *dir, const char *name, int days, char *err, size_t errlen)
{
	char key_path[PATH_MAX], cert_path[PATH_MAX];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509V3_CTX ctx;
	int rc = -1;

	if (!dir || !*dir || !name || !*name) {
		snprintf(err, errlen, "pki_ca_init: directory and CA name must not be empty");
		return -1;
	}
	if (pki_days_valid(days, err, errlen) < 0 ||
	    pki_path(key_path, sizeof(key_path), dir, PKI_CA_KEY, "", err, errlen) < 0 ||
	    pki_path(cert_path, sizeof(cert_path), dir, PKI_CA_CERT, "", err, errlen) < 0)
		return -1;
	if (pki_mkdirs(dir, err, errlen) < 0 || pki_must_not_exist(key_path, err, errlen) < 0 ||
	    pki_must_not_exist(cert_path, err, errlen) < 0)
		return -1;
	key = pki_keygen(key_path, err, errlen);
	if (!key)
		goto out;
	x = pki_cert_new(name, NULL, key, days, cert_path, err, errlen);
	if (!x)
		goto out;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", cert_path,
			err, errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", cert_path, err,
			errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash", cert_path, err, errlen) < 0 ||
	    pki_sign(x, key, cert_path, err, errlen) < 0)
		goto out;
	if (pki_write_pair(key_path, cert_path, key, x, err, errlen) < 0 ||
	    pki_fsync_dir(dir, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* Never prompts: hsm and hsmd run unattended, and an encrypted key is an error. */
static int pki_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static X509 *pki_load_cert(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	X509 *x;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(f, NULL, pki_no_passphrase, NULL);
	if (!x)
		PKI_OSSL_ERR(err, errlen, "%s: not a PEM certificate", path);
	fclose(f);
	return x;
}

static EVP_PKEY *pki_load_key(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *key;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	key = PEM_read_PrivateKey(f, NULL, pki_no_passphrase, NULL);
	if (!key)
		PKI_OSSL_ERR(err, errlen, "%s: not an unencrypted PEM private key", path);
	fclose(f);
	return key;
}

/* A DNS name as an admin would type it: labels of [A-Za-z0-9-], no empty label. */
static int pki_dns_name_valid(const char *s)
{
	size_t n = strlen(s), label = 0, i;

	if (n == 0 || n > PKI_HOST_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0;
}

/* Appends one SAN entry; an address literal becomes IP:, anything else DNS:. */
static int pki_san_push(GENERAL_NAMES *gens, const char *host, int is_site, const char *path,
			char *err, size_t errlen)
{
	unsigned char addr[16];
	int addrlen = 0;
	GENERAL_NAME *gn;
	ASN1_STRING *s;

	if (!is_site) {
		if (inet_pton(AF_INET, host, addr) == 1)
			addrlen = 4;
		else if (inet_pton(AF_INET6, host, addr) == 1)
			addrlen = 16;
		else if (!pki_dns_name_valid(host)) {
			snprintf(err, errlen,
				 "%s: host \"%s\" is neither an IP address nor a DNS name", path,
				 host);
			return -1;
		}
	}
	gn = GENERAL_NAME_new();
	s = addrlen ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
	if (!gn || !s ||
	    !(addrlen ? ASN1_OCTET_STRING_set(s, addr, addrlen)
		      : ASN1_STRING_set(s, host, (int)strlen(host)))) {
		GENERAL_NAME_free(gn);
		ASN1_STRING_free(s);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	/* set0: gn owns s from here. */
	GENERAL_NAME_set0_value(gn, addrlen ? GEN_IPADD : GEN_DNS, s);
	if (!sk_GENERAL_NAME_push(gens, gn)) {
		GENERAL_NAME_free(gn);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	return 0;
}

static int pki_add_san(X509 *x, const char *site, const char *const *hosts, size_t nhosts,
		       const char *path, char *err, size_t errlen)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int rc = -1;
	size_t i;

	if (!gens) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (pki_san_push(gens, site, 1, path, err, errlen) < 0)
		goto out;
	for (i = 0; i < nhosts; i++) {
		if (!hosts[i]) {
			snprintf(err, errlen, "%s: host %zu is NULL", path, i);
			goto out;
		}
		if (strcmp(hosts[i], site) == 0)
			continue;
		if (pki_san_push(gens, hosts[i], 0, path, err, errlen) < 0)
			goto out;
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot add subjectAltName", path);
		goto out;
	}
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* Loads the CA and checks it can sign: key matching the certificate, certificate a CA. */
static int pki_load_ca(const char *dir, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
	char key_path[PATH_MAX], cert_path[PATH_MAX];

	*cert = NULL;
	*key = NULL;
	if (pki_path(key_path, sizeof(key_path), dir, PKI_CA_KEY, "", err, errlen) < 0 ||
	    pki_path(cert_path, sizeof(cert_path), dir, PKI_CA_CERT, "", err, errlen) < 0)
		return -1;
	*cert = pki_load_cert(cert_path, err, errlen);
	if (!*cert)
		return -1;
	*key = pki_load_key(key_path, err, errlen);
	if (!*key)
		goto fail;
	if (X509_check_private_key(*cert, *key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "%s: does not match the certificate %s", key_path, cert_path);
		goto fail;
	}
	if (X509_check_ca(*cert) == 0) {
		snprintf(err, errlen, "%s: not a CA certificate", cert_path);
		goto fail;
	}
	return 0;
fail:
	EVP_PKEY_free(*key);
	X509_free(*cert);
	*key = NULL;
	*cert = NULL;
	return -1;
}

/* A certificate outliving its CA would stop verifying on a day nobody chose; the admin
 * asks for fewer days or renews the CA instead. */
static int pki_within_ca(X509 *x, X509 *ca, const char *path, char *err, size_t errlen)
{
	const ASN1_TIME *ca_end = X509_get0_notAfter(ca);
	char until[32] = "?";
	struct tm tm;

	if (ASN1_TIME_compare(X509_get0_notAfter(x), ca_end) <= 0)
		return 0;
	if (ASN1_TIME_to_tm(ca_end, &tm))
		strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &tm);
	ERR_clear_error();
	snprintf(err, errlen, "%s: would outlive the CA, which expires %s: ask for fewer days",
		 path, until);
	return -1;
}

int pki_issue(const char *dir, const char *site, const char *const *hosts, size_t nhosts, int days,
	      char *err, size_t errlen)
{
	char key_path[PATH_MAX], cert_path[PATH_MAX];
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *x = NULL;
	X509V3_CTX ctx;
	int rc = -1;

	if (!dir || !*dir) {
		snprintf(err, errlen, "pki_issue: empty directory");
		return -1;
	}
	if (!site || !hsm_site_name_valid(site)) {
		snprintf(err, errlen,
			 "bad site name \"%.40s\": 1..%d of [a-z0-9_-], starting with a letter",
			 site ? site : "(null)", HSM_SITE_MAX);
		return -1;
	}
	/* SITE.key for "ca" would be the CA's own key. */
	if (strcmp(site, "ca") == 0) {
		snprintf(err, errlen, "site name \"ca\" is reserved for the CA's own files");
		return -1;
	}
	if (nhosts && !hosts) {
		snprintf(err, errlen, "pki_issue: %zu hosts but no list", nhosts);
		return -1;
	}
	if (pki_days_valid(days, err, errlen) < 0 ||
	    pki_path(key_path, sizeof(key_path), dir, site, ".key", err, errlen) < 0 ||
	    pki_path(cert_path, sizeof(cert_path), dir, site, ".crt", err, errlen) < 0)
		return -1;
	if (pki_must_not_exist(key_path, err, errlen) < 0 ||
	    pki_must_not_exist(cert_path, err, errlen) < 0)
		return -1;
	if (pki_load_ca(dir, &ca, &ca_key, err, errlen) < 0)
		return -1;
	key = pki_keygen(key_path, err, errlen);
	if (!key)
		goto out;
	x = pki_cert_new(site, ca, key, days, cert_path, err, errlen);
	if (!x || pki_within_ca(x, ca, cert_path, err, errlen) < 0)
		goto out;
	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	if (pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", cert_path, err,
			errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", cert_path, err,
			errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth", cert_path, err,
			errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash", cert_path, err, errlen) < 0 ||
	    pki_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", cert_path, err,
			errlen) < 0 ||
	    pki_add_san(x, site, hosts, nhosts, cert_path, err, errlen) < 0 ||
	    pki_sign(x, ca_key, cert_path, err, errlen) < 0)
		goto out;
	if (pki_write_pair(key_path, cert_path, key, x, err, errlen) < 0 ||
	    pki_fsync_dir(dir, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	return rc;
}

int pki_cert_cn(const char *cert_file, char *cn, size_t cnlen, char *err, size_t errlen)
{
	X509 *x = pki_load_cert(cert_file, err, errlen);
	X509_NAME *subject;
	unsigned char *utf8 = NULL;
	int idx, len, rc = -1;

	if (!x)
		return -1;
	subject = X509_get_subject_name(x);
	idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (idx < 0) {
		snprintf(err, errlen, "%s: no subject CN", cert_file);
		goto out;
	}
	/* Two CNs would make the peer's identity depend on which one a reader picks. */
	if (X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0) {
		snprintf(err, errlen, "%s: more than one subject CN", cert_file);
		goto out;
	}
	len =
	    ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
	if (len < 0) {
		PKI_OSSL_ERR(err, errlen, "%s: bad subject CN", cert_file);
		goto out;
	}
	if (memchr(utf8, '\0', (size_t)len)) {
		snprintf(err, errlen, "%s: subject CN contains a NUL byte", cert_file);
		goto out;
	}
	if ((size_t)len >= cnlen) {
		snprintf(err, errlen, "%s: subject CN is %d bytes: longer than %zu", cert_file, len,
			 cnlen ? cnlen - 1 : 0);
		goto out;
	}
	memcpy(cn, utf8, (size_t)len);
	cn[len] = '\0';
	rc = 0;
out:
	OPENSSL_free(utf8);
	X509_free(x);
	return rc;
}

int pki_verify(const char *ca_file, const char *cert_file, char *err, size_t errlen)
{
	X509 *ca = NULL, *x = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	int rc = -1;

	ca = pki_load_cert(ca_file, err, errlen);
	if (!ca)
		return -1;
	x = pki_load_cert(cert_file, err, errlen);
	if (!x)
		goto out;
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (!store || !ctx) {
		snprintf(err, errlen, "%s: out of memory", cert_file);
		goto out;
	}
	if (!X509_STORE_add_cert(store, ca)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot use as CA", ca_file);
		goto out;
	}
	if (!X509_STORE_CTX_init(ctx, store, x, NULL)) {
		PKI_OSSL_ERR(err, errlen, "%s: cannot start verification", cert_file);
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		snprintf(err, errlen, "%s: does not verify against %s: %s", cert_file, ca_file,
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		ERR_clear_error();
		goto out;
	}
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(x);
	X509_free(ca);
	return rc;
}
