#!/usr/bin/python3
"""unikd's benchmarks (`make bench`): pod start, pod start with networking, stop and remove,
concurrency, density and idle cost, CRI call overhead, CRI latency under load (cri_load.py),
the warm pool, and the warm pool in CNI mode (cni_pool.py).
Each comparison runs side by side in
this one invocation, alternating runs, and the result is one table on stdout and
bench/results/<YYYY-MM-DD>.json. docs/performance.md explains every figure.

usage: bench/cri_bench.py [--runs N] [--net-runs N] [--poweroff-runs N] [--concurrency N]
                          [--density N] [--overhead-calls N] [--load-seconds S] [--accel auto|kvm|tcg]
                          [--with-libvirt|--without-libvirt] [--sections 1,2,3,4,5,6,7,8,9] [--quick]
                          [--json PATH]
Run as root (network namespaces, taps, cgroups), after `make` (release build in bin/).
Every VM of every section runs under one accelerator, KVM where /dev/kvm opens and TCG
otherwise (--accel to choose), except section 2's Linux guest, which is TCG on both sides."""
import argparse
import concurrent.futures
import datetime
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import cni_pool  # noqa: E402
import cri_load  # noqa: E402
from benchlib import mono_ns, summary, ratio  # noqa: E402

ANN_TCG = {"unikd.io/accel": "tcg"}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def ms(a, b):
    return (b - a) / 1e6 if a is not None and b is not None else None


# ====================================================================== drivers

class UnikdDriver:
    """One pod at a time through the CRI, timed from the client, with the phases from
    unikd's debug log and vmwrapper's exit.json."""

    def __init__(self, u, label):
        self.u = u
        self.label = label
        self.n = 0

    def _new_pod(self, annotations=None):
        self.n += 1
        name = f"{self.label}-{self.n}"
        (self.u.logs / name / "c").mkdir(parents=True)
        return name, self.u.pod_config(name, annotations=annotations)

    def _remove(self, sid, cid, rec):
        """StopContainer(0) + RemoveContainer + StopPodSandbox + RemovePodSandbox, each timed;
        exit.json is read between the stop and the remove (outside the timed calls)."""
        pb, rs = self.u.pb, self.u.rs
        _, rec["rpc_stop_ms"] = B.timed(rs.StopContainer, pb.StopContainerRequest(container_id=cid, timeout=0))
        try:
            rec["exit"] = json.loads((self.u.vm_dir(cid) / "exit.json").read_text())
        except (OSError, ValueError):
            rec["exit"] = None
        _, rec["rpc_remove_ms"] = B.timed(rs.RemoveContainer, pb.RemoveContainerRequest(container_id=cid))
        _, rec["rpc_stoppod_ms"] = B.timed(rs.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        _, rec["rpc_rmpod_ms"] = B.timed(rs.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        rec["stop_remove_ms"] = rec["rpc_stop_ms"] + rec["rpc_remove_ms"] + rec["rpc_stoppod_ms"] + \
            rec["rpc_rmpod_ms"]

    def _cleanup_pod(self, sid):
        pb, rs = self.u.pb, self.u.rs
        try:
            rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
            rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        except Exception:
            pass

    def hello(self):
        """RunPodSandbox → CreateContainer → StartContainer → first line in the CRI log."""
        u, pb, rs = self.u, self.u.pb, self.u.rs
        name, cfg = self._new_pod()
        ccfg = u.container_config(["idle"], memory_mib=64)
        lw = B.LineWatch(u.log_path(name), cri=True)
        off = B.realtime_to_mono_offset()
        u.new_rpc_times()
        sid = None
        try:
            t0 = mono_ns()
            sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
            t1 = mono_ns()
            cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                               sandbox_config=cfg)).container_id
            t2 = mono_ns()
            rs.StartContainer(pb.StartContainerRequest(container_id=cid))
            t3 = mono_ns()
            t4, line = lw.wait(30)
            accel = json.loads((u.vm_dir(cid) / "vmwrapper.json").read_text()).get("accel")
        except BaseException:
            if sid:
                self._cleanup_pod(sid)
            raise
        finally:
            lw.close()
        rec = {"t_run": ms(t0, t1), "t_create": ms(t0, t2), "t_start": ms(t0, t3), "total_ms": ms(t0, t4),
               "rpc_run_ms": ms(t0, t1), "rpc_create_ms": ms(t1, t2), "rpc_start_ms": ms(t2, t3), "accel": accel}
        rts = B.cri_record_realtime_ns(line)
        rec["t_record"] = ms(t0, rts - off) if rts else None
        self._remove(sid, cid, rec)
        server = {}
        for method, v, ts in u.new_rpc_times():
            if method not in server:
                server[method] = v
                if method == "StartContainer":
                    rec["t_start_handled"] = ms(t0, ts - off)
        rec["server_ms"] = server
        ex = rec.get("exit") or {}
        tm = ex.get("timing") or {}
        if ex.get("started_ns") and tm.get("fork_ms") is not None:
            vmw0 = ex["started_ns"] - off - int(tm["fork_ms"] * 1e6)  # vmwrapper's exec, monotonic
            rec["t_vmwrapper"] = ms(t0, vmw0)
            rec["t_qemu_fork"] = rec["t_vmwrapper"] + tm["fork_ms"]
            rec["t_qmp_ready"] = rec["t_vmwrapper"] + tm["qemu_ready_ms"] if tm.get("qemu_ready_ms", -1) >= 0 else None
            rec["t_first_output"] = rec["t_vmwrapper"] + tm["first_output_ms"] \
                if tm.get("first_output_ms", -1) >= 0 else None
            rec["vmwrapper_max_rss_kb"] = (ex.get("resources") or {}).get("max_rss_kb")
        return rec

    def poweroff(self):
        """A guest that powers itself off 300 ms after boot, while StopContainer waits with a
        grace period: how soon after the guest's poweroff the call returns (EXITED)."""
        u, pb, rs = self.u, self.u.pb, self.u.rs
        name, cfg = self._new_pod()
        ccfg = u.container_config(["sleep:300", "print:bye", "poweroff"], memory_mib=64)
        lw = B.LineWatch(u.log_path(name), cri=True)
        off = B.realtime_to_mono_offset()
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        try:
            cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                               sandbox_config=cfg)).container_id
            rs.StartContainer(pb.StartContainerRequest(container_id=cid))
            lw.wait(30)
            t0 = mono_ns()
            rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10))
            t1 = mono_ns()
            lw.needle = b"bye"
            _, line = lw.wait(5)
            st = rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
            bye = B.cri_record_realtime_ns(line) - off
            rec = {"stop_call_ms": ms(t0, t1), "poweroff_to_exited_ms": ms(bye, t1),
                   "state": pb.ContainerState.Name(st.state), "exit_code": st.exit_code, "reason": st.reason}
            if st.state != pb.CONTAINER_EXITED or st.exit_code != 0 or st.reason != "Completed":
                raise RuntimeError(f"poweroff guest ended as {rec}")
            return rec
        finally:
            lw.close()
            self._cleanup_pod(sid)

    def netguest(self, static, pinger):
        """A pod with networking, the Linux netguest (TCG): RunPodSandbox → … → first ICMP
        echo reply from the pod's address."""
        u, pb, rs = self.u, self.u.pb, self.u.rs
        name, cfg = self._new_pod(annotations=ANN_TCG)
        # Kernel words the netguest reads from /proc/cmdline: for a Linux guest, envs (args
        # would be init's command).
        envs = {"static_ip": "{{ip}}/{{prefix}}", "static_gw": "{{gateway}}"} if static else {}
        ccfg = u.container_config([], memory_mib=256, envs=envs)
        ccfg.image.image = "netguest:1"
        t0 = mono_ns()
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        try:
            t1 = mono_ns()
            cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                               sandbox_config=cfg)).container_id
            rs.StartContainer(pb.StartContainerRequest(container_id=cid))
            t3 = mono_ns()
            ip = rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
            t4, sent = pinger.wait_reply(ip, 60)
            return {"total_ms": ms(t0, t4), "t_run": ms(t0, t1), "t_start": ms(t0, t3), "echo_requests": sent,
                    "ip": ip}
        finally:
            self._cleanup_pod(sid)


