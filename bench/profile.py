#!/usr/bin/python3
"""Profiles behind the findings in docs/performance.md, reproducible one by one.

  bench/profile.py offcpu [--runs N]        where pod start and stop block: system-wide perf
                                            sched_switch/sched_wakeup with call graphs during N
                                            pod starts+removals, blocked time by kernel path
  bench/profile.py oncpu [--runs N]         unikd's on-CPU profile (perf record -g -p, held
                                            children included) during N pod starts+removals
  bench/profile.py cgroup-attach            the first cgroup.procs write of a new process,
                                            per controller (cgroup v1: an RCU grace period)
  bench/profile.py qemu-idle                wake-ups of one idle microvm QEMU, as vmwrapper
                                            starts it and with pit=off
  bench/profile.py status-scaling [--counts 1,50,100,200]
                                            ContainerStatus/ListContainers/ListPodSandbox latency
                                            and unikd's syscalls per call at N running pods
                                            (strace -c), plus a perf CPU profile at the largest N

Each cleans up after itself like cri_bench.py (the ukbench-<pid> tag). Needs root and perf
(strace for status-scaling)."""
import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import cri_bench as C  # noqa: E402

SIGS = [("cgroup v1 cgroup.procs write (rcu_sync_enter → synchronize_rcu)", ["cgroup_procs_write_start"]),
        ("tap close (__tun_detach → synchronize_rcu_expedited)", ["__tun_detach"]),
        ("netdev unregister (netdev_run_todo / rcu_barrier)", ["netdev_run_todo", "unregister_netdevice",
                                                               "rcu_barrier", "synchronize_net"]),
        ("fsync (ext4_sync_file)", ["ext4_sync_file", "do_fsync"])]


def offcpu(a):
    with B.Scratch() as s:
        out = s.root / "offcpu.data"
        ns = s.netns("a")
        u = B.Unikd(s, "u", ns, network="bridge", log_level="debug")
        u.import_image("hello:1", "--kernel", str(B.HELLO))
        u.start()
        d = C.UnikdDriver(u, "p")
        d.hello()  # warm
        rec = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "sched:sched_switch", "-e", "sched:sched_wakeup",
                                "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        runs = [d.hello() for _ in range(a.runs)]
        time.sleep(0.3)
        rec.send_signal(2)
        rec.wait()
        text = subprocess.run(["perf", "script", "-i", str(out), "-F", "comm,tid,time,event,trace,ip,sym"],
                              capture_output=True, text=True).stdout
    print(f"{a.runs} pod starts: first line p50 {statistics.median(r['total_ms'] for r in runs):.1f} ms, "
          f"StartContainer sent → vmwrapper exec'd p50 "
          f"{statistics.median(r['t_vmwrapper'] - r['t_create'] for r in runs):.1f} ms, stop+remove p50 "
          f"{statistics.median(r['stop_remove_ms'] for r in runs):.1f} ms")
    hdr = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+(sched:\S+):\s+(.*)$")
    events, cur = [], None
    for line in text.split("\n"):
        m = hdr.match(line)
        if m:
            cur = [m.group(1), int(m.group(2)), float(m.group(3)), m.group(4), m.group(5), []]
            events.append(cur)
        elif line.strip() and cur is not None:
            parts = line.strip().split(None, 1)
            cur[5].append(parts[1] if len(parts) > 1 else parts[0])
    pending, res, example = {}, collections.defaultdict(list), {}
    for comm, tid, t, ev, trace, stack in events:
        if ev == "sched:sched_switch":
            m = re.search(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+)", trace)
            if m and not m.group(3).startswith("R"):
                pending[int(m.group(2))] = (t, stack, m.group(1))
        elif ev == "sched:sched_wakeup":
            m = re.search(r"comm=(.*?) pid=(\d+)", trace)
            if m and int(m.group(2)) in pending:
                t0, st, c = pending.pop(int(m.group(2)))
                if c not in ("unikd", "vmwrapper", "qemu-system-x86"):
                    continue
                joined = " ".join(st)
                for name, keys in SIGS:
                    if any(k in joined for k in keys):
                        res[(name, c)].append((t - t0) * 1000)
                        example.setdefault(name, st)
                        break
    print("\nblocked time (switch-out → wake-up) of unikd, vmwrapper and QEMU threads, by kernel path "
          "(all such processes on the machine during the window):")
    for (name, c), xs in sorted(res.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:64} {c:16} n={len(xs):4}  p50 {statistics.median(xs):7.2f} ms  max {max(xs):7.2f} ms")
    for name, st in example.items():
        if "cgroup" in name or "tap" in name:
            print(f"\nexample stack, {name}:")
            for fr in st[:14]:
                print(f"    {fr}")


