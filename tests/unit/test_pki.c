/* Unit tests of the deployment CA (lib/pki.c): a CA and a site certificate made in a
 * temporary directory, read back with OpenSSL (modes, CN, chain, SAN/EKU and the other
 * extensions); a foreign CA does not verify the site; nothing is ever replaced; bad site
 * names, bad hosts, bad validity and a CA key that does not match its certificate fail
 * and write nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/slurp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/pki.h"

struct fx {
	char root[256];
	char ca[300];	/* root/ca: the CA of most tests */
	char path[512]; /* scratch for file names */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/test_pki.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->ca, sizeof(f->ca), "%s/ca", f->root);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static const char *in(struct fx *f, const char *dir, const char *base)
{
	snprintf(f->path, sizeof(f->path), "%s/%s", dir, base);
	return f->path;
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static X509 *load(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *x;

	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

static void init_ca(const char *dir, const char *name)
{
	char err[512] = "";
	int rc = pki_ca_init(dir, name, PKI_CA_DAYS_DEFAULT, err, sizeof(err));

	if (rc != 0)
		fail_msg("pki_ca_init %s: %s", dir, err);
}

static const char *const HOSTS[] = {"127.0.0.1", "::1", "a.example"};

static void issue_a(struct fx *f)
{
	char err[512] = "";

	if (pki_issue(f->ca, "site-a", HOSTS, 3, PKI_SITE_DAYS_DEFAULT, err, sizeof(err)) != 0)
		fail_msg("pki_issue: %s", err);
}

static void test_issue_and_verify(void **state)
{
	struct fx *f = *state;
	char cn[64], err[512] = "", crt[512];

	init_ca(f->ca, "test CA");
	issue_a(f);
	assert_int_equal(mode_of(f->ca), 0700);
	assert_int_equal(mode_of(in(f, f->ca, "ca.key")), 0600);
	assert_int_equal(mode_of(in(f, f->ca, "ca.crt")), 0644);
	assert_int_equal(mode_of(in(f, f->ca, "site-a.key")), 0600);
	assert_int_equal(mode_of(in(f, f->ca, "site-a.crt")), 0644);
	assert_int_equal(entries(f->ca), 4);

	snprintf(crt, sizeof(crt), "%s/site-a.crt", f->ca);
	assert_int_equal(pki_cert_cn(crt, cn, sizeof(cn), err, sizeof(err)), 0);
	assert_string_equal(cn, "site-a");
	assert_int_equal(pki_cert_cn(in(f, f->ca, "ca.crt"), cn, sizeof(cn), err, sizeof(err)), 0);
	assert_string_equal(cn, "test CA");
	if (pki_verify(in(f, f->ca, "ca.crt"), crt, err, sizeof(err)) != 0)
		fail_msg("pki_verify: %s", err);
	/* The CA verifies against itself (self-signed); a site is no CA for another. */
	assert_int_equal(
	    pki_verify(in(f, f->ca, "ca.crt"), in(f, f->ca, "ca.crt"), err, sizeof(err)), 0);
	assert_int_equal(pki_verify(crt, in(f, f->ca, "ca.crt"), err, sizeof(err)), -1);
}

static void test_extensions(void **state)
{
	struct fx *f = *state;
	static const unsigned char v4[4] = {127, 0, 0, 1};
	unsigned char v6[16] = {0};
	int crit, i, seen_site = 0, seen_dns = 0, seen_v4 = 0, seen_v6 = 0, server = 0, client = 0;
	GENERAL_NAMES *san;
	EXTENDED_KEY_USAGE *eku;
	BASIC_CONSTRAINTS *bc;
	AUTHORITY_KEYID *akid;
	ASN1_OCTET_STRING *skid;
	const ASN1_INTEGER *serial;
	BIGNUM *bn;
	X509 *ca, *x;

	v6[15] = 1;
	init_ca(f->ca, "test CA");
	issue_a(f);
	ca = load(in(f, f->ca, "ca.crt"));
	x = load(in(f, f->ca, "site-a.crt"));

	san = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 4);
	for (i = 0; i < sk_GENERAL_NAME_num(san); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
		int type;
		ASN1_STRING *s = GENERAL_NAME_get0_value(gn, &type);
		const unsigned char *d = ASN1_STRING_get0_data(s);
		int len = ASN1_STRING_length(s);

		if (type == GEN_DNS && len == 6 && memcmp(d, "site-a", 6) == 0)
			seen_site++;
		else if (type == GEN_DNS && len == 9 && memcmp(d, "a.example", 9) == 0)
			seen_dns++;
		else if (type == GEN_IPADD && len == 4 && memcmp(d, v4, 4) == 0)
			seen_v4++;
		else if (type == GEN_IPADD && len == 16 && memcmp(d, v6, 16) == 0)
			seen_v6++;
		else
			fail_msg("unexpected SAN entry %d (type %d, %d bytes)", i, type, len);
	}
	assert_true(seen_site == 1 && seen_dns == 1 && seen_v4 == 1 && seen_v6 == 1);
	GENERAL_NAMES_free(san);

	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	assert_non_null(eku);
	for (i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
		int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i));

		server += nid == NID_server_auth;
		client += nid == NID_client_auth;
	}
	assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
	assert_true(server == 1 && client == 1);
	EXTENDED_KEY_USAGE_free(eku);

	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_false(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_check_ca(x), 0);

	/* The site's AKI is the CA's SKI: what a verifier uses to find the issuer. */
	akid = X509_get_ext_d2i(x, NID_authority_key_identifier, &crit, NULL);
	skid = X509_get_ext_d2i(ca, NID_subject_key_identifier, &crit, NULL);
	assert_non_null(akid);
	assert_non_null(akid->keyid);
	assert_non_null(skid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, skid), 0);
	AUTHORITY_KEYID_free(akid);
	ASN1_OCTET_STRING_free(skid);

	bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_true(bc->ca);
	assert_int_equal(crit, 1);
	assert_non_null(bc->pathlen);
	assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);

	/* 128 random bits: more than 64 of them make a serial no one will guess. */
	serial = X509_get0_serialNumber(x);
	bn = ASN1_INTEGER_to_BN(serial, NULL);
	assert_non_null(bn);
	assert_false(BN_is_negative(bn));
	assert_true(BN_num_bits(bn) > 64 && BN_num_bits(bn) <= 128);
	BN_free(bn);

	assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(x)), 256);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	X509_free(x);
	X509_free(ca);
}

