#!/usr/bin/python3
"""Pod start to the first ICMP echo reply from the pod's address, CNI mode against bridge
mode, side by side in one run (alternating, same accelerator: whatever this host has).

A CNI unikd (Debian's bridge + host-local + portmap + loopback from /usr/lib/cni) and a bridge
unikd each run in a network namespace of their own; each run is RunPodSandbox, CreateContainer
and StartContainer of the Linux netguest (DHCP: the bridge's dnsmasq, or the pod's own in CNI
mode), then ICMP echo to the pod IP until the first reply. Reuses the integration tests'
harness (tests/integration), so it needs what `make test` installs and builds.

  sudo bench/cni_icmp.py [--runs N]     (default 5)"""
import argparse
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from cri import Unikd  # noqa: E402
from test_cni import cni_unikd  # noqa: E402
from test_network import NETGUEST, tsc_khz  # noqa: E402
from test_vmwrapper import ICMP_ECHO  # noqa: E402
from benchlib import host_accel  # noqa: E402
import subprocess  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    subprocess.run(["bash", str(REPO / "tests/guests/netguest/build.sh"), str(NETGUEST)], check=True, timeout=900)
    accel = host_accel()  # what the unikds' `auto` picks
    roots = [Path("/tmp") / f"uk-bench-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for r in roots:
        r.mkdir()
    cmdline = (NETGUEST / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    modes = {"bridge": Unikd(roots[0]), "cni": cni_unikd(roots[1], start=False)}
    times = {m: [] for m in modes}
    try:
        for u in modes.values():
            u.import_image("netguest:1", "--kernel", str(NETGUEST / "vmlinuz"), "--initrd",
                           str(NETGUEST / "initrd.cpio.gz"), "--cmdline", cmdline)
            u.start()
        for i in range(a.runs):
            for name, u in modes.items():
                t0 = time.monotonic()
                sid, cfg = u.run_pod(name=f"t{i}")
                ip = u.pod_status(sid).status.network.ip
                cid = u.create(sid, cfg, image="netguest:1", memory=256 << 20)
                u.start_ctr(cid)
                r = u.netns_exec("python3", "-c", ICMP_ECHO, ip, "120", timeout=180)
                if r.returncode != 0:
                    raise SystemExit(f"{name}: no echo reply from {ip}: {r.stderr}")
                times[name].append(time.monotonic() - t0)
                u.remove_pod(sid)
        print(f"pod start to first ICMP reply ({accel}, {a.runs} runs each, alternating):")
        for name, t in times.items():
            print(f"  {name:6} median {statistics.median(t) * 1000:7.0f} ms   min {min(t) * 1000:7.0f} ms   "
                  f"max {max(t) * 1000:7.0f} ms")
    finally:
        for u in modes.values():
            u.cleanup()
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)


if __name__ == "__main__":
    main()
