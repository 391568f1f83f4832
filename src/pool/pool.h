/* The warm pool's pure decisions (README.md): which VMs are interchangeable (the key), and
 * what to start, what to drop, and what to drop before a cold start. No I/O, no clock: the
 * caller passes the facts and the time, and gets one decision with a `why` for its log. */
#ifndef UK_POOL_H
#define UK_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "../store/sha256.h"

/* ---- the key ---- */

#define POOL_CMDLINE_MAX 4096 /* as vmwrapper's VM_CMDLINE_MAX, its "\0" included */
#define POOL_FIELD_MAX 256    /* every other string member */
/* A canonical key holds every member, each string length-prefixed. */
#define POOL_KEY_MAX (POOL_CMDLINE_MAX + 12 * (POOL_FIELD_MAX + 32))

/* Everything that makes two VMs differ before their claim. Strings are NULL or "" for the
 * default (both the same); they must not hold control characters. */
struct pool_key_facts {
	const char *image_digest; /* required: "sha256:…" of the container's image */
	const char *cmdline;      /* the guest's final command line, as vmwrapper gets it */
	unsigned memory_mib;      /* >= 1 */
	unsigned vcpus;           /* >= 1 */
	const char *machine;      /* vmwrapper's names: "microvm", "pc", "q35", "auto" */
	const char *accel;
	const char *firmware;
	const char *cpu_model;
	const char *framework;    /* the guest contract's framework (src/guest) */
	const char *exit_contract;
	const char *devices;      /* the device order as vmwrapper's "devices", joined by ',' */
	unsigned n_nets;          /* NICs: a VM with one cannot serve a pod without, and back */
	bool disk;                /* a disk (a block image) beside the kernel */
	/* The NICs are plugged in by the claim (CNI mode: the MAC is the pod's eth0's, known
	 * only then), not made with the VM. Only in the key when true, so older keys keep
	 * their ids. */
	bool nics_at_claim;
};

struct pool_key {
	char text[POOL_KEY_MAX]; /* canonical: equal texts, interchangeable VMs */
	size_t len;
	char id[SHA256_HEX_SIZE]; /* sha256 of text in hex: a name for files and logs */
};

/* The canonical key of f; every error names the member. */
int pool_key_make(const struct pool_key_facts *f, struct pool_key *ret, uk_error *err);

/* ---- the decisions ---- */

#define POOL_KEYS_MAX 4096
#define POOL_COUNT_MAX 65536             /* VMs of one key, ready or starting */
#define POOL_MEMORY_MAX_MIB (1ull << 24) /* one VM's memory: 16 TiB */

struct pool_config {
	unsigned per_key;      /* ready VMs kept per key; 0: the pool is off */
	unsigned total;        /* all keys together, ready and starting */
	uint64_t budget_mib;   /* their memory together */
	unsigned starting_max; /* pool VMs starting at once (the CPU they take); 0 counts as 1 */
	uint64_t idle_ms;      /* a key not used for this long loses its VMs; 0: never */
};

/* One key's VMs. */
struct pool_entry {
	unsigned ready;        /* started and waiting for a claim */
	unsigned starting;     /* being started (they count, but are not dropped) */
	uint64_t memory_mib;   /* what one VM of this key takes from the host, overhead included */
	uint64_t last_used_ms; /* when a pod last wanted this key (a claim or a cold start) */
};

enum pool_decision { POOL_NOTHING, POOL_START, POOL_DROP };

struct pool_action {
	enum pool_decision decision;
	size_t entry; /* which entry to start or drop one VM of (POOL_START, POOL_DROP) */
	const char *why;
};

/* The next thing to do for the pool: drop one ready VM (idle too long, over a limit or the
 * budget), else start one (the key furthest below per_key that fits), else nothing. Call
 * again after acting on it. -EINVAL/-ERANGE for facts out of bounds. */
int pool_next(const struct pool_config *c, const struct pool_entry *e, size_t n, uint64_t now_ms,
	      struct pool_action *ret, uk_error *err);

/* Before a cold start that needs need_mib while free_mib are free: a ready VM to drop so that
 * it fits (POOL_DROP; call again with the freed memory added), or POOL_NOTHING when it fits
 * already or when dropping every ready VM would not make it fit. */
int pool_make_room(const struct pool_entry *e, size_t n, uint64_t need_mib, uint64_t free_mib,
		   struct pool_action *ret, uk_error *err);

#endif
