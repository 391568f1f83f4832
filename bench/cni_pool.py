"""Section 9 of bench/cri_bench.py: the warm pool in CNI mode. A CNI pod's guest must carry
the MAC the plugins gave its eth0, so a pool VM there starts without a NIC and the claim plugs
one in (docs/architecture.md, "The warm pool"). Measured with a real third-party guest that
needs its NIC (Solo5's test_net, on pc): RunPodSandbox → first console line in the CRI log,
cold (a unikd in CNI mode without a pool) against warm (one with a pool), both against a bare
QEMU launch of the same binary, alternating runs, one accelerator on every side."""
import json
import subprocess

import benchlib as B
from benchlib import mono_ns, summary, ratio

SOLO5_NET = B.REPO.parent / "shared" / "unikernels" / "solo5-0.12.1" / "test_net.virtio"
CNI_BIN = "/usr/lib/cni"
MEMORY_MIB = 64


def conflist(scratch, name, subnet):
    """bridge + host-local (a dataDir of the run's own) + loopback, in a directory of its own."""
    d = scratch.root / f"{name}-net.d"
    d.mkdir()
    net = {"cniVersion": "1.0.0", "name": f"{scratch.tag}-{name}", "plugins": [
        {"type": "bridge", "bridge": f"{name[:4]}{scratch.tag[-6:]}", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "dataDir": str(scratch.root / f"{name}-ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "loopback"}]}
    (d / "10-bench.conflist").write_text(json.dumps(net))
    return d


def cni_unikd(scratch, name, subnet, accel, extra=()):
    d = conflist(scratch, name, subnet)
    u = B.Unikd(scratch, name, scratch.netns(name), network="cni", log_level="info", accel=accel,
                extra=["--cni-conf-dir", str(d), "--cni-bin-dirs", CNI_BIN, *extra])
    u.import_image("solo5-net:1", "--kernel", str(SOLO5_NET))
    u.start()
    return u


def pod_start(u, label, n):
    """RunPodSandbox → CreateContainer → StartContainer → the guest's first line; then the pod
    is removed (not timed). Returns the times and whether the VM came from the pool."""
    name, times = f"{label}-{n}", {}
    sid, cid, t0, t3, lw = B.start_pod(u, name, [], MEMORY_MIB, watch=True, image="solo5-net:1", needle=b"",
                                       times=times)
    try:
        t4, _ = lw.wait(60)
        rec = json.loads((u.state / "containers" / f"{cid}.json").read_text())
    finally:
        lw.close()
        B.remove_pod(u, sid)
    return {"total_ms": (t4 - t0) / 1e6, "after_add_ms": (t4 - times["run"]) / 1e6,
            "rpc_run_ms": (times["run"] - t0) / 1e6, "rpc_start_ms": (t3 - times["create"]) / 1e6,
            "pooled": bool(rec.get("pool_vm"))}


def bare(tag, accel, n):
    """The same binary under a bare QEMU (pc, SeaBIOS, no NIC): launch → first line, then ended."""
    cmd = [B.QEMU, "-name", f"{tag}-cnibare-{n}", "-machine", "pc", "-accel", accel, "-m", str(MEMORY_MIB),
           "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-device",
           "isa-debug-exit,iobase=0x501,iosize=2", "-no-reboot", "-kernel", str(SOLO5_NET)]
    t0 = mono_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = p.stdout.readline()
        t1 = mono_ns()
        if not line:
            raise RuntimeError("bare QEMU printed nothing")
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    return {"total_ms": (t1 - t0) / 1e6}


def section_cni_pool(ctx, scratch, accel, alternate, xr):
    a, T, res = ctx.args, ctx.table, ctx.results
    if not SOLO5_NET.is_file():
        raise RuntimeError(f"section 9 needs the third-party Solo5 guest: {SOLO5_NET} is missing")
    ctx.log(f"9. warm pool in CNI mode: {a.runs} alternating runs of Solo5 test_net, bare QEMU, cold and pooled")
    uc = cni_unikd(scratch, "cnicold", "10.231.0.0/24", accel)
    uw = cni_unikd(scratch, "cnipool", "10.232.0.0/24", accel,
                   ["--pool-size", "1", "--pool-idle-timeout", "0"])
    count = {"bare": 0, "cold": 0, "pooled": 0}
    try:
        pod_start(uw, "teach", 0)  # a cold start teaches the pool its key

        def run(kind):
            count[kind] += 1
            if kind == "bare":
                return bare(scratch.tag, accel, count[kind])
            if kind == "cold":
                return pod_start(uc, "cold", count[kind])
            B.wait_pool_ready(uw, count[kind])  # the previous claim's replacement, outside the timed part
            return pod_start(uw, "pooled", count[kind])
        raw = alternate({k: (lambda k=k: run(k)) for k in count}, a.runs, "CNI warm start", True)
    finally:
        uc.stop()
        uw.stop()
    not_pooled = sum(1 for r in raw["pooled"] if not r["pooled"])
    s = {k: summary([r["total_ms"] for r in v]) for k, v in raw.items()}
    # The plugins' ADD is the network's work, the same cold or warm, and the bare launch has
    # no network: what the pool can shorten starts once RunPodSandbox has answered.
    after = {k: summary([r["after_add_ms"] for r in raw[k]]) for k in ("cold", "pooled")}
    T.section(f"9. Warm pool in CNI mode (Solo5 test_net on pc, its NIC plugged at the claim; bridge + "
              f"host-local; {ctx.accel.upper()} on every side, {MEMORY_MIB} MiB; {a.runs} alternating runs; ms)")
    T.row("bare qemu pc, no NIC: launch → first line", s["bare"], "1.00x bare")
    T.row("unikd CNI, cold: RunPodSandbox → line in CRI log", s["cold"],
          f"{xr(s['cold']['median'], s['bare']['median'])} bare")
    T.row("unikd CNI, from the pool: RunPodSandbox → line in CRI log", s["pooled"],
          f"{xr(s['pooled']['median'], s['bare']['median'])} bare, "
          f"{xr(s['cold']['median'], s['pooled']['median'])} faster than cold"
          + (f"; {not_pooled} runs were not pooled" if not_pooled else ""))
    T.row("unikd CNI, cold: RunPodSandbox returned → line (the ADD done)", after["cold"],
          f"{xr(after['cold']['median'], s['bare']['median'])} bare")
    T.row("unikd CNI, from the pool: RunPodSandbox returned → line", after["pooled"],
          f"{xr(after['pooled']['median'], s['bare']['median'])} bare (target < 1.00x)")
    T.row("  RunPodSandbox (client, the plugins' ADD), cold", summary([r["rpc_run_ms"] for r in raw["cold"]]))
    T.row("  StartContainer (client), cold", summary([r["rpc_start_ms"] for r in raw["cold"]]))
    T.row("  StartContainer (client), from the pool", summary([r["rpc_start_ms"] for r in raw["pooled"]]))
    res["cni_pool"] = {"summary": s, "after_add": after,
                       "ratio_pooled_after_add_bare_p50": ratio(after["pooled"]["median"], s["bare"]["median"]),
                       "ratio_pooled_bare_p50": ratio(s["pooled"]["median"], s["bare"]["median"]),
                       "ratio_cold_pooled_p50": ratio(s["cold"]["median"], s["pooled"]["median"]),
                       "not_pooled": not_pooled, "raw": raw}
