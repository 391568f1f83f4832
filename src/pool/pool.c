/* The warm pool's key and decisions; see pool.h and README.md. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pool.h"

/* ---- the key ---- */

static int put(struct pool_key *k, const char *fmt, ...) _printf_(2, 3);

static int put(struct pool_key *k, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(k->text + k->len, sizeof(k->text) - k->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(k->text) - k->len)
		return -E2BIG;
	k->len += (size_t)n;
	return 0;
}

/* A string member, length-prefixed so that no value can pass for another member. */
static int put_str(struct pool_key *k, const char *name, const char *s, size_t max, uk_error *err)
{
	s = s ? s : "";
	size_t n = strlen(s);
	if (n > max)
		return uk_err(err, E2BIG, "pool key: member \"%s\" is longer than %zu bytes", name, max);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return uk_err(err, EINVAL, "pool key: member \"%s\" holds a control character", name);
	if (put(k, "%s=%zu:%s;", name, n, s) < 0)
		return uk_err(err, E2BIG, "pool key: longer than %d bytes", POOL_KEY_MAX - 1);
	return 0;
}

static int key_make(const struct pool_key_facts *f, struct pool_key *ret, uk_error *err)
{
	int r;
	if (!f->image_digest || !*f->image_digest)
		return uk_err(err, EINVAL, "pool key: member \"image_digest\" is required");
	if (f->memory_mib == 0 || f->vcpus == 0)
		return uk_err(err, EINVAL, "pool key: member \"%s\" must be at least 1", f->vcpus ? "memory_mib" : "vcpus");
	const struct {
		const char *name, *value;
		size_t max;
	} strs[] = {
		{ "image_digest", f->image_digest, POOL_FIELD_MAX }, { "cmdline", f->cmdline, POOL_CMDLINE_MAX - 1 },
		{ "machine", f->machine, POOL_FIELD_MAX },	     { "accel", f->accel, POOL_FIELD_MAX },
		{ "firmware", f->firmware, POOL_FIELD_MAX },	     { "cpu", f->cpu_model, POOL_FIELD_MAX },
		{ "framework", f->framework, POOL_FIELD_MAX },	     { "exit", f->exit_contract, POOL_FIELD_MAX },
		{ "devices", f->devices, POOL_FIELD_MAX },
	};
	if (put(ret, "pool-key-v1;") < 0)
		return uk_err(err, E2BIG, "pool key: no room");
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		if ((r = put_str(ret, strs[i].name, strs[i].value, strs[i].max, err)) < 0)
			return r;
	if (put(ret, "memory_mib=%u;vcpus=%u;nets=%u;disk=%d;", f->memory_mib, f->vcpus, f->n_nets, f->disk) < 0)
		return uk_err(err, E2BIG, "pool key: longer than %d bytes", POOL_KEY_MAX - 1);
	if (f->nics_at_claim && put(ret, "nics_at_claim=1;") < 0)
		return uk_err(err, E2BIG, "pool key: longer than %d bytes", POOL_KEY_MAX - 1);
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_buf(ret->text, ret->len, d);
	sha256_to_hex(d, ret->id);
	return 0;
}

int pool_key_make(const struct pool_key_facts *f, struct pool_key *ret, uk_error *err)
{
	ret->len = 0;
	ret->id[0] = '\0';
	int r = key_make(f, ret, err);
	if (r < 0)
		ret->len = 0;
	ret->text[ret->len] = '\0';
	return r;
}

/* ---- the decisions ---- */

struct totals {
	uint64_t count, starting, memory_mib;
};

/* The facts within their bounds, and their sums (which cannot overflow then:
 * POOL_KEYS_MAX * 2 * POOL_COUNT_MAX * POOL_MEMORY_MAX_MIB < 2^54). */
static int check_entries(const struct pool_entry *e, size_t n, struct totals *t, uk_error *err)
{
	*t = (struct totals){ 0 };
	if (n > POOL_KEYS_MAX)
		return uk_err(err, E2BIG, "pool: %zu keys, at most %d", n, POOL_KEYS_MAX);
	if (n && !e)
		return uk_err(err, EINVAL, "pool: no entries");
	for (size_t i = 0; i < n; i++) {
		if (e[i].ready > POOL_COUNT_MAX || e[i].starting > POOL_COUNT_MAX)
			return uk_err(err, ERANGE, "pool: entry %zu: more than %d VMs", i, POOL_COUNT_MAX);
		if (e[i].memory_mib == 0 || e[i].memory_mib > POOL_MEMORY_MAX_MIB)
			return uk_err(err, ERANGE, "pool: entry %zu: memory_mib is %llu, must be within 1..%llu", i,
				      (unsigned long long)e[i].memory_mib, (unsigned long long)POOL_MEMORY_MAX_MIB);
		uint64_t have = (uint64_t)e[i].ready + e[i].starting;
		t->count += have;
		t->starting += e[i].starting;
		t->memory_mib += have * e[i].memory_mib;
	}
	return 0;
}

static bool idle(const struct pool_config *c, const struct pool_entry *e, uint64_t now_ms)
{
	/* A time after now (clocks of different sources) is recent, not idle. */
	return c->idle_ms && now_ms > e->last_used_ms && now_ms - e->last_used_ms >= c->idle_ms;
}

