"""Resource limits through the VM's cgroup, on this machine's real cgroup hierarchy."""
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import HELLO
from cri import Unikd

CG = Path("/sys/fs/cgroup")
V2 = (CG / "cgroup.controllers").exists()


def cg_file(path, v1_controller, name):
    return (CG / path.lstrip("/") / name) if V2 else (CG / v1_controller / path.lstrip("/") / name)


@pytest.fixture
def parent():
    """A cgroup parent of the test's own, as kubelet would pass one; removed afterwards."""
    p = f"/uk-test-{uuid.uuid4().hex[:10]}"
    yield p
    for root in ([CG] if V2 else [CG / c for c in ("memory", "cpu", "cpuacct", "pids", "cpu,cpuacct")]):
        d = root / p.lstrip("/")
        if d.is_dir():
            for leaf in sorted(d.glob("*"), reverse=True):
                if leaf.is_dir():
                    os.rmdir(leaf)
            os.rmdir(d)


@pytest.fixture
def uk(scratch):
    u = Unikd(scratch, extra=["--memory-overhead", "32"])
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start_or_cleanup()
    yield u
    u.cleanup()
    assert u.vm_pids() == [] and u.dnsmasq_pids() == []


def info(uk, cid):
    return json.loads(uk.status(cid, verbose=True).info["info"])


def test_limits_update_and_removal(parent, uk):
    pb = uk.pb
    sid, cfg = uk.run_pod(name="lim", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
    cid = uk.create(sid, cfg, args=["idle"], memory=128 << 20, quota=50000, period=100000)
    uk.start_ctr(cid)
    path = info(uk, cid)["cgroup"]
    assert path.lstrip("/").startswith(parent.lstrip("/") + "/") and cid in path
    if V2:
        assert int(cg_file(path, "", "memory.max").read_text()) == (128 + 32) << 20
        assert cg_file(path, "", "cpu.max").read_text().split() == ["50000", "100000"]
        procs = cg_file(path, "", "cgroup.procs").read_text().split()
    else:
        assert int(cg_file(path, "memory", "memory.limit_in_bytes").read_text()) == (128 + 32) << 20
        assert int(cg_file(path, "cpu", "cpu.cfs_quota_us").read_text()) == 50000
        assert int(cg_file(path, "cpu", "cpu.cfs_period_us").read_text()) == 100000
        procs = cg_file(path, "memory", "cgroup.procs").read_text().split()
    # vmwrapper and QEMU are both inside.
    state = json.loads((uk.run / "vms" / cid / "vmwrapper.json").read_text())
    assert str(state["pid"]) in procs and str(state["qemu_pid"]) in procs

    uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
        container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=256 << 20, cpu_quota=200000,
                                                           cpu_period=100000, cpu_shares=512)))
    if V2:
        assert int(cg_file(path, "", "memory.max").read_text()) == (256 + 32) << 20
        assert cg_file(path, "", "cpu.max").read_text().split() == ["200000", "100000"]
    else:
        assert int(cg_file(path, "memory", "memory.limit_in_bytes").read_text()) == (256 + 32) << 20
        assert int(cg_file(path, "cpu", "cpu.cfs_quota_us").read_text()) == 200000
        assert int(cg_file(path, "cpu", "cpu.shares").read_text()) == 512

    uk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    assert not cg_file(path, "memory", "").exists()


def test_oom_kill_is_reported(scratch, parent):
    u = Unikd(scratch, extra=["--memory-overhead", "0"])  # parent is set up first, torn down last
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start()
    try:
        pb = u.pb
        sid, cfg = u.run_pod(name="oom", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
        # QEMU itself needs far more than 16 MiB: the host's OOM killer ends it.
        cid = u.create(sid, cfg, args=["idle"], memory=16 << 20)
        try:
            u.start_ctr(cid)
        except Exception:
            pass
        st = u.wait_exited(cid, timeout=30)
        assert st.reason == "OOMKilled" and st.exit_code == 137
    finally:
        u.cleanup()


def test_update_errors(uk):
    pb = uk.pb
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id="a" * 64,
                                                                         linux=pb.LinuxContainerResources()))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    sid, cfg = uk.run_pod(name="ue")
    cid = uk.create(sid, cfg, args=["exit:0"])
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(cpu_period=5)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cpu_period" in e.value.details()


