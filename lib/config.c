/* hsmd.conf: an INI-style file read once at start (and on reload) into a
 * struct hsm_config. The parser stops at the first error and reports it as
 * "FILE:LINE: what was found, what was expected"; a config is either entirely
 * valid or not returned at all. Keys live in one table (cfg_keys) with the
 * handler that checks and stores each value. */
#include "lib/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "lib/hsmxattr.h"
#include "lib/log.h"
#include "lib/manifest.h"

#define CFG_FILE_MAX	(1 << 20)
#define CFG_CRED_MAX	(64 << 10)
#define CFG_SOCKET_MAX	107 /* sun_path is 108 bytes including the NUL */
#define CFG_S3_PART_MIN (5ull << 20)
#define CFG_S3_PART_MAX (5ull << 30) /* also the largest single PUT */
#define CFG_PREFIX_MAX	512
#define CFG_SHOW_MAX	60
#define CFG_SHOW_BUF	(4 * CFG_SHOW_MAX + 4)

#define CFG_DEFAULT_STATE_DIR "/var/lib/hsmd"
#define CFG_DEFAULT_SOCKET    "/run/hsmd/hsmd.sock"
#define CFG_GUARD_SUFFIX      ".guard" /* guard_socket defaults to socket + this */
#define CFG_DEFAULT_GROUP     "hsm"
#define CFG_DEFAULT_REGION    "us-east-1"

enum cfg_section { SEC_NONE, SEC_SITE, SEC_STORE, SEC_VOLUME, SEC_PEER };

struct cfg_parser;
struct cfg_key;

typedef int (*cfg_setter)(struct cfg_parser *p, const struct cfg_key *k, void *field,
			  const char *v);

/* flags of a key */
#define CFG_U32	     0x1 /* the field is a uint32_t (sizes) */
#define CFG_NOT_ROOT 0x2 /* a path that must not be "/" */

struct cfg_key {
	int section;
	const char *name;
	cfg_setter set;
	size_t off; /* of the field in struct hsm_config, or struct hsm_volume_cfg */
	uint64_t min, max;
	uint64_t align;
	int flags;
};

#define CFG_NKEYS 34

struct cfg_volmeta {
	int line;
	int key_line[CFG_NKEYS];
	char *peers; /* "peers =" as written, resolved once every [peer] is known */
};

struct cfg_peermeta {
	int key_line[CFG_NKEYS];
};

struct cfg_parser {
	const char *name;
	struct hsm_config *cfg;
	char *err;
	size_t errlen;
	int failed;
	int line;
	int section;
	int site_line; /* where [site] was opened, 0 if never */
	int store_line;
	int key_line[CFG_NKEYS]; /* line that set each [site]/[store] key, 0 if unset */
	struct cfg_volmeta vol[HSM_VOLUMES_MAX];
	struct cfg_peermeta peer[HSM_PEERS_MAX];
};

