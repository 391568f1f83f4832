"""PullImage from a real registry (Debian's docker-registry) into unikd's image store, and a
pod from the pulled image. The registry runs inside unikd's network namespace (unikd pulls
from 127.0.0.1 there); the test pushes to it from a thread that joined that namespace."""
import base64
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
    # No unikernelType: the hello guest is none of the frameworks (a type would pick that
    # framework's contract); it runs on the generic path, found from its PVH note.
    ann = {"com.urunc.unikernel.binary": "/hello.elf",
           "com.urunc.unikernel.cmdline": "print:pulled",
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
    # Its size: the kernel it boots, plus the layer and the config it keeps.
    assert mine[0].size == HELLO.stat().st_size + img["layers"][0]["size"] + img["config"]["size"]
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

    # A second pull downloads no blob again: not the layer, not the config.
    layer, config = img["layers"][0]["digest"], img["config"]["digest"]
    assert blob_gets(reg, layer) == 1 and blob_gets(reg, config) == 1, reg.log_path.read_text()
    again = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    assert again == pulled
    assert blob_gets(reg, layer) == 1 and blob_gets(reg, config) == 1

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


def test_pull_not_runnable_pulls_but_does_not_run(uk, reg):
    pb = uk.pb
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image("plain", "1", layers=(tar_with({"etc/x": b"x\n"}),)))
    ref = f"{reg.host}/plain:1"
    # Kubelet pulls before it creates: the pull succeeds and the image is listed...
    pulled = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    assert list((uk.state / "images" / "tmp").iterdir()) == []
    st = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True))
    assert st.image.id == pulled and list(st.image.repo_tags) == [ref]
    info = json.loads(st.info["info"])
    assert info["kind"] == "none" and "com.urunc.unikernel.binary" in info["notRunnable"]
    # ...and CreateContainer says what would make it runnable, naming the field.
    sid, cfg = uk.run_pod(name="plain")
    code, msg = code_of(uk.rs.CreateContainer, pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=uk.container_config(image=ref), sandbox_config=cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, msg
    assert "config.image.image" in msg and "com.urunc.unikernel.binary" in msg and "/disk/" in msg, msg
    assert uk.containers() == []
    uk.remove_pod(sid)


def test_pull_containerdisk(uk, reg):
    pb = uk.pb
    disk = b"\0" * 4096 + b"boot sector or so" + b"\0" * 4079
    img = in_netns(uk.ns, lambda: Pusher(reg.host).push_image("cd", "1", layers=(tar_with({"disk/root.img": disk}),)))
    ref = f"{reg.host}/cd:1"
    pulled = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    st = uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True))
    assert st.image.id == pulled and len(st.image.repo_digests) == 1
    assert st.image.size == len(disk) + img["layers"][0]["size"] + img["config"]["size"]
    info = json.loads(st.info["info"])
    assert info["kind"] == "containerdisk" and info["diskFormat"] == "raw"
    assert list((uk.state / "images" / "tmp").iterdir()) == []


def test_pull_urunc_json_image_boots(uk, reg):
    """urunc's other form: /urunc.json in the rootfs, values base64-encoded."""
    pb = uk.pb
    b64 = lambda v: base64.b64encode(v.encode()).decode()
    uj = json.dumps({"com.urunc.unikernel.binary": b64("/unikernel/hello.elf"),
                     "com.urunc.unikernel.cmdline": b64("print:from%20urunc.json"),
                     "com.urunc.unikernel.hypervisor": b64("qemu")}).encode()
    layer = tar_with({"unikernel/hello.elf": HELLO.read_bytes(), "urunc.json": uj})
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image("uj", "1", layers=(layer,)))
    ref = f"{reg.host}/uj:1"
    pulled = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref
    info = json.loads(uk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=True)).info["info"])
    assert info["kind"] == "urunc" and info["cmdline"] == "print:from%20urunc.json"
    sid, cfg = uk.run_pod(name="uj")
    cid = uk.create(sid, cfg, image=ref, args=["exit:5"])
    uk.start_ctr(cid)
    cst = uk.wait_exited(cid)
    assert cst.exit_code == 5 and cst.image_ref == pulled
    assert "from urunc.json" in cri_lines(cst.log_path)
    uk.remove_pod(sid)


def test_pull_hostile_layer_is_refused_and_nothing_escapes(uk, reg, scratch):
    pb = uk.pb
    target = scratch / "escaped"
    # A symlink to a host directory, then a file written through it; and a ../ path.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        link = tarfile.TarInfo("out")
        link.type = tarfile.SYMTYPE
        link.linkname = str(scratch)
        t.addfile(link)
        data = b"pwned\n"
        f = tarfile.TarInfo("out/escaped")
        f.size = len(data)
        t.addfile(f, io.BytesIO(data))
    via_symlink = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = b"pwned\n"
        f = tarfile.TarInfo("../../../../../../../.." + str(target))
        f.size = len(data)
        t.addfile(f, io.BytesIO(data))
    dotdot = buf.getvalue()
    for name, layer in (("evil-link", via_symlink), ("evil-dots", dotdot)):
        in_netns(uk.ns, lambda: Pusher(reg.host).push_image(name, "1", layers=(layer,)))
        code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/{name}:1")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, msg
        assert "layer 0" in msg, msg
        assert not target.exists()
        assert list((uk.state / "images" / "tmp").iterdir()) == []
        assert not uk.im.ImageStatus(pb.ImageStatusRequest(
            image=pb.ImageSpec(image=f"{reg.host}/{name}:1"))).HasField("image")


