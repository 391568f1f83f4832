"""Per-container disks and boot files: each container links the image files it boots into
its own directory (STATE/containers/<id>.d) and gets a qcow2 overlay over the image's disk,
which QEMU writes; the image store's blobs never change."""
import fcntl
import hashlib
import json
import os
import subprocess
import time

import grpc
import pytest

from conftest import BIN, FIRST_LINE, HELLO
from crilog import cri_lines

MiB = 1 << 20

# A boot sector for SeaBIOS: write itself to LBA 1 through int 13h, then report through
# isa-debug-exit: 5 when the write worked, 6 when it failed. HALT makes it stay up instead.
_WRITE = bytes.fromhex(
    "31c0" "8ec0"                              # xor ax,ax; mov es,ax
    "b403" "b001" "b500" "b102" "b600"         # write 1 sector: cylinder 0, sector 2, head 0
    "bb007c" "cd13"                            # from es:7c00 (this sector); int 13h
    "b005" "7302" "b006")                      # al = 5, or 6 if CF
_EXIT = bytes.fromhex("ba0105" "ee" "fa" "f4" "ebfd")   # out 0x501, al; then halt
_HALT = bytes.fromhex("fa" "f4" "ebfd")                  # halt for good


def boot_disk(path, halt=False, size=64 * MiB):
    """A raw disk full of data (no holes), so its blob takes its whole size on disk."""
    code = _WRITE + (_HALT if halt else _EXIT)
    sector = code + b"\0" * (510 - len(code)) + b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(sector)
        chunk = b"\xa5" * MiB
        left = size - len(sector)
        while left > 0:
            f.write(chunk[:left])
            left -= min(left, len(chunk))
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def code_of(call, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        call(*a, **kw)
    return e.value.code(), e.value.details()


def image_id(uk, ref):
    return uk.im.ImageStatus(uk.pb.ImageStatusRequest(image=uk.pb.ImageSpec(image=ref))).image.id


def blob(uk, ref, what):
    """The store's blob of an image's kernel or disk, from ImageStatus verbose."""
    st = uk.im.ImageStatus(uk.pb.ImageStatusRequest(image=uk.pb.ImageSpec(image=ref), verbose=True))
    return json.loads(st.info["info"])[what]


def ctr_dir(uk, cid):
    info = json.loads(uk.status(cid, verbose=True).info["info"])
    assert info["container_dir"] == str(uk.state / "containers" / f"{cid}.d")
    return uk.state / "containers" / f"{cid}.d", info


def ctr_dirs(uk):
    return sorted(p.name for p in (uk.state / "containers").glob("*.d"))


def qemu_argv(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def ctr_qemu_argv(uk, cid):
    """A running container's QEMU command line, as the kernel has it."""
    return qemu_argv(json.loads((uk.run / "vms" / cid / "vmwrapper.json").read_text())["qemu_pid"])


def qemu_img_info(path):
    r = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def fs_used(uk):
    return uk.im.ImageFsInfo(uk.pb.ImageFsInfoRequest()).image_filesystems[0].used_bytes.value


def wstats(uk, cid):
    return uk.rs.ContainerStats(uk.pb.ContainerStatsRequest(container_id=cid)).stats.writable_layer


# ---- images the CLI cannot import, written into the store as it keeps them ----

def _write_atomic(path, data, mode):
    tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def store_put(uk, ref, config, files):
    """Add an image to the store through its files (layout in src/store/README.md): the
    blobs, images/<hex>.json and the reference, all under the store's lock (its GC removes
    blobs no image uses). config has its keys in the store's order; the values of those
    named in files are placeholders, replaced by the digests of files[key]. Returns the id."""
    root = uk.state / "images"
    config = dict(config)
    for key, data in files.items():
        config[key] = "sha256:" + hashlib.sha256(data).hexdigest()
    # The id is the sha256 of the config as json-c writes it: compact, "/" unescaped.
    hexid = hashlib.sha256(json.dumps(config, separators=(",", ":")).encode()).hexdigest()
    doc = {"version": 1, "id": "sha256:" + hexid, "config": config,
           "size": sum(len(d) for d in files.values()), "created_ns": time.time_ns()}
    with open(root / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for key, data in files.items():
            path = root / "blobs" / "sha256" / config[key][7:]
            if not path.exists():
                _write_atomic(path, data, 0o444)
        _write_atomic(root / "images" / f"{hexid}.json", json.dumps(doc).encode(), 0o644)
        refs = json.loads((root / "refs.json").read_text())
        refs["refs"][ref] = "sha256:" + hexid
        _write_atomic(root / "refs.json", json.dumps(refs).encode(), 0o644)
    return "sha256:" + hexid


def ordered(**kw):
    """A config in the store's key order."""
    keys = ("kind", "kernel", "initrd", "disk", "disk_format", "cmdline", "not_runnable")
    return {k: kw[k] for k in keys if k in kw}


# ---- the tests ----

def test_disk_image_boots_from_a_writable_overlay(uk, scratch):
    pb = uk.pb
    base = boot_disk(scratch / "disk.raw", halt=True)
    uk.import_image("disk:1", "--disk", str(base))
    blob_path = blob(uk, "disk:1", "disk")
    blob_sha = sha256_file(blob_path)
    sid, cfg = uk.run_pod(name="disk")
    cid = uk.create(sid, cfg, image="disk:1")
    d, info = ctr_dir(uk, cid)
    overlay = d / "disk.qcow2"
    assert info["disk"] == str(overlay) and info["disk_format"] == "qcow2" and info["disk_snapshot"] is False
    assert sorted(p.name for p in d.iterdir()) == ["disk.base", "disk.qcow2"]
    # The base is the store's blob itself, linked: no copy.
    assert os.stat(d / "disk.base").st_ino == os.stat(blob_path).st_ino
    qi = qemu_img_info(overlay)
    assert qi["format"] == "qcow2" and qi["virtual-size"] == 64 * MiB
    assert qi["backing-filename"] == str(d / "disk.base") and qi["backing-filename-format"] == "raw"
    # Made in constant time: a header, far below the base's 64 MiB of data.
    assert overlay.stat().st_blocks * 512 < 2 * MiB < os.stat(blob_path).st_blocks * 512
    # A refused create (the name is taken) leaves no directory behind.
    code, _ = code_of(uk.rs.CreateContainer, pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=uk.container_config(image="disk:1"), sandbox_config=cfg))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert ctr_dirs(uk) == [f"{cid}.d"]

    uk.start_ctr(cid)
    argv = ctr_qemu_argv(uk, cid)
    assert [a for a in argv if a.startswith("file=")] == [f"file={overlay},format=qcow2,if=none,id=disk0"], argv
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in argv
    assert not any("snapshot" in a for a in argv)
    ws = wstats(uk, cid)
    assert ws.timestamp > 0 and ws.fs_id.mountpoint == str(uk.state / "containers")
    assert ws.used_bytes.value > 0 and ws.inodes_used.value == 2  # the directory and the overlay
    uk.stop_ctr(cid, 0)
    assert sha256_file(blob_path) == blob_sha

    uk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    assert not d.exists() and ctr_dirs(uk) == []
    assert os.stat(blob_path).st_nlink == 1
    uk.remove_pod(sid)


def test_guest_writes_land_in_the_overlay_not_the_blob(uk, scratch):
    base = boot_disk(scratch / "disk.raw")
    uk.import_image("diskw:1", "--disk", str(base))
    blob_path = blob(uk, "diskw:1", "disk")
    sid, cfg = uk.run_pod(name="diskw")
    cid = uk.create(sid, cfg, image="diskw:1")
    d, _ = ctr_dir(uk, cid)
    before = wstats(uk, cid).used_bytes.value
    uk.start_ctr(cid)
    st = uk.wait_exited(cid)
    assert st.exit_code == 5, (st.reason, st.message)  # the guest's int 13h write worked
    # The guest copied its boot sector to LBA 1: the overlay holds it, the blob does not.
    raw = scratch / "read.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(d / "disk.qcow2"), str(raw)], check=True, timeout=60)
    data = raw.read_bytes()
    assert data[512:1024] == data[:512] != base.read_bytes()[512:1024]
    with open(blob_path, "rb") as f:
        assert f.read(1024) == base.read_bytes()[:1024]
    assert sha256_file(blob_path) == sha256_file(base)
    assert wstats(uk, cid).used_bytes.value > before
    uk.remove_pod(sid)
    assert not d.exists()


def test_remove_image_while_a_created_container_uses_it(uk, scratch):
    pb = uk.pb
    # A kernel blob of its own (hello:1 shares the plain one): the ELF with data appended.
    kernel = scratch / "hello-own.elf"
    kernel.write_bytes(HELLO.read_bytes() + b"\x5a" * (4 * MiB))
    uk.import_image("mine:1", "--kernel", str(kernel), "--cmdline", "print:kept")
    img = image_id(uk, "mine:1")
    kblob = blob(uk, "mine:1", "kernel")
    sid, cfg = uk.run_pod(name="rmi")
    cid = uk.create(sid, cfg, image="mine:1", args=["exit:7"])
    d, info = ctr_dir(uk, cid)
    assert info["kernel"] == str(d / "kernel") and sorted(p.name for p in d.iterdir()) == ["kernel"]
    used = fs_used(uk)

    uk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="mine:1")))
    assert all(i.id != img for i in uk.im.ListImages(pb.ListImagesRequest()).images)
    assert not os.path.exists(kblob)
    assert fs_used(uk) < used - 3 * MiB
    # The container's link keeps the file: it still starts.
    assert os.stat(d / "kernel").st_nlink == 1
    uk.start_ctr(cid)
    st = uk.wait_exited(cid)
    assert st.exit_code == 7 and st.image_ref == img
    lines = cri_lines(st.log_path)
    assert lines[0] == FIRST_LINE and "kept" in lines

    uk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    assert not d.exists()
    uk.remove_pod(sid)


