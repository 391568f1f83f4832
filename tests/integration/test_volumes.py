"""Volumes through the CRI (issue 15): CRI mounts become 9p shares and CRI devices virtio-blk
disks, on the unchanged third-party unikernels in ../shared/unikernels (Unikraft 0.17's
catfile, Solo5 0.12.1's test_blk). What a guest cannot take is refused at CreateContainer
with the field named, and nothing is left."""
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from test_guests import SOLO5, UNIKRAFT, refused, run_to_end


def mount(u, host, guest, ro=False, **kw):
    return u.pb.Mount(container_path=guest, host_path=str(host), readonly=ro, **kw)


def configmap(d, key, value, gen="..2024_01_01"):
    """kubelet's atomic-writer layout: key -> ..data/key, ..data -> ..<timestamp>."""
    (d / gen).mkdir(parents=True)
    (d / gen / key).write_text(value)
    os.symlink(gen, d / "..data")
    os.symlink(f"..data/{key}", d / key)


@pytest.fixture
def ukv(uk):
    for name in ("catfile", "catfile-9pfs-fix"):
        path = UNIKRAFT / name
        assert path.exists(), f"the third-party unikernels are expected at {path}"
        uk.import_image(f"{name}:1", "--kernel", str(path), "--unikernel-type", "unikraft",
                        "--unikernel-version", "0.17.0")
    uk.import_image("test_blk:1", "--kernel", str(SOLO5 / "test_blk.virtio"))
    return uk


def test_unikraft_reads_a_configmap_and_writes_a_hostpath(ukv, scratch):
    u = ukv
    cm = scratch / "cm"
    configmap(cm, "greeting", "hello from a configmap\n")
    data = scratch / "data"
    data.mkdir()
    # File mounts: kubelet's /etc/hosts (the file itself, staged; none of its siblings), a
    # termination-log-style file the guest writes; /dev/termination-log is left out (devfs).
    etc = scratch / "kubelet-pod"
    etc.mkdir()
    hosts = etc / "etc-hosts"
    hosts.write_text("127.0.0.1 localhost podhost\n")
    (etc / "sibling-secret").write_text("not for the guest\n")
    term = etc / "termination-log"
    term.write_text("")
    sid, cfg = u.run_pod(name="vol")
    mounts = [mount(u, cm, "/config", ro=True), mount(u, data, "/data"), mount(u, hosts, "/etc/hosts"),
              mount(u, term, "/dev/termination-log"), mount(u, term, "/var/log/termination")]
    cid, st, lines = run_to_end(u, sid, cfg, "rw", image="catfile-9pfs-fix:1", memory=128 << 20, mounts=mounts,
                                args=["cat:/config/greeting", "write:/data/out:written by the guest",
                                      "write:/config/nope:x", "cat:/etc/hosts", "ls:/etc",
                                      "write:/var/log/termination:the guest's last words"])
    text = "\n".join(lines)
    assert "127.0.0.1 localhost podhost" in text, lines[-20:]
    assert "sibling-secret" not in text and "etc-hosts" not in text, lines[-20:]
    assert term.read_text().rstrip("\n") == "the guest's last words"
    assert 'mount=/dev/termination-log msg="left out' in u.log()
    assert "hello from a configmap" in text, lines[-20:]
    assert (data / "out").read_text().rstrip("\n") == "written by the guest"
    assert "errno=30" in text, lines[-20:]  # EROFS: QEMU holds the share read-only
    assert not (cm / "nope").exists() and sorted(p.name for p in cm.iterdir()) == ["..2024_01_01", "..data",
                                                                                      "greeting"]
    assert "catfile: 1 command(s) failed" in text and st.exit_code == 0, (st.exit_code, st.reason, lines[-5:])
    status = u.status(cid).status
    assert sorted((m.container_path, m.host_path, m.readonly) for m in status.mounts) == \
        [("/config", str(cm), True), ("/data", str(data), False), ("/etc/hosts", str(hosts), False),
         ("/var/log/termination", str(term), False)]
    # The staging binds lived in vmwrapper's own mount namespace, gone with the VM.
    assert not mounted_anywhere(str(u.run / "vms" / cid / "shares"))


def test_a_symlink_out_of_a_share_stays_inside(ukv, scratch):
    u = ukv
    d = scratch / "hp"
    d.mkdir()
    secret = scratch / "host-secret"
    secret.write_text("must not leak\n")
    os.symlink(str(secret), d / "abs")
    os.symlink("../host-secret", d / "rel")
    sid, cfg = u.run_pod(name="sym")
    _, st, lines = run_to_end(u, sid, cfg, "sym", image="catfile:1", memory=128 << 20,
                              mounts=[mount(u, d, "/hp")], args=["cat:/hp/abs", "cat:/hp/rel"])
    assert "must not leak" not in "\n".join(lines)
    assert "catfile: 2 command(s) failed" in "\n".join(lines), lines[-10:]


