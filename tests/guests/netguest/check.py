#!/usr/bin/env python3
"""Manual smoke check of the netguest test guest (needs root).

Boots OUTDIR's guest with QEMU (TCG) N times inside a private network
namespace: a bridge 10.55.0.1/24 (+ 10.55.0.53), a tap, dnsmasq serving DHCP
(and DNS for --mode dns) and a python HTTP server on 10.55.0.1:8080.  Checks
the guest's "netguest:" lines, its HTTP page and CGI programs, optionally QMP
system_powerdown, and prints the time from QEMU launch to "netguest: ready".
Everything it creates (namespace, processes, temp dir) is removed on exit.

    tests/guests/netguest/check.py [--out build/guests/netguest] [--runs 10]
        [--mode dhcp|static|dns|pci] [--powerdown] [--extra 'WORDS']
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--out", default="build/guests/netguest", help="build.sh's OUTDIR")
ap.add_argument("--runs", type=int, default=1)
ap.add_argument("--mode", default="dhcp", choices=["dhcp", "static", "dns", "pci"],
                help="pci: q35 with virtio-net-pci instead of microvm")
ap.add_argument("--extra", default="", help="more kernel command-line words")
ap.add_argument("--powerdown", action="store_true", help="end each boot with QMP system_powerdown")
ap.add_argument("--no-tsc", action="store_true", help="do not append tsc_early_khz=")
ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for ready")
ap.add_argument("-v", "--verbose", action="store_true", help="print the whole console")
a = ap.parse_args()

NS = f"uk-ng-check-{os.getpid()}"
MAC = "02:00:00:00:00:05"
tmp = tempfile.mkdtemp(prefix="netguest-check.")
procs = []


def run(*cmd, check=True):
    return subprocess.run(("ip", "netns", "exec", NS) + cmd, check=check, capture_output=True, text=True)


def tsc_khz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise SystemExit("no 'cpu MHz' in /proc/cpuinfo")


def spawn(cmd, **kw):
    p = subprocess.Popen(["ip", "netns", "exec", NS] + cmd, **kw)
    procs.append(p)
    return p


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def setup():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    run("ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "br-ngt", "type", "bridge")
    run("ip", "addr", "add", "10.55.0.1/24", "dev", "br-ngt")
    run("ip", "addr", "add", "10.55.0.53/24", "dev", "br-ngt")
    run("ip", "link", "set", "br-ngt", "up")
    run("ip", "tuntap", "add", "tap-ngt", "mode", "tap")
    run("ip", "link", "set", "tap-ngt", "master", "br-ngt")
    run("ip", "link", "set", "tap-ngt", "up")
    dns = (["--port=53", "--no-resolv", "--no-hosts", "--host-record=web.example.test,10.55.0.1"]
           if a.mode == "dns" else ["--port=0"])
    spawn(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--interface=br-ngt", "--bind-interfaces",
           "--dhcp-range=10.55.0.0,static", f"--dhcp-host={MAC},10.55.0.5,myhost",
           "--dhcp-option=option:dns-server,10.55.0.53", "--dhcp-option=option:domain-search,example.test",
           f"--dhcp-leasefile={tmp}/leases", f"--pid-file={tmp}/dnsmasq.pid"] + dns,
          stdout=open(f"{tmp}/dnsmasq.log", "w"), stderr=subprocess.STDOUT)
    os.makedirs(f"{tmp}/www")
    with open(f"{tmp}/www/hello.txt", "w") as f:
        f.write("hello from host\nsecond line\n")
    spawn([sys.executable, "-m", "http.server", "-b", "10.55.0.1", "-d", f"{tmp}/www", "8080"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)


def http_get(url):
    r = run("curl", "-s", "-m", "15", url, check=False)
    return r.stdout


def expected():
    if a.mode == "static":
        return {"ip": "10.55.0.9/24", "gw": "10.55.0.1", "dns": "10.55.0.53 10.55.0.54",
                "search": "a.test b.test", "hostname": "stat"}, "http://10.55.0.9/", "netguest stat 10.55.0.9\n"
    want = {"ip": "10.55.0.5/24", "gw": "10.55.0.1", "dns": "10.55.0.53", "search": "example.test",
            "hostname": "myhost"}
    if a.mode == "dns":
        want.update({"resolve": "10.55.0.1", "fetch": "hello from host"})
    return want, "http://10.55.0.5/", "netguest myhost 10.55.0.5\n"


def qmp_powerdown(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()
    for c in ("qmp_capabilities", "system_powerdown"):
        f.write(json.dumps({"execute": c}) + "\n")
        f.flush()
        f.readline()
    s.close()


def boot(i):
    with open(f"{a.out}/cmdline") as f:
        cmdline = f.read().strip()
    if not a.no_tsc:
        cmdline += f" tsc_early_khz={tsc_khz()}"
    if a.mode == "static":
        cmdline += (" static_ip=10.55.0.9/24 static_gw=10.55.0.1 static_dns=10.55.0.53,10.55.0.54"
                    " static_search=a.test,b.test static_hostname=stat")
    if a.mode == "dns":
        cmdline += " resolve=web fetch=http://web:8080/hello.txt"
    if a.extra:
        cmdline += " " + a.extra
    machine, dev = ("q35", "virtio-net-pci") if a.mode == "pci" else ("microvm", "virtio-net-device")
    qmp = f"{tmp}/qmp{i}.sock"
    cmd = ["qemu-system-x86_64", "-machine", machine, "-accel", "tcg", "-m", "256", "-nodefaults",
           "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", f"{a.out}/vmlinuz", "-initrd", f"{a.out}/initrd.cpio.gz", "-append", cmdline,
           "-netdev", "tap,id=n0,ifname=tap-ngt,script=no,downscript=no",
           "-device", f"{dev},netdev=n0,mac={MAC}", "-qmp", f"unix:{qmp},server=on,wait=off"]
    t0 = time.monotonic()
    q = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(q.stdout.fileno(), False)
    buf, lines, got, ready = b"", [], {}, None
    while ready is None and time.monotonic() < t0 + a.timeout and q.poll() is None:
        try:
            chunk = os.read(q.stdout.fileno(), 65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode(errors="replace").rstrip("\r")
            lines.append(line)
            if line.startswith("netguest: "):
                k, _, v = line[10:].partition("=")
                got.setdefault(k, v)
                if k == "ready":
                    ready = time.monotonic() - t0
    errors = []
    if ready is None:
        errors.append("no 'netguest: ready'")
    ours = [line for line in lines if line.startswith("netguest: ")]
    if not ours or ours[0] != "netguest: up":
        errors.append("first line is not 'netguest: up'")
    want, url, page = expected()
    for k, v in want.items():
        if got.get(k) != v:
            errors.append(f"{k}={got.get(k)!r}, want {v!r}")
    if ready is not None:
        body = http_get(url)
        if body != page:
            errors.append(f"GET {url} = {body!r}, want {page!r}")
        cgi = []
        if a.mode == "dhcp":
            cgi = [("cgi-bin/fetch?http%3A%2F%2F10.55.0.1%3A8080%2Fhello.txt", "fetch=hello from host\n"),
                   ("cgi-bin/ping?10.55.0.1", "ping=ok\n")]
        if a.mode == "dns":
            cgi = [("cgi-bin/resolve?web", "resolve=10.55.0.1\n"),
                   ("cgi-bin/fetch?http%3A%2F%2Fweb.example.test%3A8080%2Fhello.txt", "fetch=hello from host\n")]
        if cgi:
            for path, w in cgi:
                body = http_get(url + path)
                if body != w:
                    errors.append(f"GET /{path} = {body!r}, want {w!r}")
        if a.powerdown:
            t1 = time.monotonic()
            qmp_powerdown(qmp)
            try:
                q.wait(timeout=20)
                print(f"  powerdown: QEMU exited {q.returncode} after {time.monotonic() - t1:.2f}s")
            except subprocess.TimeoutExpired:
                errors.append("still running 20 s after system_powerdown")
    if q.poll() is None:
        q.kill()
        q.wait()
    procs.remove(q)
    if a.verbose or errors:
        print("\n".join("  | " + line for line in lines + [buf.decode(errors="replace")]))
    return ready, errors


def main():
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespace, tap, dnsmasq)")
    try:
        setup()
        times, failed = [], 0
        for i in range(a.runs):
            ready, errors = boot(i)
            if os.path.exists(f"{tmp}/leases"):
                os.unlink(f"{tmp}/leases")
            status = f"ready after {ready:.2f}s" if ready is not None else "NOT READY"
            print(f"boot {i + 1}/{a.runs}: {status}" + ("" if not errors else ": " + "; ".join(errors)))
            sys.stdout.flush()
            if errors:
                failed += 1
            if ready is not None:
                times.append(ready)
        if times:
            print(f"launch to ready: min {min(times):.2f}s avg {sum(times) / len(times):.2f}s max {max(times):.2f}s")
        print(f"{a.runs - failed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
