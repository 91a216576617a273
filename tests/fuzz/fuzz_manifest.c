/* libFuzzer target for manifests (lib/manifest.h), what the store and peers hand back:
 * one that parses serializes to text that parses to the same manifest. Built and run
 * by tests/fuzz/run manifest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hsm_manifest m, back;
	char err[256], *text = NULL;
	size_t len = 0;
	uint8_t id[32];

	memset(&m, 0, sizeof(m));
	if (manifest_parse((const char *)data, size, &m, err, sizeof(err)) < 0)
		return 0;
	if (manifest_serialize(&m, &text, &len) < 0)
		abort();
	memset(&back, 0, sizeof(back));
	if (manifest_parse(text, len, &back, err, sizeof(err)) < 0)
		abort();
	if (back.size != m.size || back.chunk_size != m.chunk_size || back.nchunks != m.nchunks ||
	    (m.nchunks && memcmp(back.chunks, m.chunks, m.nchunks * sizeof(m.chunks[0]))))
		abort();
	manifest_id(text, len, id);
	free(text);
	manifest_free(&back);
	manifest_free(&m);
	return 0;
}