static void cfg_fail(struct cfg_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_fail(struct cfg_parser *p, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->failed)
		return;
	p->failed = 1;
	if (!p->err || !p->errlen)
		return;
	n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Text from the file in a message: bounded, unprintable bytes as \xNN. */
static const char *cfg_show(const char *s, char out[CFG_SHOW_BUF])
{
	size_t o = 0, i;

	for (i = 0; s[i] && i < CFG_SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
	}
	if (s[i]) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static int cfg_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static char *cfg_skip_space(char *s)
{
	while (cfg_is_space(*s))
		s++;
	return s;
}

static char *cfg_trim(char *s)
{
	size_t n;

	s = cfg_skip_space(s);
	n = strlen(s);
	while (n && cfg_is_space(s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Numbers and sizes */

static int cfg_parse_uint(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "kKMGT";
	static const unsigned shift[] = {10, 10, 20, 30, 40};
	uint64_t v = 0;
	const char *u;
	size_t i;

	if (!s || !out)
		goto bad;
	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			goto range;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		goto bad;
	if (s[i]) {
		u = strchr(units, s[i]);
		if (!u)
			goto bad;
		if (strcmp(s + i + 1, "") && strcmp(s + i + 1, "B") && strcmp(s + i + 1, "iB"))
			goto bad;
		if (v > UINT64_MAX >> shift[u - units])
			goto range;
		v <<= shift[u - units];
	}
	*out = v;
	return 0;
range:
	errno = ERANGE;
	return -1;
bad:
	errno = EINVAL;
	return -1;
}

/* Sizes in messages as they would be written: 5M rather than 5242880. */
static const char *cfg_size_str(uint64_t v, char out[32])
{
	static const char units[] = "TGMk";

	for (int i = 0; i < 4; i++) {
		unsigned sh = 40 - 10 * (unsigned)i;

		if (v && v % (1ull << sh) == 0) {
			snprintf(out, 32, "%llu%c", (unsigned long long)(v >> sh), units[i]);
			return out;
		}
	}
	snprintf(out, 32, "%llu", (unsigned long long)v);
	return out;
}

/* Paths */

enum { CFG_PATH_OK, CFG_PATH_RELATIVE, CFG_PATH_DOTDOT, CFG_PATH_LONG, CFG_PATH_NOMEM };

/* Absolute, without empty or "." components and without a trailing '/';
 * ".." is refused rather than resolved, since it would hide where a path points. */
static int cfg_path_normalize(const char *in, char **out)
{
	size_t k = 0;
	char *o;

	if (in[0] != '/')
		return CFG_PATH_RELATIVE;
	o = malloc(strlen(in) + 2);
	if (!o)
		return CFG_PATH_NOMEM;
	while (*in) {
		const char *end;
		size_t len;

		while (*in == '/')
			in++;
		if (!*in)
			break;
		end = in + strcspn(in, "/");
		len = (size_t)(end - in);
		if (len == 2 && in[0] == '.' && in[1] == '.') {
			free(o);
			return CFG_PATH_DOTDOT;
		}
		if (!(len == 1 && in[0] == '.')) {
			o[k++] = '/';
			memcpy(o + k, in, len);
			k += len;
		}
		in = end;
	}
	if (k == 0)
		o[k++] = '/';
	o[k] = '\0';
	if (k >= PATH_MAX) {
		free(o);
		return CFG_PATH_LONG;
	}
	*out = o;
	return CFG_PATH_OK;
}

/* 1 if path is root or lies below it (on a component boundary). */
static int cfg_path_inside(const char *path, const char *root)
{
	size_t n = strlen(root);

	if (strcmp(root, "/") == 0)
		return 1;
	return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int cfg_oom(struct cfg_parser *p)
{
	cfg_fail(p, p->line, "out of memory");
	return -1;
}

static int cfg_path_value(struct cfg_parser *p, const char *what, const char *v, size_t max,
			  char **out)
{
	char shown[CFG_SHOW_BUF];

	switch (cfg_path_normalize(v, out)) {
	case CFG_PATH_OK:
		break;
	case CFG_PATH_RELATIVE:
		cfg_fail(p, p->line,
			 "%s \"%s\" is not an absolute path: expected a path "
			 "starting with '/'",
			 what, cfg_show(v, shown));
		return -1;
	case CFG_PATH_DOTDOT:
		cfg_fail(p, p->line,
			 "%s \"%s\" contains a \"..\" component: expected a path "
			 "without \"..\"",
			 what, cfg_show(v, shown));
		return -1;
	case CFG_PATH_LONG:
		cfg_fail(p, p->line, "%s is too long: at most %d bytes", what, PATH_MAX - 1);
		return -1;
	default:
		return cfg_oom(p);
	}
	if (strlen(*out) > max) {
		cfg_fail(p, p->line, "%s \"%s\" is too long: at most %zu bytes", what,
			 cfg_show(*out, shown), max);
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/* Credentials: a file of their own so hsmd.conf can be world-readable. Values never
 * appear in messages. */

#define CFG_CRED_KEYS 3

struct cfg_cred {
	struct cfg_parser *p;
	const char *path;
	int cline; /* line in the credentials file */
	int key_line[CFG_CRED_KEYS];
	char *val[CFG_CRED_KEYS];
};

static const char *const cfg_cred_names[CFG_CRED_KEYS] = {
    "access_key",
    "secret_key",
    "session_token",
};

enum {
	CFG_SPLIT_OK,
	CFG_SPLIT_NO_EQUALS,
	CFG_SPLIT_NO_KEY,
	CFG_SPLIT_EMPTY,
	CFG_SPLIT_UNTERMINATED,
	CFG_SPLIT_BAD_ESCAPE,
	CFG_SPLIT_AFTER_QUOTE,
};

static const char *const cfg_split_msg[] = {
    [CFG_SPLIT_NO_EQUALS] = "expected \"key = value\"",
    [CFG_SPLIT_NO_KEY] = "missing key before \"=\"",
    [CFG_SPLIT_EMPTY] = "missing value",
    [CFG_SPLIT_UNTERMINATED] = "unterminated quoted value",
    [CFG_SPLIT_BAD_ESCAPE] = "bad escape in quoted value: only \\\" and \\\\ are allowed",
    [CFG_SPLIT_AFTER_QUOTE] = "unexpected text after the closing quote",
};

static int cfg_split_quoted(char *s, char **val)
{
	char *o = s, *v = s;

	for (;;) {
		if (!*s)
			return CFG_SPLIT_UNTERMINATED;
		if (*s == '"')
			break;
		if (*s == '\\') {
			s++;
			if (*s != '"' && *s != '\\')
				return CFG_SPLIT_BAD_ESCAPE;
		}
		*o++ = *s++;
	}
	s = cfg_skip_space(s + 1);
	if (*s && *s != '#')
		return CFG_SPLIT_AFTER_QUOTE;
	*o = '\0';
	*val = v;
	return CFG_SPLIT_OK;
}

/* Splits a trimmed "key = value [# comment]" line in place. *key is set as soon as
 * it is known, so messages about the value can name it. Without inline_comments an
 * unquoted '#' is part of the value: secrets may contain one, and cutting a secret
 * short would only show up later as a refused signature. */
static int cfg_split(char *s, char **key, char **val, int inline_comments)
{
	char *k = s, *kend;
	int r;

	while (*s && *s != '=' && !cfg_is_space(*s))
		s++;
	if (s == k)
		return *s == '=' ? CFG_SPLIT_NO_KEY : CFG_SPLIT_NO_EQUALS;
	kend = s;
	s = cfg_skip_space(s);
	if (*s != '=')
		return CFG_SPLIT_NO_EQUALS;
	*kend = '\0';
	*key = k;
	s = cfg_skip_space(s + 1);
	if (*s == '"') {
		r = cfg_split_quoted(s + 1, val);
		if (r != CFG_SPLIT_OK)
			return r;
	} else {
		char *hash = inline_comments ? strchr(s, '#') : NULL;

		if (hash)
			*hash = '\0';
		*val = cfg_trim(s);
	}
	return **val ? CFG_SPLIT_OK : CFG_SPLIT_EMPTY;
}

static void cfg_cred_fail(struct cfg_cred *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void cfg_cred_fail(struct cfg_cred *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->cline)
		cfg_fail(c->p, c->p->line, "credentials file %s line %d: %s", c->path, c->cline,
			 msg);
	else
		cfg_fail(c->p, c->p->line, "credentials file %s: %s", c->path, msg);
}

/* A key is echoed only if it looks like one: a bare secret on a line must not be. */
static int cfg_cred_key_printable(const char *k)
{
	size_t n = strspn(k, "abcdefghijklmnopqrstuvwxyz_");

	return n == strlen(k) && n <= 20;
}

static int cfg_cred_line(struct cfg_cred *c, char *s)
{
	char *key = NULL, *val = NULL;
	int r, i;

	s = cfg_trim(s);
	if (!*s || *s == '#')
		return 0;
	r = cfg_split(s, &key, &val, 0);
	if (r != CFG_SPLIT_OK) {
		cfg_cred_fail(c, "%s", cfg_split_msg[r]);
		return -1;
	}
	for (i = 0; i < CFG_CRED_KEYS; i++)
		if (strcmp(key, cfg_cred_names[i]) == 0)
			break;
	if (i == CFG_CRED_KEYS) {
		if (cfg_cred_key_printable(key))
			cfg_cred_fail(c,
				      "unknown key \"%s\": expected access_key, secret_key or "
				      "session_token",
				      key);
		else
			cfg_cred_fail(c, "unknown key: expected access_key, secret_key or "
					 "session_token");
		return -1;
	}
	if (c->key_line[i]) {
		cfg_cred_fail(c, "duplicate key \"%s\" (first set at line %d)", key,
			      c->key_line[i]);
		return -1;
	}
	for (const char *q = val; *q; q++) {
		if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
			cfg_cred_fail(c, "%s contains a space or control character", key);
			return -1;
		}
	}
	/* curl takes "KEY:SECRET" and splits at the first ':'. */
	if (i == 0 && strchr(val, ':')) {
		cfg_cred_fail(c, "access_key must not contain ':'");
		return -1;
	}
	c->val[i] = strdup(val);
	if (!c->val[i])
		return cfg_oom(c->p);
	c->key_line[i] = c->cline;
	return 0;
}

static int cfg_cred_parse(struct cfg_cred *c, char *text, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		char *line = text + pos;
		char *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;

		c->cline++;
		if (memchr(line, '\0', n)) {
			cfg_cred_fail(c, "NUL byte in line");
			return -1;
		}
		line[n] = '\0';
		if (cfg_cred_line(c, line) < 0)
			return -1;
		pos += n + 1;
	}
	c->cline = 0;
	if (!c->val[0] || !c->val[1]) {
		cfg_cred_fail(c, "missing %s", c->val[0] ? "secret_key" : "access_key");
		return -1;
	}
	return 0;
}

static int cfg_cred_check_file(struct cfg_cred *c, int fd, size_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		cfg_cred_fail(c, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_cred_fail(c, "not a regular file");
		return -1;
	}
	if (st.st_mode & 077) {
		cfg_cred_fail(c,
			      "mode %04o gives access to group or others: expected 0600 "
			      "(chmod 600 %s)",
			      (unsigned)(st.st_mode & 07777), c->path);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		cfg_cred_fail(c, "owned by uid %u: expected root or uid %u", (unsigned)st.st_uid,
			      (unsigned)geteuid());
		return -1;
	}
	if (st.st_size > CFG_CRED_MAX) {
		cfg_cred_fail(c, "too large (%lld bytes): at most %d", (long long)st.st_size,
			      CFG_CRED_MAX);
		return -1;
	}
	*size = (size_t)st.st_size;
	return 0;
}

/* Reads at most cap bytes; returns the count or -1. */
static ssize_t cfg_read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int cfg_cred_read(struct cfg_cred *c, char **text, size_t *len)
{
	size_t size = 0;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO in place of the file must fail the check, not hang us. */
	fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		cfg_cred_fail(c, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (cfg_cred_check_file(c, fd, &size) < 0)
		goto fail;
	*text = malloc(size + 1);
	if (!*text) {
		cfg_oom(c->p);
		goto fail;
	}
	n = cfg_read_all(fd, *text, size);
	if (n < 0) {
		cfg_cred_fail(c, "cannot read: %s", strerror(errno));
		free(*text);
		goto fail;
	}
	close(fd);
	*len = (size_t)n;
	return 0;
fail:
	close(fd);
	return -1;
}

static int cfg_set_credentials(struct cfg_parser *p, const struct cfg_key *k, void *field,
			       const char *v)
{
	struct hsm_store_cfg *st = &p->cfg->store;
	struct cfg_cred c = {.p = p};
	char *text = NULL;
	size_t len = 0;
	int r;

	(void)k;
	(void)field;
	if (cfg_path_value(p, "credentials", v, PATH_MAX - 1, &st->credentials) < 0)
		return -1;
	c.path = st->credentials;
	if (cfg_cred_read(&c, &text, &len) < 0)
		return -1;
	r = cfg_cred_parse(&c, text, len);
	explicit_bzero(text, len);
	free(text);
	if (r < 0) {
		for (int i = 0; i < CFG_CRED_KEYS; i++) {
			if (c.val[i])
				explicit_bzero(c.val[i], strlen(c.val[i]));
			free(c.val[i]);
		}
		return -1;
	}
	st->access_key = c.val[0];
	st->secret_key = c.val[1];
	st->session_token = c.val[2];
	return 0;
}

/* Value setters */

static int cfg_store_string(struct cfg_parser *p, void *field, const char *v)
{
	char **dst = field;

	*dst = strdup(v);
	return *dst ? 0 : cfg_oom(p);
}

static int cfg_set_site(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF];

	(void)k;
	if (!hsm_site_name_valid(v)) {
		cfg_fail(p, p->line,
			 "invalid site name \"%s\": expected 1 to %d of a-z, 0-9, "
			 "'_', '-', starting with a letter",
			 cfg_show(v, shown), HSM_SITE_MAX);
		return -1;
	}
	return cfg_store_string(p, field, v);
}

static int cfg_set_path(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char **dst = field;

	if (cfg_path_value(p, k->name, v, k->max, dst) < 0)
		return -1;
	if ((k->flags & CFG_NOT_ROOT) && strcmp(*dst, "/") == 0) {
		cfg_fail(p, p->line, "%s must not be \"/\": expected a directory below the root",
			 k->name);
		return -1;
	}
	return 0;
}

static int cfg_set_group(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789_.-";
	char shown[CFG_SHOW_BUF];

	if (strspn(v, ok) != strlen(v) || v[0] == '-' || strlen(v) > 32) {
		cfg_fail(p, p->line,
			 "invalid %s \"%s\": expected a group name of at most 32 "
			 "letters, digits, '_', '.', '-'",
			 k->name, cfg_show(v, shown));
		return -1;
	}
	return cfg_store_string(p, field, v);
}

static int cfg_set_log_level(struct cfg_parser *p, const struct cfg_key *k, void *field,
			     const char *v)
{
	char shown[CFG_SHOW_BUF];
	int level = log_level_parse(v);

	if (level < 0) {
		cfg_fail(p, p->line, "bad %s \"%s\": expected error, warn, info or debug", k->name,
			 cfg_show(v, shown));
		return -1;
	}
	*(int *)field = level;
	return 0;
}

static int cfg_set_int(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF];
	uint64_t n;

	if (cfg_parse_uint(v, &n) < 0 || n < k->min || n > k->max) {
		cfg_fail(p, p->line, "bad %s \"%s\": expected a whole number from %llu to %llu",
			 k->name, cfg_show(v, shown), (unsigned long long)k->min,
			 (unsigned long long)k->max);
		return -1;
	}
	*(int *)field = (int)n;
	return 0;
}

static int cfg_set_size(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF], lo[32], hi[32];
	uint64_t n;

	if (config_parse_size(v, &n) < 0) {
		cfg_fail(p, p->line,
			 "bad %s \"%s\": expected a size such as 4096, 512k, 4M, "
			 "64MiB or 1G",
			 k->name, cfg_show(v, shown));
		return -1;
	}
	if (n < k->min || n > k->max) {
		cfg_fail(p, p->line, "%s %s is out of range: expected %s to %s", k->name,
			 cfg_show(v, shown), cfg_size_str(k->min, lo), cfg_size_str(k->max, hi));
		return -1;
	}
	if (k->align && n % k->align) {
		cfg_fail(p, p->line, "%s %s is not a multiple of %llu", k->name, cfg_show(v, shown),
			 (unsigned long long)k->align);
		return -1;
	}
	if (k->flags & CFG_U32)
		*(uint32_t *)field = (uint32_t)n;
	else
		*(uint64_t *)field = n;
	return 0;
}

/* Seconds as "30" or "2.5": strtod alone would also take "inf", "1e9" and hex. */
static int cfg_set_seconds(struct cfg_parser *p, const struct cfg_key *k, void *field,
			   const char *v)
{
	char shown[CFG_SHOW_BUF];
	size_t whole = strspn(v, "0123456789");
	int ok = whole > 0;
	double d = 0;

	if (ok && v[whole] == '.')
		ok = v[whole + 1] && strspn(v + whole + 1, "0123456789") == strlen(v + whole + 1);
	else if (ok)
		ok = v[whole] == '\0';
	if (ok)
		d = strtod(v, NULL);
	if (!ok || !(d > 0) || d > (double)k->max) {
		cfg_fail(p, p->line,
			 "bad %s \"%s\": expected seconds, more than 0 and at most "
			 "%llu",
			 k->name, cfg_show(v, shown), (unsigned long long)k->max);
		return -1;
	}
	*(double *)field = d;
	return 0;
}

static int cfg_set_recall(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF];

	if (strcmp(v, "open") == 0) {
		*(int *)field = HSM_RECALL_OPEN;
	} else if (strcmp(v, "access") == 0) {
		*(int *)field = HSM_RECALL_ACCESS;
	} else {
		cfg_fail(p, p->line, "bad %s \"%s\": expected open or access", k->name,
			 cfg_show(v, shown));
		return -1;
	}
	return 0;
}

static int cfg_set_guard(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF];

	if (strcmp(v, "auto") == 0) {
		*(int *)field = HSM_GUARD_AUTO;
	} else if (strcmp(v, "external") == 0) {
		*(int *)field = HSM_GUARD_EXTERNAL;
	} else {
		cfg_fail(p, p->line, "bad %s \"%s\": expected auto or external", k->name,
			 cfg_show(v, shown));
		return -1;
	}
	return 0;
}

static int cfg_set_priority(struct cfg_parser *p, const struct cfg_key *k, void *field,
			    const char *v)
{
	static const char *const names[] = {"normal", "first", "last", "never"};
	char shown[CFG_SHOW_BUF];

	for (int i = 0; i < 4; i++) {
		if (strcmp(v, names[i]) == 0) {
			*(int *)field = i;
			return 0;
		}
	}
	cfg_fail(p, p->line, "bad %s \"%s\": expected normal, first, last or never", k->name,
		 cfg_show(v, shown));
	return -1;
}

/* Kept as written; checked against the [peer] sections at the end. */
static int cfg_set_vol_peers(struct cfg_parser *p, const struct cfg_key *k, void *field,
			     const char *v)
{
	(void)k;
	(void)field;
	p->vol[p->cfg->nvolumes - 1].peers = strdup(v);
	return p->vol[p->cfg->nvolumes - 1].peers ? 0 : cfg_oom(p);
}

static int cfg_set_region(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF];

	if (strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(v) || strlen(v) > 32) {
		cfg_fail(p, p->line, "bad %s \"%s\": expected a region name such as us-east-1",
			 k->name, cfg_show(v, shown));
		return -1;
	}
	return cfg_store_string(p, field, v);
}

static int cfg_host_valid(const char *h, size_t n)
{
	static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-_";
	size_t i;

	if (n == 0)
		return 0;
	if (h[0] == '[') {
		if (n < 3 || h[n - 1] != ']')
			return 0;
		for (i = 1; i < n - 1; i++)
			if (!strchr("0123456789abcdefABCDEF:.", h[i]))
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++)
		if (!strchr(name_chars, h[i]))
			return 0;
	return 1;
}

static int cfg_port_valid(const char *s, size_t n)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

static int cfg_set_endpoint(struct cfg_parser *p, const struct cfg_key *k, void *field,
			    const char *v)
{
	char shown[CFG_SHOW_BUF];
	const char *host, *colon, *end;

	if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else
		goto bad;
	end = host + strlen(host);
	if (end > host && end[-1] == '/')
		end--;
	colon = host[0] == '[' ? memchr(host, ']', (size_t)(end - host)) : host;
	if (!colon)
		goto bad;
	colon = memchr(colon, ':', (size_t)(end - colon));
	if (!cfg_host_valid(host, (size_t)((colon ? colon : end) - host)))
		goto bad;
	if (colon && !cfg_port_valid(colon + 1, (size_t)(end - colon - 1)))
		goto bad;
	*(char **)field = strndup(v, (size_t)(end - v));
	return *(char **)field ? 0 : cfg_oom(p);
bad:
	cfg_fail(p, p->line, "bad %s \"%s\": expected http://HOST[:PORT] or https://HOST[:PORT]",
		 k->name, cfg_show(v, shown));
	return -1;
}

/* "ADDR:PORT" with a numeric address: the peer server binds exactly what is written. */
static int cfg_set_listen(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	char shown[CFG_SHOW_BUF], addr[64];
	const char *colon = strrchr(v, ':');
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;

	if (!colon || !cfg_port_valid(colon + 1, strlen(colon + 1)))
		goto bad;
	n = (size_t)(colon - v);
	if (n >= 2 && v[0] == '[' && v[n - 1] == ']' && n - 2 < sizeof(addr)) {
		memcpy(addr, v + 1, n - 2);
		addr[n - 2] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			goto bad;
	} else {
		if (n >= sizeof(addr))
			goto bad;
		memcpy(addr, v, n);
		addr[n] = '\0';
		if (inet_pton(AF_INET, addr, &a4) != 1)
			goto bad;
	}
	return cfg_store_string(p, field, v);
bad:
	cfg_fail(p, p->line, "bad %s \"%s\": expected IPV4:PORT or [IPV6]:PORT (a numeric address)",
		 k->name, cfg_show(v, shown));
	return -1;
}

static int cfg_set_peer_url(struct cfg_parser *p, const struct cfg_key *k, void *field,
			    const char *v)
{
	char shown[CFG_SHOW_BUF];

	if (strncmp(v, "https://", 8) != 0) {
		cfg_fail(p, p->line,
			 "bad %s \"%s\": expected https://HOST:PORT (peers talk TLS only)", k->name,
			 cfg_show(v, shown));
		return -1;
	}
	return cfg_set_endpoint(p, k, field, v);
}

/* S3 bucket naming rules: 3 to 63 of [a-z0-9.-], starting and ending alphanumeric. */
static int cfg_bucket_valid(const char *b, size_t n)
{
	if (n < 3 || n > 63 || strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") < n)
		return 0;
	return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

/* The prefix becomes part of every object key, so it obeys the store's key rules
 * ([A-Za-z0-9/._-], no ".." component); empty components are collapsed. */
static int cfg_prefix_normalize(const char *in, char **out)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789/._-";
	size_t k = 0;
	char *o;

	if (strspn(in, ok) != strlen(in) || strlen(in) > CFG_PREFIX_MAX)
		return -1;
	o = malloc(strlen(in) + 1);
	if (!o)
		return -2;
	while (*in) {
		const char *end;
		size_t len;

		while (*in == '/')
			in++;
		if (!*in)
			break;
		end = in + strcspn(in, "/");
		len = (size_t)(end - in);
		if ((len == 2 && !memcmp(in, "..", 2)) || (len == 1 && in[0] == '.')) {
			free(o);
			return -1;
		}
		if (k)
			o[k++] = '/';
		memcpy(o + k, in, len);
		k += len;
		in = end;
	}
	o[k] = '\0';
	*out = o;
	return 0;
}

static int cfg_url_s3(struct cfg_parser *p, struct hsm_store_cfg *st, const char *v)
{
	const char *b = v + 5;
	size_t n = strcspn(b, "/");
	char shown[CFG_SHOW_BUF], bshown[CFG_SHOW_BUF];
	int r;

	if (n == 0) {
		cfg_fail(p, p->line,
			 "store url \"%s\" has no bucket: expected "
			 "s3://BUCKET[/PREFIX]",
			 cfg_show(v, shown));
		return -1;
	}
	st->bucket = strndup(b, n);
	if (!st->bucket)
		return cfg_oom(p);
	if (!cfg_bucket_valid(b, n)) {
		cfg_fail(p, p->line,
			 "invalid bucket name \"%s\": expected 3 to 63 of a-z, 0-9, "
			 "'.', '-', starting and ending with a letter or digit",
			 cfg_show(st->bucket, bshown));
		return -1;
	}
	r = cfg_prefix_normalize(b + n, &st->prefix);
	if (r == -2)
		return cfg_oom(p);
	if (r < 0) {
		cfg_fail(p, p->line,
			 "invalid prefix in store url \"%s\": expected at most %d of "
			 "A-Z, a-z, 0-9, '/', '.', '_', '-' without \".\" or \"..\" components",
			 cfg_show(v, shown), CFG_PREFIX_MAX);
		return -1;
	}
	st->kind = HSM_STORE_S3;
	return 0;
}

static int cfg_set_url(struct cfg_parser *p, const struct cfg_key *k, void *field, const char *v)
{
	struct hsm_store_cfg *st = &p->cfg->store;
	char shown[CFG_SHOW_BUF];

	(void)k;
	(void)field;
	st->url = strdup(v);
	if (!st->url)
		return cfg_oom(p);
	if (strncmp(v, "s3://", 5) == 0)
		return cfg_url_s3(p, st, v);
	if (strncmp(v, "file://", 7) != 0) {
		cfg_fail(p, p->line,
			 "unsupported store url \"%s\": expected file:///PATH or "
			 "s3://BUCKET[/PREFIX]",
			 cfg_show(v, shown));
		return -1;
	}
	if (v[7] != '/') {
		cfg_fail(p, p->line,
			 "store url \"%s\" has no absolute path: expected "
			 "file:///PATH",
			 cfg_show(v, shown));
		return -1;
	}
	if (cfg_path_value(p, "store url path", v + 7, PATH_MAX - 1, &st->file_root) < 0)
		return -1;
	st->kind = HSM_STORE_FILE;
	return 0;
}

/* The keys, per section */

#define CFG_C(f) offsetof(struct hsm_config, f)
#define CFG_V(f) offsetof(struct hsm_volume_cfg, f)
#define CFG_P(f) offsetof(struct hsm_peer_cfg, f)

static const struct cfg_key cfg_keys[CFG_NKEYS] = {
    {SEC_SITE, "name", cfg_set_site, CFG_C(site), 0, 0, 0, 0},
    {SEC_SITE, "state_dir", cfg_set_path, CFG_C(state_dir), 0, PATH_MAX - 1, 0, 0},
    {SEC_SITE, "socket", cfg_set_path, CFG_C(socket_path), 0, CFG_SOCKET_MAX, 0, 0},
    {SEC_SITE, "socket_group", cfg_set_group, CFG_C(socket_group), 0, 0, 0, 0},
    {SEC_SITE, "log_level", cfg_set_log_level, CFG_C(log_level), 0, 0, 0, 0},
    {SEC_SITE, "workers", cfg_set_int, CFG_C(workers), 0, 256, 0, 0},
    {SEC_STORE, "url", cfg_set_url, 0, 0, 0, 0, 0},
    {SEC_STORE, "endpoint", cfg_set_endpoint, CFG_C(store.endpoint), 0, 0, 0, 0},
    {SEC_STORE, "region", cfg_set_region, CFG_C(store.region), 0, 0, 0, 0},
    {SEC_STORE, "credentials", cfg_set_credentials, 0, 0, 0, 0, 0},
    {SEC_STORE, "chunk_size", cfg_set_size, CFG_C(store.chunk_size), HSM_CHUNK_SIZE_MIN,
     HSM_CHUNK_SIZE_MAX, 4096, CFG_U32},
    {SEC_STORE, "multipart_threshold", cfg_set_size, CFG_C(store.multipart_threshold),
     CFG_S3_PART_MIN, CFG_S3_PART_MAX, 0, 0},
    {SEC_STORE, "part_size", cfg_set_size, CFG_C(store.part_size), CFG_S3_PART_MIN, CFG_S3_PART_MAX,
     0, 0},
    {SEC_STORE, "max_connections", cfg_set_int, CFG_C(store.max_connections), 1, 256, 0, 0},
    {SEC_STORE, "retries", cfg_set_int, CFG_C(store.retries), 0, 100, 0, 0},
    {SEC_STORE, "timeout", cfg_set_seconds, CFG_C(store.timeout), 0, 3600, 0, 0},
    {SEC_VOLUME, "path", cfg_set_path, CFG_V(path), 0, PATH_MAX - 1, 0, CFG_NOT_ROOT},
    {SEC_VOLUME, "backing", cfg_set_path, CFG_V(backing), 0, PATH_MAX - 1, 0, CFG_NOT_ROOT},
    {SEC_VOLUME, "recall", cfg_set_recall, CFG_V(recall), 0, 0, 0, 0},
    {SEC_VOLUME, "peers", cfg_set_vol_peers, 0, 0, 0, 0, 0},
    {SEC_SITE, "listen", cfg_set_listen, CFG_C(listen), 0, 0, 0, 0},
    {SEC_SITE, "tls_ca", cfg_set_path, CFG_C(tls_ca), 0, PATH_MAX - 1, 0, 0},
    {SEC_SITE, "tls_cert", cfg_set_path, CFG_C(tls_cert), 0, PATH_MAX - 1, 0, 0},
    {SEC_SITE, "tls_key", cfg_set_path, CFG_C(tls_key), 0, PATH_MAX - 1, 0, 0},
    {SEC_SITE, "peer_timeout", cfg_set_seconds, CFG_C(peer_timeout), 1, 3600, 0, 0},
    {SEC_SITE, "policy", cfg_set_path, CFG_C(policy_file), 0, PATH_MAX - 1, 0, 0},
    {SEC_SITE, "policy_jobs", cfg_set_int, CFG_C(policy_jobs), 1, 64, 0, 0},
    {SEC_SITE, "guard", cfg_set_guard, CFG_C(guard_mode), 0, 0, 0, 0},
    {SEC_SITE, "guard_socket", cfg_set_path, CFG_C(guard_socket), 0, CFG_SOCKET_MAX - 5, 0, 0},
    {SEC_SITE, "guard_hold", cfg_set_seconds, CFG_C(guard_hold), 0, 3600, 0, 0},
    {SEC_PEER, "url", cfg_set_peer_url, CFG_P(url), 0, 0, 0, 0},
    {SEC_PEER, "cost", cfg_set_int, CFG_P(cost), 0, 1000000, 0, 0},
    {SEC_PEER, "priority", cfg_set_priority, CFG_P(priority), 0, 0, 0, 0},
};

static int cfg_key_index(int section, const char *name)
{
	for (int i = 0; i < CFG_NKEYS; i++)
		if (cfg_keys[i].section == section && strcmp(cfg_keys[i].name, name) == 0)
			return i;
	return -1;
}

static const char *cfg_key_list(int section, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; i < CFG_NKEYS && o < cap; i++) {
		if (cfg_keys[i].section != section)
			continue;
		o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", cfg_keys[i].name);
	}
	return out;
}

static struct hsm_volume_cfg *cfg_cur_volume(struct cfg_parser *p)
{
	return &p->cfg->volumes[p->cfg->nvolumes - 1];
}

static const char *cfg_section_name(struct cfg_parser *p, char *out, size_t cap)
{
	if (p->section == SEC_SITE)
		return "[site]";
	if (p->section == SEC_STORE)
		return "[store]";
	if (p->section == SEC_PEER)
		snprintf(out, cap, "[peer %s]", p->cfg->peers[p->cfg->npeers - 1].name);
	else
		snprintf(out, cap, "[volume %s]", cfg_cur_volume(p)->name);
	return out;
}

/* Sections */

static int cfg_open_volume(struct cfg_parser *p, const char *name)
{
	struct hsm_config *cfg = p->cfg;
	char shown[CFG_SHOW_BUF];
	size_t n = strlen(name);

	if (n == 0) {
		cfg_fail(p, p->line, "missing volume name: expected [volume NAME]");
		return -1;
	}
	if (n > HSM_SITE_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n) {
		cfg_fail(p, p->line,
			 "invalid volume name \"%s\": expected 1 to %d of a-z, 0-9, "
			 "'_', '-'",
			 cfg_show(name, shown), HSM_SITE_MAX);
		return -1;
	}
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		if (strcmp(cfg->volumes[i].name, name) == 0) {
			cfg_fail(p, p->line, "duplicate volume \"%s\" (first defined at line %d)",
				 name, p->vol[i].line);
			return -1;
		}
	}
	if (cfg->nvolumes == HSM_VOLUMES_MAX) {
		cfg_fail(p, p->line, "too many volumes: at most %d", HSM_VOLUMES_MAX);
		return -1;
	}
	cfg->volumes[cfg->nvolumes].name = strdup(name);
	if (!cfg->volumes[cfg->nvolumes].name)
		return cfg_oom(p);
	p->vol[cfg->nvolumes].line = p->line;
	cfg->nvolumes++;
	p->section = SEC_VOLUME;
	return 0;
}