def oncpu(a):
    with B.Scratch() as s:
        ns = s.netns("a")
        u = B.Unikd(s, "u", ns, network="bridge", log_level="info")
        u.import_image("hello:1", "--kernel", str(B.HELLO))
        u.start()
        d = C.UnikdDriver(u, "p")
        d.hello()
        data = s.root / "oncpu.data"
        rec = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-o", str(data), "-p", str(u.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        for _ in range(a.runs):
            d.hello()
        rec.send_signal(2)
        rec.wait()
        dso = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--comm", "unikd", "-g", "none",
                              "--percentage", "relative", "--no-children", "--sort", "dso"],
                             capture_output=True, text=True).stdout
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,ip,sym"], capture_output=True,
                                text=True).stdout
    print(f"unikd's on-CPU samples during {a.runs} pod starts and removals (threads and not-yet-exec'd children "
          f"named unikd), by object:")
    for line in dso.split("\n"):
        if re.match(r"^\s+\d", line):
            print("  " + line.strip())
    kinds = [("fork (clone, dup_mmap)", ("kernel_clone", "__do_sys_clone")),
             ("exec of vmwrapper (execve)", ("do_execveat_common", "bprm_execve")),
             ("fsync", ("do_fsync",)),
             ("open/create files (openat)", ("do_sys_openat2",)),
             ("unlink/rmdir/rename", ("do_unlinkat", "do_rmdir", "do_renameat2")),
             ("ioctl (tap, netlink setup)", ("__x64_sys_ioctl",)),
             ("mkdir", ("do_mkdirat",)),
             ("exit of a child (exit_mmap)", ("do_exit",)),
             ("netlink/socket I/O", ("__sys_sendmsg", "__sys_recvmsg", "sock_sendmsg")),
             ("read/write", ("ksys_read", "ksys_write", "vfs_read", "vfs_write"))]
    counts, total = collections.Counter(), 0
    for block in script.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines or not lines[0].split()[0] == "unikd":
            continue
        total += 1
        frames = " ".join(lines[1:])
        for name, keys in kinds:
            if any(k in frames for k in keys):
                counts[name] += 1
                break
        else:
            counts["other"] += 1
    print(f"\nthe same {total} samples by what the call chain is doing (first match, in this order):")
    for name, _ in kinds + [("other", ())]:
        if counts[name]:
            print(f"  {100 * counts[name] / total:5.1f}%  {name}")


def cgroup_attach(a):
    tag = f"ukbench-{os.getpid()}"
    base = Path("/sys/fs/cgroup")
    ctrls = [c for c in ("pids", "cpu", "memory", "cpuacct") if (base / c / "cgroup.procs").exists()]
    if not ctrls:
        sys.exit("no cgroup v1 controllers under /sys/fs/cgroup")
    res = {c: [] for c in ctrls}
    try:
        for i in range(a.runs):
            p = subprocess.Popen(["sleep", "30"])
            for c in ctrls:
                (base / c / f"{tag}-{i}").mkdir()
            for c in ctrls:
                t = time.perf_counter()
                (base / c / f"{tag}-{i}" / "cgroup.procs").write_text(str(p.pid))
                res[c].append((time.perf_counter() - t) * 1000)
            p.kill()
            p.wait()
            for c in ctrls:
                (base / c / f"{tag}-{i}").rmdir()
            time.sleep(0.05)
    finally:
        for c in ctrls:
            for d in (base / c).glob(f"{tag}-*"):
                B.rm_cgroup_tree(d)
    print(f"writing a new process's pid to cgroup.procs, in this order, {a.runs} times (ms):")
    for c in ctrls:
        print(f"  {c:8} p50 {statistics.median(res[c]):6.2f}  max {max(res[c]):6.2f}")


