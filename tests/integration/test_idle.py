"""The i8254 PIT per framework (docs/guests.md, "Timers"): each guest contract's choice
reaches QEMU's -machine option, is shown in ContainerStatus verbose with its reason, and the
guest still works with it: Unikraft httpreply answers HTTP, Solo5 test_hello prints, the Linux
netguest boots and sleeps; unikd.io/pit overrides the choice, and a bad value is refused."""
import json
from pathlib import Path

import grpc

from crilog import parse_cri_records
from test_cri import code_of
from test_guests import SOLO5, UNIKRAFT, http_get, info, run_to_end, unikernels  # noqa: F401
from test_faults import cri_ts
from test_network import netguest, tsc_khz, wait_line  # noqa: F401  (netguest: the fixture that builds the Linux guest)


def qemu_machine(uk, cid):
    """The -machine value of the container's running QEMU, from its own command line."""
    pid = json.loads((uk.run / "vms" / cid / "vmwrapper.json").read_text())["qemu_pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return argv[argv.index(b"-machine") + 1].decode()


def accel():
    """The accelerator unikd's auto picks here (as vmwrapper: /dev/kvm opens)."""
    try:
        open("/dev/kvm", "rb+").close()
        return "kvm"
    except OSError:
        return "tcg"


def test_unikraft_keeps_the_pit_and_answers_http(uk):
    uk.import_image("httpreply:1", "--kernel", str(UNIKRAFT / "httpreply"))
    sid, cfg = uk.run_pod(name="ukidle")
    ip = uk.pod_status(sid).status.network.ip
    cid = uk.create(sid, cfg, image="httpreply:1", memory=128 << 20)
    uk.start_ctr(cid)
    g = info(uk, cid)["guest"]
    assert g["pit"] == "on" and "i8254" in g["pit_why"], g
    reply = http_get(uk, ip, 8123, 60)
    assert reply.startswith("HTTP/1.1 200 OK"), reply
    assert qemu_machine(uk, cid) == "pc"
    uk.remove_pod(sid)


def test_solo5_keeps_the_pit_and_prints(uk):
    uk.import_image("solo5-hello:1", "--kernel", str(SOLO5 / "test_hello.virtio"))
    sid, cfg = uk.run_pod(name="s5idle")
    cid, st, lines = run_to_end(uk, sid, cfg, "hello", image="solo5-hello:1", args=["a", "b"])
    assert "Hello, World" in lines and st.exit_code == 0, (lines[-5:], st.exit_code, st.message)
    g = info(uk, cid)["guest"]
    assert g["pit"] == "on" and "Solo5" in g["pit_why"], g


def test_linux_goes_without_the_pit_under_kvm_only(uk, netguest):  # noqa: F811
    uk.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                    str(netguest / "initrd.cpio.gz"), "--cmdline",
                    (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}")
    sid, cfg = uk.run_pod(name="linidle")
    # A guest sleep the host can time: 3 s between two lines, each with its CRI timestamp.
    cmd = ["sh", "-c", "echo before; sleep 3; echo after; sleep 600"]
    for name, ann, want in (("auto", {}, "microvm" if accel() == "tcg" else "microvm,pit=off"),
                            ("off", {"unikd.io/pit": "off"}, "microvm,pit=off")):
        cid = uk.create(sid, cfg, name=name, image="netguest:1", command=cmd, memory=256 << 20, annotations=ann)
        uk.start_ctr(cid)
        g = info(uk, cid)["guest"]
        assert g["pit"] == ("off-under-kvm" if name == "auto" else "off"), g
        assert qemu_machine(uk, cid) == want
        log = Path(uk.status(cid).status.log_path)
        wait_line(log, "after", timeout=120)
        stamps = {c.decode().strip(): cri_ts(ts) for ts, _, _, c in parse_cri_records(log.read_bytes(), True)}
        slept = stamps["after"] - stamps["before"]
        assert 2.5 < slept < 10, (name, slept)  # generous: TCG on a shared machine
        uk.rs.StopContainer(uk.pb.StopContainerRequest(container_id=cid, timeout=0))
    # Another machine than the contract's (created, not started): the contract's "off" was
    # not made for it, the PIT stays.
    cid = uk.create(sid, cfg, name="q35", image="netguest:1", command=cmd, memory=256 << 20,
                    annotations={"unikd.io/machine": "q35"})
    g = info(uk, cid)["guest"]
    assert g["pit"] == "on" and "unikd.io/machine" in g["pit_why"], g
    uk.remove_pod(sid)


def test_hello_keeps_the_pit_unless_told_and_a_bad_value_is_refused(uk):
    sid, cfg = uk.run_pod(name="helloidle")
    cid, st, lines = run_to_end(uk, sid, cfg, "pit", args=["sleep:200", "print:slept"])
    assert "slept" in lines and st.exit_code == 0, (lines, st.exit_code)
    g = info(uk, cid)["guest"]
    assert g["pit"] == "on" and "hello guest sleeps by it" in g["pit_why"], g
    # The pod's annotation takes it away: the guest finds no PIT (its own check, exit 4).
    sid2, cfg2 = uk.run_pod(name="hellonopit", annotations={"unikd.io/pit": "off"})
    cid, st, lines = run_to_end(uk, sid2, cfg2, "nopit", args=["sleep:200", "print:slept"])
    assert "hello: sleep: no i8254 PIT" in lines and st.exit_code == 4, (lines, st.exit_code)
    g = info(uk, cid)["guest"]
    assert g["pit"] == "off" and g["pit_why"] == "annotation unikd.io/pit", g
    # An idle guest without a PIT runs on (it never needed one).
    cid = uk.create(sid2, cfg2, name="idle", args=["idle"])
    uk.start_ctr(cid)
    assert qemu_machine(uk, cid) == "microvm,pit=off"
    assert uk.status(cid).status.state == uk.pb.CONTAINER_RUNNING
    code, msg = code_of(uk.create, sid, cfg, name="bad", annotations={"unikd.io/pit": "maybe"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unikd.io/pit" in msg, (code, msg)
    uk.remove_pod(sid)
    uk.remove_pod(sid2)