static int cfg_open_peer(struct cfg_parser *p, const char *name)
{
	struct hsm_config *cfg = p->cfg;
	char shown[CFG_SHOW_BUF];

	if (!hsm_site_name_valid(name)) {
		cfg_fail(p, p->line,
			 "invalid peer name \"%s\": expected [peer SITE], SITE being 1 to %d of "
			 "a-z, 0-9, '_', '-', starting with a letter",
			 cfg_show(name, shown), HSM_SITE_MAX);
		return -1;
	}
	for (size_t i = 0; i < cfg->npeers; i++) {
		if (strcmp(cfg->peers[i].name, name) == 0) {
			cfg_fail(p, p->line, "duplicate peer \"%s\" (first defined at line %d)",
				 name, cfg->peers[i].line);
			return -1;
		}
	}
	if (cfg->npeers == HSM_PEERS_MAX) {
		cfg_fail(p, p->line, "too many peers: at most %d", HSM_PEERS_MAX);
		return -1;
	}
	cfg->peers[cfg->npeers].name = strdup(name);
	if (!cfg->peers[cfg->npeers].name)
		return cfg_oom(p);
	cfg->peers[cfg->npeers].line = p->line;
	cfg->peers[cfg->npeers].cost = 100;
	cfg->npeers++;
	p->section = SEC_PEER;
	return 0;
}

