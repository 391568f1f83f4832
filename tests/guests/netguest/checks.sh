# shellcheck shell=dash
# Egress and DNS checks of the netguest test guest (installed as
# /lib/netguest/checks.sh, sourced by /init and by the CGI programs).
# Each prints one result word: the same text init prints after "netguest: ".

# fetch=<first line of the body> or fetch-failed (20 s at most).  Not wget -T:
# it crashes Debian 12's busybox-static wget.
ng_fetch() {
	local body
	if body=$(timeout 20 wget -q -O - "$1" 2>/dev/null); then
		echo "fetch=$(echo "$body" | head -n 1)"
	else
		echo "fetch-failed"
	fi
}

# ping=ok or ping=failed: up to 3 echo requests, each given 2 s for its reply;
# the first reply is enough (faster than ping -c 3, which always takes 2 s).
ng_ping() {
	case "$1" in
	'' | -* | *[!0-9a-zA-Z.:-]*) echo "ping=failed"; return ;;
	esac
	for _ in 1 2 3; do
		if ping -c 1 -W 2 "$1" >/dev/null 2>&1; then
			echo "ping=ok"
			return
		fi
	done
	echo "ping=failed"
}

# resolve=<first IPv4 address> or resolve-failed.  Uses the C library's
# resolver (through ping's name lookup), so /etc/hosts, /etc/resolv.conf
# and its search list apply as they would to an application.
ng_resolve() {
	local a
	case "$1" in
	'' | -* | *[!0-9a-zA-Z.-]*) echo "resolve-failed"; return ;;
	esac
	a=$(timeout 15 ping -4 -c 1 -W 1 "$1" 2>/dev/null | sed -n '1s/^PING [^ ]* (\([0-9.]*\)).*/\1/p')
	if [ -n "$a" ]; then
		echo "resolve=$a"
	else
		echo "resolve-failed"
	fi
}