def test_kernel_with_a_block_disk_attaches_a_data_disk(uk, scratch):
    data = b"\xc3" * MiB
    img = store_put(uk, "localhost:5000/urunc-blk:1",
                    ordered(kind="urunc", kernel="$", disk="$", disk_format="raw", cmdline="print:blk"),
                    {"kernel": HELLO.read_bytes(), "disk": data})
    ref = "localhost:5000/urunc-blk:1"
    assert image_id(uk, ref) == img
    sid, cfg = uk.run_pod(name="blk")
    cid = uk.create(sid, cfg, image=ref, args=["idle"])
    d, info = ctr_dir(uk, cid)
    assert sorted(p.name for p in d.iterdir()) == ["disk.base", "disk.qcow2", "kernel"]
    assert info["kernel"] == str(d / "kernel") and info["disk"] == str(d / "disk.qcow2")
    assert qemu_img_info(d / "disk.qcow2")["backing-filename"] == str(d / "disk.base")
    uk.start_ctr(cid)
    args = ctr_qemu_argv(uk, cid)
    # The kernel boots on microvm; the disk is a virtio-mmio data disk, not a boot device.
    assert args[args.index("-machine") + 1] == "microvm", args
    assert args[args.index("-kernel") + 1] == str(d / "kernel")
    assert args[args.index("-append") + 1] == "print:blk idle"
    assert f"file={d / 'disk.qcow2'},format=qcow2,if=none,id=disk0" in args
    assert "virtio-blk-device,drive=disk0" in args
    assert not any("bootindex" in a or "snapshot" in a for a in args)
    uk.stop_ctr(cid, 0)
    uk.remove_pod(sid)  # RemovePodSandbox removes its containers' directories too
    assert not d.exists() and ctr_dirs(uk) == []


