/* hsmd.conf: good files with every key and with none, a table of bad files each with
 * its exact message, credentials files (modes, owners, contents), the size parser and
 * the volume lookup. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/config.h"
#include "lib/log.h"

#define SITE "[site]\nname = ny\n"
#define VOL  "[volume v]\npath = /srv/v\n"

static char tmpdir[64];

static int setup_tmpdir(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/test_config.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes a file under tmpdir with the given mode; returns its path in out. */
static void write_file(const char *name, const char *text, size_t len, mode_t mode, char *out,
		       size_t cap)
{
	int fd;

	snprintf(out, cap, "%s/%s", tmpdir, name);
	unlink(out);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static struct hsm_config *load_ok(const char *text)
{
	struct hsm_config *cfg = NULL;
	char err[512] = "";

	if (config_load_string("t.conf", text, &cfg, err, sizeof(err)) != 0)
		fail_msg("config refused: %s\n%s", err, text);
	assert_non_null(cfg);
	assert_string_equal(err, "");
	return cfg;
}

static void expect_error(const char *text, const char *want)
{
	struct hsm_config *cfg = (struct hsm_config *)1;
	char err[512] = "";

	if (config_load_string("t.conf", text, &cfg, err, sizeof(err)) != -1)
		fail_msg("config accepted:\n%s", text);
	assert_null(cfg);
	if (strcmp(err, want) != 0)
		fail_msg("wrong message for:\n%s\n got  %s\n want %s", text, err, want);
}

static void test_minimal_defaults(void **state)
{
	struct hsm_config *cfg = load_ok(SITE VOL);
	const struct hsm_store_cfg *st = &cfg->store;

	(void)state;
	assert_string_equal(cfg->file, "t.conf");
	assert_string_equal(cfg->site, "ny");
	assert_string_equal(cfg->state_dir, "/var/lib/hsmd");
	assert_string_equal(cfg->socket_path, "/run/hsmd/hsmd.sock");
	assert_string_equal(cfg->socket_group, "hsm");
	assert_int_equal(cfg->log_level, LOG_LVL_INFO);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(st->kind, HSM_STORE_FILE);
	assert_string_equal(st->url, "file:///var/lib/hsmd/objects");
	assert_string_equal(st->file_root, "/var/lib/hsmd/objects");
	assert_null(st->bucket);
	assert_null(st->prefix);
	assert_null(st->endpoint);
	assert_string_equal(st->region, "us-east-1");
	assert_null(st->credentials);
	assert_null(st->access_key);
	assert_null(st->secret_key);
	assert_null(st->session_token);
	assert_int_equal(st->chunk_size, 4u << 20);
	assert_true(st->multipart_threshold == 64ull << 20);
	assert_true(st->part_size == 16ull << 20);
	assert_int_equal(st->max_connections, 16);
	assert_int_equal(st->retries, 4);
	assert_true(st->timeout == 30.0);
	assert_int_equal(cfg->nvolumes, 1);
	assert_string_equal(cfg->volumes[0].name, "v");
	assert_string_equal(cfg->volumes[0].path, "/srv/v");
	assert_string_equal(cfg->volumes[0].backing, "/srv/v");
	assert_int_equal(cfg->volumes[0].recall, HSM_RECALL_OPEN);
	config_free(cfg);
	config_free(NULL);
}

static void test_state_dir_moves_default_store(void **state)
{
	struct hsm_config *cfg = load_ok("[site]\nname = ny\nstate_dir = /data/hsm/\n" VOL);

	(void)state;
	assert_string_equal(cfg->state_dir, "/data/hsm");
	assert_string_equal(cfg->store.url, "file:///data/hsm/objects");
	assert_string_equal(cfg->store.file_root, "/data/hsm/objects");
	config_free(cfg);
}

static void write_creds(const char *text, mode_t mode, char *path, size_t cap)
{
	write_file("creds", text, strlen(text), mode, path, cap);
}

static void test_every_key(void **state)
{
	char creds[256], text[2048];
	struct hsm_config *cfg;
	const struct hsm_store_cfg *st;

	(void)state;
	write_creds("# keys for the test bucket\n\naccess_key = AKIDEXAMPLE\n"
		    "secret_key = \"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\"  # quoted\n"
		    "  session_token=tok#123\n",
		    0600, creds, sizeof(creds));
	snprintf(text, sizeof(text),
		 "# every key\n"
		 "[site]\n"
		 "name = ny-2_b\n"
		 "state_dir = /var/lib//hsmd-test/./\n"
		 "socket = /run/hsmd//t.sock\n"
		 "socket_group = wheel\n"
		 "log_level = debug\n"
		 "workers = 256\n"
		 "\n"
		 "[store]\n"
		 "url = s3://my-bucket.1/some//prefix/\n"
		 "endpoint = http://127.0.0.1:9000/\n"
		 "region = eu-west-1\n"
		 "credentials = %s\n"
		 "chunk_size = 8M\n"
		 "multipart_threshold = 128MiB\n"
		 "part_size = 5MB\n"
		 "max_connections = 256\n"
		 "retries = 0\n"
		 "timeout = 2.5\n"
		 "\n"
		 "[volume home]\n"
		 "path = /srv/home/\n"
		 "backing = /mnt/.hsm/home\n"
		 "recall = access\n"
		 "\t[ volume  proj_1 ]   # comment\n"
		 "  path = \"/srv/proj \\\"x\\\" \\\\ #1\"  # quoted\n"
		 "recall = open # the default\n",
		 creds);
	cfg = load_ok(text);
	st = &cfg->store;
	assert_string_equal(cfg->site, "ny-2_b");
	assert_string_equal(cfg->state_dir, "/var/lib/hsmd-test");
	assert_string_equal(cfg->socket_path, "/run/hsmd/t.sock");
	assert_string_equal(cfg->socket_group, "wheel");
	assert_int_equal(cfg->log_level, LOG_LVL_DEBUG);
	assert_int_equal(cfg->workers, 256);
	assert_int_equal(st->kind, HSM_STORE_S3);
	assert_string_equal(st->url, "s3://my-bucket.1/some//prefix/");
	assert_null(st->file_root);
	assert_string_equal(st->bucket, "my-bucket.1");
	assert_string_equal(st->prefix, "some/prefix");
	assert_string_equal(st->endpoint, "http://127.0.0.1:9000");
	assert_string_equal(st->region, "eu-west-1");
	assert_string_equal(st->credentials, creds);
	assert_string_equal(st->access_key, "AKIDEXAMPLE");
	assert_string_equal(st->secret_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	/* no inline comments in credentials: '#' may be part of a secret */
	assert_string_equal(st->session_token, "tok#123");
	assert_int_equal(st->chunk_size, 8u << 20);
	assert_true(st->multipart_threshold == 128ull << 20);
	assert_true(st->part_size == 5ull << 20);
	assert_int_equal(st->max_connections, 256);
	assert_int_equal(st->retries, 0);
	assert_true(st->timeout == 2.5);
	assert_int_equal(cfg->nvolumes, 2);
	assert_string_equal(cfg->volumes[0].name, "home");
	assert_string_equal(cfg->volumes[0].path, "/srv/home");
	assert_string_equal(cfg->volumes[0].backing, "/mnt/.hsm/home");
	assert_int_equal(cfg->volumes[0].recall, HSM_RECALL_ACCESS);
	assert_string_equal(cfg->volumes[1].name, "proj_1");
	assert_string_equal(cfg->volumes[1].path, "/srv/proj \"x\" \\ #1");
	assert_string_equal(cfg->volumes[1].backing, "/srv/proj \"x\" \\ #1");
	assert_int_equal(cfg->volumes[1].recall, HSM_RECALL_OPEN);
	config_free(cfg);
}

static void test_s3_defaults_and_crlf(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = load_ok("[site]\r\nname = ny\r\n[store]\r\nurl = s3://bkt\r\nregion = ap-south-1\r\n"
		      "[volume v]\r\npath = /srv/v\r\n");
	assert_int_equal(cfg->store.kind, HSM_STORE_S3);
	assert_string_equal(cfg->store.bucket, "bkt");
	assert_string_equal(cfg->store.prefix, "");
	assert_string_equal(cfg->store.endpoint, "https://s3.ap-south-1.amazonaws.com");
	assert_null(cfg->store.credentials);
	assert_null(cfg->store.access_key);
	config_free(cfg);

	cfg = load_ok(SITE "[store]\nurl = s3://bkt/\nendpoint = https://[::1]:8443\n" VOL);
	assert_string_equal(cfg->store.prefix, "");
	assert_string_equal(cfg->store.endpoint, "https://[::1]:8443");
	config_free(cfg);

	cfg = load_ok(SITE "[store]\nurl = s3://bkt/a.b/c_d-e\nendpoint = https://minio\n" VOL);
	assert_string_equal(cfg->store.prefix, "a.b/c_d-e");
	assert_string_equal(cfg->store.endpoint, "https://minio");
	config_free(cfg);

	cfg = load_ok(SITE "[store]\nurl = file:///data//objects/\n" VOL);
	assert_int_equal(cfg->store.kind, HSM_STORE_FILE);
	assert_string_equal(cfg->store.url, "file:///data//objects/");
	assert_string_equal(cfg->store.file_root, "/data/objects");
	config_free(cfg);
}

static void test_volume_prefix_names_do_not_nest(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = load_ok(SITE "[volume a]\npath = /srv/a\n[volume ab]\npath = /srv/ab\n"
			   "[volume b]\npath = /srv/a-b\nbacking = /srv/a.b\n");
	assert_int_equal(cfg->nvolumes, 3);
	config_free(cfg);
}

struct bad_case {
	const char *text;
	const char *err;
};

#define LONG33 "abcdefghijklmnopqrstuvwxyzabcdefg"

static const struct bad_case bad_cases[] = {
    /* structure */
    {"", "t.conf:1: missing [site] section with name = SITE"},
    {"# nothing\n\n", "t.conf:2: missing [site] section with name = SITE"},
    {"[site]\n" VOL, "t.conf:1: [site] has no name: expected name = SITE"},
    {SITE, "t.conf:2: no [volume NAME] section: at least one volume is required"},
    {"name = ny\n", "t.conf:1: \"name\" is outside any section: expected [site], [store] or "
		    "[volume NAME] first"},
    {"[sites]\n", "t.conf:1: unknown section [sites]: expected [site], [store], "
		  "[peer SITE] or [volume NAME]"},
    {"[site extra]\n", "t.conf:1: unknown section [site extra]: expected [site], [store], "
		       "[peer SITE] or [volume NAME]"},
    {"[volumes x]\n", "t.conf:1: unknown section [volumes x]: expected [site], [store], "
		      "[peer SITE] or [volume NAME]"},
    {"[site\n", "t.conf:1: expected \"]\" to close the section header, found \"[site\""},
    {"[site] x\n", "t.conf:1: unexpected text \"x\" after the section header"},
    {"[volume]\n", "t.conf:1: missing volume name: expected [volume NAME]"},
    {"[volume   ]\n", "t.conf:1: missing volume name: expected [volume NAME]"},
    {"[volume Home]\n", "t.conf:1: invalid volume name \"Home\": expected 1 to 32 of a-z, "
			"0-9, '_', '-'"},
    {"[volume a b]\n", "t.conf:1: invalid volume name \"a b\": expected 1 to 32 of a-z, "
		       "0-9, '_', '-'"},
    {"[volume " LONG33 "]\n", "t.conf:1: invalid volume name \"" LONG33 "\": expected 1 to "
			      "32 of a-z, 0-9, '_', '-'"},
    {SITE "[volume v]\npath = /a\n[volume v]\n", "t.conf:5: duplicate volume \"v\" (first "
						 "defined at line 3)"},
    {SITE SITE, "t.conf:3: duplicate section [site] (first at line 1)"},
    {SITE "[store]\n[store]\n", "t.conf:4: duplicate section [store] (first at line 3)"},
    /* lines */
    {SITE "nam = x\n", "t.conf:3: unknown key \"nam\" in [site]: expected one of name, "
		       "state_dir, socket, socket_group, log_level, workers, listen, tls_ca, "
		       "tls_cert, tls_key, peer_timeout, policy, policy_jobs, guard, guard_socket, guard_hold"},
    {SITE "[store]\nbucket = x\n",
     "t.conf:4: unknown key \"bucket\" in [store]: expected "
     "one of url, endpoint, region, credentials, chunk_size, multipart_threshold, "
     "part_size, max_connections, retries, timeout"},
    {SITE "[volume v]\nsize = 1\n", "t.conf:4: unknown key \"size\" in [volume v]: "
				    "expected one of path, backing, recall, peers"},
    {SITE "Name = x\n", "t.conf:3: unknown key \"Name\" in [site]: expected one of name, "
			"state_dir, socket, socket_group, log_level, workers, listen, tls_ca, "
			"tls_cert, tls_key, peer_timeout, policy, policy_jobs, guard, guard_socket, guard_hold"},
    {SITE "name = ldn\n", "t.conf:3: duplicate key \"name\" in [site] (first set at "
			  "line 2)"},
    {SITE "[volume v]\npath = /a\nrecall = open\npath = /b\n",
     "t.conf:6: duplicate key "
     "\"path\" in [volume v] (first set at line 4)"},
    {"[site]\nname ny\n", "t.conf:2: expected \"key = value\" or [section], found "
			  "\"name ny\""},
    {"[site]\nname\n", "t.conf:2: expected \"key = value\" or [section], found \"name\""},
    {"[site]\n\"name\" = ny\n",
     "t.conf:2: unknown key \"\\x22name\\x22\" in [site]: "
     "expected one of name, state_dir, socket, socket_group, log_level, "
     "workers, listen, tls_ca, tls_cert, tls_key, peer_timeout, policy, policy_jobs, guard, guard_socket, guard_hold"},
    {"[site]\n= ny\n", "t.conf:2: missing key before \"=\", found \"= ny\""},
    {"[site]\nname =\n", "t.conf:2: missing value for \"name\""},
    {"[site]\nname = # none\n", "t.conf:2: missing value for \"name\""},
    {"[site]\nname = \"\"\n", "t.conf:2: missing value for \"name\""},
    {"[site]\nname = \"ny\n", "t.conf:2: unterminated quoted value for \"name\""},
    {"[site]\nname = \"n\\y\"\n", "t.conf:2: bad escape in quoted value: only \\\" and \\\\ "
				  "are allowed for \"name\""},
    {"[site]\nname = \"ny\" x\n", "t.conf:2: unexpected text after the closing quote for "
				  "\"name\""},
    /* [site] values */
    {"[site]\nname = NY\n", "t.conf:2: invalid site name \"NY\": expected 1 to 32 of a-z, "
			    "0-9, '_', '-', starting with a letter"},
    {"[site]\nname = 1ny\n", "t.conf:2: invalid site name \"1ny\": expected 1 to 32 of a-z, "
			     "0-9, '_', '-', starting with a letter"},
    {"[site]\nname = " LONG33 "\n", "t.conf:2: invalid site name \"" LONG33 "\": expected 1 "
				    "to 32 of a-z, 0-9, '_', '-', starting with a letter"},
    {"[site]\nname = \"n y\"\n", "t.conf:2: invalid site name \"n y\": expected 1 to 32 of "
				 "a-z, 0-9, '_', '-', starting with a letter"},
    {SITE "state_dir = var/lib\n", "t.conf:3: state_dir \"var/lib\" is not an absolute path: "
				   "expected a path starting with '/'"},
    {SITE "state_dir = /var/../etc\n", "t.conf:3: state_dir \"/var/../etc\" contains a "
				       "\"..\" component: expected a path without \"..\""},
    {SITE "state_dir = /var/lib/..\n", "t.conf:3: state_dir \"/var/lib/..\" contains a "
				       "\"..\" component: expected a path without \"..\""},
    {SITE "socket = /run/hsmd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     "t.conf:3: socket \"/run/hsmd/aaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is too long: at most 107 bytes"},
    {SITE "socket_group = \"a b\"\n", "t.conf:3: invalid socket_group \"a b\": expected a "
				      "group name of at most 32 letters, digits, '_', '.', '-'"},
    {SITE "log_level = verbose\n", "t.conf:3: bad log_level \"verbose\": expected error, "
				   "warn, info or debug"},
    {SITE "workers = 257\n", "t.conf:3: bad workers \"257\": expected a whole number from 0 "
			     "to 256"},
    {SITE "workers = -1\n", "t.conf:3: bad workers \"-1\": expected a whole number from 0 "
			    "to 256"},
    {SITE "workers = +1\n", "t.conf:3: bad workers \"+1\": expected a whole number from 0 "
			    "to 256"},
    {SITE "workers = 4x\n", "t.conf:3: bad workers \"4x\": expected a whole number from 0 "
			    "to 256"},
    {SITE "workers = 99999999999999999999999\n",
     "t.conf:3: bad workers "
     "\"99999999999999999999999\": expected a whole number from 0 to 256"},
    /* [store] values */
    {SITE "[store]\nurl = http://x\n", "t.conf:4: unsupported store url \"http://x\": "
				       "expected file:///PATH or s3://BUCKET[/PREFIX]"},
    {SITE "[store]\nurl = /data/objects\n",
     "t.conf:4: unsupported store url "
     "\"/data/objects\": expected file:///PATH or s3://BUCKET[/PREFIX]"},
    {SITE "[store]\nurl = s3://\n", "t.conf:4: store url \"s3://\" has no bucket: expected "
				    "s3://BUCKET[/PREFIX]"},
    {SITE "[store]\nurl = s3:///prefix\n", "t.conf:4: store url \"s3:///prefix\" has no "
					   "bucket: expected s3://BUCKET[/PREFIX]"},
    {SITE "[store]\nurl = s3://My_Bucket\n",
     "t.conf:4: invalid bucket name \"My_Bucket\": "
     "expected 3 to 63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit"},
    {SITE "[store]\nurl = s3://ab\n",
     "t.conf:4: invalid bucket name \"ab\": expected 3 to "
     "63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit"},
    {SITE "[store]\nurl = s3://bkt-/x\n",
     "t.conf:4: invalid bucket name \"bkt-\": expected "
     "3 to 63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit"},
    {SITE "[store]\nurl = s3://bkt/a/../b\n",
     "t.conf:4: invalid prefix in store url "
     "\"s3://bkt/a/../b\": expected at most 512 of A-Z, a-z, 0-9, '/', '.', '_', '-' "
     "without \".\" or \"..\" components"},
    {SITE "[store]\nurl = s3://bkt/a b\n",
     "t.conf:4: invalid prefix in store url "
     "\"s3://bkt/a b\": expected at most 512 of A-Z, a-z, 0-9, '/', '.', '_', '-' "
     "without \".\" or \"..\" components"},
    {SITE "[store]\nurl = s3://bkt?x=1\n",
     "t.conf:4: invalid bucket name \"bkt?x=1\": "
     "expected 3 to 63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit"},
    {SITE "[store]\nurl = file://data\n", "t.conf:4: store url \"file://data\" has no "
					  "absolute path: expected file:///PATH"},
    {SITE "[store]\nurl = file:///a/../b\n",
     "t.conf:4: store url path \"/a/../b\" "
     "contains a \"..\" component: expected a path without \"..\""},
    {SITE "[store]\nurl = s3://bkt\nendpoint = ftp://h\n",
     "t.conf:5: bad endpoint "
     "\"ftp://h\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nendpoint = https://\n",
     "t.conf:5: bad endpoint "
     "\"https://\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nendpoint = https://h:0\n",
     "t.conf:5: bad endpoint "
     "\"https://h:0\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nendpoint = https://h:65536\n",
     "t.conf:5: bad endpoint "
     "\"https://h:65536\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nendpoint = https://h/path\n",
     "t.conf:5: bad endpoint "
     "\"https://h/path\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nendpoint = https://[::1\n",
     "t.conf:5: bad endpoint "
     "\"https://[::1\": expected http://HOST[:PORT] or https://HOST[:PORT]"},
    {SITE "[store]\nurl = s3://bkt\nregion = \"US East\"\n",
     "t.conf:5: bad region "
     "\"US East\": expected a region name such as us-east-1"},
    {SITE "[store]\nchunk_size = 4k\n", "t.conf:4: chunk_size 4k is out of range: expected "
					"64k to 64M"},
    {SITE "[store]\nchunk_size = 128M\n", "t.conf:4: chunk_size 128M is out of range: "
					  "expected 64k to 64M"},
    {SITE "[store]\nchunk_size = 65537\n", "t.conf:4: chunk_size 65537 is not a multiple "
					   "of 4096"},
    {SITE "[store]\nchunk_size = 4 M\n", "t.conf:4: bad chunk_size \"4 M\": expected a size "
					 "such as 4096, 512k, 4M, 64MiB or 1G"},
    {SITE "[store]\nchunk_size = 99999999999999999999\n",
     "t.conf:4: bad chunk_size "
     "\"99999999999999999999\": expected a size such as 4096, 512k, 4M, 64MiB or 1G"},
    {SITE "[store]\npart_size = 4M\n", "t.conf:4: part_size 4M is out of range: expected "
				       "5M to 5G"},
    {SITE "[store]\npart_size = 5242879\n", "t.conf:4: part_size 5242879 is out of range: "
					    "expected 5M to 5G"},
    {SITE "[store]\nmultipart_threshold = 6G\n", "t.conf:4: multipart_threshold 6G is out "
						 "of range: expected 5M to 5G"},
    {SITE "[store]\nmax_connections = 0\n", "t.conf:4: bad max_connections \"0\": expected "
					    "a whole number from 1 to 256"},
    {SITE "[store]\nretries = 101\n", "t.conf:4: bad retries \"101\": expected a whole "
				      "number from 0 to 100"},
    {SITE "[store]\ntimeout = 0\n", "t.conf:4: bad timeout \"0\": expected seconds, more "
				    "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = 0.0\n", "t.conf:4: bad timeout \"0.0\": expected seconds, more "
				      "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = 3601\n", "t.conf:4: bad timeout \"3601\": expected seconds, "
				       "more than 0 and at most 3600"},
    {SITE "[store]\ntimeout = 1e3\n", "t.conf:4: bad timeout \"1e3\": expected seconds, more "
				      "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = inf\n", "t.conf:4: bad timeout \"inf\": expected seconds, more "
				      "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = 1.\n", "t.conf:4: bad timeout \"1.\": expected seconds, more "
				     "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = .5\n", "t.conf:4: bad timeout \".5\": expected seconds, more "
				     "than 0 and at most 3600"},
    {SITE "[store]\ntimeout = -1\n", "t.conf:4: bad timeout \"-1\": expected seconds, more "
				     "than 0 and at most 3600"},
    {SITE "[store]\ncredentials = creds\n", "t.conf:4: credentials \"creds\" is not an "
					    "absolute path: expected a path starting with '/'"},
    {SITE "[store]\nendpoint = http://h\n" VOL, "t.conf:4: endpoint applies only to an "
						"s3:// store url"},
    {SITE "[store]\nurl = file:///o\nregion = us-east-1\n" VOL, "t.conf:5: region applies "
								"only to an s3:// store url"},
    /* volumes */
    {SITE "[volume v]\nrecall = open\n", "t.conf:3: volume \"v\" has no path: expected "
					 "path = /ABSOLUTE/PATH"},
    {SITE "[volume v]\npath = /\n", "t.conf:4: path must not be \"/\": expected a directory "
				    "below the root"},
    {SITE "[volume v]\npath = //./\n", "t.conf:4: path must not be \"/\": expected a "
				       "directory below the root"},
    {SITE "[volume v]\npath = srv/v\n", "t.conf:4: path \"srv/v\" is not an absolute path: "
					"expected a path starting with '/'"},
    {SITE "[volume v]\npath = /srv/v\nbacking = /mnt/../v\n",
     "t.conf:5: backing "
     "\"/mnt/../v\" contains a \"..\" component: expected a path without \"..\""},
    {SITE "[volume v]\npath = /srv/v\nrecall = read\n", "t.conf:5: bad recall \"read\": "
							"expected open or access"},
    {SITE "[volume a]\npath = /srv/a\n[volume b]\npath = /srv/a/b\n",
     "t.conf:6: volume "
     "\"b\" path /srv/a/b is inside volume \"a\" path /srv/a (line 4)"},
    {SITE "[volume a]\npath = /srv/a\n[volume b]\npath = /srv/a/\n",
     "t.conf:6: volume "
     "\"b\" has the same path /srv/a as volume \"a\" (line 4)"},
    {SITE "[volume a]\npath = /srv/a/x\n[volume b]\npath = /srv\n",
     "t.conf:6: volume "
     "\"b\" path /srv contains volume \"a\" path /srv/a/x (line 4)"},
    {SITE "[volume a]\npath = /srv/a\nbacking = /m\n[volume b]\npath = /srv/b\n"
	  "backing = /m/b\n",
     "t.conf:8: volume \"b\" backing /m/b is inside volume \"a\" "
     "backing /m (line 5)"},
    {SITE "[volume a]\npath = /srv/a\n[volume b]\npath = /srv/b\nbacking = /srv/a\n",
     "t.conf:7: volume \"b\" has the same backing /srv/a as volume \"a\" (line 3)"},
    {"[site]\nname = ny\nstate_dir = /srv/v/.hsm\n" VOL,
     "t.conf:3: state_dir "
     "/srv/v/.hsm is inside volume \"v\" (path /srv/v, line 5)"},
    {SITE "[volume v]\npath = /var\n", "t.conf:4: volume \"v\" path /var contains the "
				       "default state_dir /var/lib/hsmd"},
    {SITE "[store]\nurl = file:///srv/v/objects\n" VOL,
     "t.conf:4: store directory "
     "/srv/v/objects is inside volume \"v\" (path /srv/v, line 6)"},
    /* sites */
    {SITE "[peer ny]\nurl = https://a:1\n" VOL, "t.conf:3: [peer ny] is this site itself"},
    {SITE "[peer b]\n" VOL, "t.conf:3: [peer b] has no url: expected url = https://HOST:PORT"},
    {SITE "[peer B]\n", "t.conf:3: invalid peer name \"B\": expected [peer SITE], SITE being "
			"1 to 32 of a-z, 0-9, '_', '-', starting with a letter"},
    {SITE "[peer b]\nurl = http://b:1\n", "t.conf:4: bad url \"http://b:1\": expected "
					  "https://HOST:PORT (peers talk TLS only)"},
    {SITE "[peer b]\nurl = https://b:1\ncost = -1\n", "t.conf:5: bad cost \"-1\": expected "
						      "a whole number from 0 to 1000000"},
    {SITE "[peer b]\nurl = https://b:1\npriority = sometimes\n",
     "t.conf:5: bad priority "
     "\"sometimes\": expected normal, first, last or never"},
    {SITE "[peer b]\nurl = https://b:1\n[peer b]\n", "t.conf:5: duplicate peer \"b\" "
						     "(first defined at line 3)"},
    {SITE VOL "peers = c\n", "t.conf:5: volume \"v\" names peer \"c\", which has no [peer c] "
			     "section"},
    {SITE "[peer b]\nurl = https://b:1\n" VOL "peers = b, b\n", "t.conf:7: volume \"v\" "
								"names peer \"b\" twice"},
    {SITE "[peer b]\nurl = https://b:1\n" VOL,
     "t.conf:1: [site] has peers or listen but no "
     "tls_ca: sites authenticate each other with certificates (see hsm ca)"},
    {"[site]\nname = ny\nlisten = localhost:7443\n" VOL,
     "t.conf:3: bad listen "
     "\"localhost:7443\": expected IPV4:PORT or [IPV6]:PORT (a numeric address)"},
    {"[site]\nname = ny\nlisten = 1.2.3.4\n" VOL,
     "t.conf:3: bad listen \"1.2.3.4\": "
     "expected IPV4:PORT or [IPV6]:PORT (a numeric address)"},
};

static void test_sites(void **state)
{
	struct hsm_config *cfg;

	(void)state;
	cfg = load_ok("[site]\nname = ny\nlisten = [::1]:7443\ntls_ca = /p/ca.crt\n"
		      "tls_cert = /p/ny.crt\ntls_key = /p/ny.key\npeer_timeout = 2.5\n"
		      "[volume v]\npath = /srv/v\npeers = la, sf\n"
		      "[peer la]\nurl = https://10.0.0.2:7443\ncost = 5\npriority = first\n"
		      "[peer sf]\nurl = https://sf.example:7443/\n"
		      "[volume w]\npath = /srv/w\n");
	assert_int_equal(cfg->npeers, 2);
	assert_string_equal(cfg->listen, "[::1]:7443");
	assert_true(cfg->peer_timeout == 2.5);
	assert_string_equal(cfg->peers[0].name, "la");
	assert_int_equal(cfg->peers[0].cost, 5);
	assert_int_equal(cfg->peers[0].priority, HSM_PRIO_FIRST);
	assert_string_equal(cfg->peers[1].url, "https://sf.example:7443");
	assert_int_equal(cfg->peers[1].cost, 100);
	assert_int_equal(cfg->volumes[0].npeers, 2);
	assert_true(config_volume_has_peer(&cfg->volumes[0], 1));
	assert_int_equal(cfg->volumes[1].npeers, 0);
	assert_false(config_volume_has_peer(&cfg->volumes[1], 0));
	assert_ptr_equal(config_peer(cfg, "sf"), &cfg->peers[1]);
	assert_null(config_peer(cfg, "zz"));
	assert_ptr_equal(config_volume(cfg, "w"), &cfg->volumes[1]);
	config_free(cfg);
}

static void test_bad_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		expect_error(bad_cases[i].text, bad_cases[i].err);
}

static void test_too_many_volumes(void **state)
{
	size_t cap = 65536, o;
	char *text = malloc(cap);

	(void)state;
	assert_non_null(text);
	o = (size_t)snprintf(text, cap, "%s", SITE);
	for (int i = 0; i <= HSM_VOLUMES_MAX; i++)
		o += (size_t)snprintf(text + o, cap - o, "[volume v%d]\npath = /srv/v%d\n", i, i);
	expect_error(text, "t.conf:131: too many volumes: at most 64");
	/* exactly the maximum is fine */
	text[strstr(text, "[volume v64]") - text] = '\0';
	config_free(load_ok(text));
	free(text);
}

/* Credentials */

static void cred_config(const char *creds, char *text, size_t cap)
{
	snprintf(text, cap,
		 "[site]\nname = ny\n[store]\nurl = s3://bkt\ncredentials = %s\n"
		 "[volume v]\npath = /srv/v\n",
		 creds);
}

static void expect_cred_error(const char *creds, const char *fmt)
{
	char text[1024], want[1024];

	cred_config(creds, text, sizeof(text));
	snprintf(want, sizeof(want), fmt, creds, creds);
	expect_error(text, want);
}

static void test_credentials_modes(void **state)
{
	static const mode_t bad[] = {0644, 0640, 0604, 0601, 0610, 0660, 0700 | 04, 0777};
	static const char body[] = "access_key = AK\nsecret_key = SK\n";
	char path[256], text[1024], want[1024];
	struct hsm_config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_creds(body, bad[i], path, sizeof(path));
		cred_config(path, text, sizeof(text));
		snprintf(want, sizeof(want),
			 "t.conf:5: credentials file %s: mode %04o gives "
			 "access to group or others: expected 0600 (chmod 600 %s)",
			 path, bad[i], path);
		expect_error(text, want);
	}
	write_creds(body, 0600, path, sizeof(path));
	cred_config(path, text, sizeof(text));
	cfg = load_ok(text);
	assert_string_equal(cfg->store.access_key, "AK");
	assert_string_equal(cfg->store.secret_key, "SK");
	assert_null(cfg->store.session_token);
	config_free(cfg);
	write_creds(body, 0400, path, sizeof(path));
	cfg = load_ok(text);
	config_free(cfg);
}

