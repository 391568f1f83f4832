"""Fault tests (issue 7, section 6), all against real processes: unikd killed with SIGKILL at
random points of a loop of CRI calls and restarted, with what it lists checked against what
exists after every restart; vmwrapper killed; QEMU killed; a full state directory; corrupt
state files; a reboot.

The loop is seeded and prints its seed, so a failure can be replayed:
  UNIKD_FAULT_SEED=<seed>         the seed (default: a fresh one)
  UNIKD_FAULT_ITERATIONS=<n>      kill points to try (default 150, at least 100 in CI)
"""
import datetime
import json
import os
import random
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest

from conftest import wait_gone
from cri import Unikd, sh
from crilog import parse_cri_records
from test_exit_events import wait_record_exited
from conftest import FIRST_LINE, HELLO

ITERATIONS = int(os.environ.get("UNIKD_FAULT_ITERATIONS", "150"))
CG = Path("/sys/fs/cgroup")
TAP = re.compile(r"uk[0-9a-f]{12}")
BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ---- what exists, whatever unikd says ----

def argv_of(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def comm_of(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def vm_processes(u):
    """{container id: pid} of the vmwrapper processes serving u's VM directory, and of the
    QEMU processes booting from u's container directories."""
    vms = str(u.run / "vms") + "/"
    ctrs = str(u.state / "containers") + "/"
    found, qemus = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        pid = int(d.name)
        argv = argv_of(pid)
        if len(argv) > 2 and argv[1] == b"--spec" and argv[2].decode(errors="replace").startswith(vms):
            found[pid] = argv[2].decode()[len(vms):].split("/")[0]
        elif comm_of(pid).startswith("qemu-system"):
            # Its boot files are in the container's directory: -kernel <state>/containers/<id>.d/kernel
            for a in argv:
                m = re.search(re.escape(ctrs) + r"([0-9a-f]{64})\.d/", a.decode(errors="replace"))
                if m:
                    qemus[m.group(1)] = pid
    # A clone of a vmwrapper shows its argv (the sanitizer build's LeakSanitizer runs a
    # tracer at exit): the vmwrapper is the one whose parent is not one of them.
    wrappers = {cid: pid for pid, cid in found.items() if found.get(ppid_of(pid)) != cid}
    return wrappers, qemus


def ppid_of(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def cgroup_dirs(cid):
    """The VM's cgroup directories with the default parent (v1: one per hierarchy)."""
    return [p for p in list(CG.glob(f"*/unikd/unikd-{cid}")) + list(CG.glob(f"unikd/unikd-{cid}")) if p.is_dir()]


def names(d, pattern=None):
    try:
        return {p.name for p in Path(d).iterdir() if pattern is None or re.fullmatch(pattern, p.name)}
    except FileNotFoundError:
        return set()


def taps(u):
    out = u.netns_exec("ip", "-o", "link", "show").stdout
    return {m.group(0) for m in TAP.finditer(out)}


def hostport_elements(u):
    """{(proto, host port, pod address)} in unikd's nft hostPort maps."""
    r = u.netns_exec("nft", "-j", "list", "table", "ip", "unikd")
    if r.returncode != 0:
        return set()
    out = set()
    for item in json.loads(r.stdout)["nftables"]:
        m = item.get("map")
        if not m or not m["name"].startswith("hp_"):
            continue
        for key, val in m.get("elem", []):
            port = key if isinstance(key, int) else key["concat"][1]
            out.add((m["name"].split("_")[1], port, val["concat"][0]))
    return out


def ipam(u):
    d = u.state / "net" / "ipam"
    return {p.name: p.read_text().strip() for p in d.glob("[0-9]*")} if d.exists() else {}


def dnsmasq_dir(u):
    return u.run / "dnsmasq-unikd0"


def temp_files(u):
    dirs = [u.state / "sandboxes", u.state / "containers", u.state / "net" / "ipam"]
    return [str(p) for d in dirs if d.exists() for p in d.iterdir() if ".tmp." in p.name]


def lingering_temp_files(u, within=5):
    """Temp files that outlive a running unikd's write: its exit watcher records an exit at
    any moment (an event, not a CRI call), so a write may be under way during the scan."""
    found = temp_files(u)
    end = time.monotonic() + within
    while found and time.monotonic() < end:
        time.sleep(0.05)
        found = [f for f in found if os.path.exists(f)]
    return found


POD_PORTS = {}  # pod name -> [(proto, host port)], filled by the loop


def assert_no_leftovers(u, ctr_ids, networked=True):
    """Nothing of any pod is left: call once every pod is removed."""
    wrappers, qemus = vm_processes(u)
    assert wrappers == {} and qemus == {}, (wrappers, qemus)
    assert names(u.run / "vms") == set()
    assert names(u.state / "containers") - {"quarantine"} == set()
    assert names(u.state / "sandboxes") - {"quarantine"} == set()
    assert temp_files(u) == []
    assert ipam(u) == {}
    assert [c for c in ctr_ids if cgroup_dirs(c)] == []
    if networked:
        assert names(dnsmasq_dir(u) / "hosts.d") == set() and names(dnsmasq_dir(u) / "opts.d") == set()
        assert taps(u) == set()
        assert hostport_elements(u) == set()


def vmwrapper_json(u, cid):
    return json.loads((u.run / "vms" / cid / "vmwrapper.json").read_text())


def exit_recorded(u, cid, timeout=10):
    """True once ContainerStatus says EXITED (the exit watcher has seen vmwrapper end)."""
    end = time.monotonic() + timeout
    while True:
        if u.status(cid).status.state == u.pb.CONTAINER_EXITED:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def cri_ts(ts):
    """A CRI log timestamp (RFC 3339, 9 fractional digits, Z) in seconds since the epoch."""
    base, frac = ts[:-1].split(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp() + int(frac) / 1e9


# ---- the kill loop ----

STEPS = ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
         "StopPodSandbox", "RemovePodSandbox")
SLOTS = 4
TICK_MS = 60
CMDLINE_MAX = 4000  # unikd takes 4095 bytes


def ticker_lines(a):
    """The numbered lines ticker a prints, one every TICK_MS: as many as its command line holds."""
    out, size = [], len("exit:0")
    while size + len(f" print:t{a}.{len(out)} sleep:{TICK_MS}") <= CMDLINE_MAX:
        size += len(f" print:t{a}.{len(out)} sleep:{TICK_MS}")
        out.append(f"t{a}.{len(out)}")
    return out


def ticker_words(a):
    return [w for line in ticker_lines(a) for w in (f"print:{line}", f"sleep:{TICK_MS}")] + ["exit:0"]


class KillLoop:
    """Pods in a few named slots go through their life one CRI call at a time; each iteration
    runs the next calls of one slot and SIGKILLs unikd during one of them (at a random delay
    into it), restarts it and checks every invariant. A ticker pod prints numbered lines the
    whole time, and a doomed container ends while unikd is down."""

    def __init__(self, u, rng, networked, label):
        self.u, self.pb, self.rng, self.networked, self.label = u, u.pb, rng, networked, label
        self.tally = Counter()
        self.violations = []
        self.kills = Counter()      # step -> kill points tried
        self.in_flight = 0          # kills that landed while the call was running
        self.pods_seen, self.ctrs_seen = set(), set()
        self.stop_issued = set()    # container and pod ids a stop/remove was sent for
        # How long each call takes, learnt as the loop goes: the kill comes at a random
        # point within that, so most kills land inside a call.
        self.est = {s: 0.005 for s in STEPS}
        self.est["StartContainer"] = 0.05
        self.downtimes = []
        self.tickers = []           # (cid, attempt, log path)
        self.tick_attempt = 0
        self.doom_attempt = 0
        self.doomed_checked = self.doomed_while_down = 0
        self.it = -1

    # -- bookkeeping --
    def expect(self, name, ok, detail=""):
        self.tally[name] += 1
        if not ok:
            self.violations.append(f"[{self.label} iteration {self.it}] {name}: {detail}")
            # What unikd said about the objects concerned, for the report.
            ids = set(re.findall(r"\b[0-9a-f]{12}", str(detail)))
            lines = [l for l in self.u.log().splitlines() if any(i in l for i in ids)]
            self.violations[-1] += "".join("\n      | " + l for l in lines[-12:])

    def pod_cfg(self, name, ports=()):
        pb = self.pb
        pms = [pb.PortMapping(protocol=pb.TCP if proto == "tcp" else pb.UDP, container_port=80, host_port=port)
               for proto, port in ports]
        POD_PORTS[name] = list(ports)
        return self.u.pod_config(name=name, port_mappings=pms)

    def ctr_cfg(self, name, args, labels, attempt=0):
        return self.u.container_config(name=name, args=args, labels=labels, attempt=attempt)

    # -- the background pods --
    def setup(self):
        u = self.u
        self.tick_pod, self.tick_cfg = u.run_pod(name="tick")
        self.doom_pod, self.doom_cfg = u.run_pod(name="doom")
        self.pods_seen |= {self.tick_pod, self.doom_pod}
        self.slot_cfg = [self.pod_cfg(f"s{j}", [("tcp", 21000 + j)] if j % 2 == 0 else []) for j in range(SLOTS)]
        self.new_ticker()

    def new_ticker(self):
        u, a = self.u, self.tick_attempt
        self.tick_attempt += 1
        cfg = self.ctr_cfg("t", ticker_words(a), {"kind": "ticker"}, attempt=a)
        cid = u.rs.CreateContainer(self.pb.CreateContainerRequest(pod_sandbox_id=self.tick_pod, config=cfg,
                                                                  sandbox_config=self.tick_cfg)).container_id
        u.start_ctr(cid)
        self.ctrs_seen.add(cid)
        self.tickers.append((cid, a, u.logs / "tick" / "t" / f"{a}.log"))

    def check_ticker_log(self, a, path, complete):
        """Every line the guest printed is there once, in order: the whole sequence if the
        guest ran to its end, a prefix of it if it was stopped."""
        want = [FIRST_LINE] + ticker_lines(a)
        recs = parse_cri_records(path.read_bytes())
        got = [c.decode(errors="replace") for _, _, _, c in recs]
        ok = got == want if complete else got == want[:len(got)]
        self.expect("ticker log: no line lost or repeated across kills", ok,
                    f"attempt {a}: {len(got)} lines, first difference at "
                    f"{next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))}")
        for ts, _, _, _ in recs:
            t = cri_ts(ts)
            if any(k <= t <= r for k, r in self.downtimes):
                self.tally["(ticker lines written while unikd was down)"] += 1

    def tend_ticker(self):
        cid, a, path = self.tickers[-1]
        st = self.u.status(cid).status
        if st.state != self.pb.CONTAINER_EXITED:
            return
        self.expect("ticker exit code exact", (st.exit_code, st.reason) == (0, "Completed"),
                    f"{st.exit_code} {st.reason} {st.message}")
        self.check_ticker_log(a, path, complete=True)
        self.u.rs.RemoveContainer(self.pb.RemoveContainerRequest(container_id=cid))
        self.new_ticker()

    def start_doomed(self, delay):
        """A container that ends by itself a moment after the kill (delay seconds from now),
        while unikd is down."""
        u, a = self.u, self.doom_attempt
        self.doom_attempt += 1
        code = self.rng.randrange(0, 128)
        ms = int(delay * 1000) + self.rng.randrange(30, 90)
        cfg = self.ctr_cfg("d", [f"sleep:{ms}", f"exit:{code}"], {"kind": "doomed"}, attempt=a)
        cid = u.rs.CreateContainer(self.pb.CreateContainerRequest(pod_sandbox_id=self.doom_pod, config=cfg,
                                                                  sandbox_config=self.doom_cfg)).container_id
        self.ctrs_seen.add(cid)
        u.start_ctr(cid)
        return cid, code, vmwrapper_json(u, cid)["pid"]

    def check_doomed(self, cid, code, t_kill):
        st = self.u.status(cid).status
        self.doomed_checked += 1
        try:
            ended = json.loads((self.u.run / "vms" / cid / "exit.json").read_text())["finished_ns"] / 1e9
        except (OSError, ValueError, KeyError):
            ended = 0
        if ended > t_kill:
            self.doomed_while_down += 1
        self.expect("exit code of a guest that ended while unikd was down", st.state == self.pb.CONTAINER_EXITED and
                    (st.exit_code, st.reason) == (code, "Completed" if code == 0 else "Error"),
                    f"{cid[:12]}: want {code}, got state {st.state} {st.exit_code} {st.reason} {st.message}")
        self.u.rs.RemoveContainer(self.pb.RemoveContainerRequest(container_id=cid))

    # -- one slot's next calls --
    def plan(self, pod, ctr):
        pb = self.pb
        if pod is None:
            return list(STEPS)
        if pod.state == pb.SANDBOX_NOTREADY:
            return (["RemoveContainer"] if ctr else []) + ["StopPodSandbox", "RemovePodSandbox"]
        if ctr is None:
            return list(STEPS[1:])
        return {pb.CONTAINER_CREATED: list(STEPS[2:]), pb.CONTAINER_RUNNING: list(STEPS[3:]),
                pb.CONTAINER_EXITED: list(STEPS[4:])}[ctr.state]

    def request(self, step, j, ids):
        pb, cfg = self.pb, self.slot_cfg[j]
        if step == "RunPodSandbox":
            return pb.RunPodSandboxRequest(config=cfg)
        if step == "CreateContainer":
            if self.rng.random() < 0.7:
                args, labels = ["idle"], {"kind": "idle"}
            else:
                code = self.rng.randrange(0, 128)
                args, labels = [f"sleep:{self.rng.randrange(0, 300)}", f"exit:{code}"], {"kind": "exits", "code": str(code)}
            return pb.CreateContainerRequest(pod_sandbox_id=ids["pod"], config=self.ctr_cfg("c", args, labels),
                                             sandbox_config=cfg)
        if step in ("StartContainer", "RemoveContainer"):
            return getattr(pb, step + "Request")(container_id=ids["ctr"])
        if step == "StopContainer":
            return pb.StopContainerRequest(container_id=ids["ctr"], timeout=0)
        return getattr(pb, step + "Request")(pod_sandbox_id=ids["pod"])

    def note_issued(self, step, ids):
        if step in ("StopContainer", "RemoveContainer"):
            self.stop_issued.add(ids["ctr"])
        if step in ("StopPodSandbox", "RemovePodSandbox"):
            self.stop_issued.add(ids["pod"])

    def after(self, step, resp, ids):
        if step == "RunPodSandbox":
            ids["pod"] = resp.pod_sandbox_id
            self.pods_seen.add(ids["pod"])
        elif step == "CreateContainer":
            ids["ctr"] = resp.container_id
            self.ctrs_seen.add(ids["ctr"])

    def iteration(self, it):
        u, rng = self.u, self.rng
        self.it = it
        self.tend_ticker()
        j = rng.randrange(SLOTS)
        name = f"s{j}"
        pods = [p for p in u.pods() if p.metadata.name == name]
        pod = pods[0] if pods else None
        ctrs = [c for c in u.containers(pod_sandbox_id=pod.id)] if pod else []
        ctr = ctrs[0] if ctrs else None
        ids = {"pod": pod.id if pod else None, "ctr": ctr.id if ctr else None}
        steps = self.plan(pod, ctr)
        k = rng.randrange(len(steps))
        for step in steps[:k]:
            self.note_issued(step, ids)
            t0 = time.monotonic()
            try:
                resp = getattr(u.rs, step)(self.request(step, j, ids))
            except grpc.RpcError as e:
                self.expect(f"{step} succeeds", False, f"{e.code()} {e.details()}")
                return
            if step == "RunPodSandbox":
                self.expect("a removed pod's name is free again", True)
            self.est[step] = 0.8 * self.est[step] + 0.2 * (time.monotonic() - t0)
            self.after(step, resp, ids)
        step = steps[k]
        delay = rng.uniform(0, 1.1 * self.est[step])
        doomed = self.start_doomed(delay)
        self.note_issued(step, ids)
        fut = getattr(u.rs, step).future(self.request(step, j, ids))
        time.sleep(delay)
        t_kill = time.time()
        running = not fut.done()
        if not running:
            self.est[step] = 0.8 * self.est[step] + 0.2 * delay
        u.kill()
        self.kills[step] += 1
        self.in_flight += running
        try:
            self.after(step, fut.result(timeout=0), ids)
        except (grpc.RpcError, grpc.FutureTimeoutError, grpc.FutureCancelledError):
            pass
        # Down: the doomed guest ends now, the ticker goes on printing.
        self.expect("the doomed VM ends by itself", wait_gone(doomed[2], 30), doomed[0][:12])
        mark = len(u.log())
        u.start(allow_errors=True)
        self.downtimes.append((t_kill, time.time()))
        errors = [l for l in u.log()[mark:].splitlines() if "level=error" in l]
        self.expect("no error logged at restart", errors == [], errors)
        self.check_doomed(doomed[0], doomed[1], t_kill)
        self.check()

    # -- the invariants --
    def check(self):
        u, pb = self.u, self.pb
        pods = {p.id: p for p in u.pods()}
        l1 = {c.id: c for c in u.containers()}
        wrappers, qemus = vm_processes(u)
        tapset = taps(u) if self.networked else set()
        l2 = {c.id: c for c in u.containers()}
        self.pods_seen |= set(pods)
        self.ctrs_seen |= set(l2)
        E = self.expect
        E("sandbox records == ListPodSandbox", names(u.state / "sandboxes", r"[0-9a-f]{64}\.json") ==
          {f"{i}.json" for i in pods}, (names(u.state / "sandboxes"), set(pods)))
        E("container records == ListContainers", names(u.state / "containers", r"[0-9a-f]{64}\.json") ==
          {f"{i}.json" for i in l2}, (names(u.state / "containers"), set(l2)))
        E("container directories == ListContainers", names(u.state / "containers", r"[0-9a-f]{64}\.d") ==
          {f"{i}.d" for i in l2}, names(u.state / "containers"))
        E("every container's pod is listed", all(c.pod_sandbox_id in pods for c in l2.values()))
        vmdirs = names(u.run / "vms")
        E("VM directories belong to listed containers", vmdirs <= set(l2), vmdirs - set(l2))
        left = lingering_temp_files(u)
        E("no temp file left by an atomic write", left == [], left)
        for cid, c in l2.items():
            kind = c.labels.get("kind")
            if c.state == pb.CONTAINER_CREATED:
                E("a CREATED container has no VM directory, process or cgroup",
                  cid not in vmdirs and cid not in wrappers and not cgroup_dirs(cid), cid[:12])
            if c.state == pb.CONTAINER_RUNNING:
                # A vmwrapper that ended just before the scan is recorded by the exit watcher
                # an instant later (an event, not this listing): then the end must show.
                E("a RUNNING container has its vmwrapper (PID recorded)",
                  vmwrapper_json(u, cid)["pid"] == wrappers[cid] if cid in wrappers else
                  exit_recorded(u, cid), cid[:12])
                if kind == "idle":  # the others may be ending by themselves right now
                    E("a running VM has its QEMU", cid in qemus, cid[:12])
                    if self.networked:
                        E("a running VM's pod has its tap", "uk" + c.pod_sandbox_id[:12] in tapset, cid[:12])
            if c.state == pb.CONTAINER_EXITED:
                self.check_exit(c)
        for what, procs in (("vmwrapper", wrappers), ("QEMU", qemus)):
            for cid, pid in procs.items():
                ok = cid in l1 and (l1[cid].state == pb.CONTAINER_RUNNING or wait_gone(pid, 10))
                E(f"every {what} process belongs to a RUNNING container", ok,
                  f"{cid[:12]} pid {pid} {self.describe(cid, pid, l1)}" if not ok else "")
        gone = self.ctrs_seen - set(l2)
        E("no cgroup of a removed container", not [c for c in gone if cgroup_dirs(c)],
          [c[:12] for c in gone if cgroup_dirs(c)])
        for pid_, p in pods.items():
            if p.state == pb.SANDBOX_NOTREADY:
                E("a NOTREADY pod runs no VM", not any(c.pod_sandbox_id == pid_ and c.state == pb.CONTAINER_RUNNING
                                                       for c in l2.values()), pid_[:12])
        if not self.networked:
            E("no address without a network", ipam(u) == {} and all(
                u.pod_status(i).status.network.ip == "" for i in pods))
            return
        running_pods = {c.pod_sandbox_id[:12] for c in l1.values() if c.state == pb.CONTAINER_RUNNING}
        E("every tap belongs to a pod with a RUNNING container", {t[2:] for t in tapset} <= running_pods,
          tapset)
        ips = {i: u.pod_status(i).status.network.ip for i in pods}
        ready = {i for i, p in pods.items() if p.state == pb.SANDBOX_READY}
        E("every READY pod has an address, no NOTREADY pod has one",
          all(bool(ips[i]) == (i in ready) for i in pods), ips)
        E("IPAM files == the READY pods' addresses", ipam(u) == {ips[i]: i for i in ready}, (ipam(u), ips))
        hosts, opts = names(dnsmasq_dir(u) / "hosts.d"), names(dnsmasq_dir(u) / "opts.d")
        E("DHCP host entries == READY pods", hosts == ready and opts <= ready, (hosts, opts, ready))
        want = {(proto, port, ips[i]) for i in ready for proto, port in POD_PORTS.get(pods[i].metadata.name, [])}
        got = hostport_elements(u)
        E("hostPort rules == the READY pods' hostPorts", got == want, (got, want))
        E("one dnsmasq", len(u.dnsmasq_pids()) == 1, u.dnsmasq_pids())

    def describe(self, cid, pid, listed):
        """What a stray process is doing, for the report."""
        out = [f"listed={'no' if cid not in listed else listed[cid].state}"]
        for f in ("status", "wchan", "stack"):
            try:
                t = Path(f"/proc/{pid}/{f}").read_text()
                out.append(f"{f}: " + (" ".join(l for l in t.splitlines() if l.startswith(("State", "PPid", "Threads")))
                                        if f == "status" else t.strip()[:400]))
            except OSError as e:
                out.append(f"{f}: {e}")
        d = self.u.run / "vms" / cid
        for f in ("exit.json", "vmwrapper.log"):
            try:
                out.append(f"{f}: " + (d / f).read_text()[-600:])
            except OSError as e:
                out.append(f"{f}: {e}")
        return " | ".join(out)

    def check_exit(self, c):
        st = self.u.status(c.id).status
        kind = c.labels.get("kind")
        stopped = c.id in self.stop_issued or c.pod_sandbox_id in self.stop_issued
        ok = set()
        if kind == "exits":
            code = int(c.labels["code"])
            ok.add((code, "Completed" if code == 0 else "Error"))
        if stopped:
            ok |= {(137, "Killed"), (0, "Stopped")}
        if kind in ("ticker", "doomed"):
            return  # checked on their own
        self.expect("exit codes exact", (st.exit_code, st.reason) in ok,
                    f"{c.id[:12]} {kind} stopped={stopped}: {st.exit_code} {st.reason} {st.message}")

    def finish(self):
        """Stop the ticker, check its log, remove every pod through the CRI, check nothing
        is left."""
        u = self.u
        cid, a, path = self.tickers[-1]
        u.stop_ctr(cid, 0)
        self.check_ticker_log(a, path, complete=u.status(cid).status.exit_code == 0)
        for p in u.pods():
            u.remove_pod(p.id)
        self.it = "end"
        self.check()
        assert_no_leftovers(u, self.ctrs_seen, self.networked)
        self.tally["no leftovers once every pod is removed"] += 1
        # What the restarts found to complete or clean, as unikd logged it.
        self.cleanups = Counter(m.group(1) for m in re.finditer(r'level=warn .*?msg="([^"]*)"', u.log()))


def run_loop(scratch, rng, iterations, networked, label):
    root = scratch / f"{label}-{uuid.uuid4().hex[:12]}"  # the namespace is named after the end
    root.mkdir()
    u = Unikd(root, extra=[] if networked else ["--network", "none"])
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start()
    loop = KillLoop(u, rng, networked, label)
    t0 = time.monotonic()
    try:
        loop.setup()
        for it in range(iterations):
            loop.iteration(it)
        loop.finish()
    finally:
        u.cleanup()
    assert u.vm_pids() == [] and u.dnsmasq_pids() == []
    return loop, time.monotonic() - t0


def test_sigkill_at_random_points_keeps_state_and_reality_in_step(scratch):
    seed = int(os.environ.get("UNIKD_FAULT_SEED", random.randrange(1 << 32)))
    print(f"\nkill loop: seed {seed} (replay with UNIKD_FAULT_SEED={seed}), {ITERATIONS} kill points")
    rng = random.Random(seed)
    # A third of the kills hit a unikd without pod networking, the rest one with the bridge,
    # addresses, DHCP, taps and hostPorts.
    first = ITERATIONS // 3
    loops = [run_loop(scratch, rng, first, False, "nonet"), run_loop(scratch, rng, ITERATIONS - first, True, "bridge")]
    tally, kills, violations = Counter(), Counter(), []
    for loop, secs in loops:
        tally += loop.tally
        kills += loop.kills
        violations += loop.violations
        print(f"  {loop.label}: {sum(loop.kills.values())} kill points in {secs:.0f} s, {loop.in_flight} during a call, "
              f"{len(loop.pods_seen)} pods, {len(loop.ctrs_seen)} containers, {len(loop.tickers)} tickers, "
              f"{loop.doomed_checked} doomed guests ({loop.doomed_while_down} ended while unikd was down)")
    print(f"  kill points by call: {dict(kills)}")
    cleanups = sum((loop.cleanups for loop, _ in loops), Counter())
    print("  what the restarts completed or cleaned (unikd's warnings):")
    for k, v in sorted(cleanups.items()):
        print(f"    {v:6d}  {k}")
    print("  call durations learnt (ms): " + ", ".join(f"{k} {v * 1000:.1f}" for k, v in loops[-1][0].est.items()))
    print(f"  invariants checked ({len([k for k in tally if not k.startswith('(')])} kinds, "
          f"{sum(v for k, v in tally.items() if not k.startswith('('))} checks):")
    for k, v in sorted(tally.items()):
        print(f"    {v:6d}  {k}")
    print(f"  violations: {len(violations)}")
    for v in violations[:50]:
        print("    " + v)
    assert sum(kills.values()) == ITERATIONS
    assert tally["(ticker lines written while unikd was down)"] > 0
    assert violations == [], f"seed {seed}: {len(violations)} violations, first: {violations[0]}"


# ---- the other faults ----

@pytest.fixture
def net_uk(scratch):
    u = Unikd(scratch)
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start_or_cleanup()
    yield u
    u.cleanup()
    assert u.vm_pids() == [] and u.dnsmasq_pids() == []


def run_idle(u, name, ports=()):
    pb = u.pb
    sid, cfg = u.run_pod(name=name, port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=p)
                                                   for p in ports])
    cid = u.create(sid, cfg, args=["idle"])
    u.start_ctr(cid)
    return sid, cid


def assert_removed_cleanly(u, sid, cid):
    u.rs.RemoveContainer(u.pb.RemoveContainerRequest(container_id=cid))
    u.remove_pod(sid)
    assert_no_leftovers(u, [cid])


def test_vmwrapper_killed(net_uk):
    u = net_uk
    sid, cid = run_idle(u, "vwk", ports=[22080])
    vw = vmwrapper_json(u, cid)
    assert "uk" + sid[:12] in taps(u)
    os.kill(vw["pid"], signal.SIGKILL)
    assert wait_gone(vw["pid"]) and wait_gone(vw["qemu_pid"])  # QEMU dies with its supervisor
    wait_record_exited(u, cid)  # unikd's exit watcher saw it too
    st = u.status(cid).status
    assert st.state == u.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (255, "Unknown")
    assert "supervisor" in st.message and "without an exit record" in st.message
    assert "uk" + sid[:12] not in taps(u)  # the tap went with QEMU's fd
    assert_removed_cleanly(u, sid, cid)


def test_qemu_killed(net_uk):
    u = net_uk
    sid, cid = run_idle(u, "qk", ports=[22081])
    vw = vmwrapper_json(u, cid)
    os.kill(vw["qemu_pid"], signal.SIGKILL)
    assert wait_gone(vw["pid"])  # vmwrapper records the end and leaves
    wait_record_exited(u, cid)  # unikd's exit watcher saw it too
    st = u.status(cid).status
    assert st.state == u.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (137, "Killed")
    assert json.loads((u.run / "vms" / cid / "exit.json").read_text())["signal"] == 9
    assert_removed_cleanly(u, sid, cid)


def test_vmwrapper_killed_while_unikd_is_down(net_uk):
    u = net_uk
    sid, cid = run_idle(u, "vwd")
    vw = vmwrapper_json(u, cid)
    u.kill()
    os.kill(vw["pid"], signal.SIGKILL)
    assert wait_gone(vw["pid"]) and wait_gone(vw["qemu_pid"])
    u.start()
    st = u.status(cid).status
    assert st.state == u.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (255, "Unknown")
    assert_removed_cleanly(u, sid, cid)


class Tmpfs:
    """A small tmpfs of the test's own at a unique mount point, unmounted at the end."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.path.mkdir()
        sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", f"uk-fault-{uuid.uuid4().hex[:8]}", str(self.path))

    def fill(self):
        """Fill it to the last byte; returns the filler's path."""
        f = self.path / "filler"
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            for bs in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * bs)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return f

    def umount(self):
        if sh("umount", str(self.path), check=False).returncode != 0:
            sh("umount", "-l", str(self.path), check=False)


