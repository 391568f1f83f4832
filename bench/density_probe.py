#!/usr/bin/python3
"""Where the tail of section 5's list/status latency goes: a few idle pods on a unikd of its
own, whose log level a SIGHUP switches (the level is in its config file, not a flag), then
the same interleaved calls several ways, each call split into client, transport and unikd.

usage: bench/density_probe.py [--pods N] [--calls N] [--json PATH]
Run as root, after `make` (release build in bin/). Small on purpose: --pods ≤ 100."""
import argparse
import concurrent.futures
import gc
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import cri_bench as CB  # noqa: E402
from benchlib import summary  # noqa: E402

KINDS = ("ListPodSandbox", "ListContainers", "ContainerStatus", "PodSandboxStatus")


def log(msg):
    print(f"probe: {msg}", file=sys.stderr, flush=True)


def requests(u, pods, rnd):
    pb, rs = u.pb, u.rs
    ids = [p[1] for p in pods]
    return {"ListPodSandbox": lambda: (rs.ListPodSandbox, pb.ListPodSandboxRequest()),
            "ListContainers": lambda: (rs.ListContainers, pb.ListContainersRequest()),
            "ContainerStatus": lambda: (rs.ContainerStatus, pb.ContainerStatusRequest(container_id=rnd.choice(ids))),
            "PodSandboxStatus": lambda: (rs.PodSandboxStatus,
                                         pb.PodSandboxStatusRequest(pod_sandbox_id=rnd.choice(pods)[0]))}


def raw_stubs(u, channel):
    """The same calls answered as bytes: the response is parsed apart, and timed apart."""
    pb = u.pb
    out = {}
    for k in KINDS:
        req_t = getattr(pb, f"{k}Request")
        out[k] = (channel.unary_unary(f"/runtime.v1.RuntimeService/{k}", request_serializer=req_t.SerializeToString,
                                      response_deserializer=None), getattr(pb, f"{k}Response"))
    return out


def run(u, pods, calls, gc_off=True, raw=None, second=None, alone=False, server=True, rundelay=False):
    """Interleaved rounds of the four kinds (or each kind's calls in one block if alone).
    raw: the raw stubs (parse timed apart); second: stubs of another channel for the lists.
    Returns per kind: client ms, server ms, before-handler ms (client send → unikd's t0),
    after-handler ms (unikd's reply → client has it) and parse ms."""
    rnd = random.Random(1)
    mk = requests(u, pods, rnd)
    order = [k for k in KINDS for _ in range(calls)] if alone else [k for _ in range(calls) for k in KINDS]
    res = {k: {"client": [], "parse": [], "t_send": [], "t_recv": [], "wait": []} for k in KINDS}
    pc, rt = time.perf_counter_ns, time.time_ns
    for k in KINDS:  # warm-up
        fn, req = mk[k]()
        for _ in range(20):
            fn(req)
    rd = None
    if rundelay:
        rd = B.RunQueueWait(u.pid, lambda: [mk[k]()[0](mk[k]()[1]) for _ in range(20) for k in KINDS])
    u.new_rpc_times()
    if gc_off:
        gc.collect()
        gc.disable()
    try:
        for k in order:
            fn, req = mk[k]()
            if second is not None and k.startswith("List"):
                fn = second[k]
            w0 = rd.read() if rd else None
            if raw is not None:
                rfn, resp_t = raw[k]
                ts, t0 = rt(), pc()
                data = rfn(req)
                t1, tr = pc(), rt()
                resp_t.FromString(data)
                res[k]["parse"].append((pc() - t1) / 1e6)
            else:
                ts, t0 = rt(), pc()
                fn(req)
                t1, tr = pc(), rt()
            res[k]["client"].append((t1 - t0) / 1e6)
            if rd:
                w1 = rd.read()
                res[k]["wait"].append((w1[0] - w0[0], w1[1] - w0[1]))
            res[k]["t_send"].append(ts)
            res[k]["t_recv"].append(tr)
    finally:
        gc.enable()
        if rd:
            rd.close()
    if not server:
        return {k: {"client": summary(res[k]["client"])} for k in KINDS}
    srv = B.server_times_in_order(u.new_rpc_times(), order)
    out = {}
    for k in KINDS:
        r = res[k]
        s = srv.get(k) or []
        before = [(end - ms * 1e6 - ts) / 1e6 for (ms, end), ts in zip(s, r["t_send"])]
        after = [(tr - end) / 1e6 for (ms, end), tr in zip(s, r["t_recv"])]
        out[k] = {"client": summary(r["client"]), "server": summary([ms for ms, _ in s]),
                  "before_handler": summary(before), "after_handler": summary(after),
                  "parse": summary(r["parse"]) if r["parse"] else None,
                  "worst": sorted(zip(r["client"], [ms for ms, _ in s], before, after, *zip(*r["wait"]))
                                  if r["wait"] else zip(r["client"], [ms for ms, _ in s], before, after),
                                  reverse=True)[:4]}
        if r["wait"]:
            # Calls over 1 ms: how much of their time both sides spent waiting for a CPU.
            slow = [(c, w) for c, w in zip(r["client"], r["wait"]) if c > 1]
            out[k]["slow_calls"] = {"n": len(slow), "client_ms": sum(c for c, _ in slow),
                                    "client_runq_ms": sum(w[0] for _, w in slow),
                                    "unikd_runq_ms": sum(w[1] for _, w in slow)}
    return out


