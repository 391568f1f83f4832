/* Unit tests for the warm pool's key and decisions (src/pool/pool.c): table-driven, with
 * hostile facts (zero sizes, huge values, sums that would overflow). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/pool/pool.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct pool_key_facts base(void)
{
	return (struct pool_key_facts){ .image_digest = DIGEST, .cmdline = "print:hi", .memory_mib = 64,
					.vcpus = 1, .machine = "microvm", .accel = "tcg", .framework = "unikraft",
					.exit_contract = "unikraft", .n_nets = 1 };
}

static void make(const struct pool_key_facts *f, struct pool_key *k)
{
	uk_error err = { 0 };
	if (pool_key_make(f, k, &err) < 0)
		fail_msg("%s", err.msg);
}

static void key_same_facts_same_key(void **state)
{
	(void)state;
	static struct pool_key a, b;
	struct pool_key_facts f = base();
	make(&f, &a);
	make(&f, &b);
	assert_int_equal(a.len, b.len);
	assert_string_equal(a.text, b.text);
	assert_string_equal(a.id, b.id);
	assert_int_equal(strlen(a.id), 64);
	/* NULL and "" both stand for the default. */
	f.cpu_model = "";
	f.firmware = NULL;
	make(&f, &b);
	assert_string_equal(a.text, b.text);
	/* A key without NICs plugged at claim is the text an older unikd wrote: its id holds. */
	assert_null(strstr(a.text, "nics_at_claim"));
}

/* Every member tells VMs apart: a change to any one gives another key. */
static void key_every_member_counts(void **state)
{
	(void)state;
	static struct pool_key a, b;
	struct pool_key_facts f0 = base();
	make(&f0, &a);
	for (int m = 0; m < 14; m++) {
		struct pool_key_facts f = base();
		switch (m) {
		case 0: f.image_digest = "sha256:ff"; break;
		case 1: f.cmdline = "print:hi ip=10.0.0.2"; break;
		case 2: f.memory_mib = 65; break;
		case 3: f.vcpus = 2; break;
		case 4: f.machine = "q35"; break;
		case 5: f.accel = "kvm"; break;
		case 6: f.firmware = "seabios"; break;
		case 7: f.cpu_model = "host"; break;
		case 8: f.framework = "solo5"; break;
		case 9: f.exit_contract = "default"; break;
		case 10: f.devices = "net,block"; break;
		case 11: f.n_nets = 0; break;
		case 12: f.disk = true; break;
		case 13: f.nics_at_claim = true; break;
		}
		make(&f, &b);
		if (strcmp(a.text, b.text) == 0 || strcmp(a.id, b.id) == 0)
			fail_msg("member %d does not change the key", m);
	}
}

/* A value cannot pass for another member: the lengths keep them apart. */
static void key_no_ambiguity(void **state)
{
	(void)state;
	static struct pool_key a, b;
	struct pool_key_facts f = base();
	f.cmdline = "x;machine=7:microvm";
	f.machine = "";
	make(&f, &a);
	f.cmdline = "x";
	f.machine = "microvm";
	make(&f, &b);
	assert_string_not_equal(a.text, b.text);
}