class BareDriver:
    def __init__(self, tag, accel):
        self.tag = tag
        self.accel = accel
        self.n = 0

    def cmd(self, append, memory=64):
        self.n += 1
        return [B.QEMU, "-name", f"{self.tag}-bare-{self.n}", "-machine", "microvm", "-accel", self.accel, "-m",
                str(memory), "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-device",
                "isa-debug-exit", "-no-reboot", "-kernel", str(B.HELLO), "-append", append]

    def hello(self):
        """Launch → first line on QEMU's stdout (a pipe), then SIGTERM → reaped."""
        cmd = self.cmd("idle")
        t0 = mono_ns()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            line = p.stdout.readline()
            t1 = mono_ns()
            if not line.startswith(B.FIRST_LINE):
                raise RuntimeError(f"bare QEMU printed {line!r}")
            s0 = mono_ns()
            p.terminate()
            p.wait()
            s1 = mono_ns()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        return {"total_ms": ms(t0, t1), "stop_remove_ms": ms(s0, s1)}

    def poweroff(self):
        """The same guest: from reading its last line to QEMU's exit, as its parent sees it."""
        p = subprocess.Popen(self.cmd("sleep:300 print:bye poweroff"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            p.stdout.readline()
            line = p.stdout.readline()
            t0 = mono_ns()
            if not line.startswith(b"bye"):
                raise RuntimeError(f"bare QEMU printed {line!r}")
            rc = p.wait()
            t1 = mono_ns()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        return {"poweroff_to_exited_ms": ms(t0, t1), "qemu_status": rc}


class BareNetDriver:
    """The netguest on bare QEMU (TCG) with a tap on a bridge of the run's own (10.99.0.1/24)
    in the same namespace as unikd's, static address 10.99.0.2: launch → first echo reply."""

    def __init__(self, tag, ns, scratch, cmdline):
        self.tag, self.ns, self.cmdline = tag, ns, cmdline
        self.out = scratch.root / "bare-net-console.log"
        self.n = 0
        for c in (["ip", "link", "add", "ukbbr0", "type", "bridge"],
                  ["ip", "addr", "add", "10.99.0.1/24", "dev", "ukbbr0"],
                  ["ip", "link", "set", "ukbbr0", "up"],
                  ["ip", "tuntap", "add", "dev", "ukbtap0", "mode", "tap"],
                  ["ip", "link", "set", "ukbtap0", "master", "ukbbr0"],
                  ["ip", "link", "set", "ukbtap0", "up"]):
            B.nsexec(ns, *c)
        B.fast_neigh(ns, "ukbbr0")

    def run(self, pinger):
        self.n += 1
        B.nsexec(self.ns, "ip", "neigh", "flush", "dev", "ukbbr0", check=False)
        cmd = ["nsenter", f"--net=/run/netns/{self.ns}", B.QEMU, "-name", f"{self.tag}-barenet-{self.n}",
               "-machine", "microvm", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config", "-display",
               "none", "-serial", "stdio", "-no-reboot", "-kernel", str(B.NETGUEST / "vmlinuz"), "-initrd",
               str(B.NETGUEST / "initrd.cpio.gz"), "-append",
               f"{self.cmdline} static_ip=10.99.0.2/24 static_gw=10.99.0.1",
               "-netdev", "tap,id=n0,ifname=ukbtap0,script=no,downscript=no",
               "-device", "virtio-net-device,netdev=n0,mac=02:00:00:00:99:02"]
        out = open(self.out, "ab")
        t0 = mono_ns()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        try:
            t1, sent = pinger.wait_reply("10.99.0.2", 60)
        finally:
            p.kill()
            p.wait()
        return {"total_ms": ms(t0, t1), "echo_requests": sent}


class LibvirtDriver:
    def __init__(self, lv, tag, accel):
        self.lv, self.tag, self.accel = lv, tag, accel
        self.n = 0

    def hello(self):
        """`virsh create` → first line in the console file; then `virsh destroy`."""
        self.n += 1
        name = f"{self.tag}-lv-{self.n}"
        console = self.lv.consoles / f"{name}.log"
        xml = self.lv.dir / f"{name}.xml"
        xml.write_text(self.lv.domain_xml(name, "idle", console, self.accel))
        lw = B.LineWatch(console)
        try:
            t0 = mono_ns()
            self.lv.virsh("create", xml)
            t1 = mono_ns()
            t2, _ = lw.wait(60)
        finally:
            lw.close()
        s0 = mono_ns()
        self.lv.virsh("destroy", name)
        s1 = mono_ns()
        return {"total_ms": ms(t0, t2), "virsh_create_ms": ms(t0, t1), "stop_remove_ms": ms(s0, s1)}


def alternate(drivers, runs, what, progress):
    """Run each driver `runs` times, rotating the order every round so none is always first."""
    names = list(drivers)
    out = {k: [] for k in names}
    for i in range(runs):
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            out[k].append(drivers[k]())
        if progress and (i + 1) % max(1, runs // 5) == 0:
            log(f"{what}: {i + 1}/{runs}")
    return out


# ====================================================================== the table

class Table:
    def __init__(self):
        self.lines = []

    def section(self, title):
        self.lines.append(("section", title))

    def row(self, label, s, note="", unit=""):
        self.lines.append(("row", label, s, note, unit))

    def text(self, label, value):
        self.lines.append(("text", label, value))

    def render(self):
        def f(x):
            if x is None:
                return "-"
            return f"{x:.1f}" if abs(x) < 10000 else f"{x:.0f}"
        w = 64
        out = [f"{'':{w}} {'n':>5} {'p50':>9} {'p90':>9} {'p99':>9}  notes"]
        for ln in self.lines:
            if ln[0] == "section":
                out.append("")
                out.append(ln[1])
            elif ln[0] == "row":
                _, label, s, note, unit = ln
                lab = f"  {label}" + (f" ({unit})" if unit else "")
                out.append(f"{lab:{w}} {s['n']:>5} {f(s['median']):>9} {f(s['p90']):>9} {f(s['p99']):>9}  {note}")
            else:
                out.append(f"  {ln[1]:{w - 2}} {ln[2]}")
        return "\n".join(out)


def xr(a, b, fmt="{:.2f}x"):
    r = ratio(a, b)
    return fmt.format(r) if r is not None else "-"


# ====================================================================== sections

def section_start_stop(ctx):
    """1 and 3: pod start to the first line, stop and remove, and the poweroff stop."""
    a, T, res = ctx.args, ctx.table, ctx.results
    drivers = {"bare": ctx.bare.hello, "unikd": ctx.ud_bridge.hello, "unikd_nonet": ctx.ud_none.hello}
    if ctx.lv:
        drivers["libvirt"] = ctx.lvd.hello
    log(f"1. pod start: {len(drivers)} variants, {a.runs} alternating runs each (+1 warm-up)")
    for d in drivers.values():  # warm-up: page cache, libvirt's first domain
        d()
    raw = alternate(drivers, a.runs, "pod start", True)
    ran = {r["accel"] for k in ("unikd", "unikd_nonet") for r in raw[k]}
    if ran != {ctx.accel}:  # vmwrapper.json says what QEMU was given
        raise RuntimeError(f"unikd's VMs ran on {sorted(ran)}, the comparison is under {ctx.accel}")
    s = {k: summary([r["total_ms"] for r in v]) for k, v in raw.items()}
    bare50 = s["bare"]["median"]
    T.section(f"1. Pod start to the guest's first line (hello guest, {ctx.accel.upper()} on every side, 64 MiB; "
              f"{a.runs} alternating runs; ms)")
    T.row("bare qemu microvm: launch → first line (stdout pipe)", s["bare"], "1.00x bare")
    T.row("unikd, bridge network: RunPodSandbox → line in CRI log", s["unikd"],
          f"{xr(s['unikd']['median'], bare50)} bare (target ≤ 1.25x)")
    T.row("unikd, --network none: the same", s["unikd_nonet"], f"{xr(s['unikd_nonet']['median'], bare50)} bare")
    if "libvirt" in s:
        T.row("libvirt: virsh create → line in console file", s["libvirt"],
              f"{xr(s['libvirt']['median'], bare50)} bare; unikd {xr(s['libvirt']['median'], s['unikd']['median'])}"
              f" faster (target ≥ 5x)")
        T.row("  of which virsh create returned", summary([r["virsh_create_ms"] for r in raw["libvirt"]]), "")
    else:
        T.text("libvirt: virsh create → first line", f"skipped: {ctx.lv_why}")
    # Phases of unikd (bridge): points on the timeline from RunPodSandbox sent.
    U = raw["unikd"]
    pts = [("RunPodSandbox returned", "t_run"), ("CreateContainer returned", "t_create"),
           ("vmwrapper exec'd (exit.json started_ns − fork_ms)", "t_vmwrapper"),
           ("QEMU forked (vmwrapper fork_ms)", "t_qemu_fork"), ("QEMU's QMP ready (qemu_ready_ms)", "t_qmp_ready"),
           ("StartContainer's handler done (unikd's log line)", "t_start_handled"),
           ("StartContainer returned (RUNNING)", "t_start"),
           ("first console output read by vmwrapper (first_output_ms)", "t_first_output"),
           ("CRI record's timestamp", "t_record"), ("client saw the line (inotify)", "total_ms")]
    T.section("   unikd (bridge) timeline: ms since RunPodSandbox was sent")
    phase = {}
    for label, k in pts:
        phase[k] = summary([r.get(k) for r in U])
        T.row(label, phase[k])
    durs = {
        "RunPodSandbox (client)": [r["rpc_run_ms"] for r in U],
        "  RunPodSandbox in unikd (debug log: rpc=… ms=…)": [r["server_ms"].get("RunPodSandbox") for r in U],
        "CreateContainer (client)": [r["rpc_create_ms"] for r in U],
        "  CreateContainer in unikd": [r["server_ms"].get("CreateContainer") for r in U],
        "StartContainer (client)": [r["rpc_start_ms"] for r in U],
        "  StartContainer in unikd": [r["server_ms"].get("StartContainer") for r in U],
        "  sent → vmwrapper exec'd (tap, cgroup, spec, fork, record)":
            [r.get("t_vmwrapper") - r["t_create"] if r.get("t_vmwrapper") is not None else None for r in U],
        "  vmwrapper exec'd → QEMU forked": [r.get("t_qemu_fork") - r["t_vmwrapper"]
                                            if r.get("t_vmwrapper") is not None else None for r in U],
        "  QEMU forked → QMP ready": [r["t_qmp_ready"] - r["t_qemu_fork"] if r.get("t_qmp_ready") else None
                                      for r in U],
        "  QMP ready → handler done (sync pipe, record)": [r["t_start_handled"] - r["t_qmp_ready"]
                                                          if r.get("t_qmp_ready") and r.get("t_start_handled")
                                                          else None for r in U],
        "  handler done → client has the reply": [r["t_start"] - r["t_start_handled"] if r.get("t_start_handled")
                                                  else None for r in U],
        "QEMU forked → first console output (QEMU + guest boot)":
            [r["t_first_output"] - r["t_qemu_fork"] if r.get("t_first_output") else None for r in U],
        "first console output → client saw it": [r["total_ms"] - r["t_first_output"] if r.get("t_first_output")
                                                 else None for r in U],
    }
    T.section("   unikd (bridge) phases: durations (ms)")
    dsum = {}
    for label, xs in durs.items():
        dsum[label] = summary(xs)
        T.row(label, dsum[label])
    res["pod_start"] = {"summary": s, "timeline": phase, "phases": dsum, "raw": raw,
                        "ratio_unikd_bare_p50": ratio(s["unikd"]["median"], bare50),
                        "ratio_libvirt_unikd_p50": ratio(s["libvirt"]["median"], s["unikd"]["median"])
                        if "libvirt" in s else None}

    # 3. stop and remove
    T.section("3. Stop and remove (ms): the VMs of section 1, right after their first line")
    st = {}
    st["unikd"] = summary([r["stop_remove_ms"] for r in raw["unikd"]])
    T.row("unikd (bridge): StopContainer(0)+RemoveContainer+StopPodSandbox+RemovePodSandbox", st["unikd"],
          "target p50 < 100")
    for k, lab in (("rpc_stop_ms", "StopContainer(0)"), ("rpc_remove_ms", "RemoveContainer"),
                   ("rpc_stoppod_ms", "StopPodSandbox"), ("rpc_rmpod_ms", "RemovePodSandbox")):
        st[k] = summary([r[k] for r in raw["unikd"]])
        T.row(f"  {lab}", st[k])
    st["unikd_nonet"] = summary([r["stop_remove_ms"] for r in raw["unikd_nonet"]])
    T.row("unikd, --network none: the same four calls", st["unikd_nonet"])
    st["unikd_nonet_stoppod"] = summary([r["rpc_stoppod_ms"] for r in raw["unikd_nonet"]])
    T.row("  StopPodSandbox (no network)", st["unikd_nonet_stoppod"])
    st["bare"] = summary([r["stop_remove_ms"] for r in raw["bare"]])
    T.row("bare qemu: SIGTERM → reaped", st["bare"])
    if "libvirt" in raw:
        st["libvirt"] = summary([r["stop_remove_ms"] for r in raw["libvirt"]])
        T.row("libvirt: virsh destroy", st["libvirt"],
              f"unikd {xr(st['libvirt']['median'], st['unikd']['median'])} faster")
    else:
        T.text("libvirt: virsh destroy", f"skipped: {ctx.lv_why}")
    res["stop_remove"] = st

    log(f"3. poweroff stop: {a.poweroff_runs} alternating runs")
    pw = alternate({"unikd": ctx.ud_bridge.poweroff, "unikd_nonet": ctx.ud_none.poweroff,
                    "bare": ctx.bare.poweroff}, a.poweroff_runs, "poweroff", False)
    ps = {"unikd_poweroff_to_exited": summary([r["poweroff_to_exited_ms"] for r in pw["unikd"]]),
          "unikd_nonet_poweroff_to_exited": summary([r["poweroff_to_exited_ms"] for r in pw["unikd_nonet"]]),
          "unikd_stop_call": summary([r["stop_call_ms"] for r in pw["unikd"]]),
          "bare_poweroff_to_exited": summary([r["poweroff_to_exited_ms"] for r in pw["bare"]])}
    T.section(f"   StopContainer(timeout=10) on a guest that powers off by itself "
              f"(sleep:300 print:bye poweroff; {a.poweroff_runs} runs; ms)")
    T.row("unikd (bridge): guest's last line → StopContainer returned, EXITED 0", ps["unikd_poweroff_to_exited"],
          f"{xr(ps['unikd_poweroff_to_exited']['median'], ps['bare_poweroff_to_exited']['median'])} bare")
    T.row("unikd, --network none: the same (no tap to tear down)", ps["unikd_nonet_poweroff_to_exited"],
          f"{xr(ps['unikd_nonet_poweroff_to_exited']['median'], ps['bare_poweroff_to_exited']['median'])} bare")
    T.row("unikd: whole StopContainer call (includes the guest's 300 ms)", ps["unikd_stop_call"])
    T.row("bare qemu: last line read → QEMU reaped", ps["bare_poweroff_to_exited"])
    res["poweroff_stop"] = {"summary": ps, "raw": pw}


def section_network(ctx):
    a, T, res = ctx.args, ctx.table, ctx.results
    if not (B.NETGUEST / "vmlinuz").exists():
        T.section("2. Pod start with networking")
        T.text("skipped", f"{B.NETGUEST} is not built (make netguest)")
        res["network"] = {"skipped": "netguest not built", "accel": "tcg"}
        return
    pinger = B.Pinger(ctx.ns_a)
    try:
        bn = BareNetDriver(ctx.scratch.tag, ctx.ns_a, ctx.scratch, ctx.netguest_cmdline)
        drivers = {"bare_static": lambda: bn.run(pinger),
                   "unikd_static": lambda: ctx.ud_bridge.netguest(True, pinger),
                   "unikd_dhcp": lambda: ctx.ud_bridge.netguest(False, pinger)}
        log(f"2. pod start with networking: 3 variants, {a.net_runs} alternating runs each (TCG, ~2 s a boot)")
        for d in drivers.values():
            d()
        raw = alternate(drivers, a.net_runs, "network", True)
    finally:
        pinger.close()
    s = {k: summary([r["total_ms"] for r in v]) for k, v in raw.items()}
    b = s["bare_static"]["median"]
    T.section(f"2. Pod start with networking to the first ICMP echo reply from the pod's address "
              f"(Linux netguest, TCG, 256 MiB; {a.net_runs} runs; ms)")
    if ctx.accel != "tcg":
        T.text(f"TCG on every side, not {ctx.accel.upper()}", "a Linux guest does not boot on every nested KVM "
               "(kvm-pvm); this section compares under TCG on any host")
    T.row("bare qemu + tap on a bridge, static address: launch → reply", s["bare_static"], "1.00x bare")
    T.row("unikd, static address ({{ip}} template): RunPodSandbox → reply", s["unikd_static"],
          f"{xr(s['unikd_static']['median'], b)} bare")
    T.row("unikd, DHCP from unikd's dnsmasq: RunPodSandbox → reply", s["unikd_dhcp"],
          f"{xr(s['unikd_dhcp']['median'], b)} bare")
    T.row("  unikd static: StartContainer returned", summary([r["t_start"] for r in raw["unikd_static"]]))
    res["network"] = {"accel": "tcg", "summary": s, "raw": raw,
                      "ratio_static_p50": ratio(s["unikd_static"]["median"], b),
                      "ratio_dhcp_p50": ratio(s["unikd_dhcp"]["median"], b)}


def section_concurrency(ctx):
    a, T, res, u = ctx.args, ctx.table, ctx.results, ctx.ud_info
    n = a.concurrency
    log(f"4. concurrency: {n} pods at once, then {n} bare QEMUs at once")
    t_go, recs = burst(u, n, ["idle"], 64, "cc")
    ok = [r for r in recs if "error" not in r]
    errors = [r["error"] for r in recs if "error" in r]
    running = sum(1 for c in u.rs.ListContainers(u.pb.ListContainersRequest()).containers
                  if c.state == u.pb.CONTAINER_RUNNING)
    all_running = ms(t_go, max(r["t_running"] for r in ok)) if ok else None
    all_lines = ms(t_go, max(r["t_line"] for r in ok)) if ok else None
    per_running = summary([ms(r["t_sent"], r["t_running"]) for r in ok])
    per_line = summary([ms(r["t_sent"], r["t_line"]) for r in ok])
    # Remove them all at once too.
    t0 = mono_ns()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda r: B.remove_pod(u, r["sid"]), ok))
    t_rm = ms(t0, mono_ns())

    # Bare QEMU, the same number launched at once.
    bare = ctx.bare
    b_recs = [None] * n
    barrier2 = threading.Barrier(n + 1)
    procs = []
    lock = threading.Lock()

    def bone(i):
        cmd = bare.cmd("idle")
        barrier2.wait()
        t0 = mono_ns()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with lock:
            procs.append(p)
        line = p.stdout.readline()
        b_recs[i] = {"t0": t0, "t_line": mono_ns(), "ok": line.startswith(B.FIRST_LINE)}

    b_go = together(n, bone, barrier2)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
        p.stdout.close()
    b_all = ms(b_go, max(r["t_line"] for r in b_recs))
    b_per = summary([ms(r["t0"], r["t_line"]) for r in b_recs])

    T.section(f"4. Concurrency: {n} pods requested at once (hello guest, {ctx.accel.upper()} on both sides, "
              f"64 MiB; ms)")
    T.text("unikd: all RUNNING (last StartContainer returned)",
           f"{all_running:.0f} ms; {len(ok)}/{n} started, {running} listed RUNNING"
           + (f"; errors: {errors[:2]}" if errors else ""))
    T.text("unikd: all first lines in the CRI logs", f"{all_lines:.0f} ms")
    T.text(f"bare qemu: {n} launched at once, all first lines", f"{b_all:.0f} ms "
           f"(unikd {xr(all_lines, b_all)})")
    T.row("unikd, one pod: RunPodSandbox → RUNNING, during the burst", per_running)
    T.row("unikd, one pod: RunPodSandbox → first line, during the burst", per_line,
          f"{xr(per_line['median'], b_per['median'])} bare")
    T.row("bare qemu, one VM: launch → first line, during the burst", b_per)
    T.text(f"unikd: {len(ok)} pods stopped and removed, 16 at a time", f"{t_rm:.0f} ms")
    res["concurrency"] = {"n": n, "started": len(ok), "listed_running": running, "errors": errors,
                          "all_running_ms": all_running, "all_first_lines_ms": all_lines,
                          "pod_to_running": per_running, "pod_to_first_line": per_line,
                          "bare_all_first_lines_ms": b_all, "bare_vm_to_first_line": b_per,
                          "remove_all_ms": t_rm}


def together(n, fn, barrier):
    """fn(0..n-1) on n threads that wait on barrier (of n + 1), released at once; returns the
    release's time once all are done."""
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t_go = mono_ns()
    for t in threads:
        t.join()
    return t_go


def burst(u, n, args, memory_mib, prefix):
    """n pods requested at once, released by one barrier: (the release's time, one record per
    pod: sid, t_sent, t_running, t_line; or error)."""
    barrier = threading.Barrier(n + 1)
    recs = [None] * n

    def one(i):
        barrier.wait()
        try:
            sid, _, t0, t1, lw = B.start_pod(u, f"{prefix}-{i}", args, memory_mib, watch=True)
            try:
                t2, _ = lw.wait(300)
            finally:
                lw.close()
            recs[i] = {"sid": sid, "t_sent": t0, "t_running": t1, "t_line": t2}
        except Exception as e:
            recs[i] = {"error": str(e)}

    return together(n, one, barrier), recs


def burst_lines(u, n, args, memory_mib, prefix):
    """burst(), all of which must start: (all first lines ms, per-pod first-line summary, sids)."""
    t_go, recs = burst(u, n, args, memory_mib, prefix)
    errors = [r["error"] for r in recs if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} pods failed: {errors[:2]}")
    return ms(t_go, max(r["t_line"] for r in recs)), summary([ms(r["t_sent"], r["t_line"]) for r in recs]), \
        [r["sid"] for r in recs]


def section_pool(ctx, scratch, accel):
    """8. The warm pool: a pod started from a paused pool VM against a bare QEMU launch of the
    same guest, one at a time; then a burst of replicas from the pool against cold ones."""
    a, T, res = ctx.args, ctx.table, ctx.results
    n = a.pool_burst
    log(f"8. warm pool: {a.runs} alternating runs against bare QEMU, then {n} pods from the pool at once "
        f"against {n} cold ones")
    up = B.Unikd(scratch, "pool", scratch.netns("p"), network="bridge", log_level="debug", accel=accel,
                 extra=["--pool-size", "1", "--pool-idle-timeout", "0"])
    up.import_image("hello:1", "--kernel", str(B.HELLO))
    up.start()
    drv = UnikdDriver(up, "p")
    try:
        drv.hello()  # a cold start teaches the pool its key
        claims = [0]

        def pooled():
            B.wait_pool_ready(up, drv.n)  # the previous claim's replacement, outside the timed part
            r = drv.hello()
            got = up.logfile.read_text().count("container started from the pool")
            r["pooled"] = got > claims[0]
            claims[0] = got
            return r
        raw = alternate({"bare": ctx.bare.hello, "pooled": pooled}, a.runs, "warm start", True)
    finally:
        up.stop()
    not_pooled = sum(1 for r in raw["pooled"] if not r["pooled"])
    s = {k: summary([r["total_ms"] for r in v]) for k, v in raw.items()}
    T.section(f"8. Warm start from the pool (hello guest, {ctx.accel.upper()} on both sides, 64 MiB; "
              f"{a.runs} alternating runs; ms)")
    T.row("bare qemu microvm: launch → first line", s["bare"], "1.00x bare")
    T.row("unikd from the pool: RunPodSandbox → line in CRI log", s["pooled"],
          f"{xr(s['pooled']['median'], s['bare']['median'])} bare (target < 1.00x)"
          + (f"; {not_pooled} runs were not pooled" if not_pooled else ""))
    T.row("  StartContainer (client), from the pool", summary([r["rpc_start_ms"] for r in raw["pooled"]]))
    out = {"summary": s, "ratio_pooled_bare_p50": ratio(s["pooled"]["median"], s["bare"]["median"]),
           "not_pooled": not_pooled, "raw": raw}

    # The burst: the same number of replicas, cold (a key the pool does not hold) and warm.
    ub = B.Unikd(scratch, "poolburst", scratch.netns("q"), network="bridge", log_level="info", accel=accel,
                 extra=["--pool-size", str(n), "--pool-total", str(n), "--pool-memory", str(n * (16 + 64)),
                        "--pool-starting", "2", "--pool-idle-timeout", "0"])
    ub.import_image("hello:1", "--kernel", str(B.HELLO))
    ub.start()
    try:
        sid, _, _, _, _ = B.start_pod(ub, "teach", ["idle"], 16)
        B.remove_pod(ub, sid)
        t0 = mono_ns()
        B.wait_pool_ready(ub, n, timeout_s=600)
        fill_ms = ms(t0, mono_ns())
        cold_all, cold_one, sids = burst_lines(ub, n, ["idle", "cold"], 16, "cold")
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda x: B.remove_pod(ub, x), sids))
        warm_all, warm_one, sids = burst_lines(ub, n, ["idle"], 16, "warm")
        pooled = ub.logfile.read_text().count("container started from the pool")
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda x: B.remove_pod(ub, x), sids))
    finally:
        ub.stop()
    T.section(f"   {n} replicas at once (16 MiB): from the pool against cold (ms)")
    T.text(f"pool filled with {n} VMs (in the background, before the burst)", f"{fill_ms:.0f} ms")
    T.text(f"cold: {n} pods requested at once, all first lines", f"{cold_all:.0f} ms")
    T.text(f"pool: {n} pods requested at once, all first lines", f"{warm_all:.0f} ms "
           f"({xr(cold_all, warm_all)} faster; {pooled}/{n} from the pool)")
    T.row("cold, one pod: RunPodSandbox → first line, during the burst", cold_one)
    T.row("pool, one pod: RunPodSandbox → first line, during the burst", warm_one,
          f"{xr(cold_one['median'], warm_one['median'])} faster than cold")
    out["burst"] = {"n": n, "fill_ms": fill_ms, "cold_all_first_lines_ms": cold_all, "cold_pod": cold_one,
                    "pool_all_first_lines_ms": warm_all, "pool_pod": warm_one, "pooled": pooled}
    res["pool"] = out


