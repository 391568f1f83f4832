#!/usr/bin/python3
"""Port-forward through unikd's streaming server against a direct TCP connection to the pod's
address, side by side in one run (alternating, same accelerator: whatever this host has).

One unikd in a network namespace of its own runs the Linux netguest, whose busybox httpd
serves a small page and /www/big (www_big_mib). A `ukstream portforward` session (the Go
client on spdystream, as kubelet's side would be) forwards a local port to the pod's port 80.
Latency: one small HTTP GET per connection, direct and forwarded in turn. Throughput: GET of
/www/big, direct and forwarded in turn. Reuses the integration tests' harness, so it needs
what `make test` installs and builds (build/ukstream, the netguest).

  sudo bench/stream.py [--requests N] [--big-mib M] [--transfers K]"""
import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import host_accel, pct  # noqa: E402
from cri import Unikd  # noqa: E402
from streamclient import portforward  # noqa: E402
from test_network import NETGUEST, tsc_khz, wait_line  # noqa: E402
from test_pull import in_netns  # noqa: E402


def get(ns, addr, port, path):
    """One HTTP/1.0 GET on a new connection, inside ns: (seconds, body bytes)."""
    def run():
        t0 = time.perf_counter()
        with socket.create_connection((addr, port), timeout=120) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
            n = 0
            head = b""
            while chunk := s.recv(1 << 16):
                if len(head) < 4096:
                    head += chunk[:4096]
                n += len(chunk)
        assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:100]
        return time.perf_counter() - t0, n
    return in_netns(ns, run)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--transfers", type=int, default=5)
    a = ap.parse_args()
    subprocess.run(["bash", str(REPO / "tests/guests/netguest/build.sh"), str(NETGUEST)], check=True, timeout=900)
    accel = host_accel()  # what unikd's `auto` picks
    root = Path("/tmp") / f"uk-bench-{uuid.uuid4().hex[:12]}"
    root.mkdir()
    u = Unikd(root)
    try:
        cmdline = (NETGUEST / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()} www_big_mib={a.big_mib}"
        u.import_image("netguest:1", "--kernel", str(NETGUEST / "vmlinuz"), "--initrd",
                       str(NETGUEST / "initrd.cpio.gz"), "--cmdline", cmdline)
        u.start()
        sid, cfg = u.run_pod(name="web", hostname="web")
        cid = u.create(sid, cfg, image="netguest:1", memory=(a.big_mib + 256) << 20)
        u.start_ctr(cid)
        assert wait_line(u.status(cid).status.log_path, "netguest: ready", timeout=300)
        ip = u.pod_status(sid).status.network.ip
        url = u.rs.PortForward(u.pb.PortForwardRequest(pod_sandbox_id=sid, port=[80])).url
        with portforward(url, 80, netns=u.ns) as port:
            for _ in range(5):  # warm both paths
                get(u.ns, ip, 80, "/")
                get(u.ns, "127.0.0.1", port, "/")
            lat = {"direct": [], "forwarded": []}
            for i in range(a.requests):
                order = [("direct", ip, 80), ("forwarded", "127.0.0.1", port)]
                for name, addr, p in (order if i % 2 == 0 else order[::-1]):
                    lat[name].append(get(u.ns, addr, p, "/")[0] * 1000)
            thr = {"direct": [], "forwarded": []}
            for i in range(a.transfers):
                order = [("direct", ip, 80), ("forwarded", "127.0.0.1", port)]
                for name, addr, p in (order if i % 2 == 0 else order[::-1]):
                    secs, n = get(u.ns, addr, p, "/big")
                    assert n >= a.big_mib << 20, n
                    thr[name].append(n / secs / (1 << 20))
        print(f"accelerator: {accel}; netguest httpd; {a.requests} GETs and {a.transfers} x {a.big_mib} MiB each way")
        print("latency of a small GET on a new connection (ms):")
        for name, v in lat.items():
            print(f"  {name:9s} median {statistics.median(v):7.2f}  p90 {pct(v, 90):7.2f}")
        d = statistics.median(lat["forwarded"]) - statistics.median(lat["direct"])
        print(f"  added by port-forward: {d:+.2f} ms (median)")
        print("throughput of /big (MiB/s):")
        for name, v in thr.items():
            print(f"  {name:9s} median {statistics.median(v):7.1f}  min {min(v):7.1f}  max {max(v):7.1f}")
        r = statistics.median(thr["forwarded"]) / statistics.median(thr["direct"])
        print(f"  forwarded / direct: {r:.2f}")
    finally:
        u.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