def test_state_directory_full(scratch):
    fs = Tmpfs(scratch / "statefs", "16m")
    u = Unikd(scratch)
    u.state = fs.path / "state"
    try:
        u.import_image("hello:1", "--kernel", str(HELLO))
        u.start()
        pb = u.pb
        sid, cfg = u.run_pod(name="full")
        created = u.create(sid, cfg, args=["idle"], name="early")
        running = u.create(sid, cfg, args=["idle"], name="running", attempt=1)
        before = {d: names(u.state / d) for d in ("sandboxes", "containers", "net/ipam")}
        filler = fs.fill()

        def refused(call, *a, **kw):
            with pytest.raises(grpc.RpcError) as e:
                call(*a, **kw)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.value.code(), e.value.details())
            assert "state directory" in e.value.details() and "is full" in e.value.details() and \
                "No space left on device" in e.value.details(), e.value.details()

        refused(u.run_pod, name="full2")
        refused(u.create, sid, cfg, args=["idle"], name="late")
        refused(u.start_ctr, running)  # its record must name the vmwrapper first: nothing starts
        assert u.status(running).status.state == pb.CONTAINER_CREATED
        refused(u.rs.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        # Nothing half-made stays, and nothing of the refused start runs.
        assert {d: names(u.state / d) for d in before} == before
        assert temp_files(u) == [] and names(u.run / "vms") == set() and u.vm_pids() == []
        assert "uk" + sid[:12] not in taps(u)
        assert u.proc.poll() is None
        u.rs.Version(pb.VersionRequest())
        # Space again: everything works.
        filler.unlink()
        u.start_ctr(running)
        assert u.status(running).status.state == pb.CONTAINER_RUNNING
        sid2, cfg2 = u.run_pod(name="full2")
        late = u.create(sid2, cfg2, args=["exit:7"], name="late")
        u.start_ctr(late)
        assert u.wait_exited(late).exit_code == 7
        assert u.proc.poll() is None
        for p in u.pods():
            u.remove_pod(p.id)
        assert_no_leftovers(u, [created, running, late])
    finally:
        u.cleanup()
        fs.umount()


def test_corrupt_state_files_are_quarantined_without_a_crash_loop(scratch):
    u = Unikd(scratch)
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start()
    try:
        pb = u.pb
        # Pod a's record goes bad: its container (running) cannot be reached any more.
        sid_a, cid_a = run_idle(u, "ca", ports=[22082])
        # Container b's record goes bad: its pod stays, its VM is an orphan.
        sid_b, cid_b = run_idle(u, "cb")
        sid_c, cid_c = run_idle(u, "cc")  # untouched
        u.stop()
        (u.state / "sandboxes" / f"{sid_a}.json").write_text('{"version": 1, "id": "' + sid_a)
        (u.state / "containers" / f"{cid_b}.json").write_bytes(b"\x00garbage\xff")
        u.start(allow_errors=True)
        log = u.log()
        for kind, oid in (("pod", sid_a), ("ctr", cid_b)):
            line = [l for l in log.splitlines() if "corrupt state file quarantined" in l and oid in l]
            assert line and "level=error" in line[0] and f"{kind}={oid}" in line[0], line
        assert (u.state / "sandboxes" / "quarantine" / f"{sid_a}.json").exists()
        assert (u.state / "containers" / "quarantine" / f"{cid_b}.json").exists()
        assert {p.id for p in u.pods()} == {sid_b, sid_c}
        assert {c.id for c in u.containers()} == {cid_c}
        # Everything of the unreachable ones is gone: VMs, directories, address, DHCP entry,
        # hostPort rule, tap, cgroups.
        wrappers, qemus = vm_processes(u)
        assert set(wrappers) == {cid_c} and set(qemus) == {cid_c}
        assert names(u.run / "vms") == {cid_c}
        assert names(u.state / "containers", r".*\.d") == {f"{cid_c}.d"}
        assert set(ipam(u).values()) == {sid_b, sid_c}
        assert names(dnsmasq_dir(u) / "hosts.d") == {sid_b, sid_c}
        assert hostport_elements(u) == set()
        assert taps(u) == {"uk" + sid_c[:12]}
        assert not cgroup_dirs(cid_a) and not cgroup_dirs(cid_b)
        # No crash loop: it starts again, with nothing new to report.
        u.stop()
        mark = len(u.log())
        u.start()
        assert "corrupt state file" not in u.log()[mark:]
        assert u.status(cid_c).status.state == pb.CONTAINER_RUNNING
        for p in u.pods():
            u.remove_pod(p.id)
        assert_no_leftovers(u, [cid_a, cid_b, cid_c])
    finally:
        u.cleanup()


def set_boot_id(record, boot_id):
    o = json.loads(record.read_text())
    assert BOOT_ID.fullmatch(o["boot_id"])
    o["boot_id"] = boot_id
    record.write_text(json.dumps(o))


def test_reboot(scratch):
    u = Unikd(scratch)
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start()
    try:
        pb = u.pb
        sid_run, cid_run = run_idle(u, "rb-run", ports=[22083])
        sid_ex, cfg_ex = u.run_pod(name="rb-exited")
        cid_ex = u.create(sid_ex, cfg_ex, args=["exit:3"])
        u.start_ctr(cid_ex)
        assert u.wait_exited(cid_ex).exit_code == 3
        sid_cr, cfg_cr = u.run_pod(name="rb-created")
        cid_cr = u.create(sid_cr, cfg_cr, args=["idle"])
        sid_st, _ = u.run_pod(name="rb-stopped")
        u.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid_st))
        # The reboot: unikd goes, every VM and dnsmasq with it, the network namespace (bridge,
        # taps, nftables) and the run directory (a tmpfs) are gone, the boot id changes.
        u.stop()
        wrappers, qemus = vm_processes(u)
        for pid in list(wrappers.values()) + list(qemus.values()) + u.dnsmasq_pids():
            os.kill(pid, signal.SIGKILL)
            assert wait_gone(pid)
        sh("ip", "netns", "del", u.ns)
        for p in u.run.iterdir():
            subprocess.run(["rm", "-rf", str(p)], check=True)
        new_boot = str(uuid.uuid4())
        for rec in list((u.state / "sandboxes").glob("*.json")) + list((u.state / "containers").glob("*.json")):
            if "boot_id" in json.loads(rec.read_text()):
                set_boot_id(rec, new_boot)
        u.start()
        log = u.log()
        assert f'ctr={cid_run} msg="the node rebooted: container recorded as exited"' in log
        assert all(p.state == pb.SANDBOX_NOTREADY for p in u.pods()) and len(u.pods()) == 4
        assert all(u.pod_status(p.id).status.network.ip == "" for p in u.pods())
        st = u.status(cid_run).status
        assert st.state == pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (255, "NodeRebooted")
        assert st.finished_at >= st.started_at > 0
        st = u.status(cid_ex).status
        assert (st.state, st.exit_code, st.reason) == (pb.CONTAINER_EXITED, 3, "Error")  # as it was
        assert u.status(cid_cr).status.state == pb.CONTAINER_CREATED
        assert ipam(u) == {} and names(dnsmasq_dir(u) / "hosts.d") == set() and hostport_elements(u) == set()
        # Records now carry this boot's id.
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        assert json.loads((u.state / "containers" / f"{cid_run}.json").read_text()).get("boot_id", "") in ("", boot)
        # Everything can be removed, and nothing is left.
        for cid in (cid_run, cid_ex, cid_cr):
            u.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        for p in u.pods():
            u.remove_pod(p.id)
        assert_no_leftovers(u, [cid_run, cid_ex, cid_cr])
        # The node is usable: a new pod runs.
        sid, cid = run_idle(u, "rb-after", ports=[22083])
        assert "uk" + sid[:12] in taps(u)
        assert_removed_cleanly(u, sid, cid)
    finally:
        u.cleanup()
