/* The recall source order (hsmd/sources): owner first, then cost and name, the store
 * only for the current version, priority overrides, down peers kept but skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmd/sources.h"
#include "lib/config.h"

/* A stub owned by owner at version 5, archived at archived (0 = never). */
static void stub(struct hsm_state *st, const char *owner, uint64_t archived)
{
	memset(st, 0, sizeof(*st));
	st->state = HSM_STATE_STUB;
	st->fid.b[0] = 1;
	st->version = 5;
	snprintf(st->owner, sizeof(st->owner), "%s", owner);
	if (archived) {
		st->archived_version = archived;
		st->manifest_id[3] = 0x42;
	}
}

/* The order as "name[!]" words, '!' marking a skipped entry: compact to compare. */
static const char *order(const char *self, const struct hsm_state *st, const struct src_peer *p,
			 size_t n)
{
	static char buf[512];
	struct src_entry e[HSM_PEERS_MAX + 2];
	size_t k = sources_order(self, st, p, n, e, HSM_PEERS_MAX + 2), used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < k; i++) {
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s%s", i ? " " : "",
					 e[i].name, e[i].skip ? "!" : "");
		assert_true(used < sizeof(buf));
		if (e[i].kind == RECALL_SRC_PEER && e[i].peer >= 0)
			assert_string_equal(e[i].name, p[e[i].peer].name);
		if (e[i].kind == RECALL_SRC_STORE)
			assert_int_equal(e[i].peer, -1);
	}
	return buf;
}

static void test_owner_first_then_cost(void **state)
{
	struct src_peer p[] = {
	    {"b", 10, HSM_PRIO_NORMAL, 1},
	    {"a", 100, HSM_PRIO_NORMAL, 1},
	    {"c", 50, HSM_PRIO_NORMAL, 1},
	};
	struct hsm_state st;

	(void)state;
	stub(&st, "a", 5);
	/* the owner beats cheaper links */
	assert_string_equal(order("me", &st, p, 3), "a b c store");
	stub(&st, "c", 5);
	assert_string_equal(order("me", &st, p, 3), "c b a store");
}

static void test_ties_by_name(void **state)
{
	struct src_peer p[] = {
	    {"zed", 10, HSM_PRIO_NORMAL, 1},
	    {"alpha", 10, HSM_PRIO_NORMAL, 1},
	    {"mid", 10, HSM_PRIO_NORMAL, 1},
	    {"own", 99, HSM_PRIO_NORMAL, 1},
	};
	struct hsm_state st;

	(void)state;
	stub(&st, "own", 5);
	assert_string_equal(order("me", &st, p, 4), "own alpha mid zed store");
}

static void test_store_only_for_current_version(void **state)
{
	struct src_peer p[] = {{"a", 10, HSM_PRIO_NORMAL, 1}};
	struct src_entry e[4];
	struct hsm_state st;
	size_t n;

	(void)state;
	stub(&st, "a", 0);
	assert_string_equal(order("me", &st, p, 1), "a store!");
	n = sources_order("me", &st, p, 1, e, 4);
	assert_int_equal(n, 2);
	assert_string_equal(e[1].skip, SRC_SKIP_NOT_ARCH);
	/* an older archived version is not this file's content */
	stub(&st, "a", 4);
	n = sources_order("me", &st, p, 1, e, 4);
	assert_int_equal(e[1].kind, RECALL_SRC_STORE);
	assert_string_equal(e[1].skip, SRC_SKIP_OLD_ARCH);
	/* archived_version without a manifest id is no archive */
	stub(&st, "a", 5);
	memset(st.manifest_id, 0, sizeof(st.manifest_id));
	assert_string_equal(order("me", &st, p, 1), "a store!");
	stub(&st, "a", 5);
	assert_string_equal(order("me", &st, p, 1), "a store");
	(void)n;
}

static void test_own_stub_store_only(void **state)
{
	struct src_peer p[] = {{"b", 10, HSM_PRIO_NORMAL, 1}};
	struct hsm_state st;

	(void)state;
	/* our own released file: the peer may hold a copy, the store certainly does */
	stub(&st, "me", 5);
	assert_string_equal(order("me", &st, p, 1), "b store");
	assert_string_equal(order("me", &st, NULL, 0), "store");
}