def qemu_idle(a):
    tag = f"ukbench-{os.getpid()}"
    accel = B.host_accel()
    for machine in ("microvm", "microvm,pit=off"):
        p = subprocess.Popen([B.QEMU, "-name", f"{tag}-idle", "-machine", machine, "-accel", accel, "-m", "16",
                              "-nodefaults", "-no-user-config", "-display", "none", "-serial", "null", "-device",
                              "isa-debug-exit", "-no-reboot", "-kernel", str(B.HELLO), "-append", "idle"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)
            s0, c0 = B.thread_switches(p.pid), C.proc_tasks_stats(p.pid)
            time.sleep(a.seconds)
            s1, c1 = B.thread_switches(p.pid), C.proc_tasks_stats(p.pid)
        finally:
            p.kill()
            p.wait()
        wk = sum(s1[t][1] - s0[t][1] for t in s1 if t in s0)
        print(f"-accel {accel} -machine {machine:16} idle guest: {wk / a.seconds:6.1f} wake-ups/s, "
              f"{(c1[0] - c0[0]) / 1e6 / a.seconds / 10:.3f}% of a core")


def status_scaling(a):
    counts = sorted(int(x) for x in a.counts.split(","))
    with B.Scratch() as s:
        ns = s.netns("a")
        u = B.Unikd(s, "u", ns, network="bridge", log_level="info")
        u.import_image("hello:1", "--kernel", str(B.HELLO))
        u.start()
        pb, rs = u.pb, u.rs
        pods = []
        print(f"{'pods':>5} {'ContainerStatus':>16} {'ListContainers':>15} {'ListPodSandbox':>15}   "
              f"syscalls per ContainerStatus (strace -c)")
        for n in counts:
            while len(pods) < n:
                sid, cid, _, _, _ = B.start_pod(u, f"s-{len(pods)}", ["idle"], 16)
                pods.append((sid, cid))
            time.sleep(1)
            lat = {"ContainerStatus": [], "ListContainers": [], "ListPodSandbox": []}
            for i in range(a.calls):
                for k in lat:
                    req = {"ContainerStatus": pb.ContainerStatusRequest(container_id=pods[i % len(pods)][1]),
                           "ListContainers": pb.ListContainersRequest(),
                           "ListPodSandbox": pb.ListPodSandboxRequest()}[k]
                    t = time.perf_counter()
                    getattr(rs, k)(req)
                    lat[k].append((time.perf_counter() - t) * 1000)
            trc = Path(s.root / f"strace-{n}.txt")
            st = subprocess.Popen(["strace", "-f", "-c", "-o", str(trc), "-p", str(u.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            k_calls = 20
            for i in range(k_calls):
                rs.ContainerStatus(pb.ContainerStatusRequest(container_id=pods[i % len(pods)][1]))
            time.sleep(0.5)
            st.send_signal(2)
            st.wait()
            counts_by = {}
            for line in trc.read_text().split("\n"):
                f = line.split()
                if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit() and f[-1] != "total":
                    counts_by[f[-1]] = int(f[3])
            top = sorted(counts_by.items(), key=lambda kv: -kv[1])[:5]
            total = sum(counts_by.values())
            print(f"{n:5} {statistics.median(lat['ContainerStatus']):13.2f} ms {statistics.median(lat['ListContainers']):12.2f}"
                  f" ms {statistics.median(lat['ListPodSandbox']):12.2f} ms   {total / k_calls:7.0f}: "
                  + ", ".join(f"{k} {v / k_calls:.0f}" for k, v in top))
        # CPU profile of ContainerStatus at the largest count.
        data = s.root / "perf.data"
        pr = subprocess.Popen(["perf", "record", "-g", "-F", "2000", "-o", str(data), "-p", str(u.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        for i in range(a.calls):
            rs.ContainerStatus(pb.ContainerStatusRequest(container_id=pods[i % len(pods)][1]))
        pr.send_signal(2)
        pr.wait()
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "sym", "-g",
                              "none", "--percent-limit", "3"], capture_output=True, text=True).stdout
        print(f"\nperf, unikd during {a.calls} ContainerStatus calls at {counts[-1]} pods (children, ≥ 3%):")
        for line in rep.split("\n"):
            if re.match(r"^\s+\d", line):
                print("  " + line.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("offcpu")
    p.add_argument("--runs", type=int, default=15)
    p = sub.add_parser("oncpu")
    p.add_argument("--runs", type=int, default=30)
    p = sub.add_parser("cgroup-attach")
    p.add_argument("--runs", type=int, default=20)
    p = sub.add_parser("qemu-idle")
    p.add_argument("--seconds", type=float, default=5)
    p = sub.add_parser("status-scaling")
    p.add_argument("--counts", default="1,50,100,200")
    p.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile: run as root")
    {"offcpu": offcpu, "oncpu": oncpu, "cgroup-attach": cgroup_attach, "qemu-idle": qemu_idle,
     "status-scaling": status_scaling}[a.cmd](a)


if __name__ == "__main__":
    main()