static void test_credentials_files(void **state)
{
	char path[256], fifo[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	expect_cred_error(path, "t.conf:5: credentials file %s: cannot open: No such file or "
				"directory");
	expect_cred_error(tmpdir, "t.conf:5: credentials file %s: not a regular file");
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	expect_cred_error(fifo, "t.conf:5: credentials file %s: not a regular file");

	/* Owners other than root and the caller are refused: arranging one needs root. */
	if (geteuid() == 0) {
		write_creds("access_key = AK\nsecret_key = SK\n", 0600, path, sizeof(path));
		assert_int_equal(chown(path, 12345, 12345), 0);
		expect_cred_error(path, "t.conf:5: credentials file %s: owned by uid 12345: "
					"expected root or uid 0");
	} else {
		print_message("# not root: the foreign-owner case is not exercised\n");
	}
}

struct cred_case {
	const char *body;
	const char *err; /* %s is the credentials path */
};

static const struct cred_case cred_cases[] = {
    {"", "t.conf:5: credentials file %s: missing access_key"},
    {"# only a comment\n", "t.conf:5: credentials file %s: missing access_key"},
    {"access_key = AK\n", "t.conf:5: credentials file %s: missing secret_key"},
    {"secret_key = SK\n", "t.conf:5: credentials file %s: missing access_key"},
    {"access_key = AK\nsecret_key = SK\ntoken = x\n",
     "t.conf:5: credentials file %s line 3: "
     "unknown key \"token\": expected access_key, secret_key or session_token"},
    {"access_key = AK\naccess_key = AK2\n", "t.conf:5: credentials file %s line 2: "
					    "duplicate key \"access_key\" (first set at line 1)"},
    {"wJalrXUtnFEMI/K7MDENG/bPxRfiCY\n", "t.conf:5: credentials file %s line 1: expected "
					 "\"key = value\""},
    {"AKIA/SECRET+VALUE = x\n", "t.conf:5: credentials file %s line 1: unknown key: "
				"expected access_key, secret_key or session_token"},
    {"access_key = A:K\nsecret_key = SK\n", "t.conf:5: credentials file %s line 1: "
					    "access_key must not contain ':'"},
    {"access_key = \"A K\"\nsecret_key = SK\n", "t.conf:5: credentials file %s line 1: "
						"access_key contains a space or control character"},
    {"access_key =\n", "t.conf:5: credentials file %s line 1: missing value"},
    {"access_key = \"AK\n", "t.conf:5: credentials file %s line 1: unterminated quoted "
			    "value"},
    {"[store]\n", "t.conf:5: credentials file %s line 1: expected \"key = value\""},
};

static void test_credentials_contents(void **state)
{
	static const char nul_body[] = "access_key = AK\nsecret_key = S\0K\n";
	char path[256], text[1024], want[1024], err[1024];
	struct hsm_config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(cred_cases) / sizeof(cred_cases[0]); i++) {
		write_creds(cred_cases[i].body, 0600, path, sizeof(path));
		cred_config(path, text, sizeof(text));
		snprintf(want, sizeof(want), cred_cases[i].err, path);
		expect_error(text, want);
	}
	/* A secret on a line of its own must not be echoed in the message. */
	write_creds("access_key = AK\nSUPERSECRET\n", 0600, path, sizeof(path));
	cred_config(path, text, sizeof(text));
	assert_int_equal(config_load_string("t.conf", text, &cfg, err, sizeof(err)), -1);
	assert_true(strstr(err, "line 2: expected \"key = value\"") != NULL);
	assert_null(strstr(err, "SUPERSECRET"));

	/* A NUL byte in the file */
	write_file("creds", nul_body, sizeof(nul_body) - 1, 0600, path, sizeof(path));
	cred_config(path, text, sizeof(text));
	snprintf(want, sizeof(want), "t.conf:5: credentials file %s line 2: NUL byte in line",
		 path);
	expect_error(text, want);

	/* Credentials are for s3 only. */
	write_creds("access_key = AK\nsecret_key = SK\n", 0600, path, sizeof(path));
	snprintf(text, sizeof(text), SITE "[store]\ncredentials = %s\n" VOL, path);
	expect_error(text, "t.conf:4: credentials applies only to an s3:// store url");
}

