#include "config.h"

#include "tools/hsm_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CLIENT_BUF_START (64u * 1024)
#define CLIENT_READ_MIN	 (64u * 1024)

struct hsm_client {
	int fd;
	char *path;
	char *buf; /* received bytes; buf[off..len) not yet consumed */
	size_t off;
	size_t len;
	size_t cap;
	size_t scanned; /* buf[off..scanned) is known to hold no '\n' */
	json_tokener *tok;
	char err[1024];
};

static void client_seterr(struct hsm_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_seterr(struct hsm_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

static void client_gone(struct hsm_client *c, const char *why)
{
	client_seterr(c, "hsmd is not running (socket %s: %s)", c->path, why);
}

struct hsm_client *hsm_client_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct hsm_client *c;
	size_t plen = strlen(path);
	int e;

	if (plen == 0 || plen >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s: %s", plen ? path : "''",
			 plen ? "longer than a unix socket address allows" : "empty");
		return NULL;
	}
	memcpy(sa.sun_path, path, plen + 1);
	c = calloc(1, sizeof(*c));
	if (c)
		c->fd = -1;
	if (!c || !(c->path = strdup(path)) || !(c->tok = json_tokener_new())) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		if (e == EINTR)
			continue;
		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(err, errlen, "hsmd is not running (socket %s: %s)", path,
				 strerror(e));
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen,
				 "cannot connect to hsmd (socket %s: %s; "
				 "root or the socket's group is needed)",
				 path, strerror(e));
		else
			snprintf(err, errlen, "cannot connect to hsmd (socket %s: %s)", path,
				 strerror(e));
		goto fail;
	}
	return c;
fail:
	hsm_client_close(c);
	return NULL;
}

void hsm_client_close(struct hsm_client *c)
{
	if (!c)
		return;
	/* Either every reply was read or an earlier error is being reported: a
	 * failing close has nothing to add. */
	if (c->fd >= 0)
		(void)close(c->fd);
	if (c->tok)
		json_tokener_free(c->tok);
	free(c->buf);
	free(c->path);
	free(c);
}

const char *hsm_client_error(const struct hsm_client *c)
{
	return c->err;
}

static int client_write_all(struct hsm_client *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* hsmd may have written its reason (EACCES, bad request) before
			 * closing; leave it to the read side to fetch it. */
			if (errno == EPIPE || errno == ECONNRESET)
				return 0;
			client_seterr(c, "cannot send to hsmd (socket %s: %s)", c->path,
				      strerror(errno));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int hsm_client_send(struct hsm_client *c, json_object *req)
{
	const char *s;
	size_t len;
	char *line;
	int rc;

	s = json_object_to_json_string_length(
	    req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!s) {
		client_seterr(c, "out of memory building the request");
		return -1;
	}
	if (len > HSM_LINE_MAX) {
		client_seterr(c, "request of %zu bytes is over the protocol's 16 MiB limit", len);
		return -1;
	}
	/* One send for line and newline keeps the request in one segment. */
	line = malloc(len + 1);
	if (!line) {
		client_seterr(c, "out of memory building the request");
		return -1;
	}
	memcpy(line, s, len);
	line[len] = '\n';
	rc = client_write_all(c, line, len + 1);
	free(line);
	return rc;
}

/* Makes room for at least CLIENT_READ_MIN more bytes after buf[len]. */
static int client_reserve(struct hsm_client *c)
{
	size_t want, ncap;
	char *nbuf;

	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->scanned -= c->off;
		c->off = 0;
	}
	if (c->cap - c->len >= CLIENT_READ_MIN)
		return 0;
	want = c->len + CLIENT_READ_MIN;
	ncap = c->cap ? c->cap : CLIENT_BUF_START;
	while (ncap < want)
		ncap *= 2;
	nbuf = realloc(c->buf, ncap);
	if (!nbuf) {
		client_seterr(c, "out of memory reading a reply of %zu bytes", c->len);
		return -1;
	}
	c->buf = nbuf;
	c->cap = ncap;
	return 0;
}

/* Parses one line; the line must be exactly one JSON object with a string "type". */
static int client_parse(struct hsm_client *c, const char *line, size_t len, json_object **msg)
{
	json_object *obj, *type;
	size_t end;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0) {
		client_seterr(c, "hsmd sent a malformed reply: empty line");
		return -1;
	}
	json_tokener_reset(c->tok);
	obj = json_tokener_parse_ex(c->tok, line, (int)len);
	if (!obj) {
		client_seterr(c, "hsmd sent a malformed reply: not JSON");
		return -1;
	}
	end = json_tokener_get_parse_end(c->tok);
	while (end < len && (line[end] == ' ' || line[end] == '\t'))
		end++;
	if (end != len) {
		client_seterr(c, "hsmd sent a malformed reply: text after the JSON object");
		goto bad;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		client_seterr(c, "hsmd sent a malformed reply: not a JSON object");
		goto bad;
	}
	if (!json_object_object_get_ex(obj, "type", &type) ||
	    !json_object_is_type(type, json_type_string)) {
		client_seterr(c, "hsmd sent a malformed reply: no string \"type\"");
		goto bad;
	}
	*msg = obj;
	return 0;
bad:
	json_object_put(obj);
	return -1;
}

int hsm_client_read(struct hsm_client *c, json_object **msg)
{
	*msg = NULL;
	for (;;) {
		char *nl = NULL;
		ssize_t n;

		if (c->scanned < c->len)
			nl = memchr(c->buf + c->scanned, '\n', c->len - c->scanned);
		if (nl) {
			char *line = c->buf + c->off;
			size_t llen = (size_t)(nl - line);

			c->off = (size_t)(nl - c->buf) + 1;
			c->scanned = c->off;
			if (llen > HSM_LINE_MAX)
				break;
			return client_parse(c, line, llen, msg);
		}
		c->scanned = c->len;
		if (c->len - c->off > HSM_LINE_MAX)
			break;
		if (client_reserve(c) < 0)
			return -1;
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNRESET) {
				client_gone(c, "connection reset before the reply ended");
				return -1;
			}
			client_seterr(c, "cannot read from hsmd (socket %s: %s)", c->path,
				      strerror(errno));
			return -1;
		}
		if (n == 0) {
			client_gone(c, c->len > c->off
					   ? "connection closed in the middle of a reply line"
					   : "connection closed before the reply ended");
			return -1;
		}
		c->len += (size_t)n;
	}
	client_seterr(c, "hsmd sent a malformed reply: a line longer than 16 MiB");
	return -1;
}
