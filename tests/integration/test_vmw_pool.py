"""vmwrapper's pool VMs (vmwrapper/README.md, "Pool VMs") against real QEMU and the hello guest:
started paused without a log, claimed through ctl.sock with a claim.json, then exactly like a
cold-started VM."""
import json
import os
import select
import signal
import socket
import subprocess

import pytest

from conftest import FIRST_LINE
from test_vmw_attach import PRIMER, Client
from test_vmwrapper import TAP_FD, Spec, add_tap, in_tapns, sh, unikernel, wait_for_line


def ctl(vm_dir, line="claim", timeout=30):
    """One request on the control socket; the reply line without its end."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(vm_dir / "ctl.sock"))
        s.sendall(line.encode() + b"\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out.decode().rstrip("\n")


def write_claim(vm_dir, **claim):
    (vm_dir / "claim.json").write_text(json.dumps(claim))


def pool_vm(scratch, cmdline):
    vm = Spec(scratch, cmdline, pool=True, console_log=None)
    assert vm.sync["ok"] is True, vm.sync
    return vm


def status(vm):
    return vm.qmp("query-status", sock="qmp-debug.sock")[0]["return"]


def test_a_pool_vm_waits_paused_without_a_log_then_runs_once_claimed(scratch):
    vm = pool_vm(scratch, "print:pooled exit:3")
    try:
        assert vm.sync["qemu_pid"] > 0
        # Paused: it neither runs nor ends, and nothing is written anywhere.
        with pytest.raises(subprocess.TimeoutExpired):
            vm.proc.wait(timeout=1)
        st = status(vm)
        assert st["running"] is False and st["status"] == "prelaunch", st
        assert not vm.log.exists()
        assert ctl(vm.dir, "reopen-log").startswith("error a pool VM not yet claimed")
        write_claim(vm.dir, id="ctr-a", console_log=str(vm.log))
        assert ctl(vm.dir) == "ok"
        assert vm.wait() == 3
        lines = vm.lines()
        assert lines[0] == FIRST_LINE
        assert "pooled" in lines
        ex = vm.exit()
        assert ex["end"] == "guest-exit" and ex["exit_code"] == 3
    finally:
        vm.kill()
    assert not (vm.dir / "ctl.sock").exists()


def test_a_failed_claim_leaves_the_vm_claimable_and_a_second_claim_is_refused(scratch):
    vm = pool_vm(scratch, "echo")
    c = None
    try:
        # A directory where the log should be: refused, naming the field.
        (scratch / "adir").mkdir()
        write_claim(vm.dir, id="ctr-b", console_log=str(scratch / "adir"), stdin=True)
        r = ctl(vm.dir)
        assert r.startswith("error ") and "console_log" in r and "not a regular file" in r, r
        # A claim file that is not right: refused, naming the field.
        write_claim(vm.dir, id="../x", console_log=str(vm.log))
        r = ctl(vm.dir)
        assert r.startswith("error ") and '"id"' in r, r
        write_claim(vm.dir, id="ctr-b", console_log=str(vm.log), state_dir=str(scratch))
        r = ctl(vm.dir)
        assert r.startswith("error ") and "state_dir" in r, r
        assert status(vm)["status"] == "prelaunch"
        assert not vm.log.exists()

        write_claim(vm.dir, id="ctr-b", console_log=str(vm.log), stdin=True)
        assert ctl(vm.dir) == "ok"
        assert ctl(vm.dir) == "error already claimed"
        assert status(vm)["running"] is True
        # The claim's stdin: what a client types reaches the guest, and it answers.
        c = Client(vm)
        c.s.sendall(PRIMER + b"hi pool\n")
        c.has("echo: hi pool")
        assert ctl(vm.dir, "reopen-log") == "ok"
        os.kill(vm.proc.pid, signal.SIGTERM)
        assert vm.wait() == 137
        assert vm.exit()["end"] == "host-quit"
        lines = vm.lines()
        assert lines[0] == FIRST_LINE and "echo: hi pool" in lines
    finally:
        if c:
            c.close()
        vm.kill()


def test_a_cold_started_vm_refuses_a_claim(scratch):
    vm = Spec(scratch, "idle")
    try:
        assert vm.sync["ok"] is True
        write_claim(vm.dir, id="ctr-c", console_log=str(scratch / "other.log"))
        assert ctl(vm.dir) == "error not a pool VM"
        assert not (scratch / "other.log").exists()
    finally:
        vm.kill()


def test_the_state_directory_renamed_before_the_claim_gets_exit_json(scratch):
    vm = pool_vm(scratch, "print:moved exit:5")
    old = vm.dir
    try:
        new = scratch / "vms" / "ctr-d"
        new.parent.mkdir()
        os.rename(old, new)
        vm.dir = new
        write_claim(new, id="ctr-d", console_log=str(vm.log), state_dir=str(new))
        assert ctl(new) == "ok"
        assert vm.wait() == 5
        assert vm.exit()["exit_code"] == 5
        assert "moved" in vm.lines()
    finally:
        vm.kill()
    assert not old.exists()
    # Everything vmwrapper removes at its end went from the new place.
    assert sorted(p.name for p in new.iterdir() if p.suffix == ".sock") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_unclaimed_pool_vm_leaves_nothing_running(scratch, sig):
    vm = pool_vm(scratch, "print:never exit:1")
    # QEMU through a pidfd: the teardown can never signal a recycled PID.
    qemu = os.pidfd_open(vm.sync["qemu_pid"])
    try:
        os.kill(vm.proc.pid, sig)
        vm.wait()
        assert select.select([qemu], [], [], 30)[0], "QEMU outlived its vmwrapper"
        if sig == signal.SIGTERM:
            # Ended the usual way: exit.json says the host stopped it.
            assert vm.exit()["end"] == "host-quit"
        assert not vm.log.exists()
    finally:
        vm.kill()
        try:
            signal.pidfd_send_signal(qemu, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(qemu)


# ---- NICs at the claim (vmwrapper/README.md, "NICs at the claim") ----

# Run inside the test's network namespace: open the named taps there (a tap is reachable only
# from its namespace), add `extra` more fds (/dev/null), and send the claim line with all of
# them (SCM_RIGHTS) over ctl.sock, which as a path works across namespaces. Prints the reply.
CLAIM_WITH_TAPS = """
import fcntl, os, socket, struct, sys
ctl, taps, extra = sys.argv[1], [t for t in sys.argv[2].split(",") if t], int(sys.argv[3])
fds = []
for name in taps:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))  # TUNSETIFF, TAP, NO_PI
    fds.append(fd)