static int cfg_open_single(struct cfg_parser *p, int section, int *seen, const char *what)
{
	if (*seen) {
		cfg_fail(p, p->line, "duplicate section %s (first at line %d)", what, *seen);
		return -1;
	}
	*seen = p->line;
	p->section = section;
	return 0;
}

static int cfg_section(struct cfg_parser *p, char *s)
{
	char shown[CFG_SHOW_BUF];
	char *close = strchr(s, ']'), *in, *rest;

	if (!close) {
		cfg_fail(p, p->line, "expected \"]\" to close the section header, found \"%s\"",
			 cfg_show(s, shown));
		return -1;
	}
	rest = cfg_skip_space(close + 1);
	if (*rest && *rest != '#') {
		cfg_fail(p, p->line, "unexpected text \"%s\" after the section header",
			 cfg_show(rest, shown));
		return -1;
	}
	*close = '\0';
	in = cfg_trim(s + 1);
	if (strcmp(in, "site") == 0)
		return cfg_open_single(p, SEC_SITE, &p->site_line, "[site]");
	if (strcmp(in, "store") == 0)
		return cfg_open_single(p, SEC_STORE, &p->store_line, "[store]");
	if (strncmp(in, "volume", 6) == 0 && (in[6] == '\0' || cfg_is_space(in[6])))
		return cfg_open_volume(p, cfg_skip_space(in + 6));
	if (strncmp(in, "peer", 4) == 0 && (in[4] == '\0' || cfg_is_space(in[4])))
		return cfg_open_peer(p, cfg_skip_space(in + 4));
	cfg_fail(p, p->line,
		 "unknown section [%s]: expected [site], [store], [peer SITE] or [volume NAME]",
		 cfg_show(in, shown));
	return -1;
}

