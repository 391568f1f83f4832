#!/usr/bin/python3
"""What volumes cost a Linux guest (issue 15), through the CRI, on the netguest's amd64 flavour
(Debian's generic kernel with 9p and virtio-blk), under TCG (the unikd.io/accel annotation;
a Linux kernel does not boot on this machine's /dev/kvm):

  start   StartContainer to the first line of the container's command (`echo started`),
          which /init runs after it applied the volumes: no mount against 3 mounts (a
          read-write directory, a read-only directory, /etc/hosts as a file), alternating.
          With mounts, /init also loads the 9p and virtio-blk modules: that is part of the cost.
  read    one 64 MiB file read in the guest by busybox dd (bs=1M; it must report 64 full
          records; timed by the guest's /proc/uptime, as Debian's busybox dd prints no
          time), through a read-only 9p share and as a read-only virtio-blk disk (the
          same host file, so both come from the host's page cache), one VM per run, the
          order alternating; each VM starts with a cold guest page cache.

Reuses the integration tests' harness (tests/integration), so it needs what `make test`
installs and builds. Nothing is asserted: it prints a table.

  sudo bench/volumes.py [--start-runs N (5)] [--read-runs N (3)]"""
import argparse
import re
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from cri import Unikd  # noqa: E402
from crilog import cri_lines  # noqa: E402
from test_network import wait_line  # noqa: E402
from test_volumes import mount  # noqa: E402
from test_volumes_linux import IMAGE, TCG, build_netguest_amd64, import_netguest  # noqa: E402

MIB = 1 << 20
# Debian's busybox dd prints no timing, only "64+0 records in": the guest reads
# /proc/uptime (10 ms steps) around it, "KIND:seconds T0 T1".
RECORDS_RE = re.compile(r"^(\w+):(\d+)\+0 records in$")
SECONDS_RE = re.compile(r"^(\w+):seconds ([0-9.]+) ([0-9.]+)$")


def run(u, i, name, script, **kw):
    """One pod: create, start, wait for the command's first line; returns the seconds from
    StartContainer to that line and the console's lines once the VM ended."""
    sid, cfg = u.run_pod(name=f"{name}{i}", annotations=TCG)
    try:
        cid = u.create(sid, cfg, name=name, image=IMAGE, memory=256 << 20, command=["sh", "-c", script], **kw)
        log = u.status(cid).status.log_path
        t0 = time.monotonic()
        u.start_ctr(cid)
        wait_line(log, "started", timeout=300)
        dt = time.monotonic() - t0
        st = u.wait_exited(cid, timeout=300)
        lines = cri_lines(st.log_path)
        if "netguest: command-exit=0" not in lines:
            raise SystemExit(f"{name} run {i}: the command failed: {lines[-10:]}")
        return dt, lines
    finally:
        u.remove_pod(sid)


def bench_start(u, root, runs):
    rw, ro = root / "rw", root / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "key").write_text("value\n")
    hosts = root / "etc-hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    three = [mount(u, rw, "/data"), mount(u, ro, "/config", ro=True), mount(u, hosts, "/etc/hosts")]
    times = {"no mount": [], "3 mounts": []}
    for i in range(runs):
        times["no mount"].append(run(u, i, "none", "echo started")[0])
        dt, lines = run(u, i, "three", "echo started", mounts=three)
        if sum(l.startswith("netguest: mount ukv") for l in lines) != 3:
            raise SystemExit(f"3 mounts run {i}: not every mount was made: {lines[-10:]}")
        times["3 mounts"].append(dt)
    return times


def bench_read(u, root, runs):
    d = root / "big"
    d.mkdir()
    f = d / "file"
    with open(f, "wb") as out:
        for _ in range(64):
            out.write(uuid.uuid4().bytes * (MIB // 16))
    dev = u.pb.Device(container_path="/dev/xvdb", host_path=str(f), permissions="r")
    src = {"9p": "/data/file", "blk": "/dev/xvdb"}
    dd = {k: (f"read t0 x </proc/uptime; dd if={p} of=/dev/null bs=1M 2>&1 | sed s/^/{k}:/; "
              f"read t1 x </proc/uptime; echo {k}:seconds $t0 $t1") for k, p in src.items()}
    rates = {"9p": [], "blk": []}
    for i in range(runs):
        order = ["9p", "blk"] if i % 2 == 0 else ["blk", "9p"]
        script = "echo started; " + "; ".join(dd[k] for k in order)
        _, lines = run(u, i, "read", script, mounts=[mount(u, d, "/data", ro=True)], devices=[dev])
        mib, secs = {}, {}
        for line in lines:
            m = RECORDS_RE.match(line)
            if m:
                mib[m.group(1)] = int(m.group(2))
            m = SECONDS_RE.match(line)
            if m:
                secs[m.group(1)] = float(m.group(3)) - float(m.group(2))
        for k in rates:
            if mib.get(k) != 64 or not secs.get(k):
                raise SystemExit(f"read run {i}: {k}: no full 64 MiB read timed: {lines[-10:]}")
            rates[k].append(mib[k] / secs[k])
    return rates


def row(name, xs, unit, scale=1.0):
    xs = [x * scale for x in xs]
    return (f"  {name:22} median {statistics.median(xs):8.1f} {unit}   min {min(xs):8.1f}   max {max(xs):8.1f}   "
            f"(n={len(xs)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start-runs", type=int, default=5)
    ap.add_argument("--read-runs", type=int, default=3)
    a = ap.parse_args()
    d = build_netguest_amd64()
    root = Path("/tmp") / f"uk-bench-{uuid.uuid4().hex[:12]}"
    root.mkdir()
    u = Unikd(root)
    try:
        import_netguest(u, d)
        u.start()
        start = bench_start(u, root, a.start_runs)
        rates = bench_read(u, root, a.read_runs)
        print("Linux guest (netguest amd64 flavour), accelerator: tcg")
        print(f"StartContainer to the command's first line ({a.start_runs} runs each, alternating):")
        for k, v in start.items():
            print(row(k, v, "ms", 1000))
        extra = statistics.median(start["3 mounts"]) - statistics.median(start["no mount"])
        print(f"  3 mounts add {extra * 1000:.0f} ms (difference of the medians)")
        print(f"64 MiB sequential read in the guest, dd bs=1M ({a.read_runs} runs):")
        for k, v in rates.items():
            print(row(f"{k} (read-only)", v, "MiB/s"))
    finally:
        u.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