def overhead_server_side(ctx, n=1000):
    """The same three calls on the debug-level unikd of sections 1-3, whose log has each call's
    time inside unikd (rpc=… ms=…): what of the client's figure is unikd's."""
    u = ctx.ud_bridge.u
    pb, rs = u.pb, u.rs
    sid, cid, _, _, _ = B.start_pod(u, "ovh-srv", ["idle"], 32)
    try:
        u.new_rpc_times()
        calls = [(rs.Version, pb.VersionRequest()), (rs.ListPodSandbox, pb.ListPodSandboxRequest()),
                 (rs.ContainerStatus, pb.ContainerStatusRequest(container_id=cid))]
        for _ in range(n):
            for fn, req in calls:
                fn(req)
        srv = {}
        for method, v, _ in u.new_rpc_times():
            srv.setdefault(method, []).append(v * 1000)
        ctx.server_overhead = {k: summary(srv.get(k, [])) for k in ("Version", "ListPodSandbox", "ContainerStatus")}
    finally:
        B.remove_pod(u, sid)


def section_overhead(ctx):
    a, T, res, u = ctx.args, ctx.table, ctx.results, ctx.ud_info
    pb, rs = u.pb, u.rs
    n = a.overhead_calls
    log(f"6. CRI call overhead: {n} calls each of Version, ListPodSandbox, ContainerStatus")
    sid, cid, _, _, _ = B.start_pod(u, "ovh", ["idle"], 32)
    try:
        calls = {"Version": (rs.Version, pb.VersionRequest()),
                 "ListPodSandbox": (rs.ListPodSandbox, pb.ListPodSandboxRequest()),
                 "ContainerStatus": (rs.ContainerStatus, pb.ContainerStatusRequest(container_id=cid))}
        for fn, req in calls.values():  # warm-up
            for _ in range(200):
                fn(req)
        lat = {k: [] for k in calls}
        pc = time.perf_counter_ns
        # Interleaved, so the three see the same machine.
        for _ in range(n):
            for k, (fn, req) in calls.items():
                t0 = pc()
                fn(req)
                lat[k].append((pc() - t0) / 1000)
        # The Python client's own floor: the same loop with an empty unary call would need a
        # server; instead, the cost of building and serialising each request is shown.
    finally:
        B.remove_pod(u, sid)
    T.section(f"6. CRI call overhead: {n} calls each, one persistent channel, Python grpcio client, "
              f"1 pod (µs)")
    s = {}
    for k, xs in lat.items():
        s[k] = summary(xs)
        T.row(f"{k}, client round trip", s[k], f"max {s[k]['max']:.0f}")
    srv = getattr(ctx, "server_overhead", None)
    if srv:
        for k, v in srv.items():
            T.row(f"  {k} inside unikd (debug log; {v['n']}-call sample)", v)
    res["overhead"] = {"calls": n, "summary_us": s, "server_side_us": srv}