/* Lines */

static int cfg_assignment(struct cfg_parser *p, char *s)
{
	char shown[CFG_SHOW_BUF], list[256], sec[64];
	char *key = NULL, *val = NULL;
	int r, i, *lines;
	void *base;

	cfg_show(s, shown);
	r = cfg_split(s, &key, &val, 1);
	if (r == CFG_SPLIT_NO_EQUALS) {
		cfg_fail(p, p->line, "expected \"key = value\" or [section], found \"%s\"", shown);
		return -1;
	}
	if (r == CFG_SPLIT_NO_KEY) {
		cfg_fail(p, p->line, "%s, found \"%s\"", cfg_split_msg[r], shown);
		return -1;
	}
	if (r != CFG_SPLIT_OK) {
		cfg_fail(p, p->line, "%s for \"%s\"", cfg_split_msg[r], cfg_show(key, shown));
		return -1;
	}
	if (p->section == SEC_NONE) {
		cfg_fail(p, p->line,
			 "\"%s\" is outside any section: expected [site], [store] or "
			 "[volume NAME] first",
			 cfg_show(key, shown));
		return -1;
	}
	i = cfg_key_index(p->section, key);
	if (i < 0) {
		cfg_fail(p, p->line, "unknown key \"%s\" in %s: expected one of %s",
			 cfg_show(key, shown), cfg_section_name(p, sec, sizeof(sec)),
			 cfg_key_list(p->section, list, sizeof(list)));
		return -1;
	}
	if (p->section == SEC_VOLUME) {
		lines = p->vol[p->cfg->nvolumes - 1].key_line;
		base = cfg_cur_volume(p);
	} else if (p->section == SEC_PEER) {
		lines = p->peer[p->cfg->npeers - 1].key_line;
		base = &p->cfg->peers[p->cfg->npeers - 1];
	} else {
		lines = p->key_line;
		base = p->cfg;
	}
	if (lines[i]) {
		cfg_fail(p, p->line, "duplicate key \"%s\" in %s (first set at line %d)", key,
			 cfg_section_name(p, sec, sizeof(sec)), lines[i]);
		return -1;
	}
	lines[i] = p->line;
	return cfg_keys[i].set(p, &cfg_keys[i], (char *)base + cfg_keys[i].off, val);
}