static void test_priorities(void **state)
{
	struct src_peer p[] = {
	    {"own", 10, HSM_PRIO_NORMAL, 1}, {"f2", 90, HSM_PRIO_FIRST, 1},
	    {"f1", 80, HSM_PRIO_FIRST, 1},   {"l1", 1, HSM_PRIO_LAST, 1},
	    {"n1", 1, HSM_PRIO_NEVER, 1},    {"x", 20, HSM_PRIO_NORMAL, 1},
	};
	struct hsm_state st;

	(void)state;
	stub(&st, "own", 5);
	assert_string_equal(order("me", &st, p, 6), "f1 f2 own x store l1 n1!");
	/* an owner with priority first leads the first group; last goes after the store */
	p[0].priority = HSM_PRIO_FIRST;
	assert_string_equal(order("me", &st, p, 6), "own f1 f2 x store l1 n1!");
	p[0].priority = HSM_PRIO_LAST;
	assert_string_equal(order("me", &st, p, 6), "f1 f2 x store own l1 n1!");
	/* never is never, owner or not */
	p[0].priority = HSM_PRIO_NEVER;
	assert_string_equal(order("me", &st, p, 6), "f1 f2 x store l1 own! n1!");
}

static void test_down_peers_skipped(void **state)
{
	struct src_peer p[] = {
	    {"a", 10, HSM_PRIO_NORMAL, 0},
	    {"b", 20, HSM_PRIO_NORMAL, 1},
	    {"c", 5, HSM_PRIO_NORMAL, 0},
	};
	struct src_entry e[5];
	struct hsm_state st;
	size_t n;

	(void)state;
	stub(&st, "a", 0);
	assert_string_equal(order("me", &st, p, 3), "a! c! b store!");
	n = sources_order("me", &st, p, 3, e, 5);
	assert_int_equal(n, 4);
	assert_string_equal(e[0].skip, SRC_SKIP_DOWN);
	assert_null(e[2].skip);
	/* a never peer that is also down says never */
	p[1].priority = HSM_PRIO_NEVER;
	p[1].up = 0;
	n = sources_order("me", &st, p, 3, e, 5);
	assert_string_equal(e[n - 1].name, "b");
	assert_string_equal(e[n - 1].skip, SRC_SKIP_NEVER);
}

static void test_unknown_owner(void **state)
{
	struct src_peer p[] = {{"b", 10, HSM_PRIO_NORMAL, 1}};
	struct src_entry e[4];
	struct hsm_state st;
	size_t n;

	(void)state;
	stub(&st, "gone", 5);
	n = sources_order("me", &st, p, 1, e, 4);
	assert_int_equal(n, 3);
	assert_string_equal(e[0].name, "gone");
	assert_int_equal(e[0].peer, -1);
	assert_string_equal(e[0].skip, SRC_SKIP_UNKNOWN_OWN);
	assert_string_equal(order("me", &st, p, 1), "gone! b store");
}

static void test_max_respected(void **state)
{
	struct src_peer p[] = {
	    {"a", 10, HSM_PRIO_NORMAL, 1},
	    {"b", 20, HSM_PRIO_NORMAL, 1},
	};
	struct src_entry e[2];
	struct hsm_state st;

	(void)state;
	stub(&st, "b", 5);
	assert_int_equal(sources_order("me", &st, p, 2, e, 2), 2);
	assert_string_equal(e[0].name, "b");
	assert_string_equal(e[1].name, "a");
	assert_int_equal(sources_order("me", &st, p, 2, e, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_owner_first_then_cost),
	    cmocka_unit_test(test_ties_by_name),
	    cmocka_unit_test(test_store_only_for_current_version),
	    cmocka_unit_test(test_own_stub_store_only),
	    cmocka_unit_test(test_priorities),
	    cmocka_unit_test(test_down_peers_skipped),
	    cmocka_unit_test(test_unknown_owner),
	    cmocka_unit_test(test_max_respected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
