"""The CRI stats calls against real VMs: a spinning guest uses about one core, an idle one
about none."""
import threading

import grpc
import pytest

from conftest import HELLO
from cri import Unikd




def cstats(uk, cid):
    return uk.rs.ContainerStats(uk.pb.ContainerStatsRequest(container_id=cid)).stats


def sample_rate(uk, cid):
    """Two samples about a second apart; the second's usage_nano_cores is the rate between."""
    cstats(uk, cid)
    threading.Event().wait(1.0)  # a fixed interval between samples, not a wait for a condition
    return cstats(uk, cid)


def test_spinning_and_idle_guests(uk):
    spin_sid, spin_cfg = uk.run_pod(name="spin", labels={"kind": "spin"})
    spin = uk.create(spin_sid, spin_cfg, args=["spin"], labels={"kind": "spin"})
    idle_sid, idle_cfg = uk.run_pod(name="idle")
    idle = uk.create(idle_sid, idle_cfg, args=["idle"])
    uk.start_ctr(spin)
    uk.start_ctr(idle)
    s = sample_rate(uk, spin)
    i = sample_rate(uk, idle)
    # About one core: well above half, not more than the VM's single vCPU plus QEMU's own threads.
    assert 0.5e9 < s.cpu.usage_nano_cores.value < 1.6e9, s.cpu
    assert i.cpu.usage_nano_cores.value < 0.1e9, i.cpu
    for st in (s, i):
        assert st.cpu.timestamp > 0 and st.memory.timestamp > 0 and st.writable_layer.timestamp > 0
        assert st.cpu.usage_core_nano_seconds.value > 0
        assert st.memory.working_set_bytes.value > 1 << 20
        assert st.memory.rss_bytes.value > 1 << 20
        assert st.memory.usage_bytes.value >= st.memory.working_set_bytes.value
    assert s.attributes.id == spin and s.attributes.metadata.name == "c" and s.attributes.labels["kind"] == "spin"
    # Cumulative CPU only grows.
    assert cstats(uk, spin).cpu.usage_core_nano_seconds.value >= s.cpu.usage_core_nano_seconds.value

    pb = uk.pb
    listed = uk.rs.ListContainerStats(pb.ListContainerStatsRequest()).stats
    assert {x.attributes.id for x in listed} == {spin, idle}
    f = pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=idle_sid))
    assert [x.attributes.id for x in uk.rs.ListContainerStats(f).stats] == [idle]
    f = pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(label_selector={"kind": "spin"}))
    assert [x.attributes.id for x in uk.rs.ListContainerStats(f).stats] == [spin]

    ps = uk.rs.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=spin_sid)).stats
    assert ps.attributes.id == spin_sid and ps.attributes.metadata.name == "spin"
    assert [c.attributes.id for c in ps.linux.containers] == [spin]
    assert ps.linux.cpu.usage_core_nano_seconds.value >= s.cpu.usage_core_nano_seconds.value
    all_pods = uk.rs.ListPodSandboxStats(pb.ListPodSandboxStatsRequest()).stats
    assert {p.attributes.id for p in all_pods} == {spin_sid, idle_sid}
    f = pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(label_selector={"kind": "spin"}))
    assert [p.attributes.id for p in uk.rs.ListPodSandboxStats(f).stats] == [spin_sid]

    # An exited container has no usage, but still a timestamp.
    uk.stop_ctr(spin, 0)
    ex = cstats(uk, spin)
    assert ex.cpu.timestamp > 0 and ex.cpu.usage_nano_cores.value == 0


def test_stats_errors(uk):
    pb = uk.pb
    for call, req in [(uk.rs.ContainerStats, pb.ContainerStatsRequest(container_id="d" * 64)),
                      (uk.rs.PodSandboxStats, pb.PodSandboxStatsRequest(pod_sandbox_id="d" * 64))]:
        with pytest.raises(grpc.RpcError) as e:
            call(req)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        uk.rs.ContainerStats(pb.ContainerStatsRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "container_id" in e.value.details()