/* Whether a is the better one to drop than b: used longer ago, then the larger, then first. */
static bool drop_before(const struct pool_entry *a, const struct pool_entry *b)
{
	if (a->last_used_ms != b->last_used_ms)
		return a->last_used_ms < b->last_used_ms;
	return a->memory_mib > b->memory_mib;
}

/* The entry with a ready VM to drop first, among those pick() takes (all: NULL); n if none. */
static size_t pick_drop(const struct pool_entry *e, size_t n, const struct pool_config *c, uint64_t now_ms,
			bool (*pick)(const struct pool_config *, const struct pool_entry *, uint64_t))
{
	size_t best = n;
	for (size_t i = 0; i < n; i++)
		if (e[i].ready && (!pick || pick(c, &e[i], now_ms)) && (best == n || drop_before(&e[i], &e[best])))
			best = i;
	return best;
}

static bool over_per_key(const struct pool_config *c, const struct pool_entry *e, uint64_t now_ms)
{
	(void)now_ms;
	return (uint64_t)e->ready + e->starting > c->per_key;
}

static int decide(struct pool_action *ret, enum pool_decision d, size_t entry, const char *why)
{
	*ret = (struct pool_action){ .decision = d, .entry = entry, .why = why };
	return 0;
}

/* A ready VM to drop: idle, over its key's size, over the total or the budget. */
static bool next_drop(const struct pool_config *c, const struct pool_entry *e, size_t n, const struct totals *t,
		      uint64_t now_ms, struct pool_action *ret)
{
	size_t i;
	if ((i = pick_drop(e, n, c, now_ms, idle)) < n)
		return decide(ret, POOL_DROP, i, "its key has not been used for the idle timeout") == 0;
	if ((i = pick_drop(e, n, c, now_ms, over_per_key)) < n)
		return decide(ret, POOL_DROP, i, "its key has more VMs than the size per key") == 0;
	if (t->count > c->total && (i = pick_drop(e, n, c, now_ms, NULL)) < n)
		return decide(ret, POOL_DROP, i, "the pool has more VMs than its total") == 0;
	if (t->memory_mib > c->budget_mib && (i = pick_drop(e, n, c, now_ms, NULL)) < n)
		return decide(ret, POOL_DROP, i, "the pool is over its memory budget") == 0;
	return false;
}

/* Whether a is the better one to start than b: further below per_key, then used more lately. */
static bool start_before(const struct pool_config *c, const struct pool_entry *a, const struct pool_entry *b)
{
	uint64_t da = c->per_key - ((uint64_t)a->ready + a->starting);
	uint64_t db = c->per_key - ((uint64_t)b->ready + b->starting);
	if (da != db)
		return da > db;
	return a->last_used_ms > b->last_used_ms;
}

int pool_next(const struct pool_config *c, const struct pool_entry *e, size_t n, uint64_t now_ms,
	      struct pool_action *ret, uk_error *err)
{
	struct totals t;
	int r = check_entries(e, n, &t, err);
	if (r < 0)
		return r;
	if (next_drop(c, e, n, &t, now_ms, ret))
		return 0;
	if (c->per_key == 0 || c->total == 0)
		return decide(ret, POOL_NOTHING, 0, "the pool is off");
	if (t.starting >= (c->starting_max ? c->starting_max : 1))
		return decide(ret, POOL_NOTHING, 0, "as many VMs are starting as may at once");
	if (t.count >= c->total)
		return decide(ret, POOL_NOTHING, 0, "the pool holds its total");
	size_t best = n;
	for (size_t i = 0; i < n; i++) {
		bool wanted = (uint64_t)e[i].ready + e[i].starting < c->per_key && !idle(c, &e[i], now_ms);
		bool fits = c->budget_mib >= t.memory_mib && c->budget_mib - t.memory_mib >= e[i].memory_mib;
		if (wanted && fits && (best == n || start_before(c, &e[i], &e[best])))
			best = i;
	}
	if (best < n)
		return decide(ret, POOL_START, best, "its key has fewer ready VMs than the size per key");
	return decide(ret, POOL_NOTHING, 0, "every key is full, idle, or too big for what is left of the budget");
}

int pool_make_room(const struct pool_entry *e, size_t n, uint64_t need_mib, uint64_t free_mib,
		   struct pool_action *ret, uk_error *err)
{
	struct totals t;
	int r = check_entries(e, n, &t, err);
	if (r < 0)
		return r;
	if (free_mib >= need_mib)
		return decide(ret, POOL_NOTHING, 0, "the cold start fits");
	uint64_t gap = need_mib - free_mib, ready_mib = 0;
	for (size_t i = 0; i < n; i++)
		ready_mib += (uint64_t)e[i].ready * e[i].memory_mib;
	if (ready_mib < gap)
		return decide(ret, POOL_NOTHING, 0, "dropping every ready pool VM would not make room");
	/* One VM that closes the gap alone, the least recently used of those; else the largest,
	 * so that as few go as can. */
	size_t alone = n, largest = n;
	for (size_t i = 0; i < n; i++) {
		if (!e[i].ready)
			continue;
		if (e[i].memory_mib >= gap && (alone == n || drop_before(&e[i], &e[alone])))
			alone = i;
		if (largest == n || e[i].memory_mib > e[largest].memory_mib ||
		    (e[i].memory_mib == e[largest].memory_mib && drop_before(&e[i], &e[largest])))
			largest = i;
	}
	return decide(ret, POOL_DROP, alone < n ? alone : largest, "a cold start needs its memory");
}
