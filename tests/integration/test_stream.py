"""The streaming server (issue 17) with the real client: ukstream, built on Debian's spdystream
0.2.0 (the library crictl vendors). Port-forward to the netguest's HTTP server (Linux guest),
sequential and concurrent, and a port nobody listens on; attach to the hello guest's console
(output after attaching, stdin echo, two clients, a slow client dropped while the CRI log keeps
every line); and both after a restart of unikd."""
import socket
import threading

import grpc
import pytest

from crilog import parse_cri_records
from streamclient import attach, portforward, portforward_client
from test_network import netguest, tsc_khz, wait_line  # noqa: F401  (the netguest fixture)
from test_guests import UNIKRAFT
from test_pull import in_netns


def http_get(ns, port, path="/"):
    """GET through the forwarded local port (inside unikd's namespace): the body."""
    def get():
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data
    data = in_netns(ns, get)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    return body.decode()


def run_netguest(uk, netguest):  # noqa: F811
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    uk.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                    str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)
    sid, cfg = uk.run_pod(name="web", hostname="web")
    cid = uk.create(sid, cfg, image="netguest:1", memory=256 << 20)
    uk.start_ctr(cid)
    assert wait_line(uk.status(cid).status.log_path, "netguest: ready")
    ip = uk.pod_status(sid).status.network.ip
    return sid, cid, ip