def proc_tasks_stats(pid):
    """(sum of schedstat ns on CPU, voluntary+involuntary context switches) over a process's
    threads: finer than the 10 ms ticks of /proc/<pid>/stat."""
    ns = sw = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    ns += int(f.read().split()[0])
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            sw += int(line.split()[1])
            except OSError:
                pass
    except OSError:
        return None
    return ns, sw


def cpu_sample(pids):
    out = {}
    for p in pids:
        t = B.proc_cpu_ticks(p)
        s = proc_tasks_stats(p)
        if t is not None and s is not None:
            out[p] = (t, s[0], s[1])
    return out


def cpu_delta(before, after):
    ticks = ns = sw = 0
    n = 0
    for p, (t0, n0, s0) in before.items():
        if p in after:
            t1, n1, s1 = after[p]
            ticks += t1 - t0
            ns += n1 - n0
            sw += s1 - s0
            n += 1
    return {"processes": n, "cpu_ticks": ticks, "cpu_ms_ticks": ticks * 1000 / B.CLK_TCK, "cpu_ms_schedstat": ns / 1e6,
            "context_switches": sw}


LAT_KINDS = ("ListPodSandbox", "ListContainers", "ContainerStatus", "PodSandboxStatus")


def density_latency(u, pods, rounds):
    """Kubelet's mix at full density, interleaved as it calls them, one call at a time: per kind
    the client's round trip (response parsed and freed, as a client must), the time inside
    unikd (its debug log, on for these calls only: from the call's arrival to its reply), and
    for the slowest tenth of the calls how long the client's thread and unikd's serving
    threads waited for a CPU. Python's collector is off while timing (its pauses are the
    client's, not unikd's); the channel and unikd's threads are warmed up first."""
    pb, rs = u.pb, u.rs
    ids = [p[1] for p in pods]
    rnd = random.Random(1)

    def request(k):
        if k == "ListPodSandbox":
            return rs.ListPodSandbox, pb.ListPodSandboxRequest()
        if k == "ListContainers":
            return rs.ListContainers, pb.ListContainersRequest()
        if k == "ContainerStatus":
            return rs.ContainerStatus, pb.ContainerStatusRequest(container_id=rnd.choice(ids))
        return rs.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id=rnd.choice(pods)[0])

    order = [k for _ in range(rounds) for k in LAT_KINDS]
    calls = [(k, *request(k)) for k in order]  # built beforehand, untimed
    client = {k: [] for k in LAT_KINDS}
    waits = {k: [] for k in LAT_KINDS}
    pc = time.perf_counter_ns
    u.set_log_level("debug")
    try:
        for k in LAT_KINDS * 20:  # warm-up
            fn, req = request(k)
            fn(req)
        rq = B.RunQueueWait(u.pid, lambda: [fn(req) for fn, req in map(request, LAT_KINDS * 5)])
        serving = len(rq.fds)
        u.new_rpc_times()
        gc.collect()
        gc.disable()
        try:
            for k, fn, req in calls:
                w0 = rq.read()
                t = pc()
                fn(req)
                t1 = pc()
                w1 = rq.read()
                client[k].append((t1 - t) / 1e6)
                waits[k].append((w1[0] - w0[0], w1[1] - w0[1]))
        finally:
            gc.enable()
            rq.close()
        try:
            server, server_error = B.server_times_in_order(u.new_rpc_times(), order), None
        except RuntimeError as e:  # the client's figures stand without them
            server, server_error = None, str(e)
        # The Python client's share: parsing (and freeing) one response, its bytes fetched apart.
        parse = {}
        for k in LAT_KINDS:
            fn, req = request(k)
            data = u.channel.unary_unary(f"/runtime.v1.RuntimeService/{k}", response_deserializer=None,
                                         request_serializer=type(req).SerializeToString)(req)
            resp_t = getattr(pb, f"{k}Response")
            xs = []
            for _ in range(50):
                t = pc()
                resp_t.FromString(data)
                xs.append((pc() - t) / 1e6)
            parse[k] = summary(xs)
    finally:
        u.set_log_level("info")
    tail = {}
    for k in LAT_KINDS:
        c = client[k]
        med, p90 = summary(c)["median"], summary(c)["p90"]
        # Waits over a typical call's (most calls wait a little: a wake-up is a trip through the run queue).
        w_med = [summary([w[i] for w in waits[k]])["median"] for i in (0, 1)]
        slow = [(x, w) for x, w in zip(c, waits[k]) if x > p90]
        tail[k] = {"calls": len(slow), "over_median_ms": sum(x - med for x, _ in slow),
                   "client_runq_over_median_ms": sum(w[0] - w_med[0] for _, w in slow),
                   "unikd_runq_over_median_ms": sum(w[1] - w_med[1] for _, w in slow)}
    return {"latency_ms": {k: summary(v) for k, v in client.items()},
            "latency_server_ms": {k: summary([v for v, _ in server[k]]) for k in LAT_KINDS} if server else None,
            "latency_server_error": server_error, "latency_tail": tail, "parse_ms": parse, "serving_threads": serving}


