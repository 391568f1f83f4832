#!/usr/bin/python3
"""Idle cost per framework: N idle pods of each guest started through unikd, then the CPU
and wake-ups of their QEMUs over a window, with the i8254 PIT and without it, side by side
(docs/performance.md, "Idle cost per framework"; docs/guests.md, "Timers").

Each side is set by the pod annotation unikd.io/pit (on | off), so the same run shows what
the guest contract chose and what the other choice would cost. A framework whose guest
cannot run without the PIT (Unikraft 0.17 and Solo5 0.12.1 calibrate their TSC against it
and spin forever) is measured with it only. Runs under KVM where /dev/kvm opens, else TCG.

usage: sudo bench/idle.py [--count N] [--linux-count N] [--frameworks hello,unikraft,solo5,linux]
                          [--seconds S] [--json PATH]"""
import argparse
import concurrent.futures
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
from benchlib import remove_pod  # noqa: E402
from cri_bench import cpu_delta, cpu_sample  # noqa: E402

UNIKERNELS = B.REPO.parent / "shared" / "unikernels"

# name: (image, how it is imported, container args, MiB, the line that says it is idle,
#        whether it lives without a PIT)
FRAMEWORKS = {
    "hello": ("hello:1", ["--kernel", str(B.HELLO)], ["idle"], 16, B.FIRST_LINE, True),
    "unikraft": ("httpreply:1", ["--kernel", str(UNIKERNELS / "unikraft-0.17.0/httpreply")], [], 128,
                 b"Listening on port 8123", False),
    "solo5": ("solo5-net:1", ["--kernel", str(UNIKERNELS / "solo5-0.12.1/test_net.virtio")], [], 64,
              b"[service0] Serving ping", False),
    "linux": ("netguest:1", None, [], 256, b"netguest: ready", True),
}


def import_linux(u):
    d = B.NETGUEST
    if not (d / "vmlinuz").is_file():
        return f"no Linux guest at {d} (make netguest)"
    khz = next((int(float(l.split(":")[1]) * 1000) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz")), 0)
    u.import_image("netguest:1", "--kernel", d / "vmlinuz", "--initrd", d / "initrd.cpio.gz", "--cmdline",
                   (d / "cmdline").read_text().strip() + f" tsc_early_khz={khz}")  # its README: TCG
    return None


def start_one(u, name, image, args, mib, pit, needle, timeout):
    pb, rs = u.pb, u.rs
    (u.logs / name / "c").mkdir(parents=True)
    lw = B.LineWatch(u.log_path(name), needle=needle, cri=True)
    try:
        cfg = u.pod_config(name, annotations={"unikd.io/pit": pit})
        ccfg = u.container_config(args, memory_mib=mib)
        ccfg.image.image = image
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                           sandbox_config=cfg)).container_id
        rs.StartContainer(pb.StartContainerRequest(container_id=cid))
        lw.wait(timeout)
        return sid
    finally:
        lw.close()


def contract_pit(u, image):
    """What the guest contract chooses for the image (ImageStatus verbose), without annotation."""
    im = u.g.ImageServiceStub(u.channel)
    r = im.ImageStatus(u.pb.ImageStatusRequest(image=u.pb.ImageSpec(image=image), verbose=True))
    return json.loads(r.info["info"])["guest"].get("pit", "?")