def test_concurrent_pulls_download_each_blob_once(uk, reg):
    pb = uk.pb
    img = push_hello(uk, reg, name="many")
    ref = f"{reg.host}/many:1"
    out, errors = [], []

    def pull():
        try:
            out.append(uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref))).image_ref)
        except grpc.RpcError as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(out) == 10 and len(set(out)) == 1
    for d in (img["layers"][0]["digest"], img["config"]["digest"]):
        assert blob_gets(reg, d) == 1, (d, reg.log_path.read_text())
    assert list((uk.state / "images" / "tmp").iterdir()) == []
    assert list((uk.state / "images" / "locks").iterdir()) == []


def test_shared_layer_is_downloaded_once(uk, reg):
    pb = uk.pb
    shared = tar_with({"hello.elf": HELLO.read_bytes()})
    ann = {"com.urunc.unikernel.binary": "/hello.elf"}
    a = in_netns(uk.ns, lambda: Pusher(reg.host).push_image("a", "1", layers=(shared,), annotations=ann))
    in_netns(uk.ns, lambda: Pusher(reg.host).push_image(
        "b", "1", layers=(shared, tar_with({"etc/b": b"b\n"})), annotations=ann))
    for name in ("a", "b"):
        uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/{name}:1")))
    # The registry serves the layer under each repository; unikd asked for it once.
    assert blob_gets(reg, a["layers"][0]["digest"]) == 1, reg.log_path.read_text()
    # Removing one image keeps the layer the other still uses.
    uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=f"{reg.host}/a:1")))
    blob = uk.state / "images" / "blobs" / "sha256" / a["layers"][0]["digest"][7:]
    assert blob.exists()
    uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=f"{reg.host}/b:1")))
    assert not blob.exists()


def test_pull_with_basic_auth_from_cri(uk, scratch, monkeypatch):
    pb = uk.pb
    monkeypatch.setattr(regmod, "subprocess", _NsSubprocess(uk.ns))
    r = Registry(scratch / "authreg", htpasswd={"alice": "s3cret-pw"}).start()
    monkeypatch.setattr(regmod, "subprocess", subprocess)
    try:
        layer = tar_with({"hello.elf": HELLO.read_bytes()})
        in_netns(uk.ns, lambda: Pusher(r.host, "alice", "s3cret-pw").push_image(
            "priv", "1", layers=(layer,), annotations={"com.urunc.unikernel.binary": "/hello.elf"}))
        ref = f"{r.host}/priv:1"
        code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref)))
        assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), msg
        code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(
            image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(username="alice", password="wrong-pw")))
        assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), msg
        assert "wrong-pw" not in msg
        got = uk.im.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(username="alice", password="s3cret-pw"))).image_ref
        assert got.startswith("sha256:")
        # The docker-config form crictl --auth sends: base64("user:password").
        uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=got)))
        token = base64.b64encode(b"alice:s3cret-pw").decode()
        again = uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(auth=token)))
        assert again.image_ref == got
        code, msg = code_of(uk.im.PullImage, pb.PullImageRequest(image=pb.ImageSpec(image=ref),
                                                                 auth=pb.AuthConfig(auth="not base64!")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "auth.auth" in msg, msg
        assert "s3cret-pw" not in uk.log() and "wrong-pw" not in uk.log()
    finally:
        r.stop()


def test_interrupted_pull_leaves_nothing_after_restart(uk, reg):
    """What a pull killed half-way leaves (its work directory, a published blob no image
    uses, its lock files) is gone once unikd starts again."""
    pb = uk.pb
    images = uk.state / "images"
    work = images / "tmp" / "pull-dead01"
    (work / "rootfs").mkdir(parents=True)
    (work / "layer-0").write_bytes(b"half a layer")
    orphan = images / "blobs" / "sha256" / ("ab" * 32)
    orphan.write_bytes(b"a blob no image uses\n")
    (images / "locks" / ("blob-" + "ab" * 32)).write_bytes(b"")
    used_before = fs_used(uk)
    uk.stop()
    uk.start()
    assert not work.exists() and not orphan.exists()
    assert list((images / "tmp").iterdir()) == [] and list((images / "locks").iterdir()) == []
    assert fs_used(uk) < used_before
    # And a pull works afterwards.
    push_hello(uk, reg, name="after")
    uk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{reg.host}/after:1")))
