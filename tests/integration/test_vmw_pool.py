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
from test_vmwrapper import Spec


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
