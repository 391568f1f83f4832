"""vmwrapper against real QEMU and the hello guest."""
import json
import os
import signal
import socket
import subprocess

import pytest

from conftest import BIN, FIRST_LINE, HELLO, read_json

VMW = str(BIN / "vmwrapper")
QMP_EXEC = str(BIN / "qmp-exec")


def person(scratch, append, *extra, timeout=60):
    """The person's command: console on stdout, exit code = guest's."""
    return subprocess.run(
        [VMW, "--kernel", str(HELLO), "--append", append, "--state-dir", str(scratch / "state"), *extra],
        capture_output=True, text=True, timeout=timeout)


class Spec:
    """vmwrapper run the way unikd runs it: a JSON spec and a sync pipe."""

    def __init__(self, scratch, append, **over):
        self.dir = scratch / "state"
        self.dir.mkdir(exist_ok=True)
        self.log = scratch / "console.log"
        spec = {"version": 1, "id": "vm-" + scratch.name, "kernel": str(HELLO), "cmdline": append,
                "state_dir": str(self.dir), "console_log": str(self.log), "memory_mib": 64}
        spec.update(over)
        self.spec_path = scratch / "spec.json"
        self.spec_path.write_text(json.dumps(spec))
        r, w = os.pipe()
        self.proc = subprocess.Popen([VMW, "--spec", str(self.spec_path), "--sync-fd", str(w)],
                                     pass_fds=[w], stderr=open(scratch / "vmwrapper.log", "w"))
        os.close(w)
        with os.fdopen(r) as f:
            line = f.readline()
        self.sync = json.loads(line)

    def wait(self, timeout=60):
        return self.proc.wait(timeout=timeout)

    def exit(self):
        return read_json(self.dir / "exit.json")

    def qmp(self, *cmds, sock="qmp.sock", events_ms=0):
        args = [QMP_EXEC, str(self.dir / sock)]
        if events_ms:
            args += ["--events-ms", str(events_ms)]
        out = subprocess.run(args + list(cmds), capture_output=True, text=True, timeout=30)
        assert out.stdout, out.stderr
        return [json.loads(l) for l in out.stdout.splitlines()]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_codes_come_back_exactly(scratch, code):
    r = person(scratch, f"print:code%20{code} exit:{code}")
    assert r.returncode == code, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].rstrip("\r") == FIRST_LINE
    assert f"code {code}" in [l.rstrip("\r") for l in lines]
    ex = read_json(scratch / "state" / "exit.json")
    assert ex["end"] == "guest-exit"
    assert ex["exit_code"] == code
    assert ex["qemu_exit_status"] == (code << 1) | 1


def test_acceptance_exit_7(scratch):
    r = person(scratch, "print:about%20to%20exit exit:7")
    assert r.returncode == 7
    assert "about to exit" in r.stdout


def test_env_words_reach_the_guest(scratch):
    r = person(scratch, "FOO=bar env BAZ=qux%20x exit:0")
    assert r.returncode == 0
    out = [l.rstrip("\r") for l in r.stdout.splitlines()]
    assert "FOO=bar" in out


def test_ten_thousand_lines_in_order(scratch):
    vm = Spec(scratch, "lines:10000 exit:0")
    assert vm.sync["ok"] is True
    assert vm.wait() == 0
    lines = [l.rstrip("\r") for l in vm.log.read_text().splitlines()]
    assert lines[0] == FIRST_LINE
    numbered = [l for l in lines if l.startswith("line ")]
    assert numbered == [f"line {i}" for i in range(1, 10001)]
    assert vm.exit()["exit_code"] == 0


def test_long_line_arrives_whole(scratch):
    vm = Spec(scratch, "long:100000 exit:0")
    assert vm.wait() == 0
    lines = [l.rstrip("\r") for l in vm.log.read_text().splitlines()]
    assert "x" * 100000 in lines


def test_idle_guest_stays_up_until_quit(scratch):
    vm = Spec(scratch, "idle")
    try:
        assert vm.sync["ok"] is True and vm.sync["qemu_pid"] > 0
        # It must still be up a while later: waiting times out.
        with pytest.raises(subprocess.TimeoutExpired):
            vm.proc.wait(timeout=1.5)
        st = vm.qmp("query-status")
        assert st[0]["return"]["status"] == "running"
        vm.qmp("quit")
        assert vm.wait() == 137
        ex = vm.exit()
        assert ex["end"] == "host-quit" and ex["exit_code"] == 137
    finally:
        vm.kill()
    # The QMP sockets go with the VM.
    assert not (vm.dir / "qmp.sock").exists()
    assert not (vm.dir / "qmp-debug.sock").exists()


def test_sigkill_to_qemu_is_recorded_as_signal_9(scratch):
    vm = Spec(scratch, "idle")
    try:
        state = read_json(vm.dir / "vmwrapper.json")
        assert state["qemu_pid"] == vm.sync["qemu_pid"]
        assert state["pid"] == vm.proc.pid
        os.kill(state["qemu_pid"], signal.SIGKILL)
        assert vm.wait() == 137
        ex = vm.exit()
        assert ex["end"] == "signal"
        assert ex["signal"] == 9
        assert ex["exit_code"] == 137
    finally:
        vm.kill()


def test_sigterm_to_vmwrapper_stops_the_vm(scratch):
    vm = Spec(scratch, "idle")
    try:
        vm.proc.send_signal(signal.SIGTERM)
        assert vm.wait() == 137
        assert vm.exit()["end"] == "host-quit"
    finally:
        vm.kill()


