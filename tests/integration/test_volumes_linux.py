"""Volumes on the project's Linux guest (issue 15), through the CRI: the netguest's amd64
flavour (Debian's generic kernel, with 9p and virtio-blk) applies unikd's `unikd.9p=` /
`unikd.blk=` words in /init, then runs the container's command (`sh -c ...`) and powers
off. Under TCG; each test's VMs, pods and files go with the uk / scratch fixtures."""
import os
import subprocess

import pytest

from conftest import REPO
from crilog import cri_lines
from test_network import netguest, tsc_khz, wait_line  # noqa: F401  (netguest: the cloud flavour's fixture)
from test_volumes import configmap, mount

NETGUEST_AMD64 = REPO / "build" / "guests" / "netguest-amd64"
IMAGE = "netguest-vol:1"
TCG = {"unikd.io/accel": "tcg"}


def build_netguest_amd64():
    subprocess.run(["bash", str(REPO / "tests/guests/netguest/build.sh"), str(NETGUEST_AMD64), "amd64"],
                   check=True, capture_output=True, timeout=900)
    return NETGUEST_AMD64


def import_netguest(u, d, image=IMAGE):
    # tsc_early_khz: without it a TCG boot sometimes hangs calibrating the TSC (netguest README).
    cmdline = (d / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    u.import_image(image, "--kernel", str(d / "vmlinuz"), "--initrd", str(d / "initrd.cpio.gz"),
                   "--cmdline", cmdline)


@pytest.fixture
def ukl(uk):
    import_netguest(uk, build_netguest_amd64())
    return uk


def start(u, name, script, **kw):
    """Run `sh -c SCRIPT` in the guest; returns (container id, log path). The script goes
    on the kernel command line as one word: no double quote in it."""
    sid, cfg = u.run_pod(name=name, annotations=TCG)
    cid = u.create(sid, cfg, name=name, image=IMAGE, memory=256 << 20, command=["sh", "-c", script], **kw)
    u.start_ctr(cid)
    return cid, u.status(cid).status.log_path


def finish(u, cid):
    st = u.wait_exited(cid, timeout=240)
    lines = cri_lines(st.log_path)
    assert "netguest: command-exit=0" in lines, lines[-20:]
    return lines


def running(u, cid):
    return u.status(cid).status.state == u.pb.CONTAINER_RUNNING


# The guest waits (bounded, 60 s) for the host to create FILE.
def wait_for(path):
    return f"i=0; while [ ! -e {path} ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done"


def test_hostpath_read_write_and_read_only(ukl, scratch):
    u = ukl
    data = scratch / "data"
    data.mkdir()
    ro = scratch / "ro"
    ro.mkdir()
    (ro / "keep").write_text("unchanged\n")
    script = ("echo written by the guest > /data/out && echo step=written; " + wait_for("/data/go") + "; "
              "echo x > /ro/new; echo new-rc=$?; echo y >> /ro/keep; echo append-rc=$?; "
              "cat /ro/keep")
    cid, log = start(u, "hp", script, mounts=[mount(u, data, "/data"), mount(u, ro, "/ro", ro=True)])
    wait_line(log, "step=written", timeout=180)
    # The guest is still running (it waits for /data/go) and its write is on the host.
    assert running(u, cid)
    assert (data / "out").read_text() == "written by the guest\n"
    (data / "go").write_text("")
    lines = finish(u, cid)
    assert "netguest: mount ukv0 /data 9p rw dir" in lines and "netguest: mount ukv1 /ro 9p ro dir" in lines, lines
    # EROFS, as the shell words it, for a create and for an append.
    assert sum("Read-only file system" in l for l in lines) == 2, lines[-20:]
    assert "new-rc=1" in lines and "append-rc=1" in lines and "unchanged" in lines, lines[-20:]
    assert (data / "out").read_text() == "written by the guest\n"
    assert sorted(p.name for p in ro.iterdir()) == ["keep"] and (ro / "keep").read_text() == "unchanged\n"


def test_configmap_update_reaches_the_running_guest(ukl, scratch):
    u = ukl
    cm = scratch / "cm"
    configmap(cm, "greeting", "hello-1\n", "..2024_01_01")
    # Print the value, then once a second until it changes (at most 120 s).
    script = ("cat /config/greeting; i=0; while grep -q hello-1 /config/greeting && [ $i -lt 120 ]; "
              "do sleep 1; i=$((i+1)); done; echo now=$(cat /config/greeting)")
    cid, log = start(u, "cm", script, mounts=[mount(u, cm, "/config", ro=True)])
    wait_line(log, "hello-1", timeout=180)
    assert running(u, cid)
    # The update as kubelet's atomic writer makes it: a new timestamped directory, a new
    # ..data symlink renamed over the old one, the old directory removed.
    (cm / "..2024_01_02").mkdir()
    (cm / "..2024_01_02" / "greeting").write_text("hello-2\n")
    os.symlink("..2024_01_02", cm / "..data_tmp")
    os.rename(cm / "..data_tmp", cm / "..data")
    (cm / "..2024_01_01" / "greeting").unlink()
    (cm / "..2024_01_01").rmdir()
    lines = finish(u, cid)
    assert "netguest: mount ukv0 /config 9p ro dir" in lines, lines
    assert lines.index("hello-1") < lines.index("now=hello-2"), lines[-20:]


def file_with_a_sibling(d, name, text, sibling):
    """d/name holding text, next to d/sibling, which the guest must not see."""
    d.mkdir()
    (d / sibling).write_text("not for the guest\n")
    (d / name).write_text(text)
    return d / name


def test_file_mounts_etc_hosts_and_termination_log(ukl, scratch):
    u = ukl
    hosts = file_with_a_sibling(scratch / "kubelet-pod", "etc-hosts", "127.0.0.1 localhost\n10.77.0.9 podhost\n",
                                "sibling-secret")
    term = file_with_a_sibling(scratch / "containers", "termination-log", "", "sibling-other")
    script = ("cat /etc/hosts; echo stage=$(ls -A /run/unikd/9p/ukv0) $(ls -A /run/unikd/9p/ukv1); "
              "find / -path /proc -prune -o -path /sys -prune -o -name sibling-* -print; "
              "echo last words from the guest > /dev/termination-log")
    cid, log = start(u, "files", script, mounts=[mount(u, hosts, "/etc/hosts"),
                                                  mount(u, term, "/dev/termination-log")])
    lines = finish(u, cid)
    assert "netguest: mount ukv0 /etc/hosts 9p rw file" in lines, lines
    assert "netguest: mount ukv1 /dev/termination-log 9p rw file" in lines, lines
    # The host file itself, not the initramfs's /etc/hosts (which has ::1).
    assert "10.77.0.9 podhost" in lines and not any(l.startswith("::1") for l in lines), lines[-20:]
    # Each share holds only its file; no sibling is found anywhere in the guest.
    assert "stage=hosts termination-log" in lines, lines[-20:]
    assert not any("sibling" in l for l in lines if not l.startswith("netguest:")), lines[-20:]
    assert term.read_text() == "last words from the guest\n"
    assert hosts.read_text() == "127.0.0.1 localhost\n10.77.0.9 podhost\n"


def test_raw_image_as_a_block_device(ukl, scratch):
    u = ukl
    disk = scratch / "disk.raw"
    with open(disk, "wb") as f:
        f.write(b"HOSTMARK")
        f.truncate(4 << 20)

    def read_then_write(perm, mode, rc):
        """The disk at /dev/xvdb: read its first 8 bytes, write a marker at 512."""
        dev = u.pb.Device(container_path="/dev/xvdb", host_path=str(disk), permissions=perm)
        script = ("echo read=$(dd if=/dev/xvdb bs=8 count=1 2>/dev/null); "
                  "echo guest-marker | dd of=/dev/xvdb bs=512 seek=1 conv=notrunc,fsync; echo dd-rc=$?")
        cid, _ = start(u, f"blk-{perm}", script, devices=[dev])
        lines = finish(u, cid)
        assert f"netguest: mount ukd0 /dev/xvdb blk {mode} vda" in lines, lines
        assert "read=HOSTMARK" in lines and f"dd-rc={rc}" in lines, lines[-20:]
        return lines

    read_then_write("rw", "rw", 0)
    with open(disk, "rb") as f:
        f.seek(512)
        assert f.read(13) == b"guest-marker\n"
    # Read-only ("r"): readable, and the guest's write fails; the image is unchanged.
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(b"\0" * 13)
    before = disk.read_bytes()
    read_then_write("r", "ro", 1)
    assert disk.read_bytes() == before


def test_a_mount_the_guest_cannot_make_ends_it(uk, netguest, scratch):  # noqa: F811
    """The cloud flavour has no 9p: /init says which entry failed and does not run the
    command; PID 1 exiting panics the kernel and the container ends with a failure."""
    import_netguest(uk, netguest, image="netguest-cloud:1")
    d = scratch / "d"
    d.mkdir()
    sid, cfg = uk.run_pod(name="nop", annotations=TCG)
    cid = uk.create(sid, cfg, name="nop", image="netguest-cloud:1", memory=256 << 20,
                    command=["echo", "must not run"], mounts=[mount(uk, d, "/data")])
    uk.start_ctr(cid)
    st = uk.wait_exited(cid, timeout=240)
    lines = cri_lines(st.log_path)
    assert "netguest: mount-failed ukv0 /data 9p rw dir" in lines, lines[-20:]
    assert "must not run" not in lines and not any(l.startswith("netguest: command-exit") for l in lines)
    assert st.exit_code != 0, (st.exit_code, st.reason)
