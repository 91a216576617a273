/* What a reload does with each changed key: in place, by a new worker, or not at all
 * until a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmd/confdiff.h"
#include "lib/config.h"

#define TLS  "tls_ca = /p/ca.crt\ntls_cert = /p/ny.crt\ntls_key = /p/ny.key\n"
#define HEAD "[site]\nname = ny\n"
#define REST                                                            \
	"listen = 127.0.0.1:7443\n" TLS "policy = /etc/hsm/p1.policy\n" \
	"[store]\nurl = file:///srv/objects\n"                          \
	"[peer la]\nurl = https://10.0.0.2:7443\n"                      \
	"[volume v]\npath = /srv/v\npeers = la\n"
#define BASE HEAD REST

static struct hsm_config *load(const char *text)
{
	struct hsm_config *cfg;
	char err[512];

	if (config_load_string("t.conf", text, &cfg, err, sizeof(err)) != 0)
		fail_msg("config did not load: %s\n%s", err, text);
	return cfg;
}

/* Loads both, diffs them; returns the class of key (0 if not listed) and d's worst. */
static int diff_class(const char *a, const char *b, const char *key, int *worst)
{
	struct hsm_config *ca = load(a), *cb = load(b);
	struct confdiff d;
	int cls = 0;

	confdiff(ca, cb, &d);
	for (size_t i = 0; i < d.n; i++)
		if (!strcmp(d.item[i].key, key))
			cls = d.item[i].cls;
	*worst = d.worst;
	config_free(ca);
	config_free(cb);
	return cls;
}

static void test_same(void **state)
{
	struct hsm_config *a = load(BASE), *b = load("# a comment\n" BASE "\n");
	struct confdiff d;

	(void)state;
	confdiff(a, b, &d);
	assert_int_equal(d.n, 0);
	assert_int_equal(d.worst, 0);
	config_free(a);
	config_free(b);
}

static const struct {
	const char *a, *b, *key;
	int cls;
} cases[] = {
    {BASE, HEAD "log_level = debug\n" REST, "site.log_level", CONFDIFF_LIVE},
    {BASE, HEAD "guard_hold = 5\n" REST, "site.guard_hold", CONFDIFF_LIVE},
    {BASE, HEAD "policy_jobs = 9\n" REST, "site.policy_jobs", CONFDIFF_LIVE},
    {"[site]\nname = ny\npolicy = /a.policy\n[volume v]\npath = /srv/v\n",
     "[site]\nname = ny\npolicy = /b.policy\n[volume v]\npath = /srv/v\n", "site.policy",
     CONFDIFF_LIVE},
    {"[site]\nname = ny\n[volume v]\npath = /srv/v\n",
     "[site]\nname = ny\npolicy = /b.policy\n[volume v]\npath = /srv/v\n", "site.policy",
     CONFDIFF_WORKER},
    {"[site]\nname = ny\n[store]\nurl = file:///a\n[volume v]\npath = /srv/v\n",
     "[site]\nname = ny\n[store]\nurl = file:///b\n[volume v]\npath = /srv/v\n", "store.url",
     CONFDIFF_WORKER},
    {BASE, HEAD "workers = 3\n" REST, "site.workers", CONFDIFF_WORKER},
    {BASE, HEAD "peer_timeout = 3\n" REST, "site.peer_timeout", CONFDIFF_WORKER},
    {BASE, BASE "[peer sf]\nurl = https://10.0.0.3:7443\n", "peer sf (added)", CONFDIFF_WORKER},
    {BASE "[peer sf]\nurl = https://10.0.0.3:7443\n", BASE, "peer sf (removed)", CONFDIFF_WORKER},
    {"[site]\nname = ny\n" TLS "[peer la]\nurl = https://10.0.0.2:7443\n[volume v]\npath = "
     "/srv/v\n",
     "[site]\nname = ny\n" TLS "[peer la]\nurl = https://10.0.0.9:7443\n[volume v]\npath = "
     "/srv/v\n",
     "peer la.url", CONFDIFF_WORKER},
    {BASE, BASE "[volume w]\npath = /srv/w\n", "volume w (added)", CONFDIFF_WORKER},
    {BASE,
     "[site]\nname = ny\nlisten = 127.0.0.1:7443\n" TLS "policy = /etc/hsm/p1.policy\n"
     "[store]\nurl = file:///srv/objects\n[peer la]\nurl = https://10.0.0.2:7443\n"
     "[volume v]\npath = /srv/v\n",
     "volume v.peers", CONFDIFF_WORKER},
    {BASE "[volume w]\npath = /srv/w\n", BASE, "volume w (removed)", CONFDIFF_RESTART},
    {BASE, "[site]\nname = ldn\n" REST, "site.name", CONFDIFF_RESTART},
    {BASE, HEAD "state_dir = /x\n" REST, "site.state_dir", CONFDIFF_RESTART},
    {BASE, HEAD "socket = /run/x.sock\n" REST, "site.socket", CONFDIFF_RESTART},
    {BASE, HEAD "guard = external\n" REST, "site.guard", CONFDIFF_RESTART},
    {"[site]\nname = ny\n[volume v]\npath = /srv/v\n",
     "[site]\nname = ny\n[volume v]\npath = /srv/v2\n", "volume v.path", CONFDIFF_RESTART},
    {"[site]\nname = ny\n[volume v]\npath = /srv/v\n",
     "[site]\nname = ny\n[volume v]\npath = /srv/v\nrecall = access\n", "volume v.recall",
     CONFDIFF_RESTART},
};

static void test_classes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int worst, cls = diff_class(cases[i].a, cases[i].b, cases[i].key, &worst);

		if (cls != cases[i].cls || worst != cases[i].cls)
			fail_msg("case %zu (%s): class %d, worst %d, expected %d", i, cases[i].key,
				 cls, worst, cases[i].cls);
	}
}

/* One key that needs a restart makes the whole change one. */
static void test_worst(void **state)
{
	int worst;

	(void)state;
	assert_int_equal(diff_class(BASE, "[site]\nlog_level = debug\nname = ldn\n" REST,
				    "site.log_level", &worst),
			 CONFDIFF_LIVE);
	assert_int_equal(worst, CONFDIFF_RESTART);
	assert_string_equal(confdiff_class_says(CONFDIFF_RESTART), "needs a restart of hsmd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same),
	    cmocka_unit_test(test_classes),
	    cmocka_unit_test(test_worst),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