fds += [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(extra)]
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(60)
    s.connect(ctl)
    socket.send_fds(s, [b"claim\\n"], fds)
    out = b""
    while chunk := s.recv(4096):
        out += chunk
print(out.decode().rstrip("\\n"))
"""

@pytest.fixture
def tapns(scratch):
    """A network namespace of the test's own (named after its scratch directory), deleted
    even when the test fails; the taps in it go with it."""
    ns = "uk-vmp-" + scratch.name[-12:]
    sh("ip", "netns", "add", ns)
    try:
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


TEST_NET = "solo5-0.12.1/test_net.virtio"
MAC = "02:11:22:33:44:5a"


def claim_with_taps(ns, vm_dir, taps=(), extra=0):
    r = sh("ip", "netns", "exec", ns, "python3", "-c", CLAIM_WITH_TAPS, str(vm_dir / "ctl.sock"), ",".join(taps),
           str(extra))
    return r.stdout.strip()


def solo5_net_spec(**over):
    return dict(kernel=unikernel(TEST_NET), exit="solo5", machine="pc", firmware="seabios", **over)


def net_slots(vm):
    """The virtio-net devices' PCI slots."""
    devs = vm.qmp("query-pci", sock="qmp-debug.sock")[0]["return"][0]["devices"]
    return [d["slot"] for d in devs if d["id"]["vendor"] == 0x1af4 and d["id"]["device"] == 0x1000]


def solo5_configured(lines):
    """The PCI slot and MAC of Solo5's "configured" line for its NIC."""
    found = [l for l in lines if l.startswith("Solo5: PCI:00:") and ": configured, mac=" in l]
    assert len(found) == 1, lines
    slot, rest = found[0][len("Solo5: PCI:00:"):].split(": configured, mac=", 1)
    return int(slot, 16), rest.split(",")[0]