def section_density(ctx):
    """5. Density, on a unikd of its own whose log level is in its config file: info while it
    fills up and idles, debug (each call's time inside unikd) for the timed calls only."""
    u = B.Unikd(ctx.scratch, "density", ctx.scratch.netns("e"), network="bridge", log_level=None, accel=ctx.accel)
    u.import_image("hello:1", "--kernel", str(B.HELLO))
    u.start()
    try:
        density(ctx, u)
    finally:
        u.stop()


def density(ctx, u):
    a, T, res = ctx.args, ctx.table, ctx.results
    pb, rs = u.pb, u.rs
    target = a.density
    log(f"5. density: up to {target} idle pods ({a.density_memory} MiB each, unikd.io/pit: {a.density_pit}), "
        f"{a.density_parallel} starts at a time")
    mem0 = B.meminfo_kb()
    reserve_kb = a.reserve_gib * 1024 * 1024
    pods = []
    stop_reason = None
    lock = threading.Lock()
    t_start = mono_ns()
    deadline = time.monotonic() + a.density_timeout
    stop_flag = threading.Event()

    def one(i):
        if stop_flag.is_set():
            return
        if B.meminfo_kb()["MemAvailable"] < reserve_kb:
            stop_flag.set()
            raise RuntimeError(f"MemAvailable fell under the reserve of {a.reserve_gib} GiB")
        if time.monotonic() > deadline:
            stop_flag.set()
            raise RuntimeError(f"the density phase's time limit ({a.density_timeout} s) ran out")
        ann = {"unikd.io/pit": a.density_pit} if a.density_pit != "auto" else None
        sid, cid, t0, t1, _ = B.start_pod(u, f"d-{i}", ["idle"], a.density_memory, annotations=ann)
        with lock:
            pods.append((sid, cid, ms(t0, t1)))
            if len(pods) % 100 == 0:
                log(f"5. density: {len(pods)} pods running")

    with concurrent.futures.ThreadPoolExecutor(a.density_parallel) as ex:
        futs = [ex.submit(one, i) for i in range(target)]
        for f in futs:
            try:
                f.result()
            except Exception as e:
                if not stop_flag.is_set():
                    stop_flag.set()
                if stop_reason is None:
                    stop_reason = str(e).strip().split("\n")[0][:300]
    t_all = ms(t_start, mono_ns())
    held = len(pods)
    log(f"5. density: {held} pods running after {t_all / 1000:.1f} s" + (f" (stopped: {stop_reason})"
                                                                       if stop_reason else ""))
    r = {"target": target, "held": held, "stopped_because": stop_reason, "start_all_ms": t_all,
         "memory_mib": a.density_memory, "pod_start_ms": summary([p[2] for p in pods])}
    try:
        time.sleep(a.settle)  # let the last guests reach their idle loop
        listed = sum(1 for c in rs.ListContainers(pb.ListContainersRequest()).containers
                     if c.state == pb.CONTAINER_RUNNING)
        r["listed_running"] = listed
        wrappers = B.pids_tagged(str(u.root), "vmwrapper")
        qemus = B.pids_tagged(str(u.root), "qemu-system-x86")
        r["vmwrappers"], r["qemus"] = len(wrappers), len(qemus)
        # CPU while everything idles.
        th0 = B.thread_switches(u.pid)
        before = {"unikd": cpu_sample([u.pid]), "vmwrapper": cpu_sample(wrappers), "qemu": cpu_sample(qemus)}
        t0 = time.monotonic()
        time.sleep(a.idle_seconds)
        after = {"unikd": cpu_sample([u.pid]), "vmwrapper": cpu_sample(wrappers), "qemu": cpu_sample(qemus)}
        th1 = B.thread_switches(u.pid)
        r["unikd_thread_wakeups"] = {f"{th1[t][0]} ({t})": th1[t][1] - th0[t][1] for t in th1
                                     if t in th0 and th1[t][1] != th0[t][1]}
        window = time.monotonic() - t0
        r["idle_window_s"] = window
        r["idle_cpu"] = {k: cpu_delta(before[k], after[k]) for k in before}
        # Memory.
        r["unikd_rss_kb"] = B.proc_status_kb(u.pid, "VmRSS")
        r["unikd_hwm_kb"] = B.proc_status_kb(u.pid, "VmHWM")
        r["unikd_smaps"] = B.smaps_rollup_kb(u.pid)
        r["unikd_threads"] = B.proc_status_kb(u.pid, "Threads")
        try:
            r["unikd_fds"] = len(os.listdir(f"/proc/{u.pid}/fd"))
        except OSError:
            pass
        w_rss = [B.proc_status_kb(p, "VmRSS") for p in wrappers]
        w_pss = [(B.smaps_rollup_kb(p) or {}).get("Pss") for p in wrappers]
        q_rss = [B.proc_status_kb(p, "VmRSS") for p in qemus]
        q_pss = [(B.smaps_rollup_kb(p) or {}).get("Pss") for p in qemus]
        r["vmwrapper_rss_kb"] = summary(w_rss)
        r["vmwrapper_pss_kb"] = summary(w_pss)
        r["qemu_rss_kb"] = summary(q_rss)
        r["qemu_pss_kb"] = summary(q_pss)
        one_w = wrappers[0] if wrappers else None
        r["one_vmwrapper_smaps"] = B.smaps_rollup_kb(one_w) if one_w else None
        r["one_vmwrapper_rss_by_mapping_kb"] = B.smaps_by_mapping_kb(one_w) if one_w else None
        r["unikd_rss_by_mapping_kb"] = (B.smaps_by_mapping_kb(u.pid) or [])[:12]
        tot_pss = sum(x for x in w_pss + q_pss if x)
        r["pss_total_kb"] = tot_pss
        r["pss_per_pod_kb"] = tot_pss / held if held else None
        mem1 = B.meminfo_kb()
        r["memavailable_drop_per_pod_kb"] = (mem0["MemAvailable"] - mem1["MemAvailable"]) / held if held else None
        # List and status latency at this count, once the machine is quiet: the pods are idle,
        # but the kernel may still be busy after starting them (write-back, cgroup and RCU work).
        waited, busy = B.wait_quiet()
        r["quiet_wait_s"], r["busy_before_calls"] = waited, busy
        r["loadavg_before_calls"] = os.getloadavg()
        c0 = B.cpu_times()
        r.update(density_latency(u, pods, a.list_calls))
        r["busy_during_calls"] = B.busy_between(c0, B.cpu_times())
    finally:
        log(f"5. density: removing {held} pods")
        t0 = mono_ns()
        with concurrent.futures.ThreadPoolExecutor(a.density_parallel) as ex:
            list(ex.map(lambda p: B.remove_pod(u, p[0]), pods))
        r["remove_all_ms"] = ms(t0, mono_ns())
    res["density"] = r

    T.section(f"5. Density: {held} idle pods held (target {target}; hello `idle`, {ctx.accel.upper()}, "
              f"{a.density_memory} MiB guests, unikd.io/pit: {a.density_pit}; a unikd of its own)")
    if stop_reason:
        T.text("stopped before the target because", stop_reason)
    if not held:
        return
    T.text("started in", f"{t_all / 1000:.1f} s, {a.density_parallel} at a time; {r.get('listed_running')} listed "
           f"RUNNING")
    T.row("one pod: RunPodSandbox → RUNNING while filling up", r["pod_start_ms"], unit="ms")
    mib = lambda kb: kb / 1024 if kb is not None else None  # noqa: E731
    T.text("unikd RSS", f"{mib(r['unikd_rss_kb']):.1f} MiB (peak {mib(r['unikd_hwm_kb']):.1f} MiB; Pss "
           f"{mib((r['unikd_smaps'] or {}).get('Pss')):.1f} MiB, Private_Dirty "
           f"{mib((r['unikd_smaps'] or {}).get('Private_Dirty')):.1f} MiB; {r.get('unikd_threads')} threads; "
           f"target < 30)")
    # PSS is what a vmwrapper costs per pod: most of its RSS is glibc's text, shared by all.
    T.row("vmwrapper PSS (each; smaps_rollup)", {k: (v / 1024 if isinstance(v, (int, float)) and k != 'n' else v)
                                                for k, v in r["vmwrapper_pss_kb"].items()},
          "the per-pod cost", unit="MiB")
    sm = r.get("one_vmwrapper_smaps") or {}
    if sm:
        T.text("  one vmwrapper's smaps_rollup (kB)", ", ".join(f"{k} {sm[k]}" for k in (
            "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty", "Shared_Clean") if k in sm))
    T.row("vmwrapper RSS (each; information: it counts shared pages whole)",
          {k: (v / 1024 if isinstance(v, (int, float)) and k != 'n' else v)
           for k, v in r["vmwrapper_rss_kb"].items()}, unit="MiB")
    bm = r.get("one_vmwrapper_rss_by_mapping_kb") or []
    if bm:
        T.text("  one vmwrapper's RSS by mapping (kB rss/private)",
               ", ".join(f"{n} {rss}/{pv}" for n, rss, pv in bm[:7]))
    T.row("QEMU PSS (each)", {k: (v / 1024 if isinstance(v, (int, float)) and k != 'n' else v)
                              for k, v in r["qemu_pss_kb"].items()}, unit="MiB")
    T.text("memory per pod: PSS of vmwrapper + QEMU, summed / pods", f"{mib(r['pss_per_pod_kb']):.1f} MiB "
           f"(MemAvailable fell {mib(r['memavailable_drop_per_pod_kb']):.1f} MiB per pod)")
    ic = r["idle_cpu"]
    T.text(f"CPU while all idle, {window:.1f} s: unikd",
           f"{ic['unikd']['cpu_ticks']} ticks, {ic['unikd']['cpu_ms_schedstat']:.2f} ms on CPU, "
           f"{ic['unikd']['context_switches']} wake-ups")
    if r.get("unikd_thread_wakeups"):
        T.text("  unikd threads that woke", ", ".join(f"{k}: {v}" for k, v in r["unikd_thread_wakeups"].items()))
    T.text(f"CPU while all idle: {ic['vmwrapper']['processes']} vmwrappers together",
           f"{ic['vmwrapper']['cpu_ticks']} ticks, {ic['vmwrapper']['cpu_ms_schedstat']:.2f} ms on CPU, "
           f"{ic['vmwrapper']['context_switches']} wake-ups")
    qc = ic["qemu"]
    T.text(f"CPU while all idle: {qc['processes']} QEMUs together",
           f"{qc['cpu_ms_schedstat']:.0f} ms on CPU = {qc['cpu_ms_schedstat'] / window / 10:.1f}% of one core "
           f"({qc['cpu_ms_schedstat'] / window / max(qc['processes'], 1) / 10:.3f}% each), "
           f"{qc['context_switches']} wake-ups")
    la = r.get("loadavg_before_calls") or ()
    T.text(f"list/status calls at {held} pods", f"{a.list_calls} rounds of the four in kubelet's interleaved order, "
           f"one at a time, after a warm-up, Python's GC off; load average {' '.join(f'{x:.2f}' for x in la)}; "
           f"waited {r.get('quiet_wait_s', 0):.0f} s for the machine to be under 10% busy (last second "
           f"{100 * r.get('busy_before_calls', 0):.0f}%), {100 * r.get('busy_during_calls', 0):.0f}% busy during "
           f"the calls")
    for k, v in r["latency_ms"].items():
        T.row(f"{k} at {held} pods, client round trip (with parsing)", v, unit="ms")
        if r["latency_server_ms"]:
            sv = {q: (x * 1000 if isinstance(x, float) else x) for q, x in r["latency_server_ms"][k].items()}
            T.row("  inside unikd (its debug log: call arrived → reply)", sv, unit="µs")
        else:
            T.text("  inside unikd", f"not known: {r['latency_server_error']}")
        tl, pa = r["latency_tail"][k], r["parse_ms"][k]
        T.text("  slowest tenth: time over the median; CPU waits over a median call's",
               f"{tl['calls']} calls, {tl['over_median_ms']:.1f} ms; client thread "
               f"{tl['client_runq_over_median_ms']:.1f} ms, unikd's {r['serving_threads']} serving threads "
               f"{tl['unikd_runq_over_median_ms']:.1f} ms (summed)")
        T.text("  the Python client's parse of one response", f"{pa['median']:.3f} ms (p50)")
    T.text(f"all {held} removed, {a.density_parallel} at a time", f"{r['remove_all_ms'] / 1000:.1f} s")


