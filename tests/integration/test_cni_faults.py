"""CNI mode under faults: a plugin that hangs, unikd killed with SIGKILL in the middle of ADD
and DEL (at a chosen plugin of the chain and at random moments), a restart that adopts a
running pod's network, and a reboot. After each: no namespace, veth, tap, iptables rule,
host-local reservation or DHCP server that no pod owns, and no address held twice.

The "gate" plugin (written by the test into the plugin directory) passes its prevResult on,
except when the test has armed it for a command: then it records its PID and waits forever,
which is a plugin in the middle of its work. The random loop is seeded and prints its seed:
  UNIKD_FAULT_SEED=<seed>  replays it."""
import json
import os
import random
import select
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import grpc
import pytest

from cri import sh
from test_faults import set_boot_id, wait_gone
from test_cni import CNI_BIN, cni_unikd, host_local, leftovers, netns_pinned
from test_network import http_get, netguest, tsc_khz, wait_line  # noqa: F401

GATE = """#!/usr/bin/python3
import json, os, signal, sys
cmd = os.environ.get("CNI_COMMAND", "")
conf = json.load(sys.stdin)
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
    sys.exit(0)
d = conf["gateDir"]
try:
    os.unlink(os.path.join(d, "arm-" + cmd))  # one shot
except FileNotFoundError:
    pass
else:
    tmp = os.path.join(d, "hit-%s.tmp" % cmd)
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(d, "hit-" + cmd))
    while True:
        signal.pause()
if cmd == "ADD":
    print(json.dumps(conf.get("prevResult") or {"cniVersion": conf["cniVersion"]}))
"""


def gate_dir(scratch):
    d = scratch / "gate"
    d.mkdir(exist_ok=True)
    b = scratch / "bin"
    b.mkdir(exist_ok=True)
    (b / "ukgate").write_text(GATE)
    (b / "ukgate").chmod(0o755)
    return d


def chain(scratch, gate_at):
    """bridge + host-local, portmap, loopback, with the gate at position gate_at."""
    tag = scratch.name[-8:]
    plugins = [
        {"type": "bridge", "bridge": f"ukcni{tag[:6]}", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]], "dataDir": str(scratch / "ipam")}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "loopback"},
    ]
    plugins.insert(gate_at, {"type": "ukgate", "gateDir": str(gate_dir(scratch))})
    return plugins


def gated_unikd(scratch, gate_at=1, extra=()):
    u = cni_unikd(scratch, subnet="10.89.0.0/24", plugins=chain(scratch, gate_at), start=False,
                  bin_dirs=f"{scratch / 'bin'}:{CNI_BIN}")
    u.extra = [*u.extra, *extra]
    return u