/* Loading from a file */

static void test_load_file(void **state)
{
	static const char bad_text[] = SITE "[volume v]\npath = rel\n";
	char path[256], want[512], err[512];
	struct hsm_config *cfg = NULL;
	char *big;

	(void)state;
	write_file("hsmd.conf", SITE VOL, strlen(SITE VOL), 0644, path, sizeof(path));
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->file, path);
	assert_string_equal(cfg->site, "ny");
	config_free(cfg);

	write_file("nul.conf", SITE "\0" VOL, strlen(SITE) + 1 + strlen(VOL), 0644, path,
		   sizeof(path));
	cfg = (struct hsm_config *)1;
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:3: NUL byte in line", path);
	assert_string_equal(err, want);

	write_file("bad.conf", bad_text, strlen(bad_text), 0644, path, sizeof(path));
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		 "%s:4: path \"rel\" is not an absolute path: expected a "
		 "path starting with '/'",
		 path);
	assert_string_equal(err, want);

	snprintf(path, sizeof(path), "%s/none.conf", tmpdir);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	assert_string_equal(err, want);

	assert_int_equal(config_load(tmpdir, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
	assert_string_equal(err, want);

	big = calloc(1, (1 << 20) + 1);
	assert_non_null(big);
	memset(big, '#', 1 << 20);
	big[1 << 20] = '\n';
	write_file("big.conf", big, (1 << 20) + 1, 0644, path, sizeof(path));
	free(big);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: too large (1048577 bytes): at most 1048576", path);
	assert_string_equal(err, want);

	/* A short error buffer truncates, never overflows. */
	assert_int_equal(config_load_string("t.conf", "", &cfg, err, 8), -1);
	assert_string_equal(err, "t.conf:");
	assert_int_equal(config_load_string("t.conf", "", &cfg, NULL, 0), -1);
}

/* Sizes */

struct size_case {
	const char *s;
	int ok;
	uint64_t v;
};

static const struct size_case size_cases[] = {
    {"0", 1, 0},
    {"4096", 1, 4096},
    {"007", 1, 7},
    {"1k", 1, 1024},
    {"1K", 1, 1024},
    {"1kB", 1, 1024},
    {"1KiB", 1, 1024},
    {"512k", 1, 512 << 10},
    {"4M", 1, 4 << 20},
    {"64MiB", 1, 64ull << 20},
    {"64MB", 1, 64ull << 20},
    {"1G", 1, 1ull << 30},
    {"3GiB", 1, 3ull << 30},
    {"2T", 1, 2ull << 40},
    {"16777215T", 1, 16777215ull << 40},
    {"18446744073709551615", 1, UINT64_MAX},
    {"18446744073709551616", 0, 0},
    {"16777216T", 0, 0},
    {"99999999999999999999k", 0, 0},
    {"", 0, 0},
    {"-1", 0, 0},
    {"+1", 0, 0},
    {" 1", 0, 0},
    {"1 ", 0, 0},
    {"1 M", 0, 0},
    {"1.5G", 0, 0},
    {"1m", 0, 0},
    {"1g", 0, 0},
    {"1t", 0, 0},
    {"1P", 0, 0},
    {"1Mi", 0, 0},
    {"1MiBs", 0, 0},
    {"1MBB", 0, 0},
    {"1B", 0, 0},
    {"1ib", 0, 0},
    {"M", 0, 0},
    {"k1", 0, 0},
    {"0x10", 0, 0},
    {"1e3", 0, 0},
};

static void test_parse_size(void **state)
{
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
		const struct size_case *c = &size_cases[i];
		int r;

		v = 12345;
		r = config_parse_size(c->s, &v);
		if (c->ok && (r != 0 || v != c->v))
			fail_msg("\"%s\": got %d, %llu", c->s, r, (unsigned long long)v);
		if (!c->ok && (r != -1 || v != 12345))
			fail_msg("\"%s\" accepted", c->s);
	}
	errno = 0;
	assert_int_equal(config_parse_size("18446744073709551616", &v), -1);
	assert_int_equal(errno, ERANGE);
	errno = 0;
	assert_int_equal(config_parse_size("16777216T", &v), -1);
	assert_int_equal(errno, ERANGE);
	errno = 0;
	assert_int_equal(config_parse_size("1x", &v), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(config_parse_size(NULL, &v), -1);
	assert_int_equal(config_parse_size("1", NULL), -1);
}

/* Volume lookup */

static void test_volume_for(void **state)
{
	struct hsm_config *cfg;
	const struct hsm_volume_cfg *v;
	const char *rel;
	static const struct {
		const char *path;
		const char *vol; /* NULL: none */
		const char *rel;
	} cases[] = {
	    {"/srv/a", "a", ""},
	    {"/srv/a/", "a", ""},
	    {"/srv/a/f", "a", "f"},
	    {"/srv/a/d/f", "a", "d/f"},
	    {"/srv/a/.hidden", "a", ".hidden"},
	    {"/srv/ab", "ab", ""},
	    {"/srv/ab/x", "ab", "x"},
	    {"/srv/abc", NULL, NULL},
	    {"/srv/a.b", NULL, NULL},
	    {"/srv", NULL, NULL},
	    {"/srv/", NULL, NULL},
	    {"/", NULL, NULL},
	    {"", NULL, NULL},
	    {"srv/a", NULL, NULL},
	    {"/data/x/y/z", "deep", "z"},
	    {"/data/x/y", "deep", ""},
	    {"/data/x", NULL, NULL},
	    {"/data/x/yy", NULL, NULL},
	};

	(void)state;
	cfg = load_ok(SITE "[volume a]\npath = /srv/a\n[volume ab]\npath = /srv/ab\n"
			   "[volume deep]\npath = /data/x/y\n");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rel = "untouched";
		v = config_volume_for(cfg, cases[i].path, &rel);
		if (!cases[i].vol) {
			if (v)
				fail_msg("\"%s\" matched volume %s", cases[i].path, v->name);
			assert_string_equal(rel, "untouched");
			continue;
		}
		if (!v)
			fail_msg("\"%s\" matched no volume", cases[i].path);
		assert_string_equal(v->name, cases[i].vol);
		assert_string_equal(rel, cases[i].rel);
		/* rel points into the argument */
		assert_true(rel >= cases[i].path && rel <= cases[i].path + strlen(cases[i].path));
	}
	v = config_volume_for(cfg, "/srv/a/f", NULL);
	assert_non_null(v);
	assert_string_equal(v->name, "a");
	assert_null(config_volume_for(cfg, NULL, &rel));
	assert_null(config_volume_for(NULL, "/srv/a", &rel));
	config_free(cfg);
}

