"""vmwrapper's shares (virtio-9p) and block devices (virtio-blk), from its spec, against real
QEMU under TCG: unchanged third-party guests from ../shared/unikernels (see its README), Solo5's
test_blk on a block device and Unikraft's catfile on 9p shares, and the hello guest idling
while QEMU is asked what it attached."""
import json
import os
import stat

import pytest

from conftest import HELLO
from test_guests import SOLO5, UNIKERNELS, UNIKRAFT
from test_vmwrapper import Spec

TEST_BLK = SOLO5 / "test_blk.virtio"
CATFILE = UNIKRAFT / "catfile"
CATFILE_FIX = UNIKRAFT / "catfile-9pfs-fix"
SECRET = "host-secret-8d1f0c"


@pytest.fixture(autouse=True)
def guests():
    """The guests are not ours and are never copied: a missing one fails, naming the path."""
    for f in (TEST_BLK, CATFILE, CATFILE_FIX):
        assert f.is_file(), f"the third-party unikernels are expected at {UNIKERNELS} (missing {f})"


def run(scratch, name, kernel, append, timeout=180, **over):
    """One VM to its end, in a directory of its own under scratch: (console lines, exit.json).
    Killed if it outlives the timeout; the scratch fixture then finds nothing left."""
    d = scratch / name
    d.mkdir()
    vm = Spec(d, append, kernel=str(kernel), machine="pc", firmware="seabios", **over)
    try:
        assert vm.sync["ok"] is True, vm.sync
        vm.wait(timeout=timeout)
    finally:
        vm.kill()
    return vm.lines(), vm.exit()


def catfile(scratch, name, fstab, commands, shares, binary=CATFILE):
    """catfile with the mounts in fstab (Unikraft's vfs.fstab entries) running commands."""
    entries = " ".join(f'"{e}"' for e in fstab)
    return run(scratch, name, binary, f"vfs.fstab=[ {entries} ] -- " + " ".join(commands), exit="unikraft",
               shares=shares)


def completed(lines, ex, failed):
    """catfile ran every command, failed of them failing, and halted normally (41)."""
    assert ex["reason"] == "Completed" and ex["exit_code"] == 0, (ex, lines)
    assert f"catfile: {failed} command(s) failed" in lines, lines
    assert "catfile: done" in lines, lines