@pytest.mark.parametrize("machine,device", [("microvm", "virtio-blk-device"), ("pc", "virtio-blk-pci")])
def test_vmwrapper_kernel_and_data_disk(scratch, machine, device):
    """vmwrapper alone: a kernel with a disk boots the kernel and attaches the disk; a person's
    disk gets snapshot=on, so the file never changes."""
    disk = scratch / "data.raw"
    disk.write_bytes(b"\x11" * MiB)
    spec = {"version": 1, "id": "vm-" + scratch.name, "kernel": str(HELLO), "cmdline": "idle",
            "disk": str(disk), "machine": machine, "state_dir": str(scratch / "state"),
            "console_log": str(scratch / "console.log"), "memory_mib": 64}
    (scratch / "spec.json").write_text(json.dumps(spec))
    r, w = os.pipe()
    with open(scratch / "vmwrapper.log", "w") as log:
        p = subprocess.Popen([str(BIN / "vmwrapper"), "--spec", str(scratch / "spec.json"), "--sync-fd", str(w)],
                             pass_fds=[w], stderr=log)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            sync = json.loads(f.readline())
        assert sync["ok"], sync
        argv = qemu_argv(sync["qemu_pid"])
        assert f"file={disk},format=raw,if=none,id=disk0,snapshot=on" in argv
        assert f"{device},drive=disk0" in argv and not any("bootindex" in a for a in argv)
        assert argv[argv.index("-machine") + 1] == machine
    finally:
        p.terminate()
        p.wait(timeout=60)
    assert disk.read_bytes() == b"\x11" * MiB