/* The example config: it loads, and every value it shows as the default is one. */

static char *read_example(void)
{
	const char *top = getenv("top_srcdir");
	char path[4096];
	size_t n = strlen(__FILE__) - strlen("tests/unit/test_config.c");
	char *text;
	long len;
	FILE *f;

	if (top && *top)
		snprintf(path, sizeof(path), "%s/etc/hsmd.conf.example", top);
	else
		snprintf(path, sizeof(path), "%.*setc/hsmd.conf.example", (int)n, __FILE__);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return text;
}

/* The value of the first "#KEY = VALUE" line. */
static void example_default(const char *text, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\n#%s = ", key);
	p = strstr(text, pat);
	if (!p)
		fail_msg("the example shows no default for %s", key);
	p += strlen(pat);
	end = strchr(p, '\n');
	assert_non_null(end);
	snprintf(out, cap, "%.*s", (int)(end - p), p);
}

static void assert_same_config(const struct hsm_config *a, const struct hsm_config *b)
{
	assert_string_equal(a->site, b->site);
	assert_string_equal(a->state_dir, b->state_dir);
	assert_string_equal(a->socket_path, b->socket_path);
	assert_string_equal(a->socket_group, b->socket_group);
	assert_int_equal(a->log_level, b->log_level);
	assert_int_equal(a->workers, b->workers);
	assert_int_equal(a->store.kind, b->store.kind);
	assert_string_equal(a->store.url, b->store.url);
	if (a->store.file_root || b->store.file_root)
		assert_string_equal(a->store.file_root, b->store.file_root);
	if (a->store.endpoint || b->store.endpoint)
		assert_string_equal(a->store.endpoint, b->store.endpoint);
	assert_string_equal(a->store.region, b->store.region);
	assert_int_equal(a->store.chunk_size, b->store.chunk_size);
	assert_true(a->store.multipart_threshold == b->store.multipart_threshold);
	assert_true(a->store.part_size == b->store.part_size);
	assert_int_equal(a->store.max_connections, b->store.max_connections);
	assert_int_equal(a->store.retries, b->store.retries);
	assert_true(a->store.timeout == b->store.timeout);
	assert_int_equal(a->nvolumes, b->nvolumes);
	for (size_t i = 0; i < a->nvolumes; i++) {
		assert_string_equal(a->volumes[i].name, b->volumes[i].name);
		assert_string_equal(a->volumes[i].path, b->volumes[i].path);
		assert_string_equal(a->volumes[i].backing, b->volumes[i].backing);
		assert_int_equal(a->volumes[i].recall, b->volumes[i].recall);
	}
}