def targets(ctx):
    T, res = ctx.table, ctx.results
    out = []

    def put(name, ok, figure):
        out.append({"target": name, "met": ok, "figure": figure})
        T.text(f"[{'met' if ok else 'NOT MET' if ok is not None else 'n/a'}] {name}", figure)

    T.section("Targets")
    ps = res.get("pod_start")
    if ps:
        r = ps["ratio_unikd_bare_p50"]
        put(f"pod start p50 ≤ 1.25x bare QEMU ({ctx.accel.upper()} on both sides)", r is not None and r <= 1.25,
            f"{ps['summary']['unikd']['median']:.1f} / {ps['summary']['bare']['median']:.1f} ms = {r:.2f}x")
        r2 = ps["ratio_libvirt_unikd_p50"]
        if r2 is not None:
            put("pod start ≥ 5x faster than libvirt", r2 >= 5,
                f"{ps['summary']['libvirt']['median']:.1f} / {ps['summary']['unikd']['median']:.1f} ms = {r2:.2f}x")
        else:
            put("pod start ≥ 5x faster than libvirt", None, f"libvirt skipped: {ctx.lv_why}")
    sr = res.get("stop_remove")
    if sr:
        put("stop+remove p50 < 100 ms", sr["unikd"]["median"] < 100, f"{sr['unikd']['median']:.1f} ms")
    d = res.get("density")
    if d and d.get("held") and d.get("unikd_rss_kb") is not None:
        rss = d["unikd_rss_kb"] / 1024
        put(f"unikd RSS < 40 MiB at 1000 pods (held {d['held']})",
            rss < 40 if d["held"] >= 1000 else (None if rss < 40 else False), f"{rss:.1f} MiB at {d['held']} pods")
        lat, srv = d.get("latency_ms") or {}, d.get("latency_server_ms") or {}
        bounds = (("ContainerStatus", 2), ("ListContainers", 10), ("ListPodSandbox", 5))
        for call, bound in bounds:
            if lat.get(call):
                p99 = lat[call]["p99"]
                put(f"{call} p99 < {bound} ms at 1000 pods, client round trip (held {d['held']})",
                    p99 < bound if d["held"] >= 1000 else (None if p99 < bound else False),
                    f"{p99:.1f} ms (p50 {lat[call]['median']:.1f}) at {d['held']} pods")
        if srv:
            info = f"the same calls' p99 inside unikd (its debug log) at {d['held']} pods"
            fig = ", ".join(f"{call} {srv[call]['p99']:.2f} ms" for call, _ in bounds if srv.get(call))
            out.append({"target": info, "met": None, "info": True, "figure": fig})
            T.text(f"[info] {info}", fig)
        wp, wr = d["vmwrapper_pss_kb"], d["vmwrapper_rss_kb"]
        info = "vmwrapper PSS per pod (no target; the RSS target is retired)"
        fig = f"{wp['median'] / 1024:.2f} MiB (median; max {wp['max'] / 1024:.2f}); RSS {wr['median'] / 1024:.2f} MiB"
        out.append({"target": info, "met": None, "info": True, "figure": fig})
        T.text(f"[info] {info}", fig)
        ic = d["idle_cpu"]
        z = ic["unikd"]["cpu_ticks"] == 0 and ic["vmwrapper"]["cpu_ticks"] == 0
        put("zero CPU from unikd and the vmwrappers while idle", z,
            f"unikd {ic['unikd']['cpu_ticks']} ticks ({ic['unikd']['cpu_ms_schedstat']:.2f} ms, "
            f"{ic['unikd']['context_switches']} wake-ups), vmwrappers {ic['vmwrapper']['cpu_ticks']} ticks "
            f"({ic['vmwrapper']['cpu_ms_schedstat']:.2f} ms, {ic['vmwrapper']['context_switches']} wake-ups) "
            f"in {d['idle_window_s']:.0f} s")
    pl = res.get("pool")
    if pl:
        r = pl["ratio_pooled_bare_p50"]
        put(f"warm start from the pool p50 < 1.00x bare QEMU ({ctx.accel.upper()} on both sides)",
            r is not None and r < 1.0 and not pl["not_pooled"],
            f"{pl['summary']['pooled']['median']:.1f} / {pl['summary']['bare']['median']:.1f} ms = {r:.2f}x")
    cp = res.get("cni_pool")
    if cp:
        r = cp["ratio_pooled_after_add_bare_p50"]
        put(f"warm start from the pool in CNI mode, after the plugins' ADD, p50 < 1.00x bare QEMU "
            f"({ctx.accel.upper()} on every side)", r is not None and r < 1.0 and not cp["not_pooled"],
            f"{cp['after_add']['pooled']['median']:.1f} / {cp['summary']['bare']['median']:.1f} ms = {r:.2f}x "
            f"(cold {cp['after_add']['cold']['median']:.1f} ms; with the ADD: pool "
            f"{cp['summary']['pooled']['median']:.1f}, cold {cp['summary']['cold']['median']:.1f} ms)")
    ld = res.get("load")
    if ld:
        p99 = {k: ld["summary_ms"]["load"][k]["p99"] for k in ("Version", "ListContainers")}
        put("Version and ListContainers p99 < 100 ms under load", all(v < 100 for v in p99.values()),
            ", ".join(f"{k} {v:.1f} ms" for k, v in p99.items()) + f" ({ld['accel']})")
    res["targets"] = out