def test_port_forward_to_a_linux_guest(uk, netguest):  # noqa: F811
    sid, _, ip = run_netguest(uk, netguest)
    want = f"netguest web {ip}\n"
    url = uk.rs.PortForward(uk.pb.PortForwardRequest(pod_sandbox_id=sid, port=[80])).url
    assert url.startswith("http://127.0.0.1:") and "/portforward/" in url
    with portforward(url, 80, netns=uk.ns) as port:
        # Two requests, one after the other, through one session (busybox httpd closes each
        # connection: each is a stream pair of its own).
        assert http_get(uk.ns, port) == want
        assert http_get(uk.ns, port) == want
        # Three at once.
        out, errs = [], []

        def one():
            try:
                out.append(http_get(uk.ns, port))
            except Exception as e:  # reported below
                errs.append(e)
        ts = [threading.Thread(target=one) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not errs and out == [want] * 3, (out, errs)


def test_port_forward_to_unikraft_httpreply(uk):
    """A real third-party unikernel: Unikraft 0.17's httpreply (lwIP) on port 8123."""
    uk.import_image("httpreply:1", "--kernel", str(UNIKRAFT / "httpreply"))
    sid, cfg = uk.run_pod(name="ukhttp")
    cid = uk.create(sid, cfg, image="httpreply:1", memory=128 << 20)
    uk.start_ctr(cid)
    assert wait_line(uk.status(cid).status.log_path, "Listening on port 8123")
    url = uk.rs.PortForward(uk.pb.PortForwardRequest(pod_sandbox_id=sid, port=[8123])).url
    with portforward(url, 8123, netns=uk.ns) as port:
        # httpreply answers `Connection: close`: each request is a connection, all through one
        # session; two in turn, then three at once.
        bodies = [http_get(uk.ns, port) for _ in range(2)]
        out = []
        ts = [threading.Thread(target=lambda: out.append(http_get(uk.ns, port))) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        for b in bodies + out:
            assert "<h1>It works!</h1>" in b, b
        assert len(out) == 3


def test_port_forward_to_a_closed_port_says_why(uk, netguest):  # noqa: F811
    sid, _, _ = run_netguest(uk, netguest)
    url = uk.rs.PortForward(uk.pb.PortForwardRequest(pod_sandbox_id=sid, port=[81])).url
    with portforward_client(url, 81, netns=uk.ns) as pf:
        def try_connect():
            with socket.create_connection(("127.0.0.1", pf.port), timeout=60) as s:
                return s.recv(1)  # the forward closes it: b""
        assert in_netns(uk.ns, try_connect) == b""
        text = pf.wait_error(requestid=0)
        assert "port 81" in text and "refused" in text, text
        # The session goes on: a second try gets its own error.
        assert in_netns(uk.ns, try_connect) == b""
        assert "refused" in pf.wait_error(requestid=1)
    # A port the PortForward call did not name is refused in the same way.
    url = uk.rs.PortForward(uk.pb.PortForwardRequest(pod_sandbox_id=sid, port=[81])).url
    with portforward_client(url, 80, netns=uk.ns) as pf:
        assert in_netns(uk.ns, lambda: socket.create_connection(("127.0.0.1", pf.port), timeout=60).recv(1)) == b""
        assert "not asked for" in pf.wait_error(requestid=0)


def test_stream_calls_refuse_bad_input(uk):
    pb = uk.pb
    sid, cfg = uk.run_pod(name="bad")
    cid = uk.create(sid, cfg, args=["idle"])
    cases = [
        (uk.rs.PortForward, pb.PortForwardRequest(pod_sandbox_id=sid, port=[0]), grpc.StatusCode.INVALID_ARGUMENT, "port[0]"),
        (uk.rs.PortForward, pb.PortForwardRequest(pod_sandbox_id=sid, port=list(range(1, 18))),
         grpc.StatusCode.INVALID_ARGUMENT, "port:"),
        (uk.rs.PortForward, pb.PortForwardRequest(pod_sandbox_id=""), grpc.StatusCode.INVALID_ARGUMENT, "pod_sandbox_id"),
        (uk.rs.PortForward, pb.PortForwardRequest(pod_sandbox_id="f" * 64), grpc.StatusCode.NOT_FOUND, ""),
        (uk.rs.Attach, pb.AttachRequest(container_id=cid, stdout=True), grpc.StatusCode.FAILED_PRECONDITION, "not running"),
        (uk.rs.Attach, pb.AttachRequest(container_id=cid), grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
        (uk.rs.Attach, pb.AttachRequest(container_id=cid, stdout=True, tty=True), grpc.StatusCode.INVALID_ARGUMENT, "tty"),
        (uk.rs.Exec, pb.ExecRequest(container_id=cid, cmd=["sh"], stdout=True), grpc.StatusCode.UNIMPLEMENTED, "attach"),
        (uk.rs.ExecSync, pb.ExecSyncRequest(container_id=cid, cmd=["true"]), grpc.StatusCode.UNIMPLEMENTED, "attach"),
    ]
    for call, req, code, text in cases:
        with pytest.raises(grpc.RpcError) as e:
            call(req)
        assert e.value.code() == code and text in e.value.details(), (req, e.value.code(), e.value.details())
    uk.start_ctr(cid)
    # stdin was not asked for at create time.
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "stdin" in e.value.details()
    # tty at create time is refused, stdin is taken.
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="t"),
                                                          image=pb.ImageSpec(image="hello:1"), tty=True),
            sandbox_config=cfg))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.tty" in e.value.details()


def cri_lines(path):
    return [r[3].decode() for r in parse_cri_records(open(path, "rb").read(), partial_ok=True)]


def hello_ctr(uk, name, args, stdin=False):
    """A running hello guest in a pod of its own: (container id, its log path)."""
    sid, pcfg = uk.run_pod(name=name)
    cfg = uk.container_config(name=name, args=args)
    cfg.stdin = stdin
    cid = uk.rs.CreateContainer(uk.pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg,
                                                             sandbox_config=pcfg)).container_id
    uk.start_ctr(cid)
    return cid, uk.status(cid).status.log_path


def attach_url(uk, cid, stdin=False):
    return uk.rs.Attach(uk.pb.AttachRequest(container_id=cid, stdin=stdin, stdout=True)).url


def tick_of(line):
    assert line.startswith("tick "), line
    return int(line.split()[1])