static void key_errors(void **state)
{
	(void)state;
	static struct pool_key k;
	static char long_cmdline[POOL_CMDLINE_MAX + 1], long_field[POOL_FIELD_MAX + 2];
	memset(long_cmdline, 'a', sizeof(long_cmdline) - 1);
	memset(long_field, 'b', sizeof(long_field) - 1);
	struct {
		int member;
		int r;
		const char *needle;
	} cases[] = {
		{ 0, -EINVAL, "\"image_digest\" is required" },
		{ 1, -EINVAL, "\"image_digest\" is required" },
		{ 2, -EINVAL, "\"memory_mib\" must be at least 1" },
		{ 3, -EINVAL, "\"vcpus\" must be at least 1" },
		{ 4, -E2BIG, "\"cmdline\" is longer than" },
		{ 5, -E2BIG, "\"machine\" is longer than" },
		{ 6, -EINVAL, "\"cmdline\" holds a control character" },
		{ 7, -EINVAL, "\"devices\" holds a control character" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct pool_key_facts f = base();
		switch (cases[i].member) {
		case 0: f.image_digest = NULL; break;
		case 1: f.image_digest = ""; break;
		case 2: f.memory_mib = 0; break;
		case 3: f.vcpus = 0; break;
		case 4: f.cmdline = long_cmdline; break;
		case 5: f.machine = long_field; break;
		case 6: f.cmdline = "a\nb"; break;
		case 7: f.devices = "net\x7f"; break;
		}
		uk_error err = { 0 };
		int r = pool_key_make(&f, &k, &err);
		if (r != cases[i].r || !strstr(err.msg, cases[i].needle))
			fail_msg("case %zu: %d \"%s\"", i, r, err.msg);
		assert_int_equal(k.len, 0);
	}
	/* The longest of everything fits. */
	struct pool_key_facts f = base();
	long_cmdline[POOL_CMDLINE_MAX - 1] = '\0';
	long_field[POOL_FIELD_MAX] = '\0';
	f.cmdline = long_cmdline;
	f.image_digest = f.machine = f.accel = f.firmware = f.cpu_model = f.framework = f.exit_contract = f.devices =
		long_field;
	f.memory_mib = f.vcpus = f.n_nets = UINT32_MAX;
	make(&f, &k);
	assert_true(k.len < POOL_KEY_MAX);
}

/* ---- decisions ---- */

static const struct pool_config cfg = { .per_key = 2, .total = 6, .budget_mib = 1024, .starting_max = 2,
					.idle_ms = 60000 };

static struct pool_action next(const struct pool_config *c, const struct pool_entry *e, size_t n, uint64_t now)
{
	struct pool_action a = { .decision = (enum pool_decision)-1 };
	uk_error err = { 0 };
	if (pool_next(c, e, n, now, &a, &err) < 0)
		fail_msg("%s", err.msg);
	assert_non_null(a.why);
	return a;
}

#define E(r, s, m, t) { .ready = (r), .starting = (s), .memory_mib = (m), .last_used_ms = (t) }

static void next_table(void **state)
{
	(void)state;
	struct pool_config off = cfg, one = cfg, tight = cfg, four = cfg;
	off.per_key = 0;
	four.total = 4;
	one.starting_max = 0; /* counts as 1 */
	tight.budget_mib = 100;
	struct {
		const char *name;
		const struct pool_config *c;
		struct pool_entry e[3];
		size_t n;
		uint64_t now;
		enum pool_decision d;
		size_t entry;
	} cases[] = {
		{ "empty pool", &cfg, { { 0 } }, 0, 1000, POOL_NOTHING, 0 },
		{ "a known key with none gets one", &cfg, { E(0, 0, 64, 900) }, 1, 1000, POOL_START, 0 },
		{ "the key furthest below its size first", &cfg, { E(1, 0, 64, 999), E(0, 0, 64, 900) }, 2, 1000,
		  POOL_START, 1 },
		{ "equal deficits: the one used last", &cfg, { E(0, 0, 64, 900), E(0, 0, 64, 950) }, 2, 1000, POOL_START,
		  1 },
		{ "full keys: nothing", &cfg, { E(2, 0, 64, 900), E(1, 1, 64, 900) }, 2, 1000, POOL_NOTHING, 0 },
		{ "starting limit", &cfg, { E(0, 1, 64, 900), E(0, 1, 64, 900), E(0, 0, 64, 900) }, 3, 1000,
		  POOL_NOTHING, 0 },
		{ "starting_max 0 is 1", &one, { E(0, 1, 64, 900), E(0, 0, 64, 900) }, 2, 1000, POOL_NOTHING, 0 },
		{ "idle key: its VMs go", &cfg, { E(2, 0, 64, 1000), E(1, 0, 64, 0) }, 2, 70000, POOL_DROP, 1 },
		{ "idle key without VMs: not refilled", &cfg, { E(0, 0, 64, 0) }, 1, 70000, POOL_NOTHING, 0 },
		{ "a future last use is not idle", &cfg, { E(0, 0, 64, 90000) }, 1, 70000, POOL_START, 0 },
		{ "pool off: every ready VM goes", &off, { E(1, 0, 64, 900) }, 1, 1000, POOL_DROP, 0 },
		{ "pool off, nothing ready", &off, { E(0, 1, 64, 900) }, 1, 1000, POOL_NOTHING, 0 },
		{ "over the size per key", &cfg, { E(3, 0, 64, 900) }, 1, 1000, POOL_DROP, 0 },
		{ "over the total: least recently used", &four, { E(2, 0, 64, 500), E(2, 0, 64, 400), E(1, 0, 64, 900) },
		  3, 1000, POOL_DROP, 1 },
		{ "over budget: least recently used", &tight, { E(1, 0, 64, 900), E(1, 0, 64, 800) }, 2, 1000, POOL_DROP,
		  1 },
		{ "over budget, tie: the larger", &tight, { E(1, 0, 40, 800), E(1, 0, 64, 800) }, 2, 1000, POOL_DROP, 1 },
		{ "start only what fits the budget", &tight, { E(0, 0, 200, 999), E(0, 0, 64, 100) }, 2, 1000, POOL_START,
		  1 },
		{ "nothing fits the budget", &tight, { E(0, 0, 200, 999) }, 1, 1000, POOL_NOTHING, 0 },
		{ "at the total: nothing starts", &cfg, { E(2, 0, 8, 1), E(2, 0, 8, 1), E(2, 0, 8, 1) }, 3, 1000,
		  POOL_NOTHING, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct pool_action a = next(cases[i].c, cases[i].e, cases[i].n, cases[i].now);
		if (a.decision != cases[i].d || (a.decision != POOL_NOTHING && a.entry != cases[i].entry))
			fail_msg("%s: decision %d entry %zu (%s)", cases[i].name, a.decision, a.entry, a.why);
	}
}

/* Acting on each decision converges: the pool fills to its limits and stays there. */
static void next_converges(void **state)
{
	(void)state;
	struct pool_entry e[3] = { E(0, 0, 64, 10), E(0, 0, 128, 20), E(0, 0, 256, 30) };
	struct pool_config c = cfg;
	c.budget_mib = 700;
	int steps = 0;
	for (;; steps++) {
		assert_true(steps < 100);
		struct pool_action a = next(&c, e, 3, 1000);
		if (a.decision == POOL_NOTHING)
			break;
		assert_int_equal(a.decision, POOL_START);
		e[a.entry].ready++; /* started at once, for the test */
	}
	uint64_t mem = 0, count = 0;
	for (size_t i = 0; i < 3; i++) {
		mem += e[i].ready * e[i].memory_mib;
		count += e[i].ready;
		assert_true(e[i].ready <= c.per_key);
	}
	assert_true(mem <= c.budget_mib && count <= c.total);
	/* Budget halved: drops until it holds, then nothing more. */
	c.budget_mib = 300;
	for (;; steps++) {
		assert_true(steps < 200);
		struct pool_action a = next(&c, e, 3, 1000);
		if (a.decision != POOL_DROP)
			break;
		e[a.entry].ready--;
	}
	mem = 0;
	for (size_t i = 0; i < 3; i++)
		mem += e[i].ready * e[i].memory_mib;
	assert_true(mem <= c.budget_mib);
}

static void next_hostile(void **state)
{
	(void)state;
	struct pool_action a;
	uk_error err = { 0 };
	struct pool_config huge = { .per_key = UINT32_MAX, .total = UINT32_MAX, .budget_mib = UINT64_MAX,
				    .starting_max = UINT32_MAX, .idle_ms = UINT64_MAX };
	/* The largest facts allowed: their sums do not wrap around. */
	struct pool_entry big[2] = { E(POOL_COUNT_MAX, POOL_COUNT_MAX, POOL_MEMORY_MAX_MIB, UINT64_MAX),
				     E(POOL_COUNT_MAX, 0, POOL_MEMORY_MAX_MIB, 0) };
	assert_int_equal(pool_next(&huge, big, 2, UINT64_MAX, &a, &err), 0);
	assert_int_equal(a.decision, POOL_DROP); /* entry 1 idle since 0 */
	assert_int_equal(a.entry, 1);
	struct pool_config small = cfg;
	small.budget_mib = 1;
	assert_int_equal(pool_next(&small, big, 2, 0, &a, &err), 0);
	assert_int_equal(a.decision, POOL_DROP);
	/* Out of bounds. */
	struct pool_entry bad[] = { E(POOL_COUNT_MAX + 1, 0, 64, 0), E(0, POOL_COUNT_MAX + 1, 64, 0),
				    E(0, 0, 0, 0), E(0, 0, POOL_MEMORY_MAX_MIB + 1, 0), E(0, 0, UINT64_MAX, 0) };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (pool_next(&cfg, &bad[i], 1, 0, &a, &err) != -ERANGE)
			fail_msg("entry %zu accepted", i);
		if (pool_make_room(&bad[i], 1, 10, 0, &a, &err) != -ERANGE)
			fail_msg("entry %zu accepted for room", i);
	}
	assert_int_equal(pool_next(&cfg, big, POOL_KEYS_MAX + 1, 0, &a, &err), -E2BIG);
	assert_int_equal(pool_next(&cfg, NULL, 1, 0, &a, &err), -EINVAL);
	assert_int_equal(pool_next(&cfg, NULL, 0, 0, &a, &err), 0);
	assert_int_equal(a.decision, POOL_NOTHING);
}

static struct pool_action room(const struct pool_entry *e, size_t n, uint64_t need, uint64_t free_mib)
{
	struct pool_action a;
	uk_error err = { 0 };
	if (pool_make_room(e, n, need, free_mib, &a, &err) < 0)
		fail_msg("%s", err.msg);
	assert_non_null(a.why);
	return a;
}

static void make_room(void **state)
{
	(void)state;
	struct pool_entry e[3] = { E(1, 0, 64, 100), E(2, 0, 256, 300), E(1, 1, 128, 50) };
	/* It fits: nothing goes. */
	assert_int_equal(room(e, 3, 100, 100).decision, POOL_NOTHING);
	assert_int_equal(room(e, 3, 0, 0).decision, POOL_NOTHING);
	/* A gap of 100: the least recently used VM that closes it alone (128, used at 50). */
	struct pool_action a = room(e, 3, 200, 100);
	assert_int_equal(a.decision, POOL_DROP);
	assert_int_equal(a.entry, 2);
	/* A gap of 200: only a 256 closes it alone. */
	a = room(e, 3, 300, 100);
	assert_int_equal(a.entry, 1);
	/* A gap of 600: none alone; the largest first, and repeated, it makes room. */
	uint64_t free_mib = 100;
	int drops = 0;
	while ((a = room(e, 3, 700, free_mib)).decision == POOL_DROP) {
		assert_true(e[a.entry].ready > 0);
		e[a.entry].ready--;
		free_mib += e[a.entry].memory_mib;
		drops++;
	}
	assert_true(free_mib >= 700);
	assert_int_equal(drops, 3); /* 256 + 256 + 128 */
	/* More than every ready VM frees: nothing is dropped in vain (starting ones do not count). */
	struct pool_entry f[2] = { E(1, 0, 64, 0), E(0, 5, 1024, 0) };
	assert_int_equal(room(f, 2, 1000, 100).decision, POOL_NOTHING);
	/* Huge values do not wrap around. */
	struct pool_entry g[1] = { E(POOL_COUNT_MAX, 0, POOL_MEMORY_MAX_MIB, 0) };
	assert_int_equal(room(g, 1, UINT64_MAX, 0).decision, POOL_NOTHING);
	assert_int_equal(room(g, 1, UINT64_MAX, UINT64_MAX - 1).decision, POOL_DROP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_same_facts_same_key),
		cmocka_unit_test(key_every_member_counts),
		cmocka_unit_test(key_no_ambiguity),
		cmocka_unit_test(key_errors),
		cmocka_unit_test(next_table),
		cmocka_unit_test(next_converges),
		cmocka_unit_test(next_hostile),
		cmocka_unit_test(make_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
