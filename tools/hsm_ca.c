#include "tools/hsm_ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/pki.h"
#include "tools/hsm_print.h"

#define CA_EXIT_OK    0
#define CA_EXIT_FAIL  1
#define CA_EXIT_USAGE 2

enum { CA_OPT_DIR = 1 << 0, CA_OPT_NAME = 1 << 1, CA_OPT_DAYS = 1 << 2, CA_OPT_HOST = 1 << 3 };

struct ca_args {
	const char *dir;
	const char *name;
	int days;
	const char **hosts; /* pointers into argv; the array is ours */
	size_t nhosts;
	char **pos; /* positional arguments, in argv */
	int npos;
};

static void ca_usage(FILE *f)
{
	fprintf(f,
		"usage: hsm ca init [--dir DIR] [--name NAME] [--days N]\n"
		"       hsm ca issue SITE [--dir DIR] [--host HOST]... [--days N]\n"
		"       hsm ca show FILE\n"
		"\n"
		"  init   make the deployment CA: DIR/ca.key and DIR/ca.crt\n"
		"         (DIR default " HSM_CA_DIR_DEFAULT ", NAME default \"" HSM_CA_NAME_DEFAULT
		"\",\n"
		"         N default %d days)\n"
		"  issue  make SITE's key and certificate, signed by the CA: DIR/SITE.key and\n"
		"         DIR/SITE.crt; each --host (DNS name or IP address) is added to the\n"
		"         subject alternative names (N default %d days)\n"
		"  show   print a certificate's subject, issuer, validity and names\n"
		"\n"
		"Existing files are never replaced: remove them first.\n"
		"Exit status: 0 done, 1 failed, 2 usage error.\n",
		PKI_CA_DAYS_DEFAULT, PKI_SITE_DAYS_DEFAULT);
}

static int ca_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ca_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hsm: ca: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see hsm ca --help)\n");
	return CA_EXIT_USAGE;
}

static int ca_fail(const char *msg)
{
	fprintf(stderr, "hsm: ca: %s\n", msg);
	return CA_EXIT_FAIL;
}

static int ca_flush(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE)
			fprintf(stderr, "hsm: ca: write error on standard output: %s\n",
				strerror(errno));
		return CA_EXIT_FAIL;
	}
	return rc;
}

static int ca_parse_days(const char *s, int *days)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > PKI_DAYS_MAX)
		return -1;
	*days = (int)v;
	return 0;
}

/* Parses the options of a subcommand; argv[0] is the subcommand. allowed says which
 * options it takes. Returns -1 with *rc set when the command must stop. */
static int ca_parse(int argc, char **argv, unsigned allowed, struct ca_args *a, int *rc)
{
	static const struct option lo[] = {
	    {"dir", required_argument, NULL, 'd'},  {"name", required_argument, NULL, 'n'},
	    {"days", required_argument, NULL, 't'}, {"host", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},	    {0},
	};
	int ch;

	/* The hosts can be no more than the arguments. */
	a->hosts = calloc((size_t)argc + 1, sizeof(*a->hosts));
	if (!a->hosts) {
		*rc = ca_fail("out of memory");
		return -1;
	}
	/* hsm has run getopt on its own vector already; 0 makes glibc start over. */
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:n:t:H:h", lo, NULL)) != -1) {
		unsigned need = ch == 'd'   ? CA_OPT_DIR
				: ch == 'n' ? CA_OPT_NAME
				: ch == 't' ? CA_OPT_DAYS
				: ch == 'H' ? CA_OPT_HOST
					    : 0;

		if (need && !(allowed & need)) {
			const struct option *o = lo;

			while (o->val != ch)
				o++;
			*rc = ca_usage_error("%s: option '--%s' does not apply", argv[0], o->name);
			return -1;
		}
		switch (ch) {
		case 'd':
			a->dir = optarg;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 't':
			if (ca_parse_days(optarg, &a->days) < 0) {
				*rc = ca_usage_error("%s: --days '%s': must be a number of days, "
						     "1..%d",
						     argv[0], optarg, PKI_DAYS_MAX);
				return -1;
			}
			break;
		case 'H':
			a->hosts[a->nhosts++] = optarg;
			break;
		case 'h':
			ca_usage(stdout);
			*rc = ca_flush(CA_EXIT_OK);
			return -1;
		case ':':
			*rc = ca_usage_error("%s: option '%s' needs an argument", argv[0],
					     argv[optind - 1]);
			return -1;
		default:
			/* Inside a cluster (-xd) optind has not moved: name the letter. */
			if (optopt)
				*rc = ca_usage_error("%s: unknown option '-%c'", argv[0], optopt);
			else
				*rc = ca_usage_error("%s: unknown option '%s'", argv[0],
						     argv[optind - 1]);
			return -1;
		}
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	return 0;
}

static void ca_print_written(const char *dir, const char *base)
{
	printf("wrote %s/%s.key\nwrote %s/%s.crt\n", dir, base, dir, base);
}

static int ca_init(int argc, char **argv)
{
	struct ca_args a = {
	    .dir = HSM_CA_DIR_DEFAULT, .name = HSM_CA_NAME_DEFAULT, .days = PKI_CA_DAYS_DEFAULT};
	char err[1024];
	int rc;

	if (ca_parse(argc, argv, CA_OPT_DIR | CA_OPT_NAME | CA_OPT_DAYS, &a, &rc) < 0)
		goto out;
	if (a.npos != 0) {
		rc = ca_usage_error("init: unexpected argument '%s'", a.pos[0]);
		goto out;
	}
	if (!*a.dir || !*a.name) {
		rc = ca_usage_error("init: --dir and --name must not be empty");
		goto out;
	}
	if (pki_ca_init(a.dir, a.name, a.days, err, sizeof(err)) < 0) {
		rc = ca_fail(err);
		goto out;
	}
	ca_print_written(a.dir, "ca");
	rc = ca_flush(CA_EXIT_OK);
out:
	free(a.hosts);
	return rc;
}