def after_list(u, pods, calls):
    """What follows a big list: ContainerStatus right after ListContainers, or after a 5 ms
    gap; and the CPU unikd's threads burn once the list's reply is in the client's hands."""
    pb, rs = u.pb, u.rs
    tids = os.listdir(f"/proc/{u.pid}/task")
    fds = [os.open(f"/proc/{u.pid}/task/{t}/schedstat", os.O_RDONLY | os.O_CLOEXEC) for t in tids]
    cpu = lambda: sum(int(os.pread(fd, 128, 0).split()[0]) for fd in fds) / 1e6  # noqa: E731
    rnd = random.Random(2)
    out = {"right_after": [], "after_gap": [], "unikd_cpu_after_reply_ms": [], "list_bytes": {}}
    for k in ("ListContainers", "ListPodSandbox"):
        req = getattr(pb, f"{k}Request")()
        raw = u.channel.unary_unary(f"/runtime.v1.RuntimeService/{k}", request_serializer=type(req).SerializeToString,
                                    response_deserializer=None)
        out["list_bytes"][k] = len(raw(req))
        # Python's parse of the same list grown to 1000 items (copies of these), with no pods.
        resp_t = getattr(pb, f"{k}Response")
        big = resp_t.FromString(raw(req))
        items = big.containers if k == "ListContainers" else big.items
        one = list(items)
        while len(items) < 1000:
            items.add().CopyFrom(one[len(items) % len(one)])
        data = big.SerializeToString()
        xs = []
        for _ in range(50):
            t = time.perf_counter_ns()
            resp_t.FromString(data)
            xs.append((time.perf_counter_ns() - t) / 1e6)
        out[f"parse_1000_{k}_ms"] = xs
        out["list_bytes"][f"{k} at 1000"] = len(data)
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            rs.ListContainers(pb.ListContainersRequest())
            c0 = cpu()
            if i % 2:
                time.sleep(0.005)
                out["unikd_cpu_after_reply_ms"].append(cpu() - c0)
            req = pb.ContainerStatusRequest(container_id=rnd.choice(pods)[1])
            t = time.perf_counter_ns()
            rs.ContainerStatus(req)
            out["after_gap" if i % 2 else "right_after"].append((time.perf_counter_ns() - t) / 1e6)
    finally:
        gc.enable()
        for fd in fds:
            os.close(fd)
    return {"list_bytes": out["list_bytes"], **{k: summary(v) for k, v in out.items() if k != "list_bytes"}}