def test_solo5_test_blk_on_a_cri_device(ukv, scratch):
    u = ukv
    disk = scratch / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    sid, cfg = u.run_pod(name="blk")
    dev = u.pb.Device(container_path="/dev/storage", host_path=str(disk), permissions="rw")
    cid, st, lines = run_to_end(u, sid, cfg, "blk", image="test_blk:1", devices=[dev])
    assert "SUCCESS" in "\n".join(lines), lines[-10:]
    assert st.exit_code == 0, (st.exit_code, st.reason)
    info = json.loads(u.status(cid, verbose=True).info["info"])
    assert [(b["path"], b["serial"], b["readonly"]) for b in info["blockdevs"]] == [(str(disk), "ukd0", False)]
    # Read-only ("r"): QEMU refuses the guest's writes, and test_blk does not succeed.
    before = disk.read_bytes()
    ro = u.pb.Device(container_path="/dev/storage", host_path=str(disk), permissions="r")
    _, st, lines = run_to_end(u, sid, cfg, "blk-ro", image="test_blk:1", devices=[ro])
    assert "SUCCESS" not in "\n".join(lines) and st.exit_code != 0, (st.exit_code, lines[-10:])
    assert disk.read_bytes() == before


def mounted_anywhere(path):
    """Whether any process's mount table (any mount namespace) holds path."""
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and path in Path(f"/proc/{p}/mountinfo").read_text(errors="replace"):
                return True
        except OSError:
            pass  # gone meanwhile
    return False


def test_bad_volumes_are_refused_and_leave_nothing(ukv, scratch):
    u = ukv
    sid, cfg = u.run_pod(name="bad")
    d = scratch / "d"
    d.mkdir()
    kw = dict(image="catfile:1")
    refused(u, sid, cfg, "config.mounts[0].host_path", mounts=[mount(u, scratch / "missing", "/m")], **kw)
    msg = refused(u, sid, cfg, "config.mounts", mounts=[mount(u, d, f"/m{i}") for i in range(17)], **kw)
    assert "16" in msg, msg
    refused(u, sid, cfg, "config.mounts[0].propagation",
            mounts=[mount(u, d, "/m", propagation=u.pb.PROPAGATION_BIDIRECTIONAL)], **kw)
    refused(u, sid, cfg, "config.mounts[1].container_path", mounts=[mount(u, d, "/m"), mount(u, d, "/m/")], **kw)
    fifo = scratch / "fifo"
    os.mkfifo(fifo)
    refused(u, sid, cfg, "config.devices[0]", devices=[u.pb.Device(container_path="/dev/x", host_path=str(fifo),
                                                                   permissions="rw")], **kw)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(scratch / "sock"))
    try:
        assert stat.S_ISSOCK(os.stat(scratch / "sock").st_mode)
        refused(u, sid, cfg, "config.mounts[0].host_path", mounts=[mount(u, scratch / "sock", "/s")], **kw)
    finally:
        sock.close()
    # Unikraft mounts a file's share at its directory: two file mounts in one directory clash.
    f = scratch / "f"
    f.write_text("x")
    refused(u, sid, cfg, "config.mounts[1]", mounts=[mount(u, f, "/etc/a.conf"), mount(u, f, "/etc/b.conf")],
            **kw)
    # Solo5 has no filesystem: a directory mount is refused, naming the framework.
    disk = scratch / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    msg = refused(u, sid, cfg, "config.mounts[0]", image="test_blk:1", mounts=[mount(u, d, "/m")],
                  devices=[u.pb.Device(container_path="/dev/storage", host_path=str(disk), permissions="rw")])
    assert "Solo5" in msg or "solo5" in msg, msg
    assert u.containers() == []


def test_staging_goes_with_the_container_and_survives_a_sigkill_of_unikd(ukv, scratch):
    """File shares are staged in the VM's state directory, their binds in the VM's own mount
    namespace: nothing is ever mounted on the node, and removing the container (after a
    SIGKILL of unikd and a restart) removes the staging directory."""
    u = ukv
    f = scratch / "app.conf"
    f.write_text("answer=42\n")
    sid, cfg = u.run_pod(name="stage")
    cid, st, lines = run_to_end(u, sid, cfg, "stage", image="catfile:1", memory=128 << 20,
                                mounts=[mount(u, f, "/etc/app.conf", ro=True)], args=["cat:/etc/app.conf"])
    assert "answer=42" in "\n".join(lines), lines[-10:]
    staged = u.run / "vms" / cid / "shares"
    assert staged.is_dir() and [p.name for p in staged.iterdir()] == ["ukv0"]
    assert not mounted_anywhere(str(staged))
    u.kill()
    u.start()
    u.rs.RemoveContainer(u.pb.RemoveContainerRequest(container_id=cid))
    assert not (u.run / "vms" / cid).exists()
