/* libFuzzer target for the trusted.hsm record (lib/hsmxattr.h), which copies, restores
 * and other hosts can put on a file: one that decodes encodes to the same bytes it
 * was decoded from (the format has one spelling per record). Built and run by
 * tests/fuzz/run hsmxattr. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hsmxattr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[HSM_XATTR_MAX];
	struct hsm_state st, back;
	char err[256];
	int n;

	if (hsmx_decode(data, size, &st, err, sizeof(err)) < 0)
		return 0;
	n = hsmx_encode(&st, buf, sizeof(buf));
	if (n < 0)
		abort();
	if ((size_t)n != size || memcmp(buf, data, size))
		abort();
	if (hsmx_decode(buf, (size_t)n, &back, err, sizeof(err)) < 0 ||
	    memcmp(&back.fid, &st.fid, sizeof(st.fid)) || back.version != st.version)
		abort();
	(void)hsm_state_name(st.state);
	return 0;
}