def tree(d):
    """Everything under d as the host sees it: names, kinds, link targets, contents, mtimes."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            body = os.readlink(p) if stat.S_ISLNK(st.st_mode) else (
                open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None)
            out[os.path.relpath(p, d)] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_mode & 0o7777, st.st_mtime_ns,
                                          body)
    return out


def raw_file(path, size=1 << 20):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# ---- block devices ----

def test_solo5_blk_reaches_success_on_a_raw_file(scratch):
    disk = raw_file(scratch / "storage.raw")
    lines, ex = run(scratch, "rw", TEST_BLK, "", exit="solo5", devices=["blockdev"],
                    blockdevs=[{"path": str(disk), "serial": "storage"}])
    assert "SUCCESS" in lines, lines
    assert ex["exit_code"] == 0 and ex["reason"] == "Completed", ex
    # Its writes reached the file.
    assert disk.read_bytes() != bytes(1 << 20)


def test_solo5_blk_cannot_write_a_read_only_device(scratch):
    disk = raw_file(scratch / "storage.raw")
    lines, ex = run(scratch, "ro", TEST_BLK, "", exit="solo5", devices=["blockdev"],
                    blockdevs=[{"path": str(disk), "serial": "storage", "readonly": True}])
    # Its first write fails and it exits with 1.
    assert "SUCCESS" not in lines, lines
    assert ex["exit_code"] == 1 and ex["console_line"] == "Solo5: solo5_exit(1) called", (ex, lines)
    assert disk.read_bytes() == bytes(1 << 20)


def test_two_vms_cannot_both_write_one_device(scratch):
    """QEMU's image lock: a second VM given the device read-write while the first runs is
    refused, with QEMU's own message over the sync pipe; once the first is gone, another
    opens it."""
    disk = raw_file(scratch / "shared.raw")
    vms = []
    try:
        for name in ("first", "second", "third"):
            (scratch / name).mkdir()
        vms.append(Spec(scratch / "first", "idle", blockdevs=[{"path": str(disk), "serial": "d"}]))
        assert vms[0].sync["ok"] is True, vms[0].sync
        vms.append(Spec(scratch / "second", "idle", blockdevs=[{"path": str(disk), "serial": "d"}]))
        assert vms[1].sync["ok"] is False and 'Failed to get "write" lock' in vms[1].sync["error"], vms[1].sync
        assert vms[1].wait() == 126 and vms[1].exit()["end"] == "qemu-error"
        vms[0].qmp("quit")
        assert vms[0].wait() == 137
        # Once the writer is gone, a reader is welcome.
        vms.append(Spec(scratch / "third", "idle", blockdevs=[{"path": str(disk), "serial": "d", "readonly": True}]))
        assert vms[2].sync["ok"] is True, vms[2].sync
        vms[2].qmp("quit")
        assert vms[2].wait() == 137
    finally:
        for vm in vms:
            vm.kill()


def qmp_serial(vm, qdev):
    """The serial property of the virtio-blk device at qdev (query-block's)."""
    got = vm.qmp("qom-get=" + json.dumps({"path": qdev, "property": "serial"}))
    return got[0].get("return"), got


# PCI device ids of transitional virtio devices (QEMU's pci_ids.h).
VIRTIO_PCI = {0x1000: "net", 0x1001: "block", 0x1009: "9p"}


@pytest.mark.parametrize("machine", ["pc", "microvm"])
def test_qemu_attaches_what_the_spec_says(scratch, machine):
    """The hello guest idles; QEMU is asked over QMP what it attached: each block device with its
    file, its read-only flag and its serial, and on pc the PCI slots in the spec's order, the
    9p devices after them."""
    files = [raw_file(scratch / f"d{i}.raw") for i in range(2)]
    comma = scratch / "with,comma"
    comma.mkdir()
    (scratch / "plain").mkdir()
    vm = Spec(scratch, "idle", machine=machine, devices=["blockdev", "blockdev"],
              blockdevs=[{"path": str(files[0]), "serial": "ukd-rw"},
                         {"path": str(files[1]), "serial": "ukd-ro", "readonly": True}],
              shares=[{"tag": "ukv0", "path": str(comma), "readonly": True},
                      {"tag": "ukv1", "path": str(scratch / "plain")}])
    try:
        assert vm.sync["ok"] is True, vm.sync
        blocks = {b["device"]: b for b in vm.qmp("query-block")[0]["return"]}
        assert set(blocks) == {"ukblk0", "ukblk1"}, blocks
        for i, (serial, ro) in enumerate([("ukd-rw", False), ("ukd-ro", True)]):
            b = blocks[f"ukblk{i}"]
            assert b["inserted"]["file"] == str(files[i]) and b["inserted"]["ro"] is ro, b
            assert b["inserted"]["drv"] == "raw", b
            got, reply = qmp_serial(vm, b["qdev"])
            assert got == serial, reply
        if machine == "pc":
            devs = vm.qmp("query-pci")[0]["return"][0]["devices"]
            kinds = [VIRTIO_PCI[d["id"]["device"]] for d in sorted(devs, key=lambda d: d["slot"])
                     if d["id"]["vendor"] == 0x1af4]
            assert kinds == ["block", "block", "9p", "9p"], kinds
        vm.qmp("quit")
        assert vm.wait() == 137
    finally:
        vm.kill()


@pytest.mark.parametrize("machine,room", [("pc", 30), ("microvm", 24)])
def test_the_most_devices_the_machine_has_room_for(scratch, machine, room):
    """As many virtio devices as the machine has room for start; one more is refused before
    QEMU, naming the fields."""
    for i in range(16):
        (scratch / f"s{i}").mkdir()
    shares = [{"tag": f"t{i}", "path": str(scratch / f"s{i}"), "readonly": True} for i in range(16)]

    def spec(sub, n):
        d = scratch / sub
        d.mkdir()
        bdevs = [{"path": str(raw_file(d / f"b{i}.raw", 4096)), "serial": f"s{i}", "readonly": True}
                 for i in range(n - 16)]
        return Spec(d, "idle", machine=machine, shares=shares, blockdevs=bdevs)

    vm = spec("fits", room)
    try:
        assert vm.sync["ok"] is True, vm.sync
        assert len(vm.qmp("query-block")[0]["return"]) == room - 16
        vm.qmp("quit")
        assert vm.wait() == 137
    finally:
        vm.kill()
    vm = spec("over", room + 1)
    try:
        assert vm.sync["ok"] is False, vm.sync
        assert f"make {room + 1} virtio devices, machine {machine} has room for {room}" in vm.sync["error"], vm.sync
        assert vm.wait() == 125
    finally:
        vm.kill()


@pytest.mark.parametrize("what,needle", [
    ("fifo", 'field "blockdevs[0].path": {path} is not a regular file or a block device'),
    ("chardev", 'field "blockdevs[0].path": /dev/null is not a regular file or a block device'),
    ("dir-as-disk", 'field "blockdevs[0].path": {path} is not a regular file or a block device'),
    ("file-as-share", 'field "shares[0].path": {path} is not a directory'),
    ("missing-share", 'field "shares[0].path": {path}: No such file or directory'),
    ("duplicate-tag", 'field "shares[1].tag" is "t", as shares[0] is: each must be unique'),
])
def test_bad_volumes_are_refused_over_the_sync_pipe(scratch, what, needle):
    path = scratch / "thing"
    over = {}
    if what == "fifo":
        os.mkfifo(path)
    elif what == "dir-as-disk":
        path.mkdir()
    elif what == "file-as-share":
        raw_file(path, 0)
    elif what == "duplicate-tag":
        path.mkdir()
        over["shares"] = [{"tag": "t", "path": str(path)}, {"tag": "t", "path": str(path)}]
    if what in ("fifo", "dir-as-disk", "chardev"):
        over["blockdevs"] = [{"path": "/dev/null" if what == "chardev" else str(path), "serial": "d"}]
    elif what in ("file-as-share", "missing-share"):
        over["shares"] = [{"tag": "t", "path": str(path)}]
    vm = Spec(scratch, "exit:0", **over)
    try:
        assert vm.sync["ok"] is False and needle.format(path=path) in vm.sync["error"], vm.sync
        assert vm.wait() == 125
        assert not (vm.dir / "exit.json").exists()
    finally:
        vm.kill()


# ---- 9p shares with Unikraft's catfile ----

def configmap(d, key, value):
    """A directory laid out as kubelet's atomic writer does: key -> ..data/key,
    ..data -> ..2024_01_01, the file in ..2024_01_01."""
    d.mkdir()
    (d / "..2024_01_01").mkdir()
    (d / "..2024_01_01" / key).write_text(value)
    os.symlink("..2024_01_01", d / "..data")
    os.symlink(f"..data/{key}", d / key)
    return d


def test_unikraft_reads_a_configmap_layout_from_a_read_only_share(scratch):
    conf = configmap(scratch / "conf", "key", "value-from-the-host")
    (conf / "plain").write_text("plain-file")
    lines, ex = catfile(scratch, "read", ["ukv0:/data:9pfs:0x1::mkmp"], ["cat:/data/key", "cat:/data/plain"],
                        [{"tag": "ukv0", "path": str(conf), "readonly": True}])
    completed(lines, ex, 0)
    text = "\n".join(lines)
    assert "value-from-the-host" in text and "plain-file" in text, lines


def test_unikraft_writes_into_a_read_write_share(scratch):
    data = scratch / "data"
    data.mkdir()
    (data / "old").write_text("before")
    lines, ex = catfile(scratch, "write", ["ukv1:/out:9pfs:::mkmp"],
                        ["write:/out/new:written-by-the-guest", "write:/out/old:overwritten", "cat:/out/new"],
                        [{"tag": "ukv1", "path": str(data)}], binary=CATFILE_FIX)
    completed(lines, ex, 0)
    # catfile ends what it writes with a newline.
    assert (data / "new").read_text() == "written-by-the-guest\n"
    assert (data / "old").read_text() == "overwritten\n"
    # mapped-xattr: the file the guest made is QEMU's (root) and 0600 on the host, whatever
    # the guest asked for; the guest's view of it lives in user.virtfs.* attributes.
    st = os.lstat(data / "new")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_mode & 0o7777 == 0o600, oct(st.st_mode)
    assert any(a.startswith("user.virtfs.") for a in os.listxattr(data / "new")), os.listxattr(data / "new")


def test_a_read_only_share_refuses_writes_with_erofs(scratch):
    """The guest mounts it read-write (no 0x1 flag): QEMU itself refuses, with EROFS (30),
    and the host directory is left exactly as it was."""
    conf = configmap(scratch / "conf", "key", "unchanged")
    (conf / "file").write_text("unchanged too")
    before = tree(conf)
    lines, ex = catfile(scratch, "erofs", ["ukv0:/data:9pfs:::mkmp"],
                        ["write:/data/new:x", "write:/data/file:x", "write:/data/key:x", "cat:/data/key"],
                        [{"tag": "ukv0", "path": str(conf), "readonly": True}], binary=CATFILE_FIX)
    completed(lines, ex, 3)
    assert sum("errno=30" in l for l in lines) == 3, lines
    assert tree(conf) == before


@pytest.mark.parametrize("readonly", [True, False])
def test_a_symlink_out_of_a_share_does_not_reach_the_host_file(scratch, readonly):
    """Links in the share that point out of it, absolute and relative, to a file and to its
    directory: the guest never gets the host file. QEMU walks with O_NOFOLLOW, so a link is
    text the guest resolves in its own namespace (read-only, passthrough: ENOENT there, while
    a link inside the share works) or, read-write (mapped-xattr), a host link does not
    read at all (ELOOP)."""
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "secret").write_text(SECRET)
    share = scratch / "share"
    share.mkdir()
    (share / "plain").write_text("inside-the-share")
    os.symlink("plain", share / "inside")
    os.symlink(outside / "secret", share / "abs")
    os.symlink("../outside/secret", share / "rel")
    os.symlink(outside, share / "dir")
    os.symlink("../outside", share / "reldir")
    escapes = ["cat:/data/abs", "cat:/data/rel", "cat:/data/dir/secret", "cat:/data/reldir/secret",
               "cat:/data/../outside/secret"]
    lines, ex = catfile(scratch, "escape", [f"ukv0:/data:9pfs:{'0x1' if readonly else ''}::mkmp"],
                        ["cat:/data/plain", "cat:/data/inside", *escapes],
                        [{"tag": "ukv0", "path": str(share), "readonly": readonly}],
                        binary=CATFILE if readonly else CATFILE_FIX)
    assert not any(SECRET in l for l in lines), lines
    text = "\n".join(lines)
    assert "---- begin /data/plain ----\ninside-the-share" in text, lines
    if readonly:
        assert "---- begin /data/inside ----\ninside-the-share" in text, lines
        completed(lines, ex, 5)
        # The last escape is the guest's own "..": its root, not the share's parent.
        assert sum("errno=2 (No such file or directory)" in l for l in lines) == 5, lines
    else:
        # The link inside the share fails too (ELOOP), and the guest's own ".." is ENOENT.
        completed(lines, ex, 6)
        assert "catfile: cat /data/inside: open failed: errno=40 (Too many levels of symbolic links)" in lines, lines
        assert sum("errno=40" in l for l in lines) == 5, lines
    assert (outside / "secret").read_text() == SECRET