static int cfg_line(struct cfg_parser *p, char *s)
{
	s = cfg_trim(s);
	if (!*s || *s == '#')
		return 0;
	if (*s == '[')
		return cfg_section(p, s);
	return cfg_assignment(p, s);
}

static int cfg_parse_text(struct cfg_parser *p, const char *text, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - text - pos) : len - pos;
		char *line;
		int r;

		p->line++;
		if (memchr(text + pos, '\0', n)) {
			cfg_fail(p, p->line, "NUL byte in line");
			return -1;
		}
		line = strndup(text + pos, n);
		if (!line)
			return cfg_oom(p);
		r = cfg_line(p, line);
		free(line);
		if (r < 0)
			return -1;
		pos += n + 1;
	}
	return 0;
}

/* Checks across keys, once the whole file is read */

static int cfg_end_line(const struct cfg_parser *p)
{
	return p->line ? p->line : 1;
}

static char *cfg_strdup_join(const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
	char *s = malloc(na + nb + nc + 1);

	if (!s)
		return NULL;
	memcpy(s, a, na);
	memcpy(s + na, b, nb);
	memcpy(s + na + nb, c, nc + 1);
	return s;
}

static int cfg_default_string(struct cfg_parser *p, char **field, const char *value)
{
	if (*field)
		return 0;
	*field = strdup(value);
	return *field ? 0 : cfg_oom(p);
}

static int cfg_finish_site(struct cfg_parser *p)
{
	struct hsm_config *cfg = p->cfg;

	if (!cfg->site) {
		if (p->site_line)
			cfg_fail(p, p->site_line, "[site] has no name: expected name = SITE");
		else
			cfg_fail(p, cfg_end_line(p), "missing [site] section with name = SITE");
		return -1;
	}
	if (cfg_default_string(p, &cfg->state_dir, CFG_DEFAULT_STATE_DIR) < 0 ||
	    cfg_default_string(p, &cfg->socket_path, CFG_DEFAULT_SOCKET) < 0 ||
	    cfg_default_string(p, &cfg->socket_group, CFG_DEFAULT_GROUP) < 0)
		return -1;
	/* One guard per hsmd: derived from the control socket, so two sites on one host
	 * (or one test per directory) never share one by accident. */
	if (!cfg->guard_socket) {
		if (strlen(cfg->socket_path) + strlen(CFG_GUARD_SUFFIX) > CFG_SOCKET_MAX - 5) {
			cfg_fail(p, cfg_end_line(p),
				 "socket %s is too long to name the guard's socket after it: set "
				 "guard_socket",
				 cfg->socket_path);
			return -1;
		}
		cfg->guard_socket = cfg_strdup_join(cfg->socket_path, CFG_GUARD_SUFFIX, "");
		if (!cfg->guard_socket)
			return cfg_oom(p);
	}
	if (cfg->guard_hold <= 0)
		cfg->guard_hold = 30;
	return 0;
}