def test_unrunnable_image_is_refused_at_create(uk):
    pb = uk.pb
    why = "no com.urunc.unikernel.binary annotation and no disk under /disk/"
    ref = "localhost:5000/plain:1"
    img = store_put(uk, ref, ordered(kind="none", cmdline="", not_runnable=why), {})
    sid, cfg = uk.run_pod(name="plain")
    code, msg = code_of(uk.rs.CreateContainer, pb.CreateContainerRequest(
        pod_sandbox_id=sid, config=uk.container_config(image=ref), sandbox_config=cfg))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg == f'config.image.image "{ref}" ({img}) cannot run on unikd: {why}'
    assert uk.containers() == [] and ctr_dirs(uk) == []
    uk.remove_pod(sid)


def test_stray_container_directory_goes_at_restart(uk):
    sid, cfg = uk.run_pod(name="stray")
    cid = uk.create(sid, cfg, args=["exit:0"])
    kept, _ = ctr_dir(uk, cid)
    uk.stop()
    # What a crash between making the directory and saving the record leaves.
    stray = uk.state / "containers" / (("ab" * 32) + ".d")
    stray.mkdir()
    (stray / "disk.qcow2").write_bytes(b"half")
    (stray / "kernel").write_bytes(b"half")
    (stray / "kernel").chmod(0o444)
    other = uk.state / "containers" / "notes.d"  # not a container's name: left alone
    other.mkdir()
    try:
        uk.start()
        assert not stray.exists()
        assert kept.exists() and other.exists()
        assert "removed a container directory that has no record" in uk.log()
    finally:
        other.rmdir()
    # The container with a record kept its files and still runs.
    uk.start_ctr(cid)
    assert uk.wait_exited(cid).exit_code == 0
    uk.remove_pod(sid)
    assert not kept.exists()


def test_store_on_another_filesystem_uses_the_blobs(scratch):
    """images/ on a file system of its own: no hard link can be made, so the container boots
    the store's files; its disk overlay still lives in the container's directory."""
    from cri import Unikd
    u = Unikd(scratch)
    images = u.state / "images"
    images.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "uk-test-images", str(images)], check=True, timeout=30)
    try:
        u.import_image("hello:1", "--kernel", str(HELLO), "--cmdline", "print:default")
        u.import_image("disk:1", "--disk", str(boot_disk(scratch / "disk.raw", size=4 * MiB)))
        u.start()
        sid, cfg = u.run_pod(name="xdev")
        cid = u.create(sid, cfg, args=["exit:3"])
        d, info = ctr_dir(u, cid)
        assert info["kernel"] == blob(u, "hello:1", "kernel") and list(d.iterdir()) == []
        u.start_ctr(cid)
        assert u.wait_exited(cid).exit_code == 3
        u.rs.RemoveContainer(u.pb.RemoveContainerRequest(container_id=cid))
        cid = u.create(sid, cfg, name="d", image="disk:1")
        d, info = ctr_dir(u, cid)
        assert [p.name for p in d.iterdir()] == ["disk.qcow2"]
        assert qemu_img_info(d / "disk.qcow2")["backing-filename"] == blob(u, "disk:1", "disk")
        u.start_ctr(cid)
        assert u.wait_exited(cid).exit_code == 5
        u.remove_pod(sid)
        assert ctr_dirs(u) == []
    finally:
        try:
            u.cleanup()
        finally:
            subprocess.run(["umount", str(images)], check=True, timeout=30)
    assert u.vm_pids() == []