def test_a_nic_plugged_at_the_claim_gets_the_mac_and_the_slot_of_a_cold_start(scratch, tapns):
    tag = scratch.name[-8:]
    vm = Spec(scratch, "", pool=True, console_log=None, nics_at_claim=1, devices=["net"], **solo5_net_spec())
    cold = None
    try:
        assert vm.sync["ok"] is True, vm.sync
        assert net_slots(vm) == []  # started without its NIC
        # Wrong claims are refused before QEMU is asked anything, and the VM stays claimable.
        write_claim(vm.dir, id="ctr-n", console_log=str(vm.log), net=[{"mac": MAC}])
        r = claim_with_taps(tapns, vm.dir)
        assert r.startswith("error claim: 0 fds came with the claim") and '"net"' in r, r
        r = claim_with_taps(tapns, vm.dir, ["ukq" + tag], extra=1)
        assert r.startswith("error claim: 2 fds came with the claim") and '"net" needs 1' in r, r
        write_claim(vm.dir, id="ctr-n", console_log=str(vm.log))
        r = claim_with_taps(tapns, vm.dir, ["ukq" + tag])
        assert r == 'error claim: field "net" has 0 entries, this VM waits for 1 NICs ("nics_at_claim")', r
        write_claim(vm.dir, id="ctr-n", console_log=str(vm.log), net=[{"mac": "01:00:5e:00:00:01"}])
        r = claim_with_taps(tapns, vm.dir, ["ukq" + tag])
        assert r.startswith('error claim: field "net[0].mac" is 01:00:5e:00:00:01, a multicast'), r
        assert net_slots(vm) == [] and status(vm)["status"] == "prelaunch"
        assert not vm.log.exists()

        write_claim(vm.dir, id="ctr-n", console_log=str(vm.log), net=[{"mac": MAC, "vhost": False}])
        assert claim_with_taps(tapns, vm.dir, ["ukp" + tag]) == "ok"
        wait_for_line(vm, vm.log, "[service0] Serving ping on 10.0.0.2, with MAC: " + MAC.replace(":", ""))
        hot_slot, hot_mac = solo5_configured(vm.lines())
        assert hot_mac == MAC
        assert "Solo5: Application acquired 'service0' as network device" in vm.lines()
        assert ctl(vm.dir) == "error already claimed"

        # The same spec started cold, with the NIC on QEMU's command line.
        (scratch / "cold").mkdir()
        add_tap(tapns, "ukc" + tag)
        cold = Spec(scratch / "cold", "", net=[{"tap_fd": TAP_FD, "mac": MAC}], devices=["net"],
                    wrap=in_tapns(tapns, "ukc" + tag), **solo5_net_spec())
        assert cold.sync["ok"] is True, cold.sync
        wait_for_line(cold, cold.log, "[service0] Serving ping on 10.0.0.2, with MAC: " + MAC.replace(":", ""))
        assert solo5_configured(cold.lines()) == (hot_slot, MAC)
        assert net_slots(cold) == net_slots(vm) == [hot_slot]

        vm.qmp("quit")
        assert vm.wait() == 137
        assert vm.exit()["end"] == "host-quit"
    finally:
        vm.kill()
        if cold:
            cold.kill()


def test_a_nic_that_cannot_be_plugged_ends_the_vm(scratch, tapns):
    # /dev/null passes for a character device but is no tap: QEMU's netdev_add refuses it,
    # after getfd has been done, so the VM is stopped rather than left half plugged.
    vm = Spec(scratch, "", pool=True, console_log=None, nics_at_claim=1, devices=["net"], **solo5_net_spec())
    try:
        assert vm.sync["ok"] is True, vm.sync
        write_claim(vm.dir, id="ctr-f", console_log=str(vm.log), net=[{"mac": MAC}])
        r = claim_with_taps(tapns, vm.dir, extra=1)
        assert r.startswith('error claim: field "net[0]": the NIC could not be plugged: QMP netdev_add: '), r
        assert vm.wait() == 137
        assert vm.exit()["end"] == "host-quit"
    finally:
        vm.kill()


@pytest.mark.parametrize("over,needle", [
    ({"machine": "microvm"}, 'field "machine" is microvm: "nics_at_claim" needs pc'),
    ({"machine": "q35"}, 'field "machine" is q35: "nics_at_claim" needs pc'),
    ({"machine": "auto"}, 'field "machine" is auto: "nics_at_claim" needs pc'),
    ({"machine": "pc", "pool": False}, 'field "nics_at_claim" needs "pool": true'),
    ({"machine": "pc", "devices": ["net", "net"]}, 'field "devices[1]" is "net" number 2, but "nics_at_claim" is 1'),
])
def test_a_spec_with_nics_at_claim_that_cannot_work_is_refused(scratch, over, needle):
    spec = solo5_net_spec(nics_at_claim=1)
    spec.update(over)
    vm = Spec(scratch, "", pool=spec.pop("pool", True), console_log=None, **spec)
    try:
        assert vm.sync["ok"] is False and needle in vm.sync["error"], vm.sync
        assert vm.wait() == 125
    finally:
        vm.kill()