static int cfg_finish_store(struct cfg_parser *p)
{
	struct hsm_store_cfg *st = &p->cfg->store;
	static const char *const s3_only[] = {"endpoint", "region", "credentials"};

	if (!st->url) {
		st->kind = HSM_STORE_FILE;
		st->file_root = cfg_strdup_join(p->cfg->state_dir, "/objects", "");
		if (!st->file_root)
			return cfg_oom(p);
		st->url = cfg_strdup_join("file://", st->file_root, "");
		if (!st->url)
			return cfg_oom(p);
	}
	if (st->kind == HSM_STORE_FILE) {
		for (size_t i = 0; i < sizeof(s3_only) / sizeof(s3_only[0]); i++) {
			int line = p->key_line[cfg_key_index(SEC_STORE, s3_only[i])];

			if (line) {
				cfg_fail(p, line, "%s applies only to an s3:// store url",
					 s3_only[i]);
				return -1;
			}
		}
	}
	if (cfg_default_string(p, &st->region, CFG_DEFAULT_REGION) < 0)
		return -1;
	if (st->kind == HSM_STORE_S3 && !st->endpoint) {
		st->endpoint = cfg_strdup_join("https://s3.", st->region, ".amazonaws.com");
		if (!st->endpoint)
			return cfg_oom(p);
	}
	return 0;
}

/* Two volumes must not overlap: a file would belong to both. */
static int cfg_check_overlap(struct cfg_parser *p, size_t i, size_t j, int key)
{
	const struct hsm_volume_cfg *a = &p->cfg->volumes[i], *b = &p->cfg->volumes[j];
	const char *what = cfg_keys[key].name;
	const char *pa = key == cfg_key_index(SEC_VOLUME, "path") ? a->path : a->backing;
	const char *pb = key == cfg_key_index(SEC_VOLUME, "path") ? b->path : b->backing;
	int line = p->vol[j].key_line[key] ? p->vol[j].key_line[key] : p->vol[j].line;
	int aline = p->vol[i].key_line[key] ? p->vol[i].key_line[key] : p->vol[i].line;

	if (strcmp(pa, pb) == 0)
		cfg_fail(p, line, "volume \"%s\" has the same %s %s as volume \"%s\" (line %d)",
			 b->name, what, pb, a->name, aline);
	else if (cfg_path_inside(pb, pa))
		cfg_fail(p, line, "volume \"%s\" %s %s is inside volume \"%s\" %s %s (line %d)",
			 b->name, what, pb, a->name, what, pa, aline);
	else if (cfg_path_inside(pa, pb))
		cfg_fail(p, line, "volume \"%s\" %s %s contains volume \"%s\" %s %s (line %d)",
			 b->name, what, pb, a->name, what, pa, aline);
	else
		return 0;
	return -1;
}

/* hsmd's own files on a managed volume would be intercepted by hsmd itself. */
static int cfg_check_own_dir(struct cfg_parser *p, const char *what, const char *dir, int dir_line,
			     size_t i)
{
	const struct hsm_volume_cfg *v = &p->cfg->volumes[i];
	int pkey = cfg_key_index(SEC_VOLUME, "path");
	int vline = p->vol[i].key_line[pkey];

	if (!cfg_path_inside(dir, v->path) && !cfg_path_inside(dir, v->backing))
		return 0;
	if (dir_line)
		cfg_fail(p, dir_line, "%s %s is inside volume \"%s\" (path %s, line %d)", what, dir,
			 v->name, v->path, vline);
	else
		cfg_fail(p, vline, "volume \"%s\" path %s contains the default %s %s", v->name,
			 v->path, what, dir);
	return -1;
}

static int cfg_finish_volumes(struct cfg_parser *p)
{
	struct hsm_config *cfg = p->cfg;
	int pkey = cfg_key_index(SEC_VOLUME, "path");
	int bkey = cfg_key_index(SEC_VOLUME, "backing");
	int sline = p->key_line[cfg_key_index(SEC_SITE, "state_dir")];
	int uline = p->key_line[cfg_key_index(SEC_STORE, "url")];

	if (cfg->nvolumes == 0) {
		cfg_fail(p, cfg_end_line(p),
			 "no [volume NAME] section: at least one volume is "
			 "required");
		return -1;
	}
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		struct hsm_volume_cfg *v = &cfg->volumes[i];

		if (!v->path) {
			cfg_fail(p, p->vol[i].line,
				 "volume \"%s\" has no path: expected "
				 "path = /ABSOLUTE/PATH",
				 v->name);
			return -1;
		}
		v->path_line = p->vol[i].key_line[pkey];
		v->backing_line = p->vol[i].key_line[bkey];
		if (cfg_default_string(p, &v->backing, v->path) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (cfg_check_overlap(p, j, i, pkey) < 0 ||
			    cfg_check_overlap(p, j, i, bkey) < 0)
				return -1;
		if (cfg_check_own_dir(p, "state_dir", cfg->state_dir, sline, i) < 0)
			return -1;
		if (cfg->store.kind == HSM_STORE_FILE &&
		    cfg_check_own_dir(p, "store directory", cfg->store.file_root, uline, i) < 0)
			return -1;
	}
	return 0;
}

/* Resolves each volume's "peers =" into indexes of [peer] sections. */
static int cfg_finish_vol_peers(struct cfg_parser *p, size_t i)
{
	struct hsm_config *cfg = p->cfg;
	struct hsm_volume_cfg *v = &cfg->volumes[i];
	int line = p->vol[i].key_line[cfg_key_index(SEC_VOLUME, "peers")];
	char shown[CFG_SHOW_BUF], *save = NULL, *tok;

	if (!p->vol[i].peers)
		return 0;
	v->peers = calloc(HSM_PEERS_MAX, sizeof(*v->peers));
	if (!v->peers)
		return cfg_oom(p);
	for (tok = strtok_r(p->vol[i].peers, ", \t", &save); tok;
	     tok = strtok_r(NULL, ", \t", &save)) {
		const struct hsm_peer_cfg *pc = config_peer(cfg, tok);
		int idx;

		if (!pc) {
			cfg_fail(p, line,
				 "volume \"%s\" names peer \"%s\", which has no [peer %s] section",
				 v->name, cfg_show(tok, shown), cfg_show(tok, shown));
			return -1;
		}
		idx = (int)(pc - cfg->peers);
		if (config_volume_has_peer(v, idx)) {
			cfg_fail(p, line, "volume \"%s\" names peer \"%s\" twice", v->name, tok);
			return -1;
		}
		v->peers[v->npeers++] = idx;
	}
	return 0;
}

static int cfg_finish_peers(struct cfg_parser *p)
{
	struct hsm_config *cfg = p->cfg;
	static const char *const tls[] = {"tls_ca", "tls_cert", "tls_key"};
	char *const *tlsv[] = {&cfg->tls_ca, &cfg->tls_cert, &cfg->tls_key};

	if (cfg->peer_timeout <= 0)
		cfg->peer_timeout = 10;
	for (size_t i = 0; i < cfg->npeers; i++) {
		if (!cfg->peers[i].url) {
			cfg_fail(p, cfg->peers[i].line,
				 "[peer %s] has no url: expected url = https://HOST:PORT",
				 cfg->peers[i].name);
			return -1;
		}
		if (strcmp(cfg->peers[i].name, cfg->site) == 0) {
			cfg_fail(p, cfg->peers[i].line, "[peer %s] is this site itself",
				 cfg->peers[i].name);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->nvolumes; i++)
		if (cfg_finish_vol_peers(p, i) < 0)
			return -1;
	if (!cfg->npeers && !cfg->listen)
		return 0;
	for (int i = 0; i < 3; i++) {
		if (!*tlsv[i]) {
			cfg_fail(p, p->site_line ? p->site_line : cfg_end_line(p),
				 "[site] has peers or listen but no %s: sites authenticate each "
				 "other with certificates (see hsm ca)",
				 tls[i]);
			return -1;
		}
	}
	return 0;
}

const struct hsm_peer_cfg *config_peer(const struct hsm_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->npeers; i++)
		if (strcmp(cfg->peers[i].name, name) == 0)
			return &cfg->peers[i];
	return NULL;
}

