/* Per-call allocation arena: a response message and everything it points to are
 * allocated here and freed at once after packing. */
#ifndef UK_ARENA_H
#define UK_ARENA_H

#include <stddef.h>

typedef struct arena arena;

arena *arena_new(void);
void arena_free(arena *a);
/* Zeroed memory; aborts on allocation failure (as the call could not answer anyway). */
void *arena_alloc(arena *a, size_t n);
char *arena_strdup(arena *a, const char *s);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define arena_new0(a, type) ((type *)arena_alloc((a), sizeof(type)))
#define arena_array(a, type, n) ((type *)arena_alloc((a), sizeof(type) * ((n) ? (n) : 1)))

#endif
