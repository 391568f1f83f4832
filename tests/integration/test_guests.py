"""Real unikernels through the CRI: unchanged third-party builds of Unikraft 0.17 and Solo5
0.12.1 (../shared/unikernels, beside the repository; see its README), and a Linux guest,
each run by its framework's guest contract (docs/guests.md): machine and firmware, devices,
network configuration, command line and exit codes as the framework expects them."""
import json
import socket
import time

import grpc
import pytest

from conftest import REPO
from crilog import cri_lines
from cri import Unikd
from test_cri import code_of
from test_network import netguest, tsc_khz  # noqa: F401  (the fixture that builds the Linux guest)
from test_pull import in_netns, reg, tar_with  # noqa: F401  (the registry fixture)
from registry import Pusher
from test_vmwrapper import ICMP_ECHO

UNIKERNELS = REPO.parent / "shared" / "unikernels"
UNIKRAFT = UNIKERNELS / "unikraft-0.17.0"
SOLO5 = UNIKERNELS / "solo5-0.12.1"
URUNC = "com.urunc.unikernel."


@pytest.fixture(autouse=True, scope="module")
def unikernels():
    """The fixtures must be there: a missing folder fails every test here, saying where."""
    for f in (UNIKRAFT / "helloworld", UNIKRAFT / "httpreply", SOLO5 / "test_hello.virtio"):
        assert f.is_file(), f"the third-party unikernels are expected at {UNIKERNELS} (missing {f})"


def info(uk, cid):
    return json.loads(uk.status(cid, verbose=True).info["info"])


def run_to_end(uk, sid, cfg, name, **kw):
    cid = uk.create(sid, cfg, name=name, **kw)
    uk.start_ctr(cid)
    st = uk.wait_exited(cid, timeout=120)
    return cid, st, cri_lines(st.log_path)


def push_urunc(uk, reg, name, files, **keys):
    """A urunc image: the files in one layer, the com.urunc.unikernel.* keys as annotations."""
    layer = tar_with({k.lstrip("/"): v for k, v in files.items()})
    ann = {URUNC + k: v for k, v in keys.items()}
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image(name, "1", layers=(layer,), annotations=ann))
    ref = f"{reg.host}/{name}:1"
    uk.im.PullImage(uk.pb.PullImageRequest(image=uk.pb.ImageSpec(image=ref)))
    return ref


# ---- Unikraft ----

def check_helloworld(uk, sid, cfg, image, name):
    cid, st, lines = run_to_end(uk, sid, cfg, name, image=image, args=["hello, world", "two"])
    assert "Hello world!" in lines, lines
    args_line = next(l for l in lines if l.startswith("Arguments:"))
    assert args_line.endswith('"hello, world" "two"'), args_line
    assert st.reason == "Completed" and st.exit_code == 0, (st.reason, st.exit_code, st.message)
    return info(uk, cid)


def test_unikraft_helloworld_as_urunc_image_and_as_a_plain_import(uk, reg):
    sid, cfg = uk.run_pod(name="ukhello")
    uk.import_image("ukhello:1", "--kernel", str(UNIKRAFT / "helloworld"))
    i = check_helloworld(uk, sid, cfg, "ukhello:1", "plain")
    assert i["guest"]["framework"] == "unikraft" and "Unikraft" in i["guest"]["found_by"], i["guest"]
    assert i["machine"] == "pc" and i["firmware"] == "seabios" and i["exit"] == "unikraft"
    ref = push_urunc(uk, reg, "ukhello", {"/unikernel/helloworld": (UNIKRAFT / "helloworld").read_bytes()},
                     binary="/unikernel/helloworld", unikernelType="unikraft", unikernelVersion="0.17.0",
                     hypervisor="qemu")
    i = check_helloworld(uk, sid, cfg, ref, "urunc")
    assert i["guest"]["framework"] == "unikraft" and "unikernelType" in i["guest"]["found_by"], i["guest"]
    img = uk.im.ImageStatus(uk.pb.ImageStatusRequest(image=uk.pb.ImageSpec(image=ref), verbose=True))
    assert json.loads(img.info["info"])["guest"]["framework"] == "unikraft"


