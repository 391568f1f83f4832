"""The streaming server (issue 17) against hostile and odd input, through raw sockets: tokens
(unknown, reused, expired: 404), requests that are not SPDY upgrades, a WebSocket upgrade, no
common protocol, a head that never ends or never comes, and after the upgrade malformed frames,
a header block that inflates past the limit, a stream flood and a PING flood. After each, the
server still serves a new session. The URLs are made by PortForward on a pod sandbox (no VM is
needed for them)."""
import socket
import struct
import threading
import time
import zlib
from urllib.parse import urlsplit

import pytest

from cri import Unikd
from test_pull import in_netns

URL_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 3


@pytest.fixture
def suk(scratch):
    u = Unikd(scratch, extra=["--stream-url-timeout", str(URL_TIMEOUT_S), "--stream-idle-timeout", str(IDLE_TIMEOUT_S)])
    u.start()
    try:
        yield u
    finally:
        u.cleanup()
    assert u.vm_pids() == [] and u.dnsmasq_pids() == []


def pf_url(u, sid, ports=(80,)):
    return u.rs.PortForward(u.pb.PortForwardRequest(pod_sandbox_id=sid, port=list(ports))).url


def connect(u, url):
    parts = urlsplit(url)
    s = in_netns(u.ns, lambda: socket.create_connection((parts.hostname, parts.port), timeout=30))
    return s, parts.path


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/1.1 ") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, rest


def request(u, url, protocols=("portforward.k8s.io",), upgrade="SPDY/3.1", path=None):
    s, p = connect(u, url)
    hdr = [f"POST {path or p} HTTP/1.1", "Host: unikd", "Connection: Upgrade", f"Upgrade: {upgrade}"]
    hdr += [f"X-Stream-Protocol-Version: {x}" for x in protocols]
    s.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode())
    status, headers, rest = read_head(s)
    return s, status, headers, rest


def read_to_eof(s, limit=1 << 24):
    """Everything the server sends until it closes; the socket's timeout bounds each wait."""
    got = b""
    while len(got) < limit:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk
    raise AssertionError("the server never closed the connection")


# ---- SPDY frames, built here byte by byte (SPDY/3.1) ----

def control(ftype, payload, flags=0, version=3):
    return struct.pack(">HHI", 0x8000 | version, ftype, (flags << 24) | len(payload)) + payload


def nv_block(pairs):
    out = struct.pack(">I", len(pairs))
    for k, v in pairs:
        k, v = k.encode(), v.encode() if isinstance(v, str) else v
        out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


class Compressor:
    """One zlib stream per direction, as SPDY wants; without the SPDY dictionary (a zlib
    stream that does not ask for one is valid, and needs no copy of it here)."""

    def __init__(self):
        self.z = zlib.compressobj()

    def block(self, pairs):
        return self.z.compress(nv_block(pairs)) + self.z.flush(zlib.Z_SYNC_FLUSH)


def syn_stream(comp, sid, pairs, flags=0):
    return control(1, struct.pack(">IIBB", sid, 0, 0, 0) + comp.block(pairs), flags)


def ping(n):
    return control(6, struct.pack(">I", n))


def frames(data):
    """Split the server's bytes into (control, type_or_stream, flags, payload)."""
    out = []
    while len(data) >= 8:
        a, b = struct.unpack(">II", data[:8])
        ln = b & 0xFFFFFF
        if len(data) < 8 + ln:
            break
        ctl = bool(a & 0x80000000)
        out.append((ctl, (a & 0xFFFF) if ctl else a & 0x7FFFFFFF, b >> 24, data[8:8 + ln]))
        data = data[8 + ln:]
    return out


def session(u, sid):
    s, status, _, rest = request(u, pf_url(u, sid))
    assert status == 101, status
    return s, rest


def wait_ping_answer(s, got, what):
    """Read until a PING frame comes back (the socket's timeout bounds each wait)."""
    while not any(f[0] and f[1] == 6 for f in frames(got)):
        chunk = s.recv(65536)
        assert chunk, f"the session closed instead of answering a PING ({what})"
        got += chunk
    return got


def assert_still_serves(u, sid):
    """A new session works: a PING comes back."""
    s, rest = session(u, sid)
    with s:
        s.sendall(ping(7))
        wait_ping_answer(s, rest, "a new session")


# ---- tests ----

def test_tokens_unknown_reused_and_expired_get_404(suk):
    sid, _ = suk.run_pod(name="tok")
    url = pf_url(suk, sid)
    s, status, headers, _ = request(suk, url)
    assert status == 101, status
    assert headers["upgrade"] == ["SPDY/3.1"] and headers["x-stream-protocol-version"] == ["portforward.k8s.io"]
    s.close()
    # Used once: spent.
    s, status, _, _ = request(suk, url)
    s.close()
    assert status == 404
    # A random token of the right shape.
    s, status, _, _ = request(suk, url.rsplit("/", 1)[0] + "/" + "0123456789abcdef" * 2)
    s.close()
    assert status == 404
    # Expired: the URL waits --stream-url-timeout seconds, no more.
    url = pf_url(suk, sid)
    time.sleep(URL_TIMEOUT_S + 0.5)
    s, status, _, _ = request(suk, url)
    s.close()
    assert status == 404
    # A token for port-forward on the attach path is spent and refused too.
    url = pf_url(suk, sid)
    s, status, _, _ = request(suk, url, path=urlsplit(url).path.replace("/portforward/", "/attach/"))
    s.close()
    assert status == 404
    s, status, _, _ = request(suk, url)
    s.close()
    assert status == 404


