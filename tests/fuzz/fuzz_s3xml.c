/* libFuzzer target for what an S3 endpoint answers (recall/s3_request.h): the <Error>,
 * InitiateMultipartUploadResult and ListBucketResult parsers, fed the same bytes. What
 * they accept must be whole: NUL-terminated strings, a continuation token whenever the
 * page is truncated, a zeroed page when refused. Built and run by tests/fuzz/run s3xml. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "recall/s3_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct s3_list_page page;
	struct s3_error e;
	char *id = NULL;

	memset(&e, 0x55, sizeof(e));
	if (s3_parse_error(body, size, &e) == 1) {
		if (!memchr(e.code, '\0', sizeof(e.code)) || !e.code[0] ||
		    !memchr(e.message, '\0', sizeof(e.message)))
			abort();
	}
	if (s3_parse_upload_id(body, size, &id) == 0) {
		if (!id)
			abort();
		(void)strlen(id);
		free(id);
	}
	if (s3_parse_list(body, size, &page) == 0) {
		if (page.truncated && !page.next_token)
			abort();
		for (size_t i = 0; i < page.n; i++)
			(void)strlen(page.keys[i]);
		s3_list_page_free(&page);
	} else if (page.n || page.keys || page.next_token || page.truncated) {
		abort();
	}
	return 0;
}
