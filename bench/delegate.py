#!/usr/bin/python3
"""What the containerd delegate (issue 16) adds to a call: the same CRI call sent to
containerd directly and through unikd, which forwards it, side by side in one run.

One private containerd (the integration tests' harness: its own network and mount
namespaces, runc, the busybox and pause images imported offline) and one unikd whose
`--delegate-endpoint` is that containerd's socket. Both are called from this process over
a unix socket, each on one long-lived channel, the order alternating every round (direct
first on even rounds, through unikd first on odd ones):

  list    ListContainers with no filter, while --pods busybox pods (one running container
          each) live in containerd; through unikd the answer is unikd's own list (empty
          here) merged with containerd's, which must hold the same containers.
  status  PodSandboxStatus of one of those pods: a call routed by its id (unikd looks the
          id up in its own records, then forwards), as --list-calls calls.
  run     RunPodSandbox of a pod without a runtime handler (so unikd hands it to
          containerd), and the whole cycle RunPodSandbox + StopPodSandbox +
          RemovePodSandbox. Each side runs its own pods, one after the other, never at once.
          containerd's own time for a RunPodSandbox varies by far more than a forward
          costs, so each call's time is also shown without containerd's part: the client's
          time less the span between containerd's "RunPodSandbox for" and "returns sandbox
          id" log lines for that pod.

Warm-up rounds (not counted) open the connections first. Prints n, median and p90 of each
side and the added cost: the difference of the medians and of the p90s, and the median of
the per-round differences; with --json, writes every sample too. It checks only that both
sides answer alike and that the pods handed to unikd land in containerd.

Reuses the integration tests' harness (tests/integration), so it needs what `make test`
installs and builds (containerd, runc, python3-grpcio, grpc-tools), root, and a unikd with
the delegate (UNIKD_BIN_DIR, default bin/).

  sudo bench/delegate.py [--list-calls N (300)] [--runs N (30)] [--pods N (5)] [--json PATH]"""
import argparse
import calendar
import os
import re
import shutil
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import grpc  # noqa: E402

from benchlib import build_facts, dump_json, host_facts, summary, timed  # noqa: E402
from containerd import BUSYBOX_IMAGE, Containerd  # noqa: E402
from cri import Unikd, stubs  # noqa: E402

WARMUP_LIST = 10
WARMUP_RUN = 2


def pod_config(pb, ctrd, name):
    """A pod for containerd: no runtime handler, in the harness's cgroup parent (so its
    clean-up finds every process), its logs under the harness's directory."""
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="bench"),
        log_directory=str(ctrd.logs / name), hostname=name,
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=ctrd.cgroup_parent))


def add_listed_pods(pb, rs, ctrd, n):
    """n busybox pods with a running `sleep` container each, made in containerd directly:
    what ListContainers lists."""
    for i in range(n):
        cfg = pod_config(pb, ctrd, f"listed{i}")
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="sleep"), image=pb.ImageSpec(image=BUSYBOX_IMAGE),
                               command=["/bin/sleep", "100000"], log_path="sleep/0.log")
        cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=c,
                                                           sandbox_config=cfg)).container_id
        rs.StartContainer(pb.StartContainerRequest(container_id=cid))


def alternate(sides, method, req, calls):
    """calls calls of method on both sides, alternating, after a warm-up; the samples."""
    for _ in range(WARMUP_LIST):
        for rs in sides.values():
            getattr(rs, method)(req)
    times = {name: [] for name in sides}
    names = list(sides)
    for i in range(calls):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(timed(getattr(sides[name], method), req)[1])
    return times


def bench_list(pb, sides, calls):
    """ListContainers on both sides; both must list the same containers."""
    req = pb.ListContainersRequest()
    ids = {name: sorted(c.id for c in rs.ListContainers(req).containers) for name, rs in sides.items()}
    if len(set(map(tuple, ids.values()))) != 1:
        raise SystemExit(f"ListContainers differs between the sides: {ids}")
    return alternate(sides, "ListContainers", req, calls), len(ids["direct"])


def bench_status(pb, sides, calls):
    """PodSandboxStatus of one of containerd's pods on both sides; the same pod both ways."""
    sid = sides["direct"].ListPodSandbox(pb.ListPodSandboxRequest()).items[0].id
    req = pb.PodSandboxStatusRequest(pod_sandbox_id=sid)
    got = {name: rs.PodSandboxStatus(req).status.id for name, rs in sides.items()}
    if set(got.values()) != {sid}:
        raise SystemExit(f"PodSandboxStatus of {sid} differs between the sides: {got}")
    return alternate(sides, "PodSandboxStatus", req, calls)


def pod_cycle(pb, rs, cfg):
    """RunPodSandbox, then StopPodSandbox and RemovePodSandbox: (sandbox id, run ms, cycle ms)."""
    t0 = time.perf_counter_ns()
    sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    t1 = time.perf_counter_ns()
    rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    t2 = time.perf_counter_ns()
    return sid, (t1 - t0) / 1e6, (t2 - t0) / 1e6


def bench_run(pb, sides, direct, ctrd, runs):
    """The pod cycle on both sides, alternating. The first pod made through unikd must show
    up in containerd's own list (unikd handed it over rather than run it)."""
    names = list(sides)
    for i in range(WARMUP_RUN):
        for name in names:
            cfg = pod_config(pb, ctrd, f"warm{i}-{name}")
            sid = sides[name].RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
            in_ctrd = any(p.id == sid for p in direct.ListPodSandbox(pb.ListPodSandboxRequest()).items)
            if not in_ctrd:
                raise SystemExit(f"the pod run {name} ({sid}) is not in containerd: the delegate did not take it")
            sides[name].StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
            sides[name].RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    run = {name: [] for name in names}
    cycle = {name: [] for name in names}
    pods = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            pod = f"r{i}-{name}"
            _, r, c = pod_cycle(pb, sides[name], pod_config(pb, ctrd, pod))
            run[name].append(r)
            cycle[name].append(c)
            pods[name].append(pod)
    return run, cycle, outside_containerd(run, pods, ctrd)