static void test_example_config(void **state)
{
	static const char *const site_keys[] = {"state_dir", "socket", "socket_group", "log_level",
						"workers"};
	static const char *const store_keys[] = {
	    "url",     "chunk_size", "multipart_threshold", "part_size", "max_connections",
	    "retries", "timeout"};
	static const char *const vol_keys[] = {"backing", "recall"};
	char *text = read_example();
	char explicit[4096], val[512];
	struct hsm_config *ex, *cfg;
	size_t o;

	(void)state;
	ex = load_ok(text);
	assert_string_equal(ex->site, "ny");
	assert_int_equal(ex->nvolumes, 1);

	o = (size_t)snprintf(explicit, sizeof(explicit), "[site]\nname = ny\n");
	for (size_t i = 0; i < sizeof(site_keys) / sizeof(site_keys[0]); i++) {
		example_default(text, site_keys[i], val, sizeof(val));
		o += (size_t)snprintf(explicit + o, sizeof(explicit) - o, "%s = %s\n", site_keys[i],
				      val);
	}
	o += (size_t)snprintf(explicit + o, sizeof(explicit) - o, "[store]\n");
	for (size_t i = 0; i < sizeof(store_keys) / sizeof(store_keys[0]); i++) {
		example_default(text, store_keys[i], val, sizeof(val));
		o += (size_t)snprintf(explicit + o, sizeof(explicit) - o, "%s = %s\n",
				      store_keys[i], val);
	}
	o += (size_t)snprintf(explicit + o, sizeof(explicit) - o,
			      "[volume home]\n"
			      "path = /srv/home\n");
	for (size_t i = 0; i < sizeof(vol_keys) / sizeof(vol_keys[0]); i++) {
		example_default(text, vol_keys[i], val, sizeof(val));
		o += (size_t)snprintf(explicit + o, sizeof(explicit) - o, "%s = %s\n", vol_keys[i],
				      val);
	}
	cfg = load_ok(explicit);
	assert_same_config(ex, cfg);
	config_free(cfg);
	config_free(ex);

	/* The s3-only keys, against the defaults of an s3 store. */
	ex = load_ok(SITE "[store]\nurl = s3://bkt\n" VOL);
	o = (size_t)snprintf(explicit, sizeof(explicit), SITE "[store]\nurl = s3://bkt\n");
	example_default(text, "endpoint", val, sizeof(val));
	o += (size_t)snprintf(explicit + o, sizeof(explicit) - o, "endpoint = %s\n", val);
	example_default(text, "region", val, sizeof(val));
	snprintf(explicit + o, sizeof(explicit) - o, "region = %s\n" VOL, val);
	cfg = load_ok(explicit);
	assert_same_config(ex, cfg);
	config_free(cfg);
	config_free(ex);

	example_default(text, "credentials", val, sizeof(val));
	assert_string_equal(val, "/etc/hsm/s3-credentials");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_defaults),
	    cmocka_unit_test(test_state_dir_moves_default_store),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_s3_defaults_and_crlf),
	    cmocka_unit_test(test_volume_prefix_names_do_not_nest),
	    cmocka_unit_test(test_bad_configs),
	    cmocka_unit_test(test_sites),
	    cmocka_unit_test(test_too_many_volumes),
	    cmocka_unit_test(test_credentials_modes),
	    cmocka_unit_test(test_credentials_files),
	    cmocka_unit_test(test_credentials_contents),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_volume_for),
	    cmocka_unit_test(test_example_config),
	};

	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