def test_debug_socket_answers_while_the_other_is_held(scratch):
    vm = Spec(scratch, "idle")
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        held.connect(str(vm.dir / "qmp.sock"))
        held.settimeout(10)
        assert b'"QMP"' in held.recv(4096)
        held.sendall(b'{"execute":"qmp_capabilities"}\r\n')
        assert b'"return"' in held.recv(4096)
        st = vm.qmp("query-status", sock="qmp-debug.sock")
        assert st[0]["return"]["status"] == "running"
        # socat, as docs/architecture.md tells a person to use it.
        out = subprocess.run(
            ["socat", "-t", "2", "-", f"UNIX-CONNECT:{vm.dir / 'qmp-debug.sock'}"],
            input='{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n',
            capture_output=True, text=True, timeout=30)
        assert '"status": "running"' in out.stdout
    finally:
        held.close()
        vm.kill()


def test_stop_cont_powerdown_through_the_qmp_client(scratch):
    vm = Spec(scratch, "idle")
    try:
        out = vm.qmp("stop", "query-status", "cont", "query-status", "system_powerdown",
                     "no-such-command", events_ms=2000)
        replies = [o for o in out if "command" in o]
        events = [o["event"] for o in out if "event" in o]
        assert replies[0] == {"command": "stop", "return": {}}
        assert replies[1]["return"]["status"] == "paused"
        assert replies[3]["return"]["status"] == "running"
        assert replies[4] == {"command": "system_powerdown", "return": {}}
        assert "CommandNotFound" in replies[5]["error"]
        assert "STOP" in events and "RESUME" in events and "POWERDOWN" in events
    finally:
        vm.kill()


def test_panic_is_recorded(scratch):
    vm = Spec(scratch, "print:going%20down panic")
    assert vm.wait() == 1
    ex = vm.exit()
    assert ex["end"] == "panic" and ex["reason"] == "GuestPanicked"
    assert "going down" in vm.log.read_text()


def test_triple_fault_is_recorded_as_reset(scratch):
    vm = Spec(scratch, "triple")
    assert vm.wait() == 1
    assert vm.exit()["end"] == "reset"


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_boots_on_pc_and_q35(scratch, machine):
    r = person(scratch, "print:on%20" + machine + " exit:5", "--machine", machine)
    assert r.returncode == 5, r.stderr
    assert f"on {machine}" in r.stdout


def test_tcg_is_used_when_forced(scratch):
    vm = Spec(scratch, "exit:4", accel="tcg")
    assert vm.wait() == 4
    assert read_json(vm.dir / "vmwrapper.json")["accel"] == "tcg"


def test_qemu_failure_is_reported_with_its_message(scratch):
    vm = Spec(scratch, "exit:0", cpu="no-such-cpu-model")
    assert vm.sync["ok"] is False
    assert "no-such-cpu-model" in vm.sync["error"]
    assert vm.wait() == 126
    ex = vm.exit()
    assert ex["end"] == "qemu-error"
    assert "no-such-cpu-model" in ex["message"]


@pytest.mark.parametrize("args,needle", [
    (["--kernel", "/nonexistent/kernel"], "--kernel"),
    (["--kernel", "HELLO", "--memory", "0"], "--memory"),
    (["--kernel", "HELLO", "--memory", "lots"], "--memory"),
    (["--kernel", "HELLO", "--cpus", "100000"], "--cpus"),
    (["--kernel", "HELLO", "--id", "a/b"], "\"id\""),
    (["--kernel", "HELLO", "--id", ".."], "\"id\""),
    (["--kernel", "/etc/hostname"], "not a PVH ELF"),
    (["--kernel", "HELLO", "--machine", "virt"], "--machine"),
    (["--append", "x"], "--kernel or --disk"),
    (["--kernel", "HELLO", "--bogus"], "--bogus"),
])
def test_bad_input_is_refused_and_nothing_starts(scratch, args, needle):
    args = [str(HELLO) if a == "HELLO" else a for a in args]
    r = subprocess.run([VMW, *args, "--state-dir", str(scratch / "state")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 125
    assert needle in r.stderr
    assert not (scratch / "state" / "exit.json").exists()
    assert not (scratch / "state" / "vmwrapper.json").exists()


def test_unreadable_kernel_is_refused(scratch):
    k = scratch / "k.elf"
    k.write_bytes(HELLO.read_bytes())
    k.chmod(0)
    # root reads anything: drop to nobody for this check.
    r = subprocess.run([VMW, "--kernel", str(k), "--state-dir", str(scratch / "state")],
                       capture_output=True, text=True, timeout=30, user=65534, group=65534)
    assert r.returncode == 125
    assert "Permission denied" in r.stderr


def test_bad_spec_is_refused_over_the_sync_pipe(scratch):
    spec = scratch / "spec.json"
    spec.write_text(json.dumps({"version": 1, "id": "../x", "kernel": str(HELLO), "state_dir": str(scratch)}))
    r, w = os.pipe()
    p = subprocess.Popen([VMW, "--spec", str(spec), "--sync-fd", str(w)], pass_fds=[w],
                         stderr=subprocess.PIPE, text=True)
    os.close(w)
    with os.fdopen(r) as f:
        sync = json.loads(f.readline())
    assert p.wait(timeout=30) == 125
    p.stderr.close()
    assert sync["ok"] is False and '"id"' in sync["error"]


def test_help_and_version():
    r = subprocess.run([VMW, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--kernel" in r.stdout and "Exit status" in r.stdout
    r = subprocess.run([VMW, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("vmwrapper ")


def test_person_mode_without_state_dir_leaves_nothing(scratch):
    # No --state-dir: vmwrapper makes a temp dir and removes it (the fixture checks /tmp).
    r = subprocess.run([VMW, "--kernel", str(HELLO), "--append", "exit:9", "--id", scratch.name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 9