def test_without_cgroups_the_pod_runs_and_status_says_why(scratch):
    u = Unikd(scratch, extra=["--cgroup-root", str(scratch / "no-cgroups-here")])
    u.import_image("hello:1", "--kernel", str(HELLO))
    u.start()
    try:
        st = u.rs.Status(u.pb.StatusRequest(verbose=True))
        cg = json.loads(st.info["info"])["cgroups"]
        assert cg["version"] == "none" and cg["why"]
        sid, cfg = u.run_pod(name="nocg")
        cid = u.create(sid, cfg, args=["spin"])
        u.start_ctr(cid)
        assert u.status(cid).status.state == u.pb.CONTAINER_RUNNING
        i = info(u, cid)
        assert "cgroup" not in i and i["cgroup_error"]
        # Stats still come, from the VM's own processes.
        stats = u.rs.ContainerStats(u.pb.ContainerStatsRequest(container_id=cid)).stats
        assert stats.cpu.usage_core_nano_seconds.value > 0 and stats.memory.rss_bytes.value > 0
    finally:
        u.cleanup()


def cpu_capped_parent(parent, quota):
    """Make the pod's cgroup parent with a CPU quota of its own (quota µs per 100 ms). On v1
    the kernel refuses a child asking for more than its parent."""
    d = (CG / parent.lstrip("/")) if V2 else (CG / "cpu" / parent.lstrip("/"))
    d.mkdir(parents=True)
    if V2:
        (d / "cpu.max").write_text(f"{quota} 100000")
    else:
        (d / "cpu.cfs_period_us").write_text("100000")
        (d / "cpu.cfs_quota_us").write_text(str(quota))
    return d


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "600"])
    yield p
    p.kill()
    p.wait()


def test_start_fails_closed_when_the_kernel_refuses_the_cgroup(parent, uk, sleeper):
    """The kernel refuses the VM's cgroup: on v1, a CPU quota above the parent's; on v2, a
    parent that holds a process cannot hand controllers down. The VM then does not run."""
    d = cpu_capped_parent(parent, 20000)
    if V2:
        (d / "cgroup.procs").write_text(str(sleeper.pid))
    pb = uk.pb
    sid, cfg = uk.run_pod(name="closed", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
    cid = uk.create(sid, cfg, args=["idle"], quota=50000, period=100000)
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        uk.start_ctr(cid)
    assert "cgroup" in e.value.details()
    if not V2:
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # No VM runs without its limits, and nothing of the cgroup is left.
    assert uk.vm_pids() == []
    st = uk.status(cid).status
    assert st.state == pb.CONTAINER_EXITED and "cgroup" in st.message
    assert [p.name for p in d.iterdir() if p.is_dir()] == []


def test_update_is_all_or_nothing(parent, uk):
    """A refused update changes nothing, in the cgroup or the record, and does not poison the
    next one. The kernel refuses the quota: on v1 it is above the parent's; on v2 the cpu
    controller is taken away from the VM's cgroup (its cpu.max goes)."""
    d = cpu_capped_parent(parent, 100000)
    pb = uk.pb
    import grpc
    sid, cfg = uk.run_pod(name="aon", linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent))
    cid = uk.create(sid, cfg, args=["idle"], memory=128 << 20, quota=50000, period=100000)
    uk.start_ctr(cid)
    path = info(uk, cid)["cgroup"]
    mem = cg_file(path, "memory", "memory.max" if V2 else "memory.limit_in_bytes")
    if V2:
        (d / "cgroup.subtree_control").write_text("-cpu")
    before = mem.read_text()
    # Memory is valid, the quota is refused: neither is applied.
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=256 << 20, cpu_quota=200000,
                                                               cpu_period=100000)))
    assert "cgroup" in e.value.details()
    assert mem.read_text() == before
    i = info(uk, cid)
    assert i["memory_limit"] == 128 << 20 and i["cpu_quota"] == 50000
    if not V2:
        assert int(cg_file(path, "cpu", "cpu.cfs_quota_us").read_text()) == 50000
        # A memory-only update afterwards works: the refused quota was not kept anywhere.
        uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=256 << 20)))
        assert int(mem.read_text()) == (256 + 32) << 20
        assert info(uk, cid)["memory_limit"] == 256 << 20


def test_update_never_sets_memory_below_the_guest(uk):
    pb = uk.pb
    import grpc
    sid, cfg = uk.run_pod(name="floor")
    cid = uk.create(sid, cfg, args=["idle"], memory=128 << 20)
    uk.start_ctr(cid)
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=cid, linux=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "memory_limit_in_bytes" in e.value.details()
    assert info(uk, cid)["memory_limit"] == 128 << 20