static void test_other_ca(void **state)
{
	struct fx *f = *state;
	char other[400], ca_crt[512], err[512] = "";

	init_ca(f->ca, "test CA");
	issue_a(f);
	snprintf(other, sizeof(other), "%s/other", f->root);
	init_ca(other, "test CA"); /* same name, different key */
	snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", other);
	assert_int_equal(pki_verify(ca_crt, in(f, f->ca, "site-a.crt"), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "site-a.crt"));
	assert_non_null(strstr(err, "local issuer"));
}

static void test_init_twice(void **state)
{
	struct fx *f = *state;
	char err[512] = "", *key0, *crt0, *key1, *crt1;
	size_t kl0, cl0, kl1, cl1;

	init_ca(f->ca, "test CA");
	key0 = slurp(in(f, f->ca, "ca.key"), &kl0);
	crt0 = slurp(in(f, f->ca, "ca.crt"), &cl0);
	assert_int_equal(pki_ca_init(f->ca, "test CA", 3650, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ca.key"));
	assert_non_null(strstr(err, "exists"));
	key1 = slurp(in(f, f->ca, "ca.key"), &kl1);
	crt1 = slurp(in(f, f->ca, "ca.crt"), &cl1);
	assert_true(kl0 == kl1 && memcmp(key0, key1, kl0) == 0);
	assert_true(cl0 == cl1 && memcmp(crt0, crt1, cl0) == 0);

	/* A lone certificate also refuses, and no key appears next to it. */
	assert_int_equal(unlink(in(f, f->ca, "ca.key")), 0);
	assert_int_equal(pki_ca_init(f->ca, "test CA", 3650, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ca.crt"));
	assert_int_equal(entries(f->ca), 1);
	free(key0);
	free(crt0);
	free(key1);
	free(crt1);
}

static void test_issue_twice(void **state)
{
	struct fx *f = *state;
	char err[512] = "", *crt0, *crt1;
	size_t l0, l1;

	init_ca(f->ca, "test CA");
	issue_a(f);
	crt0 = slurp(in(f, f->ca, "site-a.crt"), &l0);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 825, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "exists"));
	crt1 = slurp(in(f, f->ca, "site-a.crt"), &l1);
	assert_true(l0 == l1 && memcmp(crt0, crt1, l0) == 0);
	/* Half a pair (the key deleted) also refuses. */
	assert_int_equal(unlink(in(f, f->ca, "site-a.key")), 0);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 825, err, sizeof(err)), -1);
	assert_int_equal(entries(f->ca), 3);
	free(crt0);
	free(crt1);
}

