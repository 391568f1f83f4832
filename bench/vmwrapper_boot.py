#!/usr/bin/python3
"""Launch-to-first-line and launch-to-exit of the hello guest: bare QEMU microvm versus
bin/vmwrapper, run alternately in one invocation so both see the same machine load.

usage: bench/vmwrapper_boot.py [--runs N] [--accel kvm|tcg] [--json PATH]"""
import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import host_accel

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "tests/guests/hello/hello.elf"
QEMU = "/usr/bin/qemu-system-x86_64"
APPEND = "exit:0"


def bare_cmd(accel):
    return [QEMU, "-machine", "microvm", "-accel", accel, "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-device", "isa-debug-exit", "-no-reboot",
            "-kernel", str(HELLO), "-append", APPEND]


def vmwrapper_cmd(accel):
    return [str(REPO / "bin/vmwrapper"), "--kernel", str(HELLO), "--append", APPEND, "--accel", accel]


def one(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = p.stdout.readline()
    t1 = time.perf_counter()
    p.stdout.read()
    rc = p.wait()
    t2 = time.perf_counter()
    p.stdout.close()
    if not first.startswith(b"hello: unikd test guest"):
        sys.exit(f"unexpected first line {first!r} from {cmd[0]}")
    # isa-debug-exit 0 makes bare QEMU exit 1; vmwrapper reports the guest's 0.
    if rc not in (0, 1):
        sys.exit(f"{cmd[0]} exited {rc}")
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summary(xs):
    return {"median": statistics.median(xs), "p90": pct(xs, 90), "p99": pct(xs, 99), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--accel", choices=("kvm", "tcg"), default=host_accel())
    ap.add_argument("--json", default=str(REPO / "bench/results" /
                                          f"vmwrapper-boot-{datetime.date.today().isoformat()}.json"))
    a = ap.parse_args()
    cmds = {"bare-qemu": bare_cmd(a.accel), "vmwrapper": vmwrapper_cmd(a.accel)}
    res = {k: {"first_line_ms": [], "exit_ms": []} for k in cmds}
    for name, cmd in cmds.items():  # warm the page cache
        one(cmd)
    for _ in range(a.runs):
        for name, cmd in cmds.items():
            f, e = one(cmd)
            res[name]["first_line_ms"].append(f)
            res[name]["exit_ms"].append(e)
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "accel": a.accel,
           "runs": a.runs, "append": APPEND, "commands": cmds, "results": {}}
    print(f"hello guest, accel={a.accel}, {a.runs} alternating runs each (ms)")
    print(f"{'':12} {'first line':>30} {'exit':>30}")
    print(f"{'':12} {'median':>10}{'p90':>10}{'p99':>10} {'median':>10}{'p90':>10}{'p99':>10}")
    for name in cmds:
        fl, ex = summary(res[name]["first_line_ms"]), summary(res[name]["exit_ms"])
        out["results"][name] = {"first_line_ms": fl, "exit_ms": ex, "raw": res[name]}
        print(f"{name:12} {fl['median']:10.1f}{fl['p90']:10.1f}{fl['p99']:10.1f} "
              f"{ex['median']:10.1f}{ex['p90']:10.1f}{ex['p99']:10.1f}")
    b, v = out["results"]["bare-qemu"], out["results"]["vmwrapper"]
    diff = v["exit_ms"]["median"] - b["exit_ms"]["median"]
    out["vmwrapper_minus_bare_exit_median_ms"] = diff
    out["ratio_exit_median"] = v["exit_ms"]["median"] / b["exit_ms"]["median"]
    print(f"vmwrapper - bare, exit median: {diff:+.1f} ms (ratio {out['ratio_exit_median']:.2f})")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