CTRD_RUN_LINE = re.compile(r'time="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z" level=\w+ '
                           r'msg="RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),.*?\}( returns sandbox id)?')


def ctrd_run_ms(log):
    """Per pod name, the milliseconds from containerd's "RunPodSandbox for" line to its
    "returns sandbox id" line: containerd's own time for the call."""
    start, span = {}, {}
    for m in CTRD_RUN_LINE.finditer(log):
        ns = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) * 10**9 + \
            int((m.group(2) or "0").ljust(9, "0"))
        if m.group(4):
            if m.group(3) in start:
                span[m.group(3)] = (ns - start[m.group(3)]) / 1e6
        else:
            start[m.group(3)] = ns
    return span


def outside_containerd(run, names, ctrd):
    """Each RunPodSandbox's client time less containerd's own time for it."""
    span = ctrd_run_ms((ctrd.root / "containerd.log").read_text(errors="replace"))
    missing = [n for ns in names.values() for n in ns if n not in span]
    if missing:
        raise SystemExit(f"containerd's log has no RunPodSandbox span for {missing[:5]}")
    return {side: [t - span[n] for t, n in zip(run[side], names[side])] for side in run}


def paired_median(a, b):
    return statistics.median(y - x for x, y in zip(a, b))


def table(title, times, unit="ms"):
    """Both sides' n, median and p90, and what going through unikd adds."""
    d, u = times["direct"], times["unikd"]
    sd, su = summary(d), summary(u)
    print(f"{title}:")
    for name, s in (("direct", sd), ("through unikd", su)):
        print(f"  {name:14} n={s['n']:<4} median {s['median']:9.3f} {unit}   p90 {s['p90']:9.3f} {unit}   "
              f"min {s['min']:9.3f}   max {s['max']:9.3f}")
    print(f"  {'added':14}        median {su['median'] - sd['median']:+9.3f} {unit}   "
          f"p90 {su['p90'] - sd['p90']:+9.3f} {unit}   (median of the per-round differences "
          f"{paired_median(d, u):+.3f} {unit})")
    return {"direct": sd, "through_unikd": su, "added_median": su["median"] - sd["median"],
            "added_p90": su["p90"] - sd["p90"], "added_paired_median": paired_median(d, u),
            "samples": {"direct": d, "through_unikd": u}}


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # through the finally blocks: everything is cleaned up


def cleanup(u, ctrd):
    """unikd first (its pods through the CRI, then the process, its netns and dnsmasq),
    then containerd and whatever it left (shims, runc, pods, cgroups, its netns). Each runs
    even when the other fails; the first error is raised after both."""
    first = None
    for step in (u.cleanup, ctrd.cleanup):
        try:
            step()
        except BaseException as e:  # noqa: B902 - the other step must still run
            first = first or e
    left = ctrd.pids() + u.pids()
    if left or ctrd.cgroup_dirs() or ctrd.mounts():
        print(f"warning: left behind: processes {left}, cgroups {ctrd.cgroup_dirs()}, mounts {ctrd.mounts()}",
              file=sys.stderr)
    if first:
        raise first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list-calls", type=int, default=300)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--pods", type=int, default=5, help="busybox pods in containerd while listing")
    ap.add_argument("--json", help="write the samples and summaries here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: network and mount namespaces, cgroups")
    signal.signal(signal.SIGTERM, on_sigterm)
    pb, g = stubs()
    root = Path("/tmp") / f"uk-bench-{uuid.uuid4().hex[:12]}"
    root.mkdir()
    ctrd = Containerd(root)
    u = Unikd(root, extra=["--delegate-endpoint", f"unix://{ctrd.sock}"])
    try:
        ctrd.start().import_images()
        u.start()
        with grpc.insecure_channel(f"unix://{ctrd.sock}") as ch:
            direct = g.RuntimeServiceStub(ch)
            sides = {"direct": direct, "unikd": u.rs}
            add_listed_pods(pb, direct, ctrd, a.pods)
            lists, n_ctrs = bench_list(pb, sides, a.list_calls)
            status = bench_status(pb, sides, a.list_calls)
            run, cycle, outside = bench_run(pb, sides, direct, ctrd, a.runs)
            version = direct.Version(pb.VersionRequest()).runtime_version
        print(f"containerd {version} direct against through unikd's delegate, "
              f"alternating, one channel each, unix sockets")
        out = {"list_containers": table(f"ListContainers, {n_ctrs} containers ({a.list_calls} calls each)", lists),
               "pod_sandbox_status": table(f"PodSandboxStatus, routed by id ({a.list_calls} calls each)", status),
               "run_pod_sandbox": table(f"RunPodSandbox, no handler ({a.runs} runs each)", run),
               "run_pod_sandbox_outside_containerd":
                   table("RunPodSandbox less containerd's own time for it (from its log)", outside),
               "pod_cycle": table(f"RunPodSandbox + StopPodSandbox + RemovePodSandbox ({a.runs} runs each)", cycle)}
        if a.json:
            dump_json(a.json, {"host": host_facts(), "build": build_facts(), **out})
    finally:
        try:
            cleanup(u, ctrd)
        finally:
            # Never into a mount left under it (there should be none: containerd's are private).
            if not any(str(root) in line for line in Path("/proc/self/mountinfo").read_text().splitlines()):
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