def wait_file(path, timeout=60):
    """Wait (on inotify, no polling) until path exists; return its text."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, str(path.parent).encode(), 0x80 | 0x100) >= 0  # MOVED_TO, CREATE
        while not path.exists():
            assert select.select([fd], [], [], timeout)[0], f"{path} never appeared"
            os.read(fd, 4096)
        return path.read_text()
    finally:
        os.close(fd)


def kill_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["ok"] = fn(*args)
        except grpc.RpcError as e:
            out["err"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def kill_unikd_in(u, gd, command, call):
    """SIGKILL unikd while the gate plugin is in the middle of command for call; the call
    loses its connection. The gate (a plugin of the dead unikd) is killed too: start-up would
    otherwise wait the plugin timeout for it."""
    (gd / f"arm-{command}").touch()
    t, out = in_thread(call)
    pid = int(wait_file(gd / f"hit-{command}"))
    u.kill()
    kill_pid(pid)
    t.join()
    assert "err" in out, out


def live_pods_hold_exactly_their_network(u, scratch):
    """What the READY pods own exists, once each; nothing else does."""
    ready = [p for p in u.pods() if p.state == u.pb.SANDBOX_READY]
    ips = [u.pod_status(p.id).status.network.ip for p in ready]
    assert len(set(ips)) == len(ips), f"an address held twice: {ips}"
    assert sorted(netns_pinned()) == sorted(f"unikd-{p.id}" for p in ready)
    left = leftovers(u, scratch)
    assert sorted(left["host-local"]) == sorted(ips), left
    assert len(left["veths"]) == len(ready), left
    for p in u.pods():
        if p.state != u.pb.SANDBOX_READY:
            assert u.pod_status(p.id).status.network.ip == ""
    return ips


def remove_all_and_check(u, scratch):
    for p in u.pods():
        u.remove_pod(p.id)
    left = leftovers(u, scratch)
    warnings = [l for l in u.log().splitlines() if "level=warn" in l or "level=error" in l]
    assert not any(left.values()), (left, warnings)


def test_a_hanging_plugin_times_out_and_leaves_nothing(scratch):
    u = gated_unikd(scratch, gate_at=1, extra=["--cni-timeout", "2"])
    (gate_dir(scratch) / "arm-ADD").touch()
    u.start()
    try:
        with pytest.raises(grpc.RpcError) as e:
            u.run_pod(name="hang")
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.value
        assert "plugin ukgate did not answer within 2 s" in e.value.details(), e.value.details()
        pid = int((gate_dir(scratch) / "hit-ADD").read_text())
        assert not Path(f"/proc/{pid}").exists(), "the hung plugin was not killed and reaped"
        assert u.pods() == []
        left = leftovers(u, scratch)
        assert not any(left.values()), left
        # The next pod works: the timeout broke nothing.
        sid, _ = u.run_pod(name="after")
        assert u.pod_status(sid).status.network.ip.startswith("10.89.0.")
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


@pytest.mark.parametrize("gate_at", [0, 1, 2])
def test_sigkill_during_add_is_undone_at_start_up(scratch, gate_at):
    u = gated_unikd(scratch, gate_at=gate_at)
    gd = gate_dir(scratch)
    u.start()
    try:
        keep, _ = u.run_pod(name="keep")
        kill_unikd_in(u, gd, "ADD", lambda: u.run_pod(name="cut"))
        u.start()
        assert "undid a RunPodSandbox cut short (CNI ADD)" in u.log()
        assert [p.id for p in u.pods()] == [keep]
        ips = live_pods_hold_exactly_their_network(u, scratch)
        # The next pod gets an address of its own.
        sid, _ = u.run_pod(name="next")
        assert u.pod_status(sid).status.network.ip not in ips
        live_pods_hold_exactly_their_network(u, scratch)
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


@pytest.mark.parametrize("gate_at", [0, 2])
def test_sigkill_during_del_is_finished_at_start_up(scratch, gate_at):
    u = gated_unikd(scratch, gate_at=gate_at)
    gd = gate_dir(scratch)
    u.start()
    try:
        sid, _ = u.run_pod(name="del")
        kill_unikd_in(u, gd, "DEL", lambda: u.rs.StopPodSandbox(u.pb.StopPodSandboxRequest(pod_sandbox_id=sid)))
        # The namespace stays until DEL has succeeded.
        assert f"unikd-{sid}" in netns_pinned()
        u.start()
        assert f'pod={sid} msg="released the network of a stopped pod"' in u.log()
        assert [(p.id, p.state) for p in u.pods()] == [(sid, u.pb.SANDBOX_NOTREADY)]
        live_pods_hold_exactly_their_network(u, scratch)
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


def test_a_failing_del_keeps_the_pod_not_ready_and_is_retried(scratch):
    u = gated_unikd(scratch, gate_at=1, extra=["--cni-timeout", "2"])
    gd = gate_dir(scratch)
    u.start()
    try:
        sid, _ = u.run_pod(name="delfail")
        (gd / "arm-DEL").touch()
        with pytest.raises(grpc.RpcError) as e:
            u.rs.StopPodSandbox(u.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        assert "ukgate" in e.value.details(), e.value.details()
        kill_pid(int((gd / "hit-DEL").read_text()))
        assert u.pods()[0].state == u.pb.SANDBOX_NOTREADY
        assert f"unikd-{sid}" in netns_pinned()  # kept for the retry
        u.rs.StopPodSandbox(u.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        assert netns_pinned() == []
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


def test_sigkill_at_random_moments_of_add_and_del(scratch):
    seed = int(os.environ.get("UNIKD_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"UNIKD_FAULT_SEED={seed}")
    rng = random.Random(seed)
    u = cni_unikd(scratch, subnet="10.89.0.0/24", plugins=chain(scratch, 3), start=False,
                  bin_dirs=f"{scratch / 'bin'}:{CNI_BIN}")
    u.start()
    try:
        for i in range(10):
            stopping = [p.id for p in u.pods() if p.state == u.pb.SANDBOX_READY] if i % 2 else []
            if stopping:
                sid = rng.choice(stopping)
                t, out = in_thread(lambda: u.rs.StopPodSandbox(u.pb.StopPodSandboxRequest(pod_sandbox_id=sid)))
            else:
                t, out = in_thread(lambda: u.run_pod(name=f"r{i}"))
            # A moment in the call: the record, the namespace, one of the plugins, the save.
            threading.Event().wait(rng.uniform(0, 0.6))
            u.kill()
            t.join()
            u.start()
            live_pods_hold_exactly_their_network(u, scratch)
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


def test_restart_adopts_the_pod_network_and_a_reboot_releases_it(scratch, netguest):  # noqa: F811
    u = cni_unikd(scratch, start=False)
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    u.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                   str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)
    u.start()
    try:
        sid, cfg = u.run_pod(name="adopt", hostname="podhost-ad")
        ip = u.pod_status(sid).status.network.ip
        cid = u.create(sid, cfg, image="netguest:1", memory=256 << 20)
        u.start_ctr(cid)
        assert wait_line(u.status(cid).status.log_path, "netguest: ready")
        dhcp = u.dnsmasq_pids()
        assert len(dhcp) == 1, dhcp
        # A restart: the pod's namespace, tap and DHCP server are adopted, the guest still answers.
        assert u.stop() == 0
        u.start()
        assert u.dnsmasq_pids() == dhcp
        assert u.pod_status(sid).status.network.ip == ip
        assert http_get(u, f"http://{ip}/") == f"netguest podhost-ad {ip}"
        assert f"unikd-{sid}" in netns_pinned()
        # A reboot: every process and the pod's namespace are gone, the run directory too;
        # host-local's reservation (in its persistent dataDir) stays until DEL, which runs
        # with an empty CNI_NETNS.
        u.stop()
        for pid in u.vm_pids() + u.dnsmasq_pids():
            kill_pid(pid)
            assert wait_gone(pid)
        sh("ip", "netns", "del", f"unikd-{sid}")
        sh("ip", "netns", "del", u.ns)  # the node's network: the plugins' bridge, veths, iptables
        assert host_local(scratch) == [ip]
        for p in u.run.iterdir():
            subprocess.run(["rm", "-rf", str(p)], check=True)
        boot = str(uuid.uuid4())
        for rec in list((u.state / "sandboxes").glob("*.json")) + list((u.state / "containers").glob("*.json")):
            if "boot_id" in json.loads(rec.read_text()):
                set_boot_id(rec, boot)
        u.start()
        assert [(p.id, p.state) for p in u.pods()] == [(sid, u.pb.SANDBOX_NOTREADY)]
        assert host_local(scratch) == []
        u.rs.RemoveContainer(u.pb.RemoveContainerRequest(container_id=cid))
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()


def test_a_pod_namespace_without_a_record_gets_del_and_goes(scratch):
    """A record lost (or never written) leaves a unikd-* namespace nobody owns: start-up DELs
    it, so the plugins release what they hold, and removes it."""
    u = gated_unikd(scratch)
    u.start()
    try:
        sid, _ = u.run_pod(name="lost")
        ip = u.pod_status(sid).status.network.ip
        u.kill()
        (u.state / "sandboxes" / f"{sid}.json").unlink()
        u.start()
        assert f'pod={sid} msg="removed the network namespace of a pod that has no record"' in u.log()
        assert u.pods() == [] and netns_pinned() == [] and ip not in host_local(scratch)
        remove_all_and_check(u, scratch)
    finally:
        u.cleanup()