def show(name, out):
    print(f"\n{name}")
    print(f"  {'':18} {'client p50/p99':>16} {'unikd p50/p99':>15} {'before p50/p99':>16} {'after p50/p99':>15} "
          f"{'parse p50/p99':>15}")
    f = lambda s: f"{s['median']:.3f}/{s['p99']:.3f}" if s and s.get("n") else "-"  # noqa: E731
    for k, v in out.items():
        print(f"  {k:18} {f(v['client']):>16} {f(v['server']):>15} {f(v['before_handler']):>16} "
              f"{f(v['after_handler']):>15} {f(v['parse']):>15}")
        if v.get("slow_calls"):
            print(f"  {'':18} calls over 1 ms: {v['slow_calls']}")
        print(f"  {'':18} worst (client, unikd, before, after[, client runq, unikd runq]): "
              + "; ".join(", ".join(f"{x:.2f}" for x in w) for w in v["worst"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=40)
    ap.add_argument("--calls", type=int, default=300, help="rounds of the four calls per experiment")
    ap.add_argument("--json", default="/tmp/density_probe.json")
    a = ap.parse_args()
    if a.pods > 100:
        sys.exit("probe: at most 100 pods (a small run)")
    import grpc
    results = {"pods": a.pods, "calls": a.calls}
    with B.Scratch() as scratch:
        B.stubs(scratch)
        ns = scratch.netns("p")
        u = B.Unikd(scratch, "probe", ns, network="bridge", log_level=None)  # the file's level, live
        u.import_image("hello:1", "--kernel", str(B.HELLO))
        u.start()
        u.set_log_level("debug")
        pods = []
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            for sid, cid, *_ in ex.map(lambda i: CB.start_pod(u, f"p-{i}", ["idle"], 16,
                                                              annotations={"unikd.io/pit": "off"}), range(a.pods)):
                pods.append((sid, cid))
        log(f"{len(pods)} pods running")
        time.sleep(3)
        ch2 = grpc.insecure_channel(f"unix://{u.sock}")
        second = {"ListPodSandbox": u.g.RuntimeServiceStub(ch2).ListPodSandbox,
                  "ListContainers": u.g.RuntimeServiceStub(ch2).ListContainers}
        exps = [("as before: interleaved, GC on", dict(gc_off=False)),
                ("interleaved, GC off", dict()),
                ("interleaved, GC off, responses parsed apart", dict(raw=raw_stubs(u, u.channel))),
                ("each kind alone, GC off", dict(alone=True)),
                ("interleaved, GC off, the lists on a second channel", dict(second=second)),
                ("interleaved, GC off, run-queue waits read per call", dict(rundelay=True))]
        for name, kw in exps:
            out = run(u, pods, a.calls, **kw)
            show(name, out)
            results[name] = out
        al = after_list(u, pods, a.calls)
        results["after a list"] = al
        print("\nContainerStatus right after ListContainers, or after a 5 ms gap (ms p50/p99); unikd CPU in the gap")
        for k in ("right_after", "after_gap", "unikd_cpu_after_reply_ms"):
            print(f"  {k:26} {al[k]['median']:.3f}/{al[k]['p99']:.3f} (mean {al[k]['mean']:.3f})")
        print(f"  response bytes: {al['list_bytes']}")
        for k in ("ListContainers", "ListPodSandbox"):
            v = al[f"parse_1000_{k}_ms"]
            print(f"  Python parse of a {k} response of 1000 items: {v['median']:.3f}/{v['p99']:.3f} ms")
        u.set_log_level("info")
        out = run(u, pods, a.calls, server=False)
        print("\ninterleaved, GC off, unikd at log level info (client only)")
        for k, v in out.items():
            print(f"  {k:18} {v['client']['median']:.3f}/{v['client']['p99']:.3f}")
        results["log level info"] = out
        ch2.close()
        u.stop()
    B.dump_json(a.json, results)
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