def test_attach_sees_the_console_from_then_on_and_the_log_keeps_all(uk):
    cid, log = hello_ctr(uk, "tick", ["tick:100"])
    assert wait_line(log, "tick 3")
    with attach(attach_url(uk, cid), netns=uk.ns) as a, attach(attach_url(uk, cid), netns=uk.ns) as b:
        # Both clients see the lines printed after they attached, in order.
        first_a = tick_of(a.wait_line("tick ").strip())
        first_b = tick_of(b.wait_line("tick ").strip())
        seen_a = [first_a] + [tick_of(a.readline().strip()) for _ in range(5)]
        seen_b = [first_b] + [tick_of(b.readline().strip()) for _ in range(5)]
        assert seen_a == list(range(first_a, first_a + 6)) and seen_b == list(range(first_b, first_b + 6))
        assert first_a > 3 and first_b > 3  # not the history: the log has that
    last = max(seen_a[-1], seen_b[-1])
    assert wait_line(log, f"tick {last + 1}")
    ticks = [tick_of(x) for x in cri_lines(log) if x.startswith("tick ")]
    assert ticks[:last + 1] == list(range(1, last + 2))


def test_attach_ends_with_a_status_when_the_vm_ends(uk):
    cid, _ = hello_ctr(uk, "ends", ["print:waiting", "input", "lines:3", "exit:0"], stdin=True)
    with attach(attach_url(uk, cid, stdin=True), stdin=True, netns=uk.ns) as a:
        a.write(b"\ngo\n")  # a first line end the guest may lose while it sets its port up
        assert a.wait_line("line 3", timeout=60)
        rc, status = a.finish(timeout=60)
    # v4: the error stream carries a metav1.Status; ukstream prints it and exits 0.
    assert rc == 0 and status == "status: Success", (rc, status)
    assert uk.wait_exited(cid).exit_code == 0


def test_attach_stdin_reaches_the_serial_port(uk):
    cid, log = hello_ctr(uk, "echo", ["echo"], stdin=True)
    with attach(attach_url(uk, cid, stdin=True), stdin=True, netns=uk.ns) as a:
        a.write(b"\nhello there\n")  # the first line end may be lost while the guest sets its port up
        assert a.wait_line("echo: hello there", timeout=60)
        a.write(b"second\n")
        assert a.wait_line("echo: second", timeout=60)
    assert wait_line(log, "echo: second")


def test_a_slow_client_is_dropped_and_the_log_loses_nothing(uk):
    n = 150000
    cid, log = hello_ctr(uk, "flood", ["input", f"lines:{n}", "print:flood-done", "idle"], stdin=True)
    assert wait_line(log, "hello:")
    fast = attach(attach_url(uk, cid), netns=uk.ns)
    with attach(attach_url(uk, cid, stdin=True), stdin=True, stop_after=4096, rcvbuf=16384, netns=uk.ns) as slow, fast:
        # The reading client is read all along, in a thread: a test that stopped reading it
        # would make it a slow client too.
        done = {}
        reader = threading.Thread(target=lambda: done.update(line=fast.wait_line("flood-done", timeout=900)))
        reader.start()
        slow.write(b"go\n")  # the guest floods once a line comes
        # The slow client stops reading; the server drops it (a reset), while the client that
        # reads keeps up to the end.
        rc = slow.wait(timeout=600)
        assert rc == 4, (rc, slow.stderr_lines())
        reader.join(900)
        assert "flood-done" in done.get("line", ""), done
    assert wait_line(log, "flood-done", timeout=900)
    lines = [x for x in cri_lines(log) if x.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, n + 1)]
    assert "client dropped" in uk.log()


def test_attach_and_port_forward_after_a_restart(uk, netguest):  # noqa: F811
    sid, _, ip = run_netguest(uk, netguest)
    cid, _ = hello_ctr(uk, "tick", ["tick:100"])
    uk.stop()
    uk.start()
    with attach(attach_url(uk, cid), netns=uk.ns) as a:
        assert tick_of(a.wait_line("tick ").strip()) > 0
    url = uk.rs.PortForward(uk.pb.PortForwardRequest(pod_sandbox_id=sid, port=[80])).url
    with portforward(url, 80, netns=uk.ns) as port:
        assert http_get(uk.ns, port) == f"netguest web {ip}\n"
