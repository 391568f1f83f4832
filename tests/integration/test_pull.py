"""PullImage from a real registry (Debian's docker-registry) into unikd's image store, and a
pod from the pulled image. The registry runs inside unikd's network namespace (unikd pulls
from 127.0.0.1 there); the test pushes to it from a thread that joined that namespace."""
import ctypes
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading

import grpc
import pytest

import registry as regmod
from conftest import HELLO
from crilog import cri_lines
from registry import Pusher, Registry, REGISTRY_BIN

pytestmark = pytest.mark.skipif(not shutil.which(REGISTRY_BIN),
                                reason="docker-registry missing (scripts/install-deps.sh)")

CLONE_NEWNET = 0x40000000


class _NsSubprocess:
    """subprocess, with Popen run inside a network namespace (for Registry.start)."""

    def __init__(self, ns):
        self.ns = ns

    def Popen(self, args, **kw):
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", *args], **kw)

    def __getattr__(self, name):
        return getattr(subprocess, name)


def in_netns(ns, fn):
    """Run fn() in a thread that joined the network namespace ns; return its result."""
    out = {}

    def run():
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            out["v"] = fn()
        except BaseException as e:  # re-raised in the caller
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "e" in out:
        raise out["e"]
    return out["v"]


@pytest.fixture
def reg(uk, scratch, monkeypatch):
    monkeypatch.setattr(regmod, "subprocess", _NsSubprocess(uk.ns))
    r = Registry(scratch / "registry").start()
    monkeypatch.setattr(regmod, "subprocess", subprocess)
    yield r
    r.stop()


def tar_with(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def push_hello(uk, reg, name="hello", tag="1"):
    layer = tar_with({"hello.elf": HELLO.read_bytes()})
    ann = {"com.urunc.unikernel.binary": "/hello.elf",
           "com.urunc.unikernel.cmdline": "print:pulled",
           "com.urunc.unikernel.unikernelType": "linux",
           "com.urunc.unikernel.hypervisor": "qemu"}
    return in_netns(uk.ns, lambda: Pusher(reg.host).push_image(name, tag, layers=(layer,),
                                                                annotations=ann))


def blob_gets(reg, digest):
    """GETs of one blob that the registry logged."""
    text = reg.log_path.read_text(errors="replace")
    return len(re.findall(rf'http\.request\.method=GET[^\n]*http\.request\.uri="?/v2/[^ "]*/blobs/{digest}', text))


def fs_used(uk):
    return uk.im.ImageFsInfo(uk.pb.ImageFsInfoRequest()).image_filesystems[0].used_bytes.value


def code_of(call, *a):
    with pytest.raises(grpc.RpcError) as e:
        call(*a)
    return e.value.code(), e.value.details()


def test_pull_run_remove(uk, reg):
    pb = uk.pb
    img = push_hello(uk, reg)
    ref = f"{reg.host}/hello:1"
    pulled = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    assert pulled.startswith("sha256:") and len(pulled) == 71
    # Nothing partial is left in the store's tmp/.
    assert list((uk.state / "images" / "tmp").iterdir()) == []
    used_pulled = fs_used(uk)

    mine = [i for i in uk.im.ListImages(pb.ListImagesRequest()).images if i.id == pulled]
    assert len(mine) == 1
    assert list(mine[0].repo_tags) == [ref]
    assert list(mine[0].repo_digests) == [f"{reg.host}/hello@{img['digest']}"]
    assert mine[0].size == HELLO.stat().st_size
    st = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True))
    assert st.image.id == pulled
    info = json.loads(st.info["info"])
    assert info["kind"] == "urunc" and info["cmdline"] == "print:pulled"
    # By repo digest too.
    st = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=mine[0].repo_digests[0])))
    assert st.image.id == pulled

    # A pod from it runs the guest with the image's command line plus the args.
    sid, cfg = uk.run_pod(name="pulled")
    cid = uk.create(sid, cfg, image=ref, args=["exit:0"])
    uk.start_ctr(cid)
    cst = uk.wait_exited(cid)
    assert cst.exit_code == 0 and cst.image_ref == pulled
    assert "pulled" in cri_lines(cst.log_path)

    # A second pull downloads no layer again.
    layer = img["layers"][0]["digest"]
    gets = blob_gets(reg, layer)
    assert gets == 1, reg.log_path.read_text()
    again = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    assert again == pulled
    assert blob_gets(reg, layer) == gets

    uk.remove_pod(sid)
    uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=pulled)))
    assert all(i.id != pulled for i in uk.im.ListImages(pb.ListImagesRequest()).images)
    assert not uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).HasField("image")
    assert fs_used(uk) < used_pulled
    # The local import is untouched.
    assert uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="hello:1"))).HasField("image")


def test_pull_missing_tag_is_not_found(uk, reg):
    pb = uk.pb
    push_hello(uk, reg)
    code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/hello:nope")))
    assert code == grpc.StatusCode.NOT_FOUND, msg
    code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/absent:1")))
    assert code == grpc.StatusCode.NOT_FOUND, msg
    assert list((uk.state / "images" / "tmp").iterdir()) == []


def test_pull_not_runnable_is_invalid_argument(uk, reg):
    pb = uk.pb
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image("plain", "1", layers=(tar_with({"etc/x": b"x\n"}),)))
    code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/plain:1")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not runnable" in msg, msg
    assert list((uk.state / "images" / "tmp").iterdir()) == []
    assert all(f"{reg.host}/plain:1" not in i.repo_tags
               for i in uk.im.ListImages(pb.ListImagesRequest()).images)


def test_pull_containerdisk(uk, reg):
    pb = uk.pb
    disk = b"\0" * 4096 + b"boot sector or so" + b"\0" * 4079
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image("cd", "1", layers=(tar_with({"disk/root.img": disk}),)))
    ref = f"{reg.host}/cd:1"
    pulled = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    st = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True))
    assert st.image.id == pulled and st.image.size == len(disk) and len(st.image.repo_digests) == 1
    info = json.loads(st.info["info"])
    assert info["kind"] == "containerdisk" and info["diskFormat"] == "raw"
    assert list((uk.state / "images" / "tmp").iterdir()) == []
