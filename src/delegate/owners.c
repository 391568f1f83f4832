/* The owner map (route.h): sandbox/container id -> side, a sorted array with a bound, so a
 * lookup is a binary search and a rebuild after a restart is one sort. Pure: no I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "../common/util.h"

void delegate_owners_init(struct delegate_owners *m, size_t max)
{
	*m = (struct delegate_owners){ .max = max ? max : DELEGATE_OWNERS_MAX };
}

void delegate_owners_free(struct delegate_owners *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].id);
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

/* The index of id, or where it would go (*found false). */
static size_t owners_find(const struct delegate_owners *m, const char *id, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->v[mid].id, id);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int owners_reserve(struct delegate_owners *m, size_t want, uk_error *err)
{
	if (want > m->max)
		return uk_err(err, ENOSPC, "owner map: over its %zu ids", m->max);
	if (want <= m->cap)
		return 0;
	size_t cap = m->cap ? m->cap * 2 : 16;
	if (cap < want)
		cap = want;
	if (cap > m->max)
		cap = m->max;
	struct delegate_owner *v = reallocarray(m->v, cap, sizeof(*v));
	if (!v)
		return uk_err(err, ENOMEM, "owner map: %zu ids", cap);
	m->v = v;
	m->cap = cap;
	return 0;
}

int delegate_owners_add(struct delegate_owners *m, const char *id, enum delegate_side side, uk_error *err)
{
	bool found;
	size_t at;
	int r;

	if (!uk_id_valid(id))
		return uk_err(err, EINVAL, "owner map: id \"%.*s\" is not a valid id", UK_ID_MAX, id ? id : "");
	at = owners_find(m, id, &found);
	if (found) {
		if (m->v[at].side == side)
			return 0;
		return uk_err(err, EEXIST, "owner map: id \"%s\" is owned by %s already", id,
			      delegate_side_name(m->v[at].side));
	}
	r = owners_reserve(m, m->n + 1, err);
	if (r < 0)
		return r;
	char *copy = strdup(id);
	if (!copy)
		return uk_err(err, ENOMEM, "owner map: id \"%s\"", id);
	memmove(&m->v[at + 1], &m->v[at], (m->n - at) * sizeof(*m->v));
	m->v[at] = (struct delegate_owner){ copy, side };
	m->n++;
	return 0;
}

/* The entry of id, or NULL. */
static struct delegate_owner *owners_get(const struct delegate_owners *m, const char *id)
{
	bool found = false;
	size_t at = id ? owners_find(m, id, &found) : 0;
	return found ? &m->v[at] : NULL;
}

int delegate_owners_remove(struct delegate_owners *m, const char *id)
{
	struct delegate_owner *o = owners_get(m, id);
	if (!o)
		return -ENOENT;
	size_t at = (size_t)(o - m->v);
	free(o->id);
	memmove(o, o + 1, (m->n - at - 1) * sizeof(*o));
	m->n--;
	return 0;
}

int delegate_owners_lookup(const struct delegate_owners *m, const char *id, enum delegate_side *side)
{
	const struct delegate_owner *o = owners_get(m, id);
	if (!o)
		return -ENOENT;
	*side = o->side;
	return 0;
}

static int owner_cmp(const void *a, const void *b)
{
	return strcmp(((const struct delegate_owner *)a)->id, ((const struct delegate_owner *)b)->id);
}

/* Append one side's ids to m, unsorted; ids are checked. */
static int owners_append(struct delegate_owners *m, enum delegate_side side, const char *const *ids, size_t n,
			 uk_error *err)
{
	for (size_t i = 0; i < n; i++) {
		if (!uk_id_valid(ids[i]))
			return uk_err(err, EINVAL, "owner map rebuild: %s's id %zu \"%.*s\" is not a valid id",
				      delegate_side_name(side), i, UK_ID_MAX, ids[i] ? ids[i] : "");
		char *copy = strdup(ids[i]);
		if (!copy)
			return uk_err(err, ENOMEM, "owner map rebuild: id \"%s\"", ids[i]);
		m->v[m->n++] = (struct delegate_owner){ copy, side };
	}
	return 0;
}

/* Sorted m: drop an id repeated by one side; an id on both sides is an error naming it. */
static int owners_dedupe(struct delegate_owners *m, uk_error *err)
{
	size_t w = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (w > 0 && strcmp(m->v[w - 1].id, m->v[i].id) == 0) {
			if (m->v[w - 1].side != m->v[i].side)
				return uk_err(err, EEXIST, "owner map rebuild: id \"%s\" is claimed by both unikd and the delegate",
					      m->v[i].id);
			free(m->v[i].id);
			m->v[i].id = NULL;
			continue;
		}
		/* The source is cleared so that, on an error, freeing all n frees each id once. */
		struct delegate_owner o = m->v[i];
		m->v[i].id = NULL;
		m->v[w++] = o;
	}
	m->n = w;
	return 0;
}

int delegate_owners_rebuild(struct delegate_owners *m, const char *const *unikd_ids, size_t n_unikd,
			    const char *const *delegate_ids, size_t n_delegate, uk_error *err)
{
	struct delegate_owners fresh;
	int r;

	delegate_owners_init(&fresh, m->max);
	if ((n_unikd && !unikd_ids) || (n_delegate && !delegate_ids))
		return uk_err(err, EINVAL, "owner map rebuild: ids missing");
	if (n_unikd > fresh.max || n_delegate > fresh.max - n_unikd)
		return uk_err(err, ENOSPC, "owner map rebuild: %zu + %zu ids, over its %zu", n_unikd, n_delegate,
			      fresh.max);
	r = owners_reserve(&fresh, n_unikd + n_delegate, err);
	if (r >= 0)
		r = owners_append(&fresh, SIDE_UNIKD, unikd_ids, n_unikd, err);
	if (r >= 0)
		r = owners_append(&fresh, SIDE_DELEGATE, delegate_ids, n_delegate, err);
	if (r >= 0 && fresh.n > 1) {
		qsort(fresh.v, fresh.n, sizeof(*fresh.v), owner_cmp);
		r = owners_dedupe(&fresh, err);
	}
	if (r < 0) {
		delegate_owners_free(&fresh);
		return r;
	}
	delegate_owners_free(m);
	*m = fresh;
	return 0;
}