def http_get(uk, ip, port, deadline_s):
    """GET / from the node (unikd's network namespace), trying until the deadline: the guest
    may still be taking its lease."""
    def attempt():
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            try:
                with socket.create_connection((ip, port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    s.settimeout(5)
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                    return data.decode(errors="replace")
            except OSError as e:
                last = e
                time.sleep(0.5)  # a connect refused while the guest boots: try again
        raise AssertionError(f"no HTTP answer from {ip}:{port} within {deadline_s} s: {last}")
    return in_netns(uk.ns, attempt)


def test_unikraft_httpreply_static_and_by_dhcp(uk, reg):
    ref = push_urunc(uk, reg, "httpreply", {"/unikernel/httpreply": (UNIKRAFT / "httpreply").read_bytes()},
                     binary="/unikernel/httpreply", unikernelType="unikraft", unikernelVersion="0.17.0")
    for mode in ("static", "dhcp"):
        ann = {"unikd.io/network-config": "dhcp"} if mode == "dhcp" else {}
        sid, cfg = uk.run_pod(name=f"http-{mode}", annotations=ann)
        ip = uk.pod_status(sid).status.network.ip
        cid = uk.create(sid, cfg, image=ref, memory=128 << 20)
        uk.start_ctr(cid)
        i = info(uk, cid)
        assert i["guest"]["dhcp"] is (mode == "dhcp")
        assert ("netdev.ip=" in i["cmdline"]) is (mode == "static"), i["cmdline"]
        reply = http_get(uk, ip, 8123, 60)
        assert reply.startswith("HTTP/1.1 200 OK") and "It works!" in reply, reply
        uk.remove_pod(sid)


# ---- Solo5 ----

@pytest.fixture
def solo5(uk):
    for t in ("hello", "quiet", "exception", "ssp", "blk", "net"):
        uk.import_image(f"solo5-{t}:1", "--kernel", str(SOLO5 / f"test_{t}.virtio"))
    return uk


def test_solo5_hello_quiet_and_crashes(solo5):
    uk = solo5
    sid, cfg = uk.run_pod(name="solo5")  # a pod with networking: test_hello declares none
    cid, st, lines = run_to_end(uk, sid, cfg, "hello", image="solo5-hello:1", args=["one", "two"])
    assert "Hello, World" in " ".join(lines) and "Command line is: 'one two'" in lines, lines
    assert st.reason == "Completed" and st.exit_code == 0, (st.reason, st.message)
    i = info(uk, cid)
    assert i["guest"]["framework"] == "solo5" and i["nic"] is False and i["exit"] == "solo5"
    assert not any("PCI enumeration failed" in l for l in lines)
    _, st, lines = run_to_end(uk, sid, cfg, "quiet", image="solo5-quiet:1")
    assert "SUCCESS" in lines and st.reason == "Completed" and st.exit_code == 0
    for t in ("exception", "ssp"):
        _, st, lines = run_to_end(uk, sid, cfg, t, image=f"solo5-{t}:1")
        assert st.reason == "GuestCrashed" and st.exit_code != 0, (t, st.reason, st.exit_code, lines[-3:])
        assert "ABORT" in st.message, st.message


def test_solo5_blk_gets_the_images_block_disk(uk, reg):
    disk = bytes(1 << 20)
    ref = push_urunc(uk, reg, "solo5blk", {"/unikernel/test_blk": (SOLO5 / "test_blk.virtio").read_bytes(),
                                           "/disk.img": disk},
                     binary="/unikernel/test_blk", block="/disk.img")
    sid, cfg = uk.run_pod(name="blk")
    cid, st, lines = run_to_end(uk, sid, cfg, "blk", image=ref)
    assert "SUCCESS" in lines and st.reason == "Completed" and st.exit_code == 0, lines[-5:]
    assert info(uk, cid)["devices"] == ["block"]


def test_solo5_net_answers_ping_on_its_fixed_address(scratch):
    """test_net serves ping on 10.0.0.2 whatever it is told: a pod CIDR of 10.0.0.0/24 makes
    that the first pod's own address."""
    u = Unikd(scratch, extra=["--pod-cidr", "10.0.0.0/24"])
    u.import_image("solo5-net:1", "--kernel", str(SOLO5 / "test_net.virtio"))
    u.start()
    try:
        sid, cfg = u.run_pod(name="ping")
        assert u.pod_status(sid).status.network.ip == "10.0.0.2"
        cid = u.create(sid, cfg, image="solo5-net:1")
        u.start_ctr(cid)
        assert info(u, cid)["nic"] is True
        r = u.netns_exec("python3", "-c", ICMP_ECHO, "10.0.0.2", "30", timeout=60)  # no ping here
        assert r.returncode == 0, f"no echo reply from 10.0.0.2: {r.stderr}"
        u.stop_ctr(cid, timeout=0)  # the console is whole once the VM has ended
        lines = cri_lines(u.status(cid).status.log_path)
        assert any("Serving ping on 10.0.0.2" in l for l in lines), lines[-5:]
    finally:
        u.cleanup()


# ---- Linux: the command, exactly ----

def test_linux_guest_runs_its_command_exactly(uk, netguest):  # noqa: F811
    uk.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                    str(netguest / "initrd.cpio.gz"), "--cmdline",
                    (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}")  # see its README
    sid, cfg = uk.run_pod(name="linux")
    cid, st, lines = run_to_end(uk, sid, cfg, "echo", image="netguest:1", command=["echo", "hello, world"],
                                memory=256 << 20)
    assert "hello, world" in lines, (lines[-10:], st.exit_code, st.reason, st.message)
    assert info(uk, cid)["guest"]["framework"] == "linux"


# ---- bad input: a precise error, nothing left behind ----

def refused(uk, sid, cfg, field, **kw):
    code, msg = code_of(uk.create, sid, cfg, **kw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in msg, (code, msg)
    return msg


def test_bad_input_is_refused_and_leaves_nothing(solo5, scratch):
    uk = solo5
    sid, cfg = uk.run_pod(name="bad")
    # An unknown unikernelType.
    uk.import_image("weird:1", "--kernel", str(UNIKRAFT / "helloworld"), "--unikernel-type", "nosuchkernel")
    refused(uk, sid, cfg, "unikernelType", image="weird:1")
    # A manifest that cannot be parsed: test_hello with its manifest's version spoilt.
    broken = scratch / "broken.virtio"
    data = bytearray((SOLO5 / "test_hello.virtio").read_bytes())
    # An ELF note: name size, descriptor size, type, then "Solo5\0" padded to 8 bytes.
    head = (6).to_bytes(4, "little")
    at = data.find((0x3154464d).to_bytes(4, "little") + b"Solo5\x00\x00\x00")
    assert at > 8 and data[at - 8:at - 4] == head
    desc = at + 4 + 8
    data[desc:desc + 12] = b"\xff" * 12  # the manifest's version and entry count, whatever their order
    broken.write_bytes(bytes(data))
    uk.import_image("broken:1", "--kernel", str(broken))
    refused(uk, sid, cfg, "manifest", image="broken:1")
    # Declared devices that cannot be given: a block device without a disk in the image.
    refused(uk, sid, cfg, "storage", image="solo5-blk:1")
    # An argument the guest's framework cannot carry: white space for Solo5 (no parser of its
    # own) and for a plain PVH kernel (the hello guest).
    refused(uk, sid, cfg, "config.args[0]", image="solo5-hello:1", args=["two words"])
    refused(uk, sid, cfg, "config.args[1]", image="hello:1", args=["ok", "two words"])
    assert uk.containers() == []
    assert list((uk.state / "containers").iterdir()) == []


def test_a_net_device_without_a_pod_network_is_refused(scratch):
    u = Unikd(scratch, extra=["--network", "none"])
    u.import_image("solo5-net:1", "--kernel", str(SOLO5 / "test_net.virtio"))
    u.start()
    try:
        sid, cfg = u.run_pod(name="nonet")
        refused(u, sid, cfg, "service0", image="solo5-net:1")
        assert u.containers() == []
    finally:
        u.cleanup()