# ====================================================================== main

class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="pod start / stop runs per variant (section 1, 3)")
    ap.add_argument("--net-runs", type=int, default=10, help="runs per variant with networking (section 2)")
    ap.add_argument("--poweroff-runs", type=int, default=15, help="poweroff stop runs (section 3)")
    ap.add_argument("--concurrency", type=int, default=50, help="pods requested at once (section 4)")
    ap.add_argument("--pool-burst", type=int, default=50, help="replicas at once from the pool and cold (section 8)")
    ap.add_argument("--density", type=int, default=1000, help="idle pods to hold (section 5)")
    ap.add_argument("--density-memory", type=int, default=16, help="MiB of guest memory per idle pod")
    ap.add_argument("--density-pit", choices=("auto", "on", "off"), default="off",
                    help="the idle pods' unikd.io/pit: off (default) keeps idle TCG guests from waking QEMU")
    ap.add_argument("--density-parallel", type=int, default=8, help="starts in flight while filling up")
    ap.add_argument("--density-timeout", type=int, default=600, help="seconds allowed for filling up")
    ap.add_argument("--reserve-gib", type=float, default=3.0, help="stop filling up when MemAvailable falls "
                    "under this")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds between the last start and measuring")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="the idle CPU window")
    ap.add_argument("--list-calls", type=int, default=200, help="list/status calls at full density")
    ap.add_argument("--overhead-calls", type=int, default=10000, help="calls of each kind (section 6)")
    ap.add_argument("--load-seconds", type=float, default=15.0, help="the window measured under load (section 7; "
                    "at most 16)")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help="the accelerator of every VM "
                    "(but section 2's, TCG): auto (default) is KVM where /dev/kvm opens, else TCG")
    ap.add_argument("--with-libvirt", action="store_true", help="install libvirt if missing and compare with it")
    ap.add_argument("--without-libvirt", action="store_true", help="skip libvirt even if it is installed")
    ap.add_argument("--sections", default="1,2,3,4,5,6,7,8,9", help="which sections to run (3 runs with 1)")
    ap.add_argument("--quick", action="store_true", help="small counts, for trying the harness")
    ap.add_argument("--json", default=None, help="default bench/results/<YYYY-MM-DD>.json")
    quick = {"runs": 5, "net_runs": 2, "poweroff_runs": 3, "concurrency": 10, "pool_burst": 10, "density": 30,
             "overhead_calls": 1000, "list_calls": 50, "idle_seconds": 5, "load_seconds": 8}
    full = {k: ap.get_default(k) for k in quick}
    ap.set_defaults(**{k: None for k in quick})
    a = ap.parse_args()
    for k in quick:  # --quick: small counts for the options not given explicitly
        if getattr(a, k) is None:
            setattr(a, k, quick[k] if a.quick else full[k])
    sections = {s.strip() for s in a.sections.split(",")}
    if "3" in sections:
        sections.add("1")
    if os.geteuid() != 0:
        sys.exit("bench: run as root (network namespaces, taps, cgroups)")
    for p in (B.BIN / "unikd", B.BIN / "vmwrapper", B.HELLO):
        if not p.exists():
            sys.exit(f"bench: {p} is missing: run make first")
    why_not_kvm = B.kvm_why_not()
    if a.accel == "kvm" and why_not_kvm:
        sys.exit(f"bench: --accel kvm, but {why_not_kvm}")
    accel = B.host_accel() if a.accel == "auto" else a.accel
    accel_why = "--accel " + a.accel if a.accel != "auto" else \
        ("/dev/kvm opens" if accel == "kvm" else f"no KVM ({why_not_kvm})")

    wall0 = time.monotonic()
    ctx = Ctx()
    ctx.args = a
    ctx.accel = accel
    ctx.log = log
    ctx.table = Table()
    ctx.results = {}
    ctx.lv = None
    ctx.lv_why = None
    if a.with_libvirt and not a.without_libvirt:
        import libvirt_host
        if libvirt_host.available():
            log("installing libvirt (scripts/install-bench-deps.sh --with-libvirt)")
            subprocess.run([str(B.REPO / "scripts/install-bench-deps.sh"), "--with-libvirt"], check=True)
    if a.without_libvirt:
        ctx.lv_why = "--without-libvirt"
    else:
        import libvirt_host
        ctx.lv_why = libvirt_host.available()

    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "accel": accel, "accel_why": accel_why,
           "host": B.host_facts(), "build": B.build_facts(), "args": vars(a)}
    with B.Scratch() as scratch:
        ctx.scratch = scratch
        log(f"scratch {scratch.root}, tag {scratch.tag}")
        B.stubs(scratch)
        ctx.bare = BareDriver(scratch.tag, accel)
        if sections & {"1", "2", "3"}:
            ctx.ns_a = scratch.netns("a")
            ctx.ns_b = scratch.netns("b")
            ub = B.Unikd(scratch, "bridge", ctx.ns_a, network="bridge", log_level="debug", accel=accel)
            un = B.Unikd(scratch, "nonet", ctx.ns_b, network="none", log_level="debug", accel=accel)
            for u in (ub, un):
                u.import_image("hello:1", "--kernel", str(B.HELLO))
            ctx.netguest_cmdline = None
            if (B.NETGUEST / "cmdline").exists():
                khz = 0
                for line in open("/proc/cpuinfo"):
                    if line.startswith("cpu MHz"):
                        khz = int(float(line.split(":")[1]) * 1000)
                        break
                ctx.netguest_cmdline = (B.NETGUEST / "cmdline").read_text().strip() + f" tsc_early_khz={khz}"
                ub.import_image("netguest:1", "--kernel", str(B.NETGUEST / "vmlinuz"), "--initrd",
                                str(B.NETGUEST / "initrd.cpio.gz"), "--cmdline", ctx.netguest_cmdline)
            ub.start()
            un.start()
            B.fast_neigh(ctx.ns_a, "unikd0")
            ctx.ud_bridge = UnikdDriver(ub, "b")
            ctx.ud_none = UnikdDriver(un, "n")
            if ctx.lv_why is None and "1" in sections:
                import libvirt_host
                log("starting a private libvirtd")
                try:
                    ctx.lv = libvirt_host.Libvirtd(scratch, ctx.ns_b).start()
                    ctx.lvd = LibvirtDriver(ctx.lv, scratch.tag, accel)
                    out["libvirt"] = ctx.lv.version()
                except Exception as e:
                    ctx.lv = None
                    ctx.lv_why = f"libvirtd did not start: {e}"
            if "1" in sections:
                section_start_stop(ctx)
            if "2" in sections:
                section_network(ctx)
            if "6" in sections:
                overhead_server_side(ctx)
            if ctx.lv:
                ctx.lv.stop()
            ub.stop()
            un.stop()
        if sections & {"4", "6"}:
            ns_c = scratch.netns("c")
            ui = B.Unikd(scratch, "info", ns_c, network="bridge", log_level="info", accel=accel)
            ui.import_image("hello:1", "--kernel", str(B.HELLO))
            ui.start()
            ctx.ud_info = ui
            if "6" in sections:
                section_overhead(ctx)
            if "4" in sections:
                section_concurrency(ctx)
            ui.stop()
        if "5" in sections:
            section_density(ctx)  # on a unikd of its own
        if "7" in sections:
            cri_load.section_load(ctx)
        if "8" in sections:
            section_pool(ctx, scratch, accel)
        if "9" in sections:
            cni_pool.section_cni_pool(ctx, scratch, accel, alternate, xr)
        targets(ctx)
    wall = time.monotonic() - wall0
    head = (f"unikd benchmarks {out['date']}: accelerator {accel.upper()} ({accel_why}; section 2 always TCG); "
            f"{out['host'].get('nproc')} CPUs, {out['host'].get('mem_total_gib')} GiB, "
            f"{out['host'].get('qemu', '')}; kernel {out['host'].get('kernel')}; load at start "
            f"{' '.join(out['host'].get('loadavg_at_start', []))}; wall time {wall:.0f} s\n"
            f"p50/p90/p99 are nearest-rank percentiles (with n < 100 the p99 is the largest sample); "
            f"ratios compare medians.")
    table = ctx.table.render()
    print(head)
    print(table)
    out["results"] = ctx.results
    out["wall_s"] = wall
    out["table"] = head + "\n" + table
    path = a.json or str(B.REPO / "bench/results" / f"{datetime.date.today().isoformat()}.json")
    B.dump_json(path, out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        sys.exit(f"bench: interrupted ({e}); everything the run made was removed")
