"""The CRI endpoint end to end: a real unikd, real QEMU, the hello guest, a gRPC client."""
import json
import os
import signal
import threading

import grpc
import pytest

from conftest import FIRST_LINE, HELLO, wait_gone
from cri import Unikd
from crilog import cri_lines
from test_network import wait_line




def code_of(call, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        call(*a, **kw)
    return e.value.code(), e.value.details()


def log_lines(*paths):
    """The console's lines from a CRI log (vmwrapper writes kubelet's format for unikd),
    reassembled across P/F records and across the files given, the rotated one first."""
    return cri_lines(*paths)


# ---- Version and Status ----

def test_version(uk):
    v = uk.rs.Version(uk.pb.VersionRequest(version="v1"))
    assert v.runtime_name == "unikd" and v.runtime_api_version == "v1" and v.runtime_version


def test_status_conditions_and_verbose_info(uk):
    st = uk.rs.Status(uk.pb.StatusRequest(verbose=True))
    conds = {c.type: c for c in st.status.conditions}
    assert conds["RuntimeReady"].status is True
    assert conds["NetworkReady"].status is True, conds["NetworkReady"].message
    info = json.loads(st.info["info"])
    assert "QEMU emulator version" in info["qemuVersion"]
    assert isinstance(info["kvmAvailable"], bool)
    assert info["config"]["runDir"] == str(uk.run)


# ---- RunPodSandbox ----

def test_run_pod_returns_64_hex_id_and_is_ready(uk):
    sid, _ = uk.run_pod(name="web", labels={"app": "web"})
    assert len(sid) == 64 and all(c in "0123456789abcdef" for c in sid)
    st = uk.pod_status(sid).status
    assert st.state == uk.pb.SANDBOX_READY
    assert st.metadata.name == "web" and st.labels["app"] == "web"
    assert st.created_at > 0


@pytest.mark.parametrize("field", ["name", "uid", "namespace"])
def test_run_pod_requires_metadata(uk, field):
    cfg = uk.pod_config(name="x")
    setattr(cfg.metadata, field, "")
    code, msg = code_of(uk.rs.RunPodSandbox, uk.pb.RunPodSandboxRequest(config=cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"config.metadata.{field}" in msg


def test_run_pod_without_config_or_metadata(uk):
    code, msg = code_of(uk.rs.RunPodSandbox, uk.pb.RunPodSandboxRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config" in msg
    code, msg = code_of(uk.rs.RunPodSandbox, uk.pb.RunPodSandboxRequest(config=uk.pb.PodSandboxConfig()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "config.metadata" in msg


def test_runtime_handler(uk):
    for h in ("", "unikd"):
        uk.rs.RunPodSandbox(uk.pb.RunPodSandboxRequest(config=uk.pod_config(name="h" + h), runtime_handler=h))
    code, msg = code_of(uk.rs.RunPodSandbox,
                        uk.pb.RunPodSandboxRequest(config=uk.pod_config(name="k"), runtime_handler="kata"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "runtime_handler" in msg and "kata" in msg


def test_host_network_pod_is_refused(uk):
    pb = uk.pb
    cfg = uk.pod_config(name="hostnet", linux=pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE))))
    code, msg = code_of(uk.rs.RunPodSandbox, pb.RunPodSandboxRequest(config=cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "network" in msg


def test_pod_name_clash_names_the_holder(uk):
    sid, _ = uk.run_pod(name="dup", uid="u1")
    code, msg = code_of(uk.rs.RunPodSandbox, uk.pb.RunPodSandboxRequest(config=uk.pod_config(name="dup", uid="u1")))
    assert code == grpc.StatusCode.ALREADY_EXISTS and sid in msg and "dup_default_u1_0" in msg
    # Another attempt is another name.
    uk.run_pod(name="dup", uid="u1", attempt=1)
    # Once removed, the name is free again.
    uk.remove_pod(sid)
    uk.run_pod(name="dup", uid="u1")


def test_bad_annotation_value_is_refused(uk):
    code, msg = code_of(uk.rs.RunPodSandbox, uk.pb.RunPodSandboxRequest(
        config=uk.pod_config(name="a", annotations={"unikd.io/accel": "hvf"})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unikd.io/accel" in msg


# ---- pod status, list and filters ----

def test_pod_status_by_prefix_and_unknown(uk):
    sid, _ = uk.run_pod(name="p")
    assert uk.pod_status(sid[:12]).status.id == sid
    code, msg = code_of(uk.rs.PodSandboxStatus, uk.pb.PodSandboxStatusRequest(pod_sandbox_id="f" * 64))
    assert code == grpc.StatusCode.NOT_FOUND
    code, msg = code_of(uk.rs.PodSandboxStatus, uk.pb.PodSandboxStatusRequest(pod_sandbox_id=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pod_sandbox_id" in msg
    v = uk.pod_status(sid, verbose=True)
    assert json.loads(v.info["info"])["id"] == sid


def test_list_pod_filters(uk):
    a, _ = uk.run_pod(name="a", labels={"tier": "front", "app": "x"})
    b, _ = uk.run_pod(name="b", labels={"tier": "back", "app": "x"})
    # Listed once READY (unikd keeps each item's encoding), then stopped: the next list has
    # the new state and every other field as before (src/cri/cri_runtime.c, "list items").
    before = {p.id: p for p in uk.pods()}
    assert {p.state for p in before.values()} == {uk.pb.SANDBOX_READY}
    uk.rs.StopPodSandbox(uk.pb.StopPodSandboxRequest(pod_sandbox_id=b))
    after = {p.id: p for p in uk.pods()}
    assert after[b].state == uk.pb.SANDBOX_NOTREADY and after[a].state == uk.pb.SANDBOX_READY
    after[b].state = uk.pb.SANDBOX_READY
    assert after == before
    st = uk.pod_status(b).status
    assert (before[b].metadata, dict(before[b].labels), dict(before[b].annotations), before[b].created_at) == \
        (st.metadata, dict(st.labels), dict(st.annotations), st.created_at)
    ids = lambda items: sorted(p.id for p in items)
    assert ids(uk.pods()) == sorted([a, b])
    assert ids(uk.pods(id=a)) == [a]
    assert ids(uk.pods(id=a[:10])) == [a]
    assert ids(uk.pods(state=uk.pb.PodSandboxStateValue(state=uk.pb.SANDBOX_READY))) == [a]
    assert ids(uk.pods(state=uk.pb.PodSandboxStateValue(state=uk.pb.SANDBOX_NOTREADY))) == [b]
    assert ids(uk.pods(label_selector={"app": "x"})) == sorted([a, b])
    assert ids(uk.pods(label_selector={"app": "x", "tier": "back"})) == [b]
    assert ids(uk.pods(label_selector={"tier": "none"})) == []


def test_stop_and_remove_are_idempotent_and_accept_unknown_ids(uk):
    sid, _ = uk.run_pod(name="i")
    for _ in range(2):
        uk.rs.StopPodSandbox(uk.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    assert uk.pod_status(sid).status.state == uk.pb.SANDBOX_NOTREADY
    for _ in range(2):
        uk.rs.RemovePodSandbox(uk.pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert uk.pods() == []
    uk.rs.StopPodSandbox(uk.pb.StopPodSandboxRequest(pod_sandbox_id="a" * 64))
    uk.rs.RemovePodSandbox(uk.pb.RemovePodSandboxRequest(pod_sandbox_id="a" * 64))
    uk.rs.RemoveContainer(uk.pb.RemoveContainerRequest(container_id="b" * 64))


# ---- containers ----

def test_lifecycle_exit_codes_0_and_3(uk):
    sid, cfg = uk.run_pod(name="life")
    for attempt, code in enumerate([0, 3]):
        cid = uk.create(sid, cfg, args=[f"exit:{code}"], attempt=attempt, labels={"n": str(attempt)})
        st = uk.status(cid).status
        assert st.state == uk.pb.CONTAINER_CREATED and st.created_at > 0 and st.started_at == 0
        uk.start_ctr(cid)
        st = uk.wait_exited(cid)
        assert st.state == uk.pb.CONTAINER_EXITED
        assert st.exit_code == code
        assert st.reason == ("Completed" if code == 0 else "Error")
        assert 0 < st.created_at <= st.started_at <= st.finished_at
        assert st.image.image == "hello:1" and st.image_ref.startswith("sha256:")
        assert st.labels["n"] == str(attempt)
        lines = log_lines(st.log_path)
        assert lines[0] == FIRST_LINE and "default" in lines
        assert st.log_path == str(uk.logs / "life" / "c" / f"{attempt}.log")


def test_idle_guest_stopped_with_timeout_0_and_2(uk):
    sid, cfg = uk.run_pod(name="idle")
    for attempt, timeout in enumerate([0, 2]):
        cid = uk.create(sid, cfg, args=["idle"], attempt=attempt)
        uk.start_ctr(cid)
        assert uk.status(cid).status.state == uk.pb.CONTAINER_RUNNING
        uk.stop_ctr(cid, timeout=timeout)
        st = uk.status(cid).status
        assert st.state == uk.pb.CONTAINER_EXITED and st.exit_code == 137
        uk.stop_ctr(cid, timeout=timeout)  # idempotent
        assert uk.status(cid).status.exit_code == 137


def test_command_args_and_envs_make_the_cmdline(uk):
    sid, cfg = uk.run_pod(name="cmd")
    cid = uk.create(sid, cfg, command=["print:own", "env"], args=["exit:0"], envs={"FOO": "bar", "X": "1"})
    uk.start_ctr(cid)
    st = uk.wait_exited(cid)
    lines = log_lines(st.log_path)
    assert "own" in lines and "default" not in lines
    assert "FOO=bar" in lines and "X=1" in lines
    info = json.loads(uk.status(cid, verbose=True).info["info"])
    assert info["cmdline"] == "FOO=bar X=1 print:own env exit:0"


@pytest.mark.parametrize("kw,field", [
    (dict(command=["print:a b"]), "config.command[0]"),
    (dict(args=["ok", "two words"]), "config.args[1]"),
    (dict(envs={"A B": "x"}), "config.envs"),
    (dict(image=""), "config.image.image"),
    (dict(name=""), "config.metadata.name"),
    (dict(memory=1 << 20), "memory_limit_in_bytes"),
])
def test_create_refuses_bad_fields(uk, kw, field):
    sid, cfg = uk.run_pod(name="bad")
    code, msg = code_of(uk.create, sid, cfg, **kw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in msg


def test_create_unknown_sandbox_or_image_is_not_found(uk):
    sid, cfg = uk.run_pod(name="nf")
    code, msg = code_of(uk.create, "e" * 64, cfg)
    assert code == grpc.StatusCode.NOT_FOUND
    code, msg = code_of(uk.create, sid, cfg, image="nosuch:1")
    assert code == grpc.StatusCode.NOT_FOUND and "nosuch:1" in msg


def test_resources_map_to_memory_and_vcpus(uk):
    sid, cfg = uk.run_pod(name="res")
    cid = uk.create(sid, cfg, memory=100 * (1 << 20) + 1, quota=150000, period=100000, args=["exit:0"])
    info = json.loads(uk.status(cid, verbose=True).info["info"])
    assert info["memory_mib"] == 101 and info["vcpus"] == 2
    cid2 = uk.create(sid, cfg, name="d", args=["exit:0"])
    info = json.loads(uk.status(cid2, verbose=True).info["info"])
    assert info["memory_mib"] == 64 and info["vcpus"] == 1


def test_one_running_vm_per_pod(uk):
    sid, cfg = uk.run_pod(name="one")
    first = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(first)
    code, msg = code_of(uk.create, sid, cfg, name="second")
    assert code == grpc.StatusCode.FAILED_PRECONDITION and first in msg and "one VM" in msg
    uk.stop_ctr(first, 0)
    # Once the first has exited: the restart (attempt 1) and a second container both work.
    again = uk.create(sid, cfg, attempt=1, args=["exit:0"])
    uk.start_ctr(again)
    assert uk.wait_exited(again).exit_code == 0


def test_container_name_clash_and_start_twice(uk):
    sid, cfg = uk.run_pod(name="cc")
    cid = uk.create(sid, cfg, args=["exit:0"])
    code, msg = code_of(uk.create, sid, cfg, args=["exit:0"])
    assert code == grpc.StatusCode.ALREADY_EXISTS and cid in msg
    uk.start_ctr(cid)
    uk.wait_exited(cid)
    code, msg = code_of(uk.start_ctr, cid)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "exited" in msg


def test_start_failure_carries_qemus_message(uk):
    sid, cfg = uk.run_pod(name="fail")
    # A valid CPU model that QEMU refuses under the chosen accelerator: "host" needs KVM.
    cid = uk.create(sid, cfg, args=["exit:0"], annotations={"unikd.io/cpu": "host", "unikd.io/accel": "tcg"})
    code, msg = code_of(uk.start_ctr, cid)
    assert code == grpc.StatusCode.UNKNOWN and "requires KVM" in msg
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and st.reason == "Error" and "requires KVM" in st.message
    assert st.exit_code != 0


def test_container_filters_and_unknown_ids(uk):
    a_sid, a_cfg = uk.run_pod(name="fa")
    b_sid, b_cfg = uk.run_pod(name="fb")
    a = uk.create(a_sid, a_cfg, args=["idle"], labels={"k": "a"})
    b = uk.create(b_sid, b_cfg, args=["exit:0"], labels={"k": "b"})
    uk.start_ctr(a)
    ids = lambda cs: sorted(c.id for c in cs)
    assert ids(uk.containers()) == sorted([a, b])
    assert ids(uk.containers(id=a)) == [a]
    assert ids(uk.containers(id=a[:7])) == [a]
    assert ids(uk.containers(pod_sandbox_id=b_sid)) == [b]
    assert ids(uk.containers(state=uk.pb.ContainerStateValue(state=uk.pb.CONTAINER_RUNNING))) == [a]
    assert ids(uk.containers(state=uk.pb.ContainerStateValue(state=uk.pb.CONTAINER_CREATED))) == [b]
    assert ids(uk.containers(label_selector={"k": "b"})) == [b]
    assert uk.status(a[:9]).status.id == a
    # Listed RUNNING, then stopped: the next list has the new state and every other field
    # as before (each item's encoding is kept until its state changes).
    before = {c.id: c for c in uk.containers()}
    uk.rs.StopContainer(uk.pb.StopContainerRequest(container_id=a, timeout=0))
    after = {c.id: c for c in uk.containers()}
    assert after[a].state == uk.pb.CONTAINER_EXITED and after[b] == before[b]
    after[a].state = uk.pb.CONTAINER_RUNNING
    assert after == before
    st = uk.status(a).status
    assert (before[a].metadata, before[a].image, before[a].image_ref, dict(before[a].labels),
            dict(before[a].annotations), before[a].created_at) == \
        (st.metadata, st.image, st.image_ref, dict(st.labels), dict(st.annotations), st.created_at)
    for call, req in [(uk.rs.ContainerStatus, uk.pb.ContainerStatusRequest(container_id="c" * 64)),
                      (uk.rs.StartContainer, uk.pb.StartContainerRequest(container_id="c" * 64)),
                      (uk.rs.StopContainer, uk.pb.StopContainerRequest(container_id="c" * 64)),
                      (uk.rs.ReopenContainerLog, uk.pb.ReopenContainerLogRequest(container_id="c" * 64))]:
        assert code_of(call, req)[0] == grpc.StatusCode.NOT_FOUND
    code, msg = code_of(uk.rs.ContainerStatus, uk.pb.ContainerStatusRequest(container_id=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "container_id" in msg


def test_remove_container_is_idempotent_and_stops_it(uk):
    sid, cfg = uk.run_pod(name="rm")
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    for _ in range(2):
        uk.rs.RemoveContainer(uk.pb.RemoveContainerRequest(container_id=cid))
    assert uk.containers() == []
    assert not (uk.run / "vms" / cid).exists()


def test_a_pod_with_300_containers_is_stopped_and_removed_whole(uk):
    """No fixed cap on a pod's containers: stop and remove reach every one (kubelet creates
    a new container per restart, so a crash-looping pod collects many)."""
    sid, cfg = uk.run_pod(name="many")
    ids = {uk.create(sid, cfg, attempt=i, args=["exit:0"]) for i in range(300)}
    assert {c.id for c in uk.containers(pod_sandbox_id=sid)} == ids
    uk.rs.StopPodSandbox(uk.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    assert {c.state for c in uk.containers(pod_sandbox_id=sid)} == {uk.pb.CONTAINER_EXITED}
    uk.rs.RemovePodSandbox(uk.pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert uk.containers() == [] and uk.pods() == []
    assert list((uk.state / "containers").glob("*.json")) == []
    assert list((uk.state / "containers").glob("*.d")) == []


def test_reopen_log_during_a_flood_loses_and_duplicates_nothing(uk):
    sid, cfg = uk.run_pod(name="rot")
    n = 20000  # a few seconds of console output on a nested hypervisor
    cid = uk.create(sid, cfg, args=[f"lines:{n}", "exit:0"])
    uk.start_ctr(cid)
    path = uk.status(cid).status.log_path
    os.rename(path, path + ".1")  # what kubelet does before it asks for a reopen
    uk.rs.ReopenContainerLog(uk.pb.ReopenContainerLogRequest(container_id=cid))
    assert uk.wait_exited(cid).exit_code == 0
    # Every record is whole in one file or the other (a torn one fails the parse), and
    # the lines join across both.
    lines = log_lines(path + ".1", path)
    assert [l for l in lines if l.startswith("line ")] == [f"line {i}" for i in range(1, n + 1)]
    assert lines.count(FIRST_LINE) == 1


def test_reopen_log_answers_once_reopened_or_with_its_error(uk):
    """ReopenContainerLog returns after vmwrapper has the new file open; when the path
    cannot be a log file, it fails and says why, and the console goes on in the old file."""
    sid, cfg = uk.run_pod(name="reo")
    cid = uk.create(sid, cfg, args=["print:before", "sleep:3000", "print:after", "exit:0"])
    uk.start_ctr(cid)
    path = uk.status(cid).status.log_path
    # StartContainer answers once the VM runs, not once the guest has printed: "before" must
    # be in the log before it is moved away.
    wait_line(path, "before")
    os.rename(path, path + ".1")
    os.mkdir(path)  # a directory where the log file should be
    code, msg = code_of(uk.rs.ReopenContainerLog, uk.pb.ReopenContainerLogRequest(container_id=cid))
    assert code != grpc.StatusCode.OK and path in msg
    os.rmdir(path)
    uk.rs.ReopenContainerLog(uk.pb.ReopenContainerLogRequest(container_id=cid))
    assert os.path.isfile(path)  # made by the reopen, before the call returned
    assert uk.wait_exited(cid).exit_code == 0
    assert "after" in log_lines(path) and "before" in log_lines(path + ".1") and "before" not in log_lines(path)


@pytest.mark.parametrize("method,req", [
    ("ExecSync", "ExecSyncRequest"), ("Exec", "ExecRequest"), ("CheckpointContainer", "CheckpointContainerRequest"),
])
def test_unimplemented_calls_say_so(uk, method, req):
    code, msg = code_of(getattr(uk.rs, method), getattr(uk.pb, req)())
    assert code == grpc.StatusCode.UNIMPLEMENTED and msg


def test_update_runtime_config_and_runtime_config(uk):
    pb = uk.pb
    uk.rs.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.99.0.0/24"))))
    code, msg = code_of(uk.rs.UpdateRuntimeConfig, pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="bogus"))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pod_cidr" in msg
    assert uk.rs.RuntimeConfig(pb.RuntimeConfigRequest()).linux.cgroup_driver == pb.CGROUPFS


# ---- images ----

def test_images(uk, scratch):
    pb = uk.pb
    imgs = uk.im.ListImages(pb.ListImagesRequest()).images
    assert len(imgs) == 1
    img = imgs[0]
    assert img.id.startswith("sha256:") and len(img.id) == 71
    assert list(img.repo_tags) == ["docker.io/library/hello:1"] and list(img.repo_digests) == []
    assert img.size == HELLO.stat().st_size
    for ref in ("hello:1", "docker.io/library/hello:1", img.id, img.id[7:19]):
        assert uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image.id == img.id
    v = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="hello:1"), verbose=True))
    assert json.loads(v.info["info"])["kind"] == "unikd-import"
    # Absent: an empty answer, not an error.
    assert not uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="nope:1"))).HasField("image")
    assert uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image="hello:1"))).image_ref == img.id
    code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image="registry.example/x:1")))
    assert code == grpc.StatusCode.NOT_FOUND and "registr" in msg
    fs = uk.im.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems[0]
    assert fs.timestamp > 0 and fs.used_bytes.value > 0 and fs.inodes_used.value > 0
    # An import while unikd runs is visible to the next call.
    uk.import_image("other:2", "--kernel", str(HELLO), "--cmdline", "exit:0")
    tags = [t for i in uk.im.ListImages(pb.ListImagesRequest()).images for t in i.repo_tags]
    assert "docker.io/library/other:2" in tags
    filt = pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="other:2")))
    filtered = uk.im.ListImages(filt).images
    assert len(filtered) == 1 and "docker.io/library/other:2" in filtered[0].repo_tags
    for _ in range(2):
        uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="other:2")))
    tags = [t for i in uk.im.ListImages(pb.ListImagesRequest()).images for t in i.repo_tags]
    assert "docker.io/library/other:2" not in tags and "docker.io/library/hello:1" in tags
    code, msg = code_of(uk.im.ImageStatus, pb.ImageStatusRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image" in msg


# ---- concurrency, slow calls, restarts ----

def test_twenty_pods_in_parallel(uk):
    results, errors = {}, []

    def one(i):
        try:
            sid, cfg = uk.run_pod(name=f"par{i}")
            cid = uk.create(sid, cfg, args=["idle"])
            uk.start_ctr(cid)
            results[i] = (sid, cid)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    running = uk.containers(state=uk.pb.ContainerStateValue(state=uk.pb.CONTAINER_RUNNING))
    assert len(running) == 20
    assert len(uk.vm_pids()) == 40  # a vmwrapper and a QEMU each

    threads = [threading.Thread(target=uk.remove_pod, args=(sid,)) for sid, _ in results.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert uk.pods() == [] and uk.containers() == []
    assert uk.vm_pids() == []
    assert list((uk.run / "vms").iterdir()) == []
    assert list((uk.state / "sandboxes").glob("*.json")) == []
    assert list((uk.state / "containers").glob("*.json")) == []
    # Every reserved name is free again.
    for i in range(20):
        uk.run_pod(name=f"par{i}")


def test_a_slow_stop_does_not_hold_up_other_calls(uk):
    sid, cfg = uk.run_pod(name="slow")
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    t = threading.Thread(target=uk.stop_ctr, args=(cid, 5))
    t.start()
    # While the stop waits out its grace period, other calls are answered.
    for _ in range(20):
        uk.rs.Version(uk.pb.VersionRequest())
    assert uk.status(cid).status.state == uk.pb.CONTAINER_RUNNING
    assert t.is_alive()
    t.join()
    assert uk.status(cid).status.exit_code == 137


def test_sigterm_finishes_calls_in_flight_and_leaves_vms_running(uk):
    sid, cfg = uk.run_pod(name="term")
    keep = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(keep)
    sid2, cfg2 = uk.run_pod(name="term2")
    slow = uk.create(sid2, cfg2, args=["idle"])
    uk.start_ctr(slow)
    done = {}

    def stop():
        try:
            uk.stop_ctr(slow, 3)
            done["ok"] = True
        except grpc.RpcError as e:
            done["err"] = e

    t = threading.Thread(target=stop)
    t.start()
    # The stop must really be in flight, in unikd's hands, before the signal: a call not yet
    # read when the listener closes is refused, as it should be.
    uk.wait_log(f'ctr={slow} msg="stopping container"')
    assert t.is_alive()
    uk.proc.send_signal(signal.SIGTERM)
    t.join()
    assert uk.stop() == 0
    assert done.get("ok") is True, done
    wpid = json.loads((uk.run / "vms" / keep / "vmwrapper.json").read_text())["pid"]
    os.kill(wpid, 0)  # still alive
    uk.start()
    assert uk.status(keep).status.state == uk.pb.CONTAINER_RUNNING
    assert uk.status(slow).status.exit_code == 137


def test_restart_keeps_pods_running_and_stoppable(uk):
    sid, cfg = uk.run_pod(name="rs")
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    sid2, cfg2 = uk.run_pod(name="rs2")
    # This one ends while unikd is down: its real exit code must show afterwards.
    late = uk.create(sid2, cfg2, args=["idle"])
    uk.start_ctr(late)
    assert uk.stop() == 0
    vw = json.loads((uk.run / "vms" / late / "vmwrapper.json").read_text())
    os.kill(vw["qemu_pid"], signal.SIGKILL)
    assert wait_gone(vw["pid"])  # vmwrapper recorded the end and left, before unikd is back
    uk.start()
    assert {p.id for p in uk.pods()} == {sid, sid2}
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_RUNNING
    ls = uk.status(late).status
    assert ls.state == uk.pb.CONTAINER_EXITED and ls.exit_code == 137 and ls.reason == "Killed"
    uk.stop_ctr(cid, 0)
    assert uk.status(cid).status.exit_code == 137


def test_exited_vm_after_restart_shows_its_code(uk):
    sid, cfg = uk.run_pod(name="ex")
    cid = uk.create(sid, cfg, args=["exit:42"])
    uk.start_ctr(cid)
    uk.stop()
    uk.start()
    st = uk.wait_exited(cid)
    assert st.exit_code == 42 and st.reason == "Error"