int config_volume_has_peer(const struct hsm_volume_cfg *v, int peer)
{
	for (size_t i = 0; i < v->npeers; i++)
		if (v->peers[i] == peer)
			return 1;
	return 0;
}

const struct hsm_volume_cfg *config_volume(const struct hsm_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nvolumes; i++)
		if (strcmp(cfg->volumes[i].name, name) == 0)
			return &cfg->volumes[i];
	return NULL;
}

/* Loading */

static struct hsm_config *cfg_new(void)
{
	struct hsm_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->volumes = calloc(HSM_VOLUMES_MAX, sizeof(*cfg->volumes));
	cfg->peers = calloc(HSM_PEERS_MAX, sizeof(*cfg->peers));
	if (!cfg->volumes || !cfg->peers) {
		free(cfg->volumes);
		free(cfg->peers);
		free(cfg);
		return NULL;
	}
	cfg->log_level = LOG_LVL_INFO;
	cfg->workers = 0;
	cfg->store.chunk_size = HSM_CHUNK_SIZE_DEFAULT;
	cfg->store.multipart_threshold = 64ull << 20;
	cfg->store.part_size = 16ull << 20;
	cfg->store.max_connections = 16;
	cfg->store.retries = 4;
	cfg->store.timeout = 30;
	for (size_t i = 0; i < HSM_VOLUMES_MAX; i++)
		cfg->volumes[i].recall = HSM_RECALL_OPEN;
	return cfg;
}

static int cfg_load_text(const char *name, const char *text, size_t len, struct hsm_config **out,
			 char *err, size_t errlen)
{
	struct cfg_parser *p;
	int r = -1;

	*out = NULL;
	/* Heap, not stack: the per-volume key lines make it about 5 KiB. */
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -1;
	}
	p->name = name;
	p->err = err;
	p->errlen = errlen;
	p->cfg = cfg_new();
	if (!p->cfg || !(p->cfg->file = strdup(name)) || !(p->cfg->text = malloc(len + 1))) {
		cfg_oom(p);
		goto out;
	}
	memcpy(p->cfg->text, text, len);
	p->cfg->text[len] = '\0';
	p->cfg->text_len = len;
	if (cfg_parse_text(p, text, len) < 0 || cfg_finish_site(p) < 0 || cfg_finish_store(p) < 0 ||
	    cfg_finish_volumes(p) < 0 || cfg_finish_peers(p) < 0)
		goto out;
	*out = p->cfg;
	p->cfg = NULL;
	r = 0;
out:
	for (size_t i = 0; i < HSM_VOLUMES_MAX; i++)
		free(p->vol[i].peers);
	config_free(p->cfg);
	free(p);
	return r;
}

int config_load_string(const char *name, const char *text, struct hsm_config **out, char *err,
		       size_t errlen)
{
	if (!err)
		errlen = 0;
	if (errlen)
		err[0] = '\0';
	if (!name || !text || !out) {
		snprintf(err, errlen, "config_load_string: bad arguments");
		errno = EINVAL;
		return -1;
	}
	return cfg_load_text(name, text, strlen(text), out, err, errlen);
}

static int cfg_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > CFG_FILE_MAX) {
		snprintf(err, errlen, "%s: too large (%lld bytes): at most %d", path,
			 (long long)st.st_size, CFG_FILE_MAX);
		goto fail;
	}
	*text = malloc((size_t)st.st_size + 1);
	if (!*text) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	n = cfg_read_all(fd, *text, (size_t)st.st_size);
	if (n < 0) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		free(*text);
		goto fail;
	}
	close(fd);
	*len = (size_t)n;
	return 0;
fail:
	close(fd);
	return -1;
}

int config_load(const char *path, struct hsm_config **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if (!err)
		errlen = 0;
	if (errlen)
		err[0] = '\0';
	if (!path || !out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (cfg_read_file(path, &text, &len, err, errlen) < 0)
		return -1;
	r = cfg_load_text(path, text, len, out, err, errlen);
	free(text);
	return r;
}

static void cfg_free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

void config_free(struct hsm_config *cfg)
{
	struct hsm_store_cfg *st;

	if (!cfg)
		return;
	st = &cfg->store;
	free(cfg->file);
	free(cfg->text);
	free(cfg->site);
	free(cfg->state_dir);
	free(cfg->socket_path);
	free(cfg->socket_group);
	free(cfg->guard_socket);
	free(st->url);
	free(st->file_root);
	free(st->bucket);
	free(st->prefix);
	free(st->endpoint);
	free(st->region);
	free(st->credentials);
	cfg_free_secret(st->access_key);
	cfg_free_secret(st->secret_key);
	cfg_free_secret(st->session_token);
	if (cfg->volumes) {
		for (size_t i = 0; i < cfg->nvolumes; i++) {
			free(cfg->volumes[i].name);
			free(cfg->volumes[i].path);
			free(cfg->volumes[i].backing);
			free(cfg->volumes[i].peers);
		}
		free(cfg->volumes);
	}
	if (cfg->peers) {
		for (size_t i = 0; i < cfg->npeers; i++) {
			free(cfg->peers[i].name);
			free(cfg->peers[i].url);
		}
		free(cfg->peers);
	}
	free(cfg->listen);
	free(cfg->policy_file);
	free(cfg->tls_ca);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg);
}

const struct hsm_volume_cfg *config_volume_for(const struct hsm_config *cfg, const char *abs_path,
					       const char **rel)
{
	const struct hsm_volume_cfg *best = NULL;
	size_t best_len = 0;

	if (!cfg || !abs_path)
		return NULL;
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		const char *vp = cfg->volumes[i].path;
		size_t n = strlen(vp);

		if (n > best_len && cfg_path_inside(abs_path, vp)) {
			best = &cfg->volumes[i];
			best_len = n;
		}
	}
	if (best && rel) {
		const char *r = abs_path + best_len;

		while (*r == '/')
			r++;
		*rel = r;
	}
	return best;
}

int config_check_volumes(const struct hsm_config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nvolumes; i++) {
		const struct hsm_volume_cfg *v = &cfg->volumes[i];
		const char *what[2] = {"path", "backing"};
		const char *dir[2] = {v->path, v->backing};
		int line[2] = {v->path_line, v->backing_line ? v->backing_line : v->path_line};

		for (int k = 0; k < 2; k++) {
			struct stat sb;

			if (stat(dir[k], &sb) < 0) {
				snprintf(err, errlen, "%s:%d: volume \"%s\" %s %s: %s", cfg->file,
					 line[k], v->name, what[k], dir[k], strerror(errno));
				return -1;
			}
			if (!S_ISDIR(sb.st_mode)) {
				snprintf(err, errlen,
					 "%s:%d: volume \"%s\" %s %s is not a directory", cfg->file,
					 line[k], v->name, what[k], dir[k]);
				return -1;
			}
		}
	}
	return 0;
}
