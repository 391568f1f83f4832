/* The console lines that tell how a Solo5 or Unikraft guest ended; see guest_exit.h. */
#include <limits.h>
#include <string.h>

#include "guest_exit.h"

#define SOLO5_EXIT "Solo5: solo5_exit("
#define SOLO5_EXIT_END ") called"
#define SOLO5_ABORT "Solo5: ABORT: "
#define SOLO5_ANY "Solo5: "
#define UNIKRAFT_CRIT "CRIT: "

void exit_scan_init(struct exit_scan *s, enum vm_exit_contract contract)
{
	memset(s, 0, sizeof(*s));
	s->contract = contract;
}

/* A line kept for a message: printable ASCII, the rest as '?'. */
static void keep(char dst[EXIT_SCAN_LINE_MAX + 1], const char *from, const char *end)
{
	size_t n = (size_t)(end - from);
	for (size_t i = 0; i < n; i++)
		dst[i] = from[i] >= 0x20 && from[i] < 0x7f ? from[i] : '?';
	dst[n] = '\0';
}

/* "N) called" and the end of the line, N as printf's %d writes an int. */
static bool parse_exit_code(const char *p, const char *end, int *ret)
{
	bool neg = p < end && *p == '-';
	long long v = 0;
	int digits = 0;
	for (p += neg; p < end && *p >= '0' && *p <= '9'; p++) {
		if (++digits > 10) /* an int has at most 10 */
			return false;
		v = v * 10 + (*p - '0');
	}
	v = neg ? -v : v;
	if (digits == 0 || v < INT_MIN || v > INT_MAX)
		return false;
	if ((size_t)(end - p) != strlen(SOLO5_EXIT_END) || memcmp(p, SOLO5_EXIT_END, strlen(SOLO5_EXIT_END)) != 0)
		return false;
	*ret = (int)v;
	return true;
}

static const char *find(const char *l, const char *end, const char *what)
{
	return memmem(l, (size_t)(end - l), what, strlen(what));
}

/* The Solo5 lines may follow other text on the same line (an application's output without
 * its newline), so they are looked for anywhere in it. */
static void solo5_line(struct exit_scan *s, const char *l, const char *end)
{
	const char *m;
	if (!s->solo5_aborted && ((m = find(l, end, EXIT_SCAN_SOLO5_ABORT_CALLED)) || (m = find(l, end, SOLO5_ABORT)))) {
		s->solo5_aborted = true;
		keep(s->solo5_abort_line, m, end);
	} else if (!s->solo5_aborted && (m = find(l, end, SOLO5_ANY))) {
		keep(s->solo5_before_abort, m, end);
	}
	/* Each occurrence in turn: a garbled one may come before the real one. */
	for (const char *p = l; (m = find(p, end, SOLO5_EXIT)); p = m + 1) {
		int code;
		if (parse_exit_code(m + strlen(SOLO5_EXIT), end, &code)) {
			s->solo5_exited = true;
			s->solo5_code = code;
			keep(s->solo5_exit_line, m, end);
			break;
		}
	}
}

static void take_line(struct exit_scan *s)
{
	size_t len = s->len;
	if (len > 0 && s->line[len - 1] == '\r')
		len--;
	if (len > EXIT_SCAN_LINE_MAX) /* the extra byte was not a "\r" */
		return;
	s->lines++;
	const char *l = s->line, *end = l + len;
	if (s->contract == VM_EXIT_SOLO5)
		solo5_line(s, l, end);
	else if (s->contract == VM_EXIT_UNIKRAFT && find(l, end, UNIKRAFT_CRIT))
		keep(s->crit_line, l, end);
}

void exit_scan_feed(struct exit_scan *s, const void *buf, size_t n)
{
	const char *p = buf, *end = p + n;
	if (s->contract == VM_EXIT_DEFAULT)
		return;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t k = (size_t)((nl ? nl : end) - p);
		if (!s->overlong && k > sizeof(s->line) - s->len)
			s->overlong = true;
		if (!s->overlong) {
			memcpy(s->line + s->len, p, k);
			s->len += k;
		}
		if (!nl)
			return;
		if (!s->overlong)
			take_line(s);
		s->len = 0;
		s->overlong = false;
		p = nl + 1;
	}
}

void exit_scan_end(struct exit_scan *s)
{
	if (s->len > 0 && !s->overlong)
		take_line(s);
	s->len = 0;
	s->overlong = false;
}