def test_requests_that_are_not_spdy_upgrades(suk):
    sid, _ = suk.run_pod(name="http")
    # A WebSocket upgrade: 4xx, so that a newer kubectl falls back to SPDY.
    s, status, _, _ = request(suk, pf_url(suk, sid), upgrade="websocket")
    s.close()
    assert 400 <= status < 500
    # No common protocol: 403 naming ours.
    s, status, headers, _ = request(suk, pf_url(suk, sid), protocols=("v4.channel.k8s.io", "x"))
    s.close()
    assert status == 403 and headers["x-accepted-stream-protocol-versions"] == ["portforward.k8s.io"]
    # Not HTTP at all.
    s, _ = connect(suk, pf_url(suk, sid))
    s.sendall(b"\x80\x03\x00\x01\x00\x00\x00\x00garbage\r\n\r\n")
    status, _, _ = read_head(s)
    s.close()
    assert status == 400
    # A head that never ends: refused at 8 KiB.
    s, _ = connect(suk, pf_url(suk, sid))
    s.sendall(b"POST /portforward/x HTTP/1.1\r\nX-Long: " + b"a" * 9000)
    status, _, _ = read_head(s)
    s.close()
    assert status == 431
    # A connection that never sends its head is closed (408), never held.
    s, _ = connect(suk, pf_url(suk, sid))
    got = read_to_eof(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 408"), got[:80]
    assert_still_serves(suk, sid)


def test_malformed_frames_end_the_session_only(suk):
    sid, _ = suk.run_pod(name="bad")
    for bad in (control(1, b"\x00" * 3),                    # a SYN_STREAM too short
                control(6, struct.pack(">I", 1), version=2),  # SPDY/2
                struct.pack(">II", 0x8003_0001, 0xFF_FFFFFF)):  # a frame over the limit
        s, rest = session(suk, sid)
        s.sendall(bad)
        got = rest + read_to_eof(s)
        s.close()
        assert any(f[0] and f[1] == 7 for f in frames(got)) or got == b"", frames(got)
    assert_still_serves(suk, sid)


def test_header_block_that_inflates_past_the_limit(suk):
    sid, _ = suk.run_pod(name="bomb")
    s, rest = session(suk, sid)
    comp = Compressor()
    bomb = syn_stream(comp, 1, [("streamtype", "data"), ("port", "80"), ("requestid", "0"), ("x", b"a" * (4 << 20))])
    assert len(bomb) < 64 << 10  # small on the wire, 4 MiB once inflated
    s.sendall(bomb)
    got = rest + read_to_eof(s)
    s.close()
    assert any(f[0] and f[1] == 7 for f in frames(got)), frames(got)  # GOAWAY
    assert_still_serves(suk, sid)


def test_stream_flood_is_refused_past_the_bound(suk):
    sid, _ = suk.run_pod(name="flood")
    s, rest = session(suk, sid)
    comp = Compressor()
    # 300 streams that nothing will answer on a port nobody asked for: each is refused, or
    # answered and closed; the session and the server stay.
    batch = b"".join(syn_stream(comp, 2 * i + 1, [("streamtype", "data" if i % 2 else "error"), ("port", "81"),
                                                  ("requestid", str(i // 2))]) for i in range(300))
    s.sendall(batch)
    s.sendall(ping(99))
    wait_ping_answer(s, rest, "after a stream flood")
    s.close()
    assert_still_serves(suk, sid)


def test_ping_flood_from_a_client_that_does_not_read(suk):
    sid, _ = suk.run_pod(name="ping")
    s, _ = session(suk, sid)
    s.settimeout(60)
    # 8 MiB of PINGs without reading the answers: the server's output is bounded, so it ends
    # the session instead of growing; our send then fails or the server closes.
    stop = threading.Event()
    ended = {}

    def pump():
        try:
            for _ in range(64):
                s.sendall(ping(1) * 65536)
        except OSError as e:
            ended["error"] = e
        stop.set()

    t = threading.Thread(target=pump)
    t.start()
    assert stop.wait(120), "the PING flood neither went through nor was cut"
    t.join()
    try:
        got = read_to_eof(s, limit=64 << 20)
    except OSError:
        got = b""
    s.close()
    assert "error" in ended or len(got) <= (8 << 20), len(got)
    assert_still_serves(suk, sid)


def test_connections_are_capped_and_idle_sessions_closed(suk):
    sid, _ = suk.run_pod(name="cap")
    url = pf_url(suk, sid)
    # 64 connections wait for their heads; the 65th is closed at once, without a word.
    held = [connect(suk, url)[0] for _ in range(64)]
    try:
        extra, _ = connect(suk, url)
        assert extra.recv(1) == b""
        extra.close()
    finally:
        for s in held:
            s.close()
    # A session with no traffic is closed after --stream-idle-timeout (GOAWAY or EOF).
    s, rest = session(suk, sid)
    got = rest + read_to_eof(s)
    s.close()
    assert all(f[0] and f[1] == 7 for f in frames(got)), frames(got)
    assert_still_serves(suk, sid)
