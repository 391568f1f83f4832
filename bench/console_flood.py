#!/usr/bin/python3
"""Console flood through vmwrapper into a CRI log: throughput (MB/s of guest output) and
vmwrapper's peak memory, under TCG and KVM, in one run.

usage: bench/console_flood.py [--mb N] [--json PATH]"""
import argparse
import datetime
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import host_accel

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "tests/guests/hello/hello.elf"


def flood(accel, lines, tmp):
    log = Path(tmp) / f"{accel}.log"
    state = Path(tmp) / f"state-{accel}"
    state.mkdir()
    spec = {"version": 1, "id": "flood", "kernel": str(HELLO), "cmdline": f"lines:{lines} exit:0",
            "accel": accel, "state_dir": str(state), "console_log": str(log), "memory_mib": 64}
    sp = Path(tmp) / f"spec-{accel}.json"
    sp.write_text(json.dumps(spec))
    r, w = os.pipe()
    t0 = time.perf_counter()
    p = subprocess.Popen([str(REPO / "bin/vmwrapper"), "--spec", str(sp), "--sync-fd", str(w)], pass_fds=[w],
                         stderr=subprocess.DEVNULL)
    os.close(w)
    os.read(r, 4096)
    os.close(r)
    rc = p.wait()
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"vmwrapper exited {rc}")
    # Guest bytes: every "line N\r\n" the guest wrote.
    guest_bytes = sum(len(f"line {i}\r\n") for i in range(1, lines + 1))
    ex = json.loads((state / "exit.json").read_text())
    return {"accel": accel, "lines": lines, "guest_mb": guest_bytes / 1e6, "seconds": dt,
            "mb_per_s": guest_bytes / 1e6 / dt, "log_mb": log.stat().st_size / 1e6,
            "vmwrapper_max_rss_kb": ex.get("resources", {}).get("max_rss_kb", ex.get("max_rss_kb"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=2.0, help="guest output per accelerator (TCG ~1 MB/s, "
                    "KVM on a nested host much slower)")
    ap.add_argument("--json", default=str(REPO / "bench/results" /
                                          f"console-flood-{datetime.date.today().isoformat()}.json"))
    a = ap.parse_args()
    lines = int(a.mb * 1e6 / 12.5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="uk-bench-") as tmp:
        for accel in (["tcg", "kvm"] if host_accel() == "kvm" else ["tcg"]):
            rows.append(flood(accel, lines if accel == "tcg" else max(lines // 20, 1000), tmp))
    print(f"{'accel':6} {'guest MB':>9} {'seconds':>8} {'MB/s':>7} {'log MB':>7} {'vmwrapper max RSS kB':>21}")
    for r in rows:
        print(f"{r['accel']:6} {r['guest_mb']:9.2f} {r['seconds']:8.2f} {r['mb_per_s']:7.2f} {r['log_mb']:7.2f} "
              f"{str(r['vmwrapper_max_rss_kb']):>21}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                                        "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
