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
  run     RunPodSandbox of a pod without a runtime handler (so unikd hands it to
          containerd), and the whole cycle RunPodSandbox + StopPodSandbox +
          RemovePodSandbox. Each side runs its own pods, one after the other, never at once.

Warm-up rounds (not counted) open the connections first. Prints n, median and p90 of each
side and the added cost: the difference of the medians and of the p90s, and the median of
the per-round differences. Nothing is asserted beyond the answers being the same; it
prints a table and, with --json, writes every sample.

Reuses the integration tests' harness (tests/integration), so it needs what `make test`
installs and builds (containerd, runc, python3-grpcio, grpc-tools), root, and a unikd with
the delegate (UNIKD_BIN_DIR, default bin/).

  sudo bench/delegate.py [--list-calls N (300)] [--runs N (20)] [--pods N (5)] [--json PATH]"""
import argparse
import os
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

from benchlib import build_facts, dump_json, host_facts, summary  # noqa: E402
from containerd import BUSYBOX_IMAGE, Containerd  # noqa: E402
from cri import Unikd, stubs  # noqa: E402

WARMUP_LIST = 10
WARMUP_RUN = 2


def ms(fn, *args):
    """Call fn and return (its answer, the milliseconds it took)."""
    t0 = time.perf_counter_ns()
    r = fn(*args)
    return r, (time.perf_counter_ns() - t0) / 1e6


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


def bench_list(pb, sides, calls):
    """ListContainers on both sides, alternating; both must list the same containers."""
    req = pb.ListContainersRequest()
    ids = {name: sorted(c.id for c in rs.ListContainers(req).containers) for name, rs in sides.items()}
    if len(set(map(tuple, ids.values()))) != 1:
        raise SystemExit(f"ListContainers differs between the sides: {ids}")
    for _ in range(WARMUP_LIST):
        for rs in sides.values():
            rs.ListContainers(req)
    times = {name: [] for name in sides}
    names = list(sides)
    for i in range(calls):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(ms(sides[name].ListContainers, req)[1])
    return times, len(ids[names[0]])


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
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            _, r, c = pod_cycle(pb, sides[name], pod_config(pb, ctrd, f"r{i}-{name}"))
            run[name].append(r)
            cycle[name].append(c)
    return run, cycle


def paired_median(a, b):
    return statistics.median(y - x for x, y in zip(a, b))


def table(title, times, unit="ms"):
    """Both sides' n, median and p90, and what going through unikd adds."""
    d, u = times["direct"], times["through unikd"]
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
    ap.add_argument("--runs", type=int, default=20)
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
            sides = {"direct": direct, "through unikd": u.rs}
            add_listed_pods(pb, direct, ctrd, a.pods)
            lists, n_ctrs = bench_list(pb, sides, a.list_calls)
            run, cycle = bench_run(pb, sides, direct, ctrd, a.runs)
            version = direct.Version(pb.VersionRequest()).runtime_version
        print(f"containerd {version} direct against through unikd's delegate, "
              f"alternating, one channel each, unix sockets")
        out = {"list_containers": table(f"ListContainers, {n_ctrs} containers ({a.list_calls} calls each)", lists),
               "run_pod_sandbox": table(f"RunPodSandbox, no handler ({a.runs} runs each)", run),
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