static void test_bad_site_names(void **state)
{
	struct fx *f = *state;
	char err[512], long_name[41];
	const char *bad[] = {"", "A", "../x", long_name, "site/a", "-a", "ca", NULL};
	size_t i;

	memset(long_name, 'a', 40);
	long_name[40] = '\0';
	init_ca(f->ca, "test CA");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pki_issue(f->ca, bad[i], HOSTS, 3, 825, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		assert_int_equal(entries(f->ca), 2);
		assert_int_equal(entries(f->root), 1);
	}
}

static void test_bad_hosts(void **state)
{
	struct fx *f = *state;
	char err[512];
	const char *bad[] = {"",      "a,DNS:evil.example", "a..example", "bad host",
			     "[::1]", "x.example."};
	size_t i;

	init_ca(f->ca, "test CA");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *hosts[] = {"b.example", bad[i]};

		err[0] = '\0';
		assert_int_equal(pki_issue(f->ca, "site-b", hosts, 2, 825, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "site-b.crt"));
		assert_int_equal(entries(f->ca), 2);
	}
	/* The site's own name as a host is not listed twice. */
	{
		const char *hosts[] = {"site-b"};
		GENERAL_NAMES *san;
		X509 *x;

		assert_int_equal(pki_issue(f->ca, "site-b", hosts, 1, 825, err, sizeof(err)), 0);
		x = load(in(f, f->ca, "site-b.crt"));
		san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
		assert_non_null(san);
		assert_int_equal(sk_GENERAL_NAME_num(san), 1);
		GENERAL_NAMES_free(san);
		X509_free(x);
	}
}

static void test_bad_days(void **state)
{
	struct fx *f = *state;
	char err[512];

	assert_int_equal(pki_ca_init(f->ca, "test CA", 0, err, sizeof(err)), -1);
	assert_int_equal(pki_ca_init(f->ca, "test CA", PKI_DAYS_MAX + 1, err, sizeof(err)), -1);
	assert_int_equal(entries(f->root), 0);
	init_ca(f->ca, "test CA");
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, -5, err, sizeof(err)), -1);
	assert_int_equal(entries(f->ca), 2);
}

/* A site certificate never outlives the CA that signs it. */
static void test_outlive_ca(void **state)
{
	struct fx *f = *state;
	char err[512] = "";

	assert_int_equal(pki_ca_init(f->ca, "test CA", 30, err, sizeof(err)), 0);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 31, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "outlive"));
	assert_int_equal(entries(f->ca), 2);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 29, err, sizeof(err)), 0);
	assert_int_equal(
	    pki_verify(in(f, f->ca, "ca.crt"), in(f, f->ca, "site-a.crt"), err, sizeof(err)), 0);
}

