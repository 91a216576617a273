/* S3 request building and response parsing, with no I/O: what store_s3.c sends and
 * how it reads the answers, kept apart so that every rule can be unit-tested.
 *
 * libcurl 7.88 signs the path and the query exactly as written (notes/dependencies.md),
 * so everything here produces the canonical SigV4 form directly: keys percent-encoded
 * the AWS way, query parameters sorted and encoded, valueless parameters as "name=".
 *
 * Strings returned as char * are malloc'd and owned by the caller; NULL means out of
 * memory unless said otherwise. */
#ifndef HSM_S3_REQUEST_H
#define HSM_S3_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#define S3_SHA256_HEX 65	   /* 64 hex digits + NUL */
#define S3_PARTS_MAX  10000	   /* S3's limit on parts per multipart upload */
#define S3_PART_MIN   (5ULL << 20) /* S3's smallest part (except the last) */
#define S3_RANGE_MAX  64	   /* "bytes=A-B" with two 20-digit numbers */

/* Percent-encodes len bytes of s: A-Za-z0-9 and -._~ stay, '/' stays when keep_slash,
 * every other byte becomes %XX (uppercase hex). */
char *s3_uri_encode(const char *s, size_t len, int keep_slash);

/* The object name in the bucket: "prefix/key", or key when prefix is empty or NULL. */
char *s3_object_name(const char *prefix, const char *key);

/* One query parameter; value NULL is written "name=" (what SigV4 needs for
 * "?uploads"). */
struct s3_param {
	const char *name;
	const char *value;
};

/* The canonical query string of n parameters: names and values encoded, sorted by
 * encoded name then value, joined with '&'. "" for n == 0. */
char *s3_query(const struct s3_param *params, size_t n);

/* A path-style URL: ENDPOINT/BUCKET[/OBJECT][?QUERY]. endpoint must not end in '/';
 * object (unencoded, may be NULL for bucket requests) is encoded keeping '/'; query is
 * used as given (from s3_query), NULL or "" for none. */
char *s3_url(const char *endpoint, const char *bucket, const char *object, const char *query);

/* The x-amz-content-sha256 value of a body: lowercase hex sha256. */
void s3_payload_sha256(const void *data, size_t len, char hex[S3_SHA256_HEX]);

/* The Range header value for a read of len bytes at off (len 0 = to the end).
 * Returns 1 with "bytes=..." in buf, 0 when the whole object is wanted (no header),
 * -1 when off + len overflows. buf must hold S3_RANGE_MAX bytes. */
int s3_range(uint64_t off, uint64_t len, char buf[S3_RANGE_MAX]);

/* The CompleteMultipartUpload body for parts 1..n with their ETags (as the server
 * returned them, quotes included). *len gets the body length. */
char *s3_complete_body(char *const *etags, size_t n, size_t *len);

/* The part size to use for an object of len bytes: part_size, grown (to a whole MiB)
 * when len would need more than S3_PARTS_MAX parts. */
uint64_t s3_part_size(uint64_t len, uint64_t part_size);

/* An S3 error document: <Error><Code>..</Code><Message>..</Message></Error>. */
struct s3_error {
	char code[64];
	char message[256];
};

/* Returns 1 when body is a well-formed S3 <Error> document with a Code (e is filled,
 * text cut to fit), 0 when it is well-formed XML of another kind, -1 when it is empty,
 * malformed or truncated. */
int s3_parse_error(const char *body, size_t len, struct s3_error *e);

/* InitiateMultipartUploadResult: returns 0 with the UploadId in *upload_id (malloc'd),
 * -1 when the body is malformed or has no UploadId. */
int s3_parse_upload_id(const char *body, size_t len, char **upload_id);

/* One ListObjectsV2 page. */
struct s3_list_page {
	char **keys; /* n malloc'd object names, in the order listed */
	size_t n;
	int truncated;	  /* IsTruncated */
	char *next_token; /* NextContinuationToken; never NULL when truncated */
};

/* Parses a ListBucketResult. Returns 0, or -1 (and *page zeroed) when the body is
 * malformed, a Contents has no single Key, IsTruncated is not true/false, or a
 * truncated page has no NextContinuationToken (it would never end). */
int s3_parse_list(const char *body, size_t len, struct s3_list_page *page);
void s3_list_page_free(struct s3_list_page *page);

/* How to treat an answer: status is the HTTP status (0 when none arrived), code the
 * S3 error code ("" when unknown). s3_status_errno gives ENOENT, EACCES, EINVAL or EIO;
 * s3_retryable says whether the same request may succeed later (5xx, 429, SlowDown,
 * RequestTimeout, InternalError). */
int s3_status_errno(long status, const char *code);
int s3_retryable(long status, const char *code);

#endif