static int ca_issue(int argc, char **argv)
{
	struct ca_args a = {.dir = HSM_CA_DIR_DEFAULT, .days = PKI_SITE_DAYS_DEFAULT};
	char err[1024];
	int rc;

	if (ca_parse(argc, argv, CA_OPT_DIR | CA_OPT_DAYS | CA_OPT_HOST, &a, &rc) < 0)
		goto out;
	if (a.npos != 1) {
		rc = a.npos == 0 ? ca_usage_error("issue: which SITE?")
				 : ca_usage_error("issue: unexpected argument '%s'", a.pos[1]);
		goto out;
	}
	if (!*a.dir) {
		rc = ca_usage_error("issue: --dir must not be empty");
		goto out;
	}
	if (pki_issue(a.dir, a.pos[0], a.hosts, a.nhosts, a.days, err, sizeof(err)) < 0) {
		rc = ca_fail(err);
		goto out;
	}
	ca_print_written(a.dir, a.pos[0]);
	rc = ca_flush(CA_EXIT_OK);
out:
	free(a.hosts);
	return rc;
}

/* Certificate fields are the issuer's words, not ours: printed escaped. */
static void ca_put_asn1(const ASN1_STRING *s)
{
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, s);

	if (len < 0) {
		ERR_clear_error();
		fputs("?", stdout);
		return;
	}
	hsm_put_escaped(stdout, (const char *)utf8, (size_t)len);
	OPENSSL_free(utf8);
}

static void ca_put_cn(const char *label, const X509_NAME *name)
{
	int idx = -1, n = 0;

	printf("%-10s ", label);
	while ((idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0) {
		if (n++)
			fputs(", ", stdout);
		ca_put_asn1(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	}
	if (n == 0)
		fputs("-", stdout);
	putchar('\n');
}

static void ca_put_time(const char *label, const ASN1_TIME *t)
{
	struct tm tm;
	char buf[64];

	if (!ASN1_TIME_to_tm(t, &tm) ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, sizeof(buf), "?");
	printf("%-10s %s\n", label, buf);
}

static void ca_put_san(const X509 *x)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i;

	printf("%-10s ", "names:");
	if (!gens || sk_GENERAL_NAME_num(gens) == 0)
		fputs("-", stdout);
	for (i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		char addr[INET6_ADDRSTRLEN];
		int type;
		ASN1_STRING *s = GENERAL_NAME_get0_value(gn, &type);

		if (i)
			fputs(", ", stdout);
		if (type == GEN_DNS) {
			fputs("DNS:", stdout);
			ca_put_asn1(s);
		} else if (type == GEN_IPADD &&
			   (ASN1_STRING_length(s) == 4 || ASN1_STRING_length(s) == 16) &&
			   inet_ntop(ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6,
				     ASN1_STRING_get0_data(s), addr, sizeof(addr))) {
			printf("IP:%s", addr);
		} else {
			printf("(type %d)", type);
		}
	}
	putchar('\n');
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
}

static int ca_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int ca_show(int argc, char **argv)
{
	struct ca_args a = {0};
	const char *status;
	FILE *f;
	X509 *x;
	int rc;

	if (ca_parse(argc, argv, 0, &a, &rc) < 0)
		goto out;
	if (a.npos != 1) {
		rc = a.npos == 0 ? ca_usage_error("show: which FILE?")
				 : ca_usage_error("show: unexpected argument '%s'", a.pos[1]);
		goto out;
	}
	f = fopen(a.pos[0], "re");
	if (!f) {
		fprintf(stderr, "hsm: ca: %s: cannot open: %s\n", a.pos[0], strerror(errno));
		rc = CA_EXIT_FAIL;
		goto out;
	}
	x = PEM_read_X509(f, NULL, ca_no_passphrase, NULL);
	fclose(f);
	if (!x) {
		ERR_clear_error();
		fprintf(stderr, "hsm: ca: %s: not a PEM certificate\n", a.pos[0]);
		rc = CA_EXIT_FAIL;
		goto out;
	}
	ca_put_cn("subject:", X509_get_subject_name(x));
	ca_put_cn("issuer:", X509_get_issuer_name(x));
	ca_put_time("from:", X509_get0_notBefore(x));
	ca_put_time("until:", X509_get0_notAfter(x));
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		status = "not yet valid";
	else if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		status = "expired";
	else
		status = "valid now";
	printf("%-10s %s\n", "status:", status);
	ca_put_san(x);
	printf("%-10s %s\n", "ca:", X509_check_ca(x) ? "yes" : "no");
	X509_free(x);
	rc = ca_flush(CA_EXIT_OK);
out:
	free(a.hosts);
	return rc;
}

int hsm_ca_main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		ca_usage(stderr);
		return CA_EXIT_USAGE;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		ca_usage(stdout);
		return ca_flush(CA_EXIT_OK);
	}
	/* The subcommand becomes argv[0] of its own option parsing. */
	if (strcmp(cmd, "init") == 0)
		return ca_init(argc - 1, argv + 1);
	if (strcmp(cmd, "issue") == 0)
		return ca_issue(argc - 1, argv + 1);
	if (strcmp(cmd, "show") == 0)
		return ca_show(argc - 1, argv + 1);
	return ca_usage_error("unknown command '%s'", cmd);
}
