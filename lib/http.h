/* A small asynchronous HTTP client: libcurl's multi socket API driven by a libev loop.
 * Everything runs on the loop thread. A request is started with http_start; its
 * callback runs exactly once, later, on the loop (never inside http_start), unless the
 * request is cancelled first. Retries, queueing and protocol meaning belong to the
 * caller (the S3 store, the peer client).
 *
 * Ownership: the client owns each request from http_start until its callback returns
 * or it is cancelled; the caller keeps its http_request pointer only to cancel it. The
 * request body is the caller's memory and must stay valid until then. The response and
 * its body belong to the request and die after the callback, unless the callback takes
 * the body with http_resp_take_body. */
#ifndef HSM_HTTP_H
#define HSM_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct http_client;
struct http_request;

#define HTTP_ERROR_BODY_MAX (64 * 1024) /* the rest of an error answer is dropped */

struct http_req {
	const char *method; /* GET, HEAD, PUT, POST, DELETE, ...; PUT and POST send
			     * a body (possibly empty) */
	const char *url;
	const char *const *headers; /* "Name: value" lines, NULL-terminated, or NULL;
				     * copied */
	const void *body;	    /* request body; not copied */
	size_t body_len;
	const char *aws_sigv4; /* e.g. "aws:amz:us-east-1:s3" to sign, or NULL */
	const char *userpwd;   /* "user:password" (SigV4: "KEY:SECRET"), or NULL */
	const char *ca_file;   /* TLS: CA bundle, client certificate and key, or */
	const char *cert_file; /* NULL for the system defaults / none */
	const char *key_file;
	double connect_timeout; /* seconds; 0 = libcurl's default */
	double stall_timeout;	/* fail when nothing moves for this long; 0 = never */
	double total_timeout;	/* seconds for the whole exchange; 0 = no limit */
	size_t max_body;	/* a larger successful answer fails; 0 = no limit */
};

struct http_resp {
	long status;	   /* HTTP status, 0 when no answer arrived */
	int curl_code;	   /* CURLcode, 0 when the exchange completed */
	int timed_out;	   /* the failure was one of the timeouts above */
	int too_large;	   /* the answer was longer than max_body */
	const char *error; /* what went wrong in the transfer, "" when nothing */
	char *body;	   /* NUL-terminated (the NUL is not counted), never NULL */
	size_t body_len;
	int64_t content_length; /* Content-Length of the answer, -1 when absent */
	char etag[192];		/* ETag as sent (quotes included), "" when absent */
};

typedef void (*http_done_cb)(void *arg, struct http_resp *resp);

/* max_conns caps the connections open to one host (0 = libcurl's default). Returns
 * NULL with a message in err. */
struct http_client *http_client_new(struct ev_loop *loop, unsigned max_conns, char *err,
				    size_t errlen);
/* Cancels every request still running (their callbacks do not run), then frees c.
 * May be called from inside a callback. */
void http_client_free(struct http_client *c);
/* Returns the request, or NULL with a message in err (the callback will not run). */
struct http_request *http_start(struct http_client *c, const struct http_req *req, http_done_cb cb,
				void *arg, char *err, size_t errlen);
/* Stops a running request; its callback will not run. Not for a request whose
 * callback is running. */
void http_cancel(struct http_request *r);
/* Requests started and not yet finished or cancelled. */
unsigned http_active(const struct http_client *c);
/* Takes the body out of resp: the caller owns and frees it (NUL-terminated). */
char *http_resp_take_body(struct http_resp *resp, size_t *len);

#endif
