"""The warm pool (issue 18): VMs started ahead of need, paused, and claimed by
StartContainer. A pooled VM must be indistinguishable from a cold-started one through the
CRI (logs, exit codes, limits, stats, the pod's address) and must survive unikd's SIGKILL;
no pool VM may outlive the pool."""
import json
import os
from pathlib import Path

import pytest

from conftest import HELLO, read_json, wait_gone
from cri import Unikd
from test_network import follow_plain, http_get, import_netguest, netguest, wait_line  # noqa: F401 (netguest: a fixture)

POOL = ["--pool-size", "1", "--pool-idle-timeout", "0"]


@pytest.fixture
def ukp(scratch):
    """unikd with a pool of one VM per key. Teardown: pods removed, then unikd started
    once more without a pool, which must end every pool VM it finds; nothing may be left."""
    u = Unikd(scratch, extra=POOL)
    u.import_image("hello:1", "--kernel", str(HELLO), "--cmdline", "print:default")
    u.start_or_cleanup()
    yield u
    try:
        if u.proc and u.proc.poll() is None:
            for p in u.pods():
                u.remove_pod(p.id)
        u.stop()
        u.extra = []
        u.start()
        u.wait_log("the pool is off", "ready")
        u.stop()
        assert not (u.run / "pool").exists(), "the pool's directory outlived the pool"
    finally:
        u.cleanup()
    assert u.vm_pids() == [], "pool VMs (or others) left behind"


def pool_info(u):
    r = u.rs.Status(u.pb.StatusRequest(verbose=True))
    return json.loads(r.info["info"])["pool"]


def wait_ready(u, n, timeout=120):
    """Until unikd's log has said n times that a pool VM is ready (followed, not polled)."""
    follow_plain(u.root / "unikd.log", 'msg="pool VM ready"', timeout=timeout, count=n)


def crilog_lines(path):
    return [l.split(" ", 3)[3] for l in Path(path).read_text().splitlines()]


def record(u, cid):
    return read_json(u.state / "containers" / f"{cid}.json")


def run_one(u, name, args, **kw):
    sid, cfg = u.run_pod(name=name)
    cid = u.create(sid, cfg, args=args, **kw)
    u.start_ctr(cid)
    return sid, cid


def test_a_pooled_start_reads_as_a_cold_one(ukp):
    u = ukp
    args = ["print:pooled", "exit:3"]
    _, a = run_one(u, "a", args)
    cold = u.wait_exited(a)
    assert "pool_vm" not in record(u, a)
    wait_ready(u, 1)
    info = pool_info(u)
    assert len(info["keys"]) == 1 and info["keys"][0]["ready"] == 1, info
    assert len(info["vms"]) == 1
    vm_id = info["vms"][0]["id"]
    assert (u.run / "pool" / vm_id / "vmwrapper.json").exists()
    # Pool VMs are not pods, nor containers.
    assert [p.metadata.name for p in u.pods()] == ["a"]
    assert len(u.containers()) == 1

    _, b = run_one(u, "b", args)
    u.wait_log("container started from the pool")
    warm = u.wait_exited(b)
    assert record(u, b)["pool_vm"] == vm_id
    assert not (u.run / "pool" / vm_id).exists(), "the claimed VM's directory stayed in the pool"
    assert (warm.exit_code, warm.reason) == (cold.exit_code, cold.reason) == (3, cold.reason)
    assert crilog_lines(warm.log_path) == crilog_lines(cold.log_path)
    assert "pooled" in crilog_lines(warm.log_path)
    # The pool refills behind the claim.
    wait_ready(u, 2)


def test_a_pooled_vm_has_the_pods_cgroup_limits_and_stats(ukp):
    u = ukp
    mem = 96 << 20
    _, a = run_one(u, "a", ["idle"], memory=mem)
    u.stop_ctr(a)
    wait_ready(u, 1)
    sid, b = run_one(u, "b", ["idle"], memory=mem)
    u.wait_log("container started from the pool")
    rec = record(u, b)
    assert rec["pool_vm"]
    st = u.status(b).status
    assert st.state == u.pb.CONTAINER_RUNNING
    # vmwrapper and QEMU are in the container's own cgroup, with the container's limit.
    cg = rec["cgroup"]
    assert cg.endswith(f"unikd-{b}")
    wrapper = rec["wrapper_pid"]
    qemu = read_json(u.run / "vms" / b / "vmwrapper.json")["qemu_pid"]
    for pid in (wrapper, qemu):
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        mems = [l.split(":", 2)[2] for l in lines if ":memory:" in l or l.startswith("0::")]
        assert any(m.endswith(f"unikd-{b}") for m in mems), (pid, lines)
    limit = Path(f"/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")
    if limit.exists():
        assert int(limit.read_text()) >= mem
    stats = u.rs.ContainerStats(u.pb.ContainerStatsRequest(container_id=b)).stats
    assert stats.memory.working_set_bytes.value > 0
    assert stats.attributes.id == b
    # Stopping it is a stop like any other; its pool cgroup is gone.
    u.stop_ctr(b)
    assert u.status(b).status.state == u.pb.CONTAINER_EXITED
    assert not list(Path("/sys/fs/cgroup/memory").glob(f"unikd-pool/unikd-{rec['pool_vm']}"))


