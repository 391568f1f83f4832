/* IPv4 addresses and CIDR ranges: strict parsing (no octal, no shorthand, no spaces) and
 * the few derived addresses the pod network needs. Addresses are host byte order. */
#include <stdio.h>
#include <string.h>

#include "net.h"

/* Text is quoted in messages; keep a hostile or huge input from filling them. */
#define NET_TEXT_SHOWN 64

static uint32_t prefix_mask(int prefix)
{
	if (prefix <= 0)
		return 0;
	if (prefix >= 32)
		return 0xffffffffu;
	return 0xffffffffu << (32 - prefix);
}

/* One decimal number of 1..max_digits digits at *p, no sign, no leading zero (so "010"
 * cannot be read as octal by another tool), at most max. Advances *p past it. */
static int parse_dec(const char **p, int max_digits, unsigned max, unsigned *ret)
{
	const char *s = *p;
	unsigned v = 0;
	int n = 0;
	while (s[n] >= '0' && s[n] <= '9') {
		if (n == max_digits)
			return -EINVAL;
		v = v * 10 + (unsigned)(s[n] - '0');
		n++;
	}
	if (n == 0 || (n > 1 && s[0] == '0') || v > max)
		return -EINVAL;
	*p = s + n;
	*ret = v;
	return 0;
}

/* Four dotted octets at *p; advances past them. */
static int parse_dotted(const char **p, uint32_t *ret)
{
	const char *s = *p;
	uint32_t ip = 0;
	for (int i = 0; i < 4; i++) {
		unsigned o;
		if (i > 0) {
			if (*s != '.')
				return -EINVAL;
			s++;
		}
		if (parse_dec(&s, 3, 255, &o) < 0)
			return -EINVAL;
		ip = (ip << 8) | o;
	}
	*p = s;
	*ret = ip;
	return 0;
}

int net_ip_parse(const char *s, uint32_t *ret)
{
	uint32_t ip;
	if (!s || parse_dotted(&s, &ip) < 0 || *s != '\0')
		return -EINVAL;
	*ret = ip;
	return 0;
}

int net_cidr_parse(const char *s, struct net_cidr *ret, uk_error *err)
{
	if (!s)
		return uk_err(err, EINVAL, "no CIDR given");
	const char *p = s;
	uint32_t ip;
	unsigned prefix;
	if (parse_dotted(&p, &ip) < 0 || *p != '/')
		return uk_err(err, EINVAL, "invalid CIDR \"%.*s\": expected a.b.c.d/prefix with decimal octets 0..255",
			      NET_TEXT_SHOWN, s);
	p++;
	if (parse_dec(&p, 2, 99, &prefix) < 0 || *p != '\0')
		return uk_err(err, EINVAL, "invalid CIDR \"%.*s\": the prefix must be a decimal number 8..30",
			      NET_TEXT_SHOWN, s);
	if (prefix < 8 || prefix > 30)
		return uk_err(err, EINVAL, "invalid CIDR \"%.*s\": prefix /%u is outside 8..30", NET_TEXT_SHOWN, s,
			      prefix);
	uint32_t mask = prefix_mask((int)prefix);
	if (ip & ~mask) {
		char net[NET_IP_MAX];
		net_ip_str(ip & mask, net);
		return uk_err(err, EINVAL, "invalid CIDR \"%.*s\": host bits are set (the network is %s/%u)",
			      NET_TEXT_SHOWN, s, net, prefix);
	}
	ret->net = ip;
	ret->prefix = (int)prefix;
	return 0;
}

uint32_t net_cidr_gateway(const struct net_cidr *c)
{
	return (c->net & prefix_mask(c->prefix)) + 1;
}

uint32_t net_cidr_broadcast(const struct net_cidr *c)
{
	return c->net | ~prefix_mask(c->prefix);
}

void net_ip_str(uint32_t ip, char out[NET_IP_MAX])
{
	snprintf(out, NET_IP_MAX, "%u.%u.%u.%u", (ip >> 24) & 0xff, (ip >> 16) & 0xff, (ip >> 8) & 0xff,
		 ip & 0xff);
}

void net_netmask_str(int prefix, char out[NET_IP_MAX])
{
	net_ip_str(prefix_mask(prefix), out);
}