def measure(u, fw, pit, n, a):
    image, _, args, mib, needle, _ = FRAMEWORKS[fw]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(a.parallel) as ex:
        sids = list(ex.map(lambda i: start_one(u, f"{fw}-{pit}-{i}", image, args, mib, pit, needle,
                                               a.boot_timeout), range(n)))
    started_s = time.monotonic() - t0
    try:
        time.sleep(a.settle)  # the last guests reach their idle loop
        qemus = B.pids_tagged(str(u.root), "qemu-system-x86")
        before = cpu_sample(qemus)
        w0 = time.monotonic()
        time.sleep(a.seconds)
        after = cpu_sample(qemus)
        window = time.monotonic() - w0
    finally:
        with concurrent.futures.ThreadPoolExecutor(a.parallel) as ex:
            list(ex.map(lambda sid: remove_pod(u, sid), sids))
    d = cpu_delta(before, after)
    q = max(d["processes"], 1)
    return {"framework": fw, "pit": pit, "pods": n, "qemus": d["processes"], "started_s": round(started_s, 1),
            "window_s": round(window, 2), "cpu_pct_of_core": round(d["cpu_ms_schedstat"] / 10 / window, 2),
            "cpu_pct_per_qemu": round(d["cpu_ms_schedstat"] / 10 / window / q, 3),
            "wakeups_per_s_per_qemu": round(d["context_switches"] / window / q, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200, help="idle pods per framework and side")
    ap.add_argument("--linux-count", type=int, default=20, help="idle Linux pods per side (256 MiB guests)")
    ap.add_argument("--frameworks", default="hello,unikraft,solo5,linux")
    ap.add_argument("--seconds", type=float, default=10, help="the measured window")
    ap.add_argument("--settle", type=float, default=5, help="seconds between the last start and the window")
    ap.add_argument("--parallel", type=int, default=8, help="starts in flight")
    ap.add_argument("--boot-timeout", type=float, default=300, help="seconds for one guest to reach idle")
    ap.add_argument("--json", default=str(B.REPO / "bench/results" / f"idle-{datetime.date.today().isoformat()}.json"))
    a = ap.parse_args()
    fws = [f for f in a.frameworks.split(",") if f]
    bad = [f for f in fws if f not in FRAMEWORKS]
    if bad:
        sys.exit(f"idle: unknown framework {bad[0]} (known: {', '.join(FRAMEWORKS)})")
    accel = B.host_accel()
    rows, notes = [], []
    with B.Scratch() as s:
        ns = s.netns("a")
        u = B.Unikd(s, "u", ns, network="bridge", log_level="info", accel=accel)
        for fw in fws:
            if fw == "linux":
                why = import_linux(u)
                if why:
                    notes.append(f"linux: skipped, {why}")
                    fws = [f for f in fws if f != "linux"]
            else:
                u.import_image(FRAMEWORKS[fw][0], *FRAMEWORKS[fw][1])
        u.start()
        for fw in fws:
            n = a.linux_count if fw == "linux" else a.count
            contract = contract_pit(u, FRAMEWORKS[fw][0])
            for pit in ("on", "off") if FRAMEWORKS[fw][5] else ("on",):
                print(f"idle: {fw}, {n} pods, pit {pit} ({accel})", flush=True)
                rows.append(dict(measure(u, fw, pit, n, a), contract=contract))
            if not FRAMEWORKS[fw][5]:
                notes.append(f"{fw}: pit off not measured: the guest calibrates its TSC against the PIT and "
                             "spins without it")
    print(f"\nIdle cost per framework ({accel}, {a.seconds:g} s window, {time.strftime('%Y-%m-%d')})")
    print(f"{'framework':10} {'contract':14} {'pit':4} {'pods':>5} {'% of a core':>12} {'% per QEMU':>11} "
          f"{'wake-ups/s per QEMU':>20}")
    for r in rows:
        print(f"{r['framework']:10} {r['contract']:14} {r['pit']:4} {r['qemus']:5} {r['cpu_pct_of_core']:12.2f} "
              f"{r['cpu_pct_per_qemu']:11.3f} {r['wakeups_per_s_per_qemu']:20.1f}")
    for n in notes:
        print(f"  note: {n}")
    B.dump_json(a.json, {"date": datetime.datetime.now().isoformat(timespec="seconds"), "accel": accel,
                         "args": vars(a), "host": B.host_facts(), "build": B.build_facts(), "rows": rows,
                         "notes": notes})
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