def test_a_ready_pool_vm_that_ends_is_replaced_without_a_claim(ukp):
    u = ukp
    _, a = run_one(u, "a", ["idle"])
    u.stop_ctr(a)
    wait_ready(u, 1)
    info = pool_info(u)["vms"][0]
    vm_id, d = info["id"], u.run / "pool" / info["id"]
    st = read_json(d / "vmwrapper.json")
    os.kill(st["pid"], 9)
    # Noticed on its pidfd, not at a claim: out of the pool, its remains removed, and a
    # replacement started, with no CRI call in between.
    log = u.wait_log("a ready pool VM ended before its claim")
    assert f"vm={vm_id}" in log
    wait_ready(u, 2)
    assert wait_gone(st["qemu_pid"])
    assert not d.exists(), "the dead VM's directory stayed"
    assert not list(Path("/sys/fs/cgroup/memory").glob(f"unikd-pool/unikd-{vm_id}"))
    vms = pool_info(u)["vms"]
    assert len(vms) == 1 and vms[0]["id"] != vm_id, vms
    # The replacement serves the next pod.
    _, b = run_one(u, "b", ["idle"])
    u.wait_log("container started from the pool")
    assert record(u, b)["pool_vm"] == vms[0]["id"]
    u.stop_ctr(b)


def test_pool_vms_and_pooled_containers_survive_sigkill(ukp):
    u = ukp
    _, a = run_one(u, "a", ["idle"])
    u.stop_ctr(a)
    wait_ready(u, 1)
    _, b = run_one(u, "b", ["idle"])
    u.wait_log("container started from the pool")
    wait_ready(u, 2)
    ready = pool_info(u)["vms"][0]["id"]
    u.kill()
    u.start()
    log = u.wait_log("adopted a pool VM")
    assert f"vm={ready}" in log
    assert pool_info(u)["vms"][0]["id"] == ready
    # The pooled container is still RUNNING, and stops as any other.
    assert u.status(b).status.state == u.pb.CONTAINER_RUNNING
    u.stop_ctr(b)
    assert u.status(b).status.state == u.pb.CONTAINER_EXITED
    # The adopted VM is claimable.
    _, c = run_one(u, "c", ["idle"])
    assert record(u, c)["pool_vm"] == ready
    assert u.status(c).status.state == u.pb.CONTAINER_RUNNING


def test_a_claim_cut_short_leaves_nothing_running(ukp):
    """A pool VM moved out of the pool but never named by a record (unikd killed between
    the two) is ended at start-up; the container can still be started."""
    u = ukp
    _, a = run_one(u, "a", ["idle"])
    u.stop_ctr(a)
    wait_ready(u, 1)
    vm = pool_info(u)["vms"][0]
    sid, cfg = u.run_pod(name="b")
    b = u.create(sid, cfg, args=["print:b", "exit:0"])
    u.kill()
    # What a crash between the rename and the record leaves: the VM in b's directory.
    os.rename(u.run / "pool" / vm["id"], u.run / "vms" / b)
    u.start()
    u.wait_log("killed a pool VM that nothing names")
    assert vm["vmwrapper_pid"] not in u.pids("vmwrapper")
    u.start_ctr(b)
    assert u.wait_exited(b).exit_code == 0


def test_a_pooled_dhcp_guest_gets_its_own_pods_address(ukp, netguest):
    """The Linux netguest takes its address by DHCP: the pool VM started before its pod
    existed gets that pod's address, host name and traffic, as a cold one does."""
    u = ukp
    import_netguest(u, netguest)
    a_sid, a_cfg = u.run_pod(name="a", hostname="podhost-a")
    a = u.create(a_sid, a_cfg, image="netguest:1", memory=256 << 20)
    u.start_ctr(a)
    a_ip = u.pod_status(a_sid).status.network.ip
    assert wait_line(u.status(a).status.log_path, "netguest: ip=") == f"netguest: ip={a_ip}/16"
    u.stop_ctr(a)
    wait_ready(u, 1)
    b_sid, b_cfg = u.run_pod(name="b", hostname="podhost-b")
    b = u.create(b_sid, b_cfg, image="netguest:1", memory=256 << 20)
    u.start_ctr(b)
    rec = record(u, b)
    assert rec["pool_vm"], "the start was not from the pool"
    b_ip = u.pod_status(b_sid).status.network.ip
    assert b_ip != a_ip
    b_log = u.status(b).status.log_path
    assert wait_line(b_log, "netguest: ip=") == f"netguest: ip={b_ip}/16"
    assert wait_line(b_log, "netguest: hostname=") == "netguest: hostname=podhost-b"
    assert wait_line(b_log, "netguest: ready")
    assert http_get(u, f"http://{b_ip}/") == f"netguest podhost-b {b_ip}"
    # The pod's MAC is now the pool VM's, in its record and its DHCP entry.
    sb = read_json(u.state / "sandboxes" / f"{b_sid}.json")
    assert sb["mac"] == read_json(u.run / "vms" / b / "spec.json")["net"][0]["mac"]
