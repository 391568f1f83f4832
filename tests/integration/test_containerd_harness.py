"""The containerd harness (containerd.py) on its own: a busybox pod's whole life through
containerd's CRI, called directly with the project's runtime.v1 stubs, and nothing left after."""
import os
import re
from pathlib import Path

import grpc
import pytest

from containerd import BUSYBOX_IMAGE, Containerd, wait_in_dir
from cri import stubs

# containerd writes RFC 3339 times with trailing zeros trimmed, so the fraction varies in length.
HELLO_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z stdout F hello")


@pytest.fixture
def ctrd(scratch):
    c = Containerd(scratch)
    try:
        c.start().import_images()
        yield c
    finally:
        c.cleanup()
    assert c.pids() == [] and c.mounts() == [] and c.cgroup_dirs() == []
    assert c.ns not in os.listdir("/run/netns")


def ns_mounts(c):
    """The mount points in containerd's private namespace: the pods add their netns, shm and
    container root filesystems there."""
    return {line.split()[4] for line in Path(f"/proc/{c.proc.pid}/mountinfo").read_text().splitlines()}


def test_busybox_pod_lifecycle_through_cri(ctrd):
    pb, g = stubs()
    with grpc.insecure_channel(f"unix://{ctrd.sock}") as ch:
        rs = g.RuntimeServiceStub(ch)
        base = ns_mounts(ctrd)
        ver = rs.Version(pb.VersionRequest())
        assert ver.runtime_name == "containerd" and ver.runtime_api_version == "v1"
        logdir = ctrd.logs / "pod"
        pod = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="bb", uid="uid-bb", namespace="default"),
            log_directory=str(logdir), hostname="bb",
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=ctrd.cgroup_parent))
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=pod)).pod_sandbox_id
        st = rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.SANDBOX_READY
        assert st.network.ip.startswith("10.99.0."), st.network.ip  # the test conflist's bridge

        cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=BUSYBOX_IMAGE),
                                 command=["/bin/sh", "-c", "echo hello; exec sleep 1000"], log_path="c/0.log")
        cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg,
                                                           sandbox_config=pod)).container_id
        rs.StartContainer(pb.StartContainerRequest(container_id=cid))
        log = logdir / "c" / "0.log"
        lines = wait_in_dir(log.parent, lambda: log.exists() and log.read_text().splitlines(), 60,
                            what="the container's first log line")
        assert HELLO_RECORD.fullmatch(lines[0]), lines
        # The pod's processes are in the cgroup parent we gave it, not elsewhere.
        assert ctrd.cgroup_dirs() and ctrd.cgroup_pids()
        cst = rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
        assert cst.state == pb.CONTAINER_RUNNING
        assert any("/netns/cni-" in m for m in ns_mounts(ctrd) - base), ns_mounts(ctrd) - base
        assert any(m.endswith("/rootfs") for m in ns_mounts(ctrd) - base), ns_mounts(ctrd) - base
        shims = [p for p in ctrd.pids() if p != ctrd.proc.pid]
        assert shims, "no shim or container process found: the harness would miss them at clean-up"

        rs.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
        cst = rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
        assert cst.state == pb.CONTAINER_EXITED and cst.exit_code == 137, (cst.state, cst.exit_code)
        rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        assert list(rs.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
        assert list(rs.ListContainers(pb.ListContainersRequest()).containers) == []

    # containerd alone is left: no shim, runc or container process, no pod mount, netns or cgroup.
    assert ctrd.pids() == [ctrd.proc.pid]
    assert ns_mounts(ctrd) == base, ns_mounts(ctrd) ^ base
    netns_dir = ctrd.root / "bind/run/netns"
    assert not netns_dir.exists() or os.listdir(netns_dir) == []
    assert ctrd.cgroup_pids() == set()
    assert all(not any(p.is_dir() for p in d.iterdir()) for d in ctrd.cgroup_dirs())


def test_containerd_killed_and_restarted_keeps_its_pods(ctrd):
    """The harness's kill and restart: a SIGKILLed containerd leaves its shims and pods
    running; started again in the same namespaces it finds them, stops and removes them, and
    nothing is left (the pods' netns mounts are still in the mount namespace it enters)."""
    pb, _ = stubs()
    base = ns_mounts(ctrd)
    pod = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="k", uid="uid-k", namespace="default"),
                              log_directory=str(ctrd.logs / "k"),
                              linux=pb.LinuxPodSandboxConfig(cgroup_parent=ctrd.cgroup_parent))
    sid = ctrd.rs.RunPodSandbox(pb.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=BUSYBOX_IMAGE),
                             command=["sleep", "1000"], log_path="c/0.log")
    cid = ctrd.rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=cfg,
                                                            sandbox_config=pod)).container_id
    ctrd.rs.StartContainer(pb.StartContainerRequest(container_id=cid))
    old = ctrd.proc.pid
    shims = set(ctrd.pids()) - {old}
    ctrd.kill()
    assert shims and shims <= set(ctrd.pids()), "the shims ended with containerd"
    ctrd.restart()
    assert ctrd.proc.pid != old
    st = ctrd.rs.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
    assert st.state == pb.SANDBOX_READY
    assert ctrd.rs.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status.state == pb.CONTAINER_RUNNING
    ctrd.remove_all_pods()
    assert list(ctrd.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
    assert ctrd.pids() == [ctrd.proc.pid]
    assert ns_mounts(ctrd) == base, ns_mounts(ctrd) ^ base
    assert ctrd.cgroup_pids() == set()