static void test_key_mismatch(void **state)
{
	struct fx *f = *state;
	char other[400], mixed[400], from[512], err[512] = "";
	char *data;
	size_t len;
	FILE *fp;

	snprintf(other, sizeof(other), "%s/other", f->root);
	snprintf(mixed, sizeof(mixed), "%s/mixed", f->root);
	init_ca(f->ca, "test CA");
	init_ca(other, "other CA");
	assert_int_equal(mkdir(mixed, 0700), 0);
	/* mixed/ca.crt from one CA, mixed/ca.key from the other. */
	snprintf(from, sizeof(from), "%s/ca.crt", f->ca);
	data = slurp(from, &len);
	fp = fopen(in(f, mixed, "ca.crt"), "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	free(data);
	snprintf(from, sizeof(from), "%s/ca.key", other);
	data = slurp(from, &len);
	fp = fopen(in(f, mixed, "ca.key"), "w");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	free(data);

	assert_int_equal(pki_issue(mixed, "site-a", HOSTS, 3, 825, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(entries(mixed), 2);
}

static void test_missing_ca(void **state)
{
	struct fx *f = *state;
	char err[512] = "";

	assert_int_equal(mkdir(f->ca, 0700), 0);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 825, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ca.crt"));
	assert_int_equal(entries(f->ca), 0);
	/* A certificate that is not PEM. */
	assert_int_equal(pki_ca_init(f->ca, "test CA", 30, err, sizeof(err)), 0);
	assert_int_equal(truncate(in(f, f->ca, "ca.crt"), 100), 0);
	assert_int_equal(pki_issue(f->ca, "site-a", NULL, 0, 825, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ca.crt"));
	assert_int_equal(entries(f->ca), 2);
}

static void test_cert_cn_errors(void **state)
{
	struct fx *f = *state;
	char cn[64], err[512] = "";
	FILE *fp;

	assert_int_equal(pki_cert_cn(in(f, f->root, "nope.crt"), cn, sizeof(cn), err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "nope.crt"));
	fp = fopen(in(f, f->root, "junk.crt"), "w");
	assert_non_null(fp);
	fputs("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(pki_cert_cn(in(f, f->root, "junk.crt"), cn, sizeof(cn), err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "junk.crt"));
	assert_int_equal(
	    pki_verify(in(f, f->root, "junk.crt"), in(f, f->root, "junk.crt"), err, sizeof(err)),
	    -1);

	init_ca(f->ca, "test CA");
	issue_a(f);
	/* "site-a" needs 7 bytes. */
	assert_int_equal(pki_cert_cn(in(f, f->ca, "site-a.crt"), cn, 6, err, sizeof(err)), -1);
	assert_int_equal(pki_cert_cn(in(f, f->ca, "site-a.crt"), cn, 7, err, sizeof(err)), 0);
	assert_string_equal(cn, "site-a");
}

/* The modes are exact whatever the caller's umask. */
static void test_umask(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(077);

	init_ca(f->ca, "test CA");
	umask(0);
	issue_a(f);
	umask(old);
	assert_int_equal(mode_of(in(f, f->ca, "ca.crt")), 0644);
	assert_int_equal(mode_of(in(f, f->ca, "site-a.key")), 0600);
	assert_int_equal(mode_of(in(f, f->ca, "site-a.crt")), 0644);
}

/* Parents of a missing directory are made; an existing directory is used as it is. */
static void test_dirs(void **state)
{
	struct fx *f = *state;
	char deep[400], file[400], err[512] = "";

	snprintf(deep, sizeof(deep), "%s/x/y/pki/", f->root);
	init_ca(deep, "test CA");
	snprintf(deep, sizeof(deep), "%s/x/y/pki", f->root);
	assert_int_equal(mode_of(deep), 0700);
	assert_int_equal(entries(deep), 2);
	snprintf(file, sizeof(file), "%s/x/y/pki/ca.crt", f->root);
	assert_int_equal(pki_ca_init(file, "test CA", 30, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a directory"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_issue_and_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_extensions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_init_twice, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_issue_twice, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_site_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_hosts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_days, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outlive_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_ca, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cert_cn_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_umask, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dirs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
