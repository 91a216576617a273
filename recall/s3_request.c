#include "recall/s3_request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

static int s3_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

char *s3_uri_encode(const char *s, size_t len, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *o;

	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	out = malloc(3 * len + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (s3_unreserved(c) || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *s3_object_name(const char *prefix, const char *key)
{
	char *out;

	if (!prefix || !*prefix)
		return strdup(key);
	if (asprintf(&out, "%s/%s", prefix, key) < 0)
		return NULL;
	return out;
}

struct s3_enc_param {
	char *name;
	char *value;
};

static int s3_param_cmp(const void *a, const void *b)
{
	const struct s3_enc_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

static void s3_enc_params_free(struct s3_enc_param *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	free(p);
}

char *s3_query(const struct s3_param *params, size_t n)
{
	struct s3_enc_param *enc;
	size_t total = 1, i;
	char *out = NULL, *o;

	enc = calloc(n ? n : 1, sizeof(*enc));
	if (!enc)
		return NULL;
	for (i = 0; i < n; i++) {
		const char *v = params[i].value ? params[i].value : "";

		enc[i].name = s3_uri_encode(params[i].name, strlen(params[i].name), 0);
		enc[i].value = s3_uri_encode(v, strlen(v), 0);
		if (!enc[i].name || !enc[i].value)
			goto out;
		total += strlen(enc[i].name) + strlen(enc[i].value) + 2;
	}
	/* SigV4 orders by the encoded names, byte by byte, then by value. */
	qsort(enc, n, sizeof(*enc), s3_param_cmp);
	out = malloc(total);
	if (!out)
		goto out;
	o = out;
	*o = '\0';
	for (i = 0; i < n; i++)
		o += sprintf(o, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value);
out:
	s3_enc_params_free(enc, n);
	return out;
}

char *s3_url(const char *endpoint, const char *bucket, const char *object, const char *query)
{
	char *b = s3_uri_encode(bucket, strlen(bucket), 0);
	char *o = object ? s3_uri_encode(object, strlen(object), 1) : NULL;
	char *out = NULL;
	int has_q = query && *query;

	if (b && (o || !object) &&
	    asprintf(&out, "%s/%s%s%s%s%s", endpoint, b, o ? "/" : "", o ? o : "", has_q ? "?" : "",
		     has_q ? query : "") < 0)
		out = NULL;
	free(b);
	free(o);
	return out;
}

void s3_payload_sha256(const void *data, size_t len, char hex[S3_SHA256_HEX])
{
	uint8_t md[HSM_SHA256_LEN];

	sha256_buf(data ? data : "", len, md);
	hex_encode(md, sizeof(md), hex);
}

int s3_range(uint64_t off, uint64_t len, char buf[S3_RANGE_MAX])
{
	if (len == 0) {
		if (off == 0)
			return 0;
		snprintf(buf, S3_RANGE_MAX, "bytes=%" PRIu64 "-", off);
		return 1;
	}
	if (off > UINT64_MAX - (len - 1))
		return -1;
	snprintf(buf, S3_RANGE_MAX, "bytes=%" PRIu64 "-%" PRIu64, off, off + (len - 1));
	return 1;
}

/* Appends s to the XML body, escaping what XML text cannot hold as is. */
static char *s3_xml_escape_into(char *o, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			o = stpcpy(o, "&amp;");
			break;
		case '<':
			o = stpcpy(o, "&lt;");
			break;
		case '>':
			o = stpcpy(o, "&gt;");
			break;
		case '"':
			o = stpcpy(o, "&quot;");
			break;
		default:
			*o++ = *s;
		}
	}
	*o = '\0';
	return o;
}

char *s3_complete_body(char *const *etags, size_t n, size_t *len)
{
	static const char head[] = "<CompleteMultipartUpload "
				   "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
	static const char tail[] = "</CompleteMultipartUpload>";
	size_t total = sizeof(head) + sizeof(tail);
	char *out, *o;

	for (size_t i = 0; i < n; i++) {
		if (strlen(etags[i]) > (SIZE_MAX - total) / 8)
			return NULL;
		/* "&quot;" is the longest escape: 6 bytes for 1. */
		total += 6 * strlen(etags[i]) + 80;
	}
	out = malloc(total);
	if (!out)
		return NULL;
	o = stpcpy(out, head);
	for (size_t i = 0; i < n; i++) {
		o += sprintf(o, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
		o = s3_xml_escape_into(o, etags[i]);
		o = stpcpy(o, "</ETag></Part>");
	}
	o = stpcpy(o, tail);
	*len = (size_t)(o - out);
	return out;
}

uint64_t s3_part_size(uint64_t len, uint64_t part_size)
{
	uint64_t mib = 1ULL << 20;

	if (part_size < S3_PART_MIN)
		part_size = S3_PART_MIN;
	if (len / part_size < S3_PARTS_MAX)
		return part_size;
	part_size = len / S3_PARTS_MAX + 1;
	return (part_size + mib - 1) / mib * mib;
}

/* A small XML scanner for S3's answers: elements, attributes, character data with
 * the five named entities and numeric references, CDATA, comments and processing
 * instructions. No DTDs (S3 never sends one, and entity definitions are an attack
 * surface). It reads only inside [buf, buf + len) and fails on anything
 * malformed, including a document cut short. */
#define XML_DEPTH_MAX 16

struct xml_name {
	const char *s;
	size_t len;
};

/* Called at every end tag; path[0..depth-1] are the open elements, the last being the
 * one that ends. text is its character data (decoded, NUL-terminated) when leaf is 1.
 * A non-zero return stops the scan with that value. */
typedef int (*xml_end_fn)(void *ctx, const struct xml_name *path, int depth, int leaf,
			  const char *text, size_t tlen);

struct xml_scan {
	const char *p, *end;
	struct xml_name path[XML_DEPTH_MAX];
	int depth;
	int leaf;   /* the innermost open element has no child element so far */
	char *text; /* character data of the innermost element */
	size_t tlen;
	xml_end_fn fn;
	void *ctx;
};

static int xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int xml_name_char(unsigned char c, int first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80)
		return 1;
	return !first && ((c >= '0' && c <= '9') || c == '-' || c == '.');
}

static int xml_starts(const struct xml_scan *x, const char *lit)
{
	size_t n = strlen(lit);

	return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

/* Moves past the next occurrence of lit; -1 when it does not occur. */
static int xml_skip_past(struct xml_scan *x, const char *lit)
{
	size_t n = strlen(lit);

	for (const char *q = x->p; (size_t)(x->end - q) >= n; q++) {
		if (memcmp(q, lit, n) == 0) {
			x->p = q + n;
			return 0;
		}
	}
	return -1;
}

static void xml_skip_space(struct xml_scan *x)
{
	while (x->p < x->end && xml_space(*x->p))
		x->p++;
}

static int xml_name(struct xml_scan *x, struct xml_name *n)
{
	n->s = x->p;
	if (x->p >= x->end || !xml_name_char((unsigned char)*x->p, 1))
		return -1;
	while (x->p < x->end && xml_name_char((unsigned char)*x->p, 0))
		x->p++;
	n->len = (size_t)(x->p - n->s);
	return 0;
}

static void xml_put_utf8(struct xml_scan *x, uint32_t cp)
{
	char *o = x->text + x->tlen;

	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xC0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xE0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*o++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*o++ = (char)(0xF0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*o++ = (char)(0x80 | (cp & 0x3F));
	}
	x->tlen = (size_t)(o - x->text);
}

/* Decodes "&...;" at x->p. Every reference is at least 4 bytes long and decodes to at
 * most 4, so the text buffer (as long as the document) never overflows. */
static int xml_entity(struct xml_scan *x)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {
	    {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
	uint32_t cp = 0;
	int hex, digits = 0;

	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		if (xml_starts(x, named[i].name)) {
			x->p += strlen(named[i].name);
			x->text[x->tlen++] = named[i].c;
			return 0;
		}
	}
	if (!xml_starts(x, "&#"))
		return -1;
	x->p += 2;
	hex = x->p < x->end && *x->p == 'x';
	x->p += hex;
	for (; x->p < x->end && *x->p != ';'; x->p++, digits++) {
		int d;
		char c = *x->p;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (hex && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (hex && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		cp = cp * (hex ? 16 : 10) + (uint32_t)d;
		if (cp > 0x10FFFF)
			return -1;
	}
	if (x->p >= x->end || digits == 0 || cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	x->p++;
	xml_put_utf8(x, cp);
	return 0;
}

static int xml_chardata(struct xml_scan *x)
{
	while (x->p < x->end && *x->p != '<') {
		if (*x->p == '&') {
			if (xml_entity(x) < 0)
				return -1;
			continue;
		}
		if (*x->p == '\0')
			return -1;
		if (x->depth == 0 && !xml_space(*x->p))
			return -1; /* text outside the root element */
		x->text[x->tlen++] = *x->p++;
	}
	return 0;
}

static int xml_cdata(struct xml_scan *x)
{
	const char *start;

	x->p += strlen("<![CDATA[");
	start = x->p;
	if (x->depth == 0 || xml_skip_past(x, "]]>") < 0)
		return -1;
	memcpy(x->text + x->tlen, start, (size_t)(x->p - 3 - start));
	x->tlen += (size_t)(x->p - 3 - start);
	return 0;
}

static int xml_attributes(struct xml_scan *x)
{
	for (;;) {
		struct xml_name n;
		char q;

		xml_skip_space(x);
		if (x->p >= x->end)
			return -1;
		if (*x->p == '>' || *x->p == '/')
			return 0;
		if (xml_name(x, &n) < 0)
			return -1;
		xml_skip_space(x);
		if (x->p >= x->end || *x->p != '=')
			return -1;
		x->p++;
		xml_skip_space(x);
		if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
			return -1;
		q = *x->p++;
		while (x->p < x->end && *x->p != q) {
			if (*x->p == '<' || *x->p == '\0')
				return -1;
			x->p++;
		}
		if (x->p >= x->end)
			return -1;
		x->p++;
	}
}

static int xml_end_element(struct xml_scan *x)
{
	int rc;

	x->text[x->tlen] = '\0';
	rc = x->fn(x->ctx, x->path, x->depth, x->leaf, x->leaf ? x->text : "",
		   x->leaf ? x->tlen : 0);
	x->depth--;
	x->leaf = 0;
	x->tlen = 0;
	return rc;
}

static int xml_start_tag(struct xml_scan *x, int *root_done)
{
	struct xml_name n;

	if (*root_done && x->depth == 0)
		return -1; /* a second root element */
	x->p++;
	if (xml_name(x, &n) < 0 || xml_attributes(x) < 0 || x->depth == XML_DEPTH_MAX)
		return -1;
	x->path[x->depth++] = n;
	x->leaf = 1;
	x->tlen = 0;
	if (*x->p == '/') {
		if (x->end - x->p < 2 || x->p[1] != '>')
			return -1;
		x->p += 2;
		*root_done = x->depth == 1;
		return xml_end_element(x);
	}
	x->p++;
	return 0;
}

static int xml_end_tag(struct xml_scan *x, int *root_done)
{
	struct xml_name n;
	const struct xml_name *open;

	x->p += 2;
	if (x->depth == 0 || xml_name(x, &n) < 0)
		return -1;
	open = &x->path[x->depth - 1];
	if (n.len != open->len || memcmp(n.s, open->s, n.len) != 0)
		return -1;
	xml_skip_space(x);
	if (x->p >= x->end || *x->p != '>')
		return -1;
	x->p++;
	*root_done = x->depth == 1;
	return xml_end_element(x);
}

static int xml_markup(struct xml_scan *x, int *root_done)
{
	if (xml_starts(x, "<!--"))
		return xml_skip_past(x, "-->");
	if (xml_starts(x, "<![CDATA["))
		return xml_cdata(x);
	if (xml_starts(x, "<!"))
		return -1; /* DOCTYPE and other declarations */
	if (xml_starts(x, "<?"))
		return xml_skip_past(x, "?>");
	if (xml_starts(x, "</"))
		return xml_end_tag(x, root_done);
	return xml_start_tag(x, root_done);
}

/* Returns 0 after a complete document, -1 when malformed, or fn's non-zero value. */
static int xml_scan(const char *buf, size_t len, xml_end_fn fn, void *ctx)
{
	struct xml_scan x = {.p = buf, .end = buf + len, .fn = fn, .ctx = ctx};
	int root_done = 0, rc = 0;

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		x.p += 3;
	x.text = malloc(len + 1);
	if (!x.text)
		return -1;
	while (rc == 0 && x.p < x.end) {
		if (*x.p == '<')
			rc = xml_markup(&x, &root_done);
		else
			rc = xml_chardata(&x);
	}
	if (rc == 0 && (!root_done || x.depth != 0))
		rc = -1;
	free(x.text);
	return rc;
}

static int xml_is(const struct xml_name *n, const char *s)
{
	return n->len == strlen(s) && memcmp(n->s, s, n->len) == 0;
}

/* The path is exactly the given element names, outermost first. */
static int xml_path_is(const struct xml_name *path, int depth, const char *const *names, int n)
{
	if (depth != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (!xml_is(&path[i], names[i]))
			return 0;
	return 1;
}

#define XML_PATH(path, depth, ...)                                   \
	xml_path_is(path, depth, (const char *const[]){__VA_ARGS__}, \
		    (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *)))

struct s3_error_scan {
	struct s3_error *e;
	int is_error;
	int has_code;
};

static int s3_error_end(void *ctx, const struct xml_name *path, int depth, int leaf,
			const char *text, size_t tlen)
{
	struct s3_error_scan *s = ctx;

	(void)tlen;
	if (depth == 1) {
		s->is_error = xml_is(&path[0], "Error");
		return 0;
	}
	if (!leaf)
		return 0;
	if (XML_PATH(path, depth, "Error", "Code")) {
		snprintf(s->e->code, sizeof(s->e->code), "%s", text);
		s->has_code = *text != '\0';
	} else if (XML_PATH(path, depth, "Error", "Message")) {
		snprintf(s->e->message, sizeof(s->e->message), "%s", text);
	}
	return 0;
}

int s3_parse_error(const char *body, size_t len, struct s3_error *e)
{
	struct s3_error_scan s = {.e = e};

	e->code[0] = '\0';
	e->message[0] = '\0';
	if (!body || xml_scan(body, len, s3_error_end, &s) != 0)
		goto bad;
	if (!s.is_error)
		return 0;
	if (s.has_code)
		return 1;
bad:
	e->code[0] = '\0';
	e->message[0] = '\0';
	return -1;
}

struct s3_upload_scan {
	char *id;
	int root_ok;
	int bad; /* empty, repeated or not a leaf */
};

static int s3_upload_end(void *ctx, const struct xml_name *path, int depth, int leaf,
			 const char *text, size_t tlen)
{
	struct s3_upload_scan *s = ctx;

	(void)leaf;
	if (depth == 1) {
		s->root_ok = xml_is(&path[0], "InitiateMultipartUploadResult");
		return 0;
	}
	if (!XML_PATH(path, depth, "InitiateMultipartUploadResult", "UploadId"))
		return 0;
	if (s->id || tlen == 0 || !leaf) {
		s->bad = 1;
		return 0;
	}
	s->id = strdup(text);
	return s->id ? 0 : -1;
}

int s3_parse_upload_id(const char *body, size_t len, char **upload_id)
{
	struct s3_upload_scan s = {0};

	*upload_id = NULL;
	if (!body || xml_scan(body, len, s3_upload_end, &s) != 0 || !s.root_ok || s.bad || !s.id) {
		free(s.id);
		return -1;
	}
	*upload_id = s.id;
	return 0;
}

struct s3_list_scan {
	struct s3_list_page *page;
	size_t cap;
	int root_ok;
	int truncated_seen;
	int keys_in_contents; /* Key elements seen in the open Contents */
	int bad;
};

static int s3_list_add(struct s3_list_scan *s, const char *key)
{
	struct s3_list_page *p = s->page;

	if (p->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		char **k = realloc(p->keys, cap * sizeof(*k));

		if (!k)
			return -1;
		p->keys = k;
		s->cap = cap;
	}
	p->keys[p->n] = strdup(key);
	if (!p->keys[p->n])
		return -1;
	p->n++;
	return 0;
}

static int s3_list_leaf(struct s3_list_scan *s, const struct xml_name *path, int depth,
			const char *text, size_t tlen)
{
	if (XML_PATH(path, depth, "ListBucketResult", "Contents", "Key")) {
		if (tlen == 0 || strlen(text) != tlen)
			s->bad = 1;
		s->keys_in_contents++;
		return s3_list_add(s, text);
	}
	if (XML_PATH(path, depth, "ListBucketResult", "IsTruncated")) {
		if (s->truncated_seen || (strcmp(text, "true") && strcmp(text, "false")))
			s->bad = 1;
		s->truncated_seen = 1;
		s->page->truncated = strcmp(text, "true") == 0;
		return 0;
	}
	if (XML_PATH(path, depth, "ListBucketResult", "NextContinuationToken")) {
		if (s->page->next_token || tlen == 0) {
			s->bad = 1;
			return 0;
		}
		s->page->next_token = strdup(text);
		return s->page->next_token ? 0 : -1;
	}
	return 0;
}

static int s3_list_end(void *ctx, const struct xml_name *path, int depth, int leaf,
		       const char *text, size_t tlen)
{
	struct s3_list_scan *s = ctx;

	if (depth == 1) {
		s->root_ok = xml_is(&path[0], "ListBucketResult");
		return 0;
	}
	if (XML_PATH(path, depth, "ListBucketResult", "Contents")) {
		if (s->keys_in_contents != 1)
			s->bad = 1;
		s->keys_in_contents = 0;
		return 0;
	}
	if (!leaf) {
		/* A Key that holds elements is not a key. */
		if (XML_PATH(path, depth, "ListBucketResult", "Contents", "Key"))
			s->bad = 1;
		return 0;
	}
	return s3_list_leaf(s, path, depth, text, tlen);
}

void s3_list_page_free(struct s3_list_page *page)
{
	for (size_t i = 0; i < page->n; i++)
		free(page->keys[i]);
	free(page->keys);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

int s3_parse_list(const char *body, size_t len, struct s3_list_page *page)
{
	struct s3_list_scan s = {.page = page};

	memset(page, 0, sizeof(*page));
	if (!body || xml_scan(body, len, s3_list_end, &s) != 0 || !s.root_ok || s.bad ||
	    !s.truncated_seen || (page->truncated && !page->next_token)) {
		s3_list_page_free(page);
		return -1;
	}
	return 0;
}

static int s3_code_in(const char *code, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(code, *set) == 0)
			return 1;
	return 0;
}

int s3_status_errno(long status, const char *code)
{
	static const char *const denied[] = {
	    "AccessDenied",	     "InvalidAccessKeyId",
	    "SignatureDoesNotMatch", "ExpiredToken",
	    "InvalidToken",	     "TokenRefreshRequired",
	    "RequestTimeTooSkewed",  "AuthorizationHeaderMalformed",
	    "AccountProblem",	     "AllAccessDisabled",
	    "InvalidSecurity",	     NULL};

	if (!code)
		code = "";
	if (s3_code_in(code, denied) || status == 401 || status == 403)
		return EACCES;
	if (strcmp(code, "NoSuchKey") == 0 || (status == 404 && *code == '\0'))
		return ENOENT;
	if (strcmp(code, "KeyTooLongError") == 0)
		return EINVAL;
	return EIO;
}

int s3_retryable(long status, const char *code)
{
	static const char *const again[] = {
	    "SlowDown",	  "RequestTimeout",	 "InternalError",    "ServiceUnavailable",
	    "Throttling", "ThrottlingException", "RequestThrottled", NULL};

	if (code && s3_code_in(code, again))
		return 1;
	return status == 429 || (status >= 500 && status != 501);
}
