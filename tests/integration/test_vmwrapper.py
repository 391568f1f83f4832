"""vmwrapper against real QEMU and the hello guest."""
import calendar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, FIRST_LINE, HELLO, REPO, read_json
from crilog import LINE_MAX, cri_lines, parse_cri_log, parse_cri_records

VMW = str(BIN / "vmwrapper")
QMP_EXEC = str(BIN / "qmp-exec")


def person(scratch, append, *extra, timeout=60):
    """The person's command: console on stdout, exit code = guest's."""
    return subprocess.run(
        [VMW, "--kernel", str(HELLO), "--append", append, "--state-dir", str(scratch / "state"), *extra],
        capture_output=True, text=True, timeout=timeout)


class Spec:
    """vmwrapper run the way unikd runs it: a JSON spec and a sync pipe. wrap is a command
    that starts it (ending with the program to exec), such as TapLauncher's."""

    def __init__(self, scratch, append, wrap=(), **over):
        self.dir = scratch / "state"
        self.dir.mkdir(exist_ok=True)
        self.log = scratch / "console.log"
        spec = {"version": 1, "id": "vm-" + scratch.name, "kernel": str(HELLO), "cmdline": append,
                "state_dir": str(self.dir), "console_log": str(self.log), "memory_mib": 64}
        spec.update(over)
        if spec.get("console_log"):
            self.log = Path(spec["console_log"])
        self.spec_path = scratch / "spec.json"
        self.spec_path.write_text(json.dumps(spec))
        r, w = os.pipe()
        with open(scratch / "vmwrapper.log", "w") as err:
            self.proc = subprocess.Popen([*wrap, VMW, "--spec", str(self.spec_path), "--sync-fd", str(w)],
                                         pass_fds=[w], stderr=err)
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

    def records(self, binary=False):
        return parse_cri_log(self.log, binary=binary)

    def lines(self):
        return cri_lines(self.log)


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
    lines = vm.lines()
    assert lines[0] == FIRST_LINE
    numbered = [l for l in lines if l.startswith("line ")]
    assert numbered == [f"line {i}" for i in range(1, 10001)]
    assert vm.exit()["exit_code"] == 0


def test_long_line_arrives_whole(scratch):
    vm = Spec(scratch, "long:100000 exit:0")
    assert vm.wait() == 0
    assert "x" * 100000 in vm.lines()
    tags = [t for _, t, c in vm.records() if c.startswith("x")]
    assert tags == ["P"] * (100000 // LINE_MAX) + ["F"]


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
    # The QMP and control sockets go with the VM.
    assert not (vm.dir / "qmp.sock").exists()
    assert not (vm.dir / "qmp-debug.sock").exists()
    assert not (vm.dir / "ctl.sock").exists()


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
    assert "going down" in vm.lines()


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


@pytest.mark.parametrize("qemu", ["/nonexistent/qemu", "/etc/hostname"])
def test_a_qemu_that_cannot_run_is_reported(scratch, qemu):
    vm = Spec(scratch, "exit:0", qemu=qemu)
    try:
        assert vm.sync["ok"] is False
        assert f"cannot execute {qemu}" in vm.sync["error"]
        assert vm.wait() == 126
    finally:
        vm.kill()
    # Nothing ran, so there is no exit to record, and no socket is left.
    assert not (vm.dir / "exit.json").exists()
    assert not list(vm.dir.glob("*.sock"))


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
    # root reads anything: drop to nobody for this check. nobody may not reach the build
    # tree (a clone in a 0700 directory), so it runs a copy from the scratch dir.
    scratch.chmod(0o755)
    vmw = scratch / "vmwrapper"
    shutil.copy2(VMW, vmw)
    vmw.chmod(0o755)
    r = subprocess.run([str(vmw), "--kernel", str(k), "--state-dir", str(scratch / "state")],
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


def held_vmwrapper(scratch, name, append, procs):
    """vmwrapper as unikd's cold start runs it: held after its exec on a go pipe, with a
    cgroup.procs file (a plain file here) to join on the go-ahead."""
    d = scratch / name
    d.mkdir()
    spec = {"version": 1, "id": "vm-" + name, "kernel": str(HELLO), "cmdline": append, "state_dir": str(d),
            "console_log": str(d / "console.log"), "memory_mib": 64}
    (d / "spec.json").write_text(json.dumps(spec))
    sr, sw = os.pipe()
    gr, gw = os.pipe()
    with open(d / "vmwrapper.log", "w") as err:
        p = subprocess.Popen([VMW, "--spec", str(d / "spec.json"), "--sync-fd", str(sw), "--go-fd", str(gr),
                              "--cgroup-procs", str(procs)], pass_fds=[sw, gr], stderr=err)
    os.close(sw)
    os.close(gr)
    return p, d, os.fdopen(sr), gw, gr


def end_held(p, sync):
    sync.close()
    if p.poll() is None:
        p.kill()
        p.wait()


def test_held_until_the_go_ahead_then_joins_its_cgroup(scratch):
    procs = scratch / "cgroup.procs"
    procs.write_text("")
    # Called off: the go pipe closes without a byte. vmwrapper ends with 0, having made
    # nothing and joined nothing.
    p, d, sync, gw, go = held_vmwrapper(scratch, "off", "exit:0", procs)
    try:
        assert p.poll() is None  # exec'd and waiting
        # What a restarted unikd reads to tell a held vmwrapper (vm_wrapper_held).
        assert os.readlink(f"/proc/{p.pid}/fd/{go}").startswith("pipe:")
        assert Path(f"/proc/{p.pid}/exe").resolve() == Path(VMW).resolve()
        assert not (d / "qmp.sock").exists() and procs.read_text() == ""
        os.close(gw)
        assert p.wait(timeout=30) == 0
        assert sync.read() == ""  # no report at all
        assert sorted(x.name for x in d.iterdir()) == ["spec.json", "vmwrapper.log"]
        assert procs.read_text() == ""
    finally:
        end_held(p, sync)
    # The go-ahead: its own pid in the cgroup file, then the VM runs as usual.
    p, d, sync, gw, go = held_vmwrapper(scratch, "go", "sleep:500 exit:5", procs)
    try:
        os.write(gw, b"g")
        os.close(gw)
        assert json.loads(sync.readline())["ok"] is True
        assert procs.read_text() == f"{p.pid}\n"
        assert os.readlink(f"/proc/{p.pid}/fd/{go}") == "/dev/null"  # released, never a pipe again
        assert p.wait(timeout=60) == 5
        assert cri_lines(d / "console.log")[0] == FIRST_LINE
    finally:
        end_held(p, sync)
    # A cgroup it cannot join: refused over the sync pipe, naming the file; QEMU never ran.
    procs.unlink()
    p, d, sync, gw, _ = held_vmwrapper(scratch, "nocg", "exit:0", procs)
    try:
        os.write(gw, b"g")
        os.close(gw)
        rep = json.loads(sync.readline())
        assert rep["ok"] is False and str(procs) in rep["error"], rep
        assert p.wait(timeout=30) == 125
        assert not (d / "exit.json").exists()
    finally:
        end_held(p, sync)


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


# ---- the console log in kubelet's CRI format (docs/architecture.md, "The console log") ----

RECORD_START = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout [PF] ")


def check_record_lines(path):
    """Every line of the file is a record that starts the way kubelet expects."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    for line in data[:-1].split(b"\n"):
        assert RECORD_START.match(line), line[:100]


def ts_ns(ts):
    """ns since the epoch of a record time like 2026-11-25T10:00:00.123456789Z."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z", ts)
    sec = calendar.timegm(tuple(int(g) for g in m.groups()[:6]))
    return sec * 10**9 + int(m.group(7))


def test_cri_records_are_exact(scratch):
    vm = Spec(scratch, "print:short long:40000 print: long:16383 long:16384 print:end exit:0")
    assert vm.wait() == 0
    check_record_lines(vm.log)
    x = lambda n: "x" * n
    assert vm.records() == [
        ("stdout", "F", FIRST_LINE),
        ("stdout", "F", "short"),
        ("stdout", "P", x(LINE_MAX)),          # long:40000 is P, P, F
        ("stdout", "P", x(LINE_MAX)),
        ("stdout", "F", x(40000 - 2 * LINE_MAX)),
        ("stdout", "F", ""),                   # an empty line
        ("stdout", "F", x(16383)),             # its "\r\n" straddles the 16 KiB mark
        ("stdout", "P", x(LINE_MAX)),          # exactly 16 KiB: P, then an empty F
        ("stdout", "F", ""),
        ("stdout", "F", "end"),
    ]
    # UTC times with nine digits, in order, within the VM's life.
    ns = [ts_ns(ts) for ts, *_ in parse_cri_records(vm.log.read_bytes())]
    ex = vm.exit()
    assert ns == sorted(ns)
    assert ex["started_ns"] <= ns[0] and ns[-1] <= ex["finished_ns"]


def test_cri_line_ends(scratch):
    # "\r\n" and a bare "\n" end lines; a lone "\r" is content.
    vm = Spec(scratch, "print:a%0d%0ab print:cr%0dmid print:lf%0aonly print:%0d lines:300 exit:0")
    assert vm.wait() == 0
    recs = vm.records()
    assert [c for _, _, c in recs[:7]] == [FIRST_LINE, "a", "b", "cr\rmid", "lf", "only", "\r"]
    assert [c for _, _, c in recs[7:]] == [f"line {i}" for i in range(1, 301)]
    assert all(t == "F" for _, t, _ in recs)
    # Nothing of a "\r\n" is left in any record, wherever the reads split it.
    assert not any(c.endswith("\r") for _, _, c in recs if c != "\r")


def test_cri_binary_bytes_pass_unchanged(scratch):
    vm = Spec(scratch, "print:%ff%00%80%c3%28 print:%01%7f%fe%00 print:%e2%82%ac exit:0")
    assert vm.wait() == 0
    assert vm.records(binary=True)[1:] == [
        ("stdout", "F", b"\xff\x00\x80\xc3\x28"),
        ("stdout", "F", b"\x01\x7f\xfe\x00"),
        ("stdout", "F", "€".encode()),
    ]


def test_raw_log_format_on_request(scratch):
    vm = Spec(scratch, "print:hi exit:0", log_format="raw")
    assert vm.wait() == 0
    assert vm.log.read_bytes() == (FIRST_LINE + "\r\nhi\r\n").encode()


def test_person_mode_cri_on_stdout(scratch):
    def run(*extra):
        return subprocess.run([VMW, "--kernel", str(HELLO), "--append", "print:hi exit:0",
                               "--state-dir", str(scratch / "state"), *extra], capture_output=True, timeout=60)
    r = run("--log-format", "cri")
    assert r.returncode == 0, r.stderr
    assert [(s, t, c) for _, s, t, c in parse_cri_records(r.stdout)] == [
        ("stdout", "F", FIRST_LINE.encode()), ("stdout", "F", b"hi")]
    # The default for a person stays the console's own bytes.
    assert run().stdout == (FIRST_LINE + "\r\nhi\r\n").encode()
    log = scratch / "p.log"
    r = run("--console-log", str(log), "--log-format", "cri")
    assert r.returncode == 0 and r.stdout == b""
    assert cri_lines(log) == [FIRST_LINE, "hi"]


@pytest.mark.parametrize("value", ["json", 1])
def test_bad_log_format_is_refused(scratch, value):
    vm = Spec(scratch, "exit:0", log_format=value)
    assert vm.sync["ok"] is False and '"log_format"' in vm.sync["error"]
    assert vm.wait() == 125
    assert not vm.log.exists()


def test_reopen_in_the_middle_of_a_long_line(scratch):
    # Several 100 KB lines at the console's pace: a reopen lands inside one of them.
    n = 100000
    vm = Spec(scratch, f"long:{n} long:{n} long:{n} exit:0")
    try:
        deadline = time.monotonic() + 30
        while not (vm.log.exists() and vm.log.stat().st_size > 2 * LINE_MAX):
            assert time.monotonic() < deadline and vm.proc.poll() is None
            time.sleep(0.005)
        old = scratch / "console.log.1"
        os.rename(vm.log, old)
        vm.proc.send_signal(signal.SIGHUP)
        assert vm.wait() == 0
    finally:
        vm.kill()
    check_record_lines(old)
    check_record_lines(vm.log)
    # Whole records in each file; the line that was pending continues in the new one.
    assert parse_cri_log(old)[-1][1] == "P"
    assert parse_cri_log(vm.log)[0][2].startswith("x")
    assert cri_lines(old, vm.log) == [FIRST_LINE] + ["x" * n] * 3


def tcg_flood(scratch, name, n):
    d = scratch / name
    d.mkdir()
    vm = Spec(d, f"lines:{n} exit:0", accel="tcg")
    t = time.monotonic()
    assert vm.sync["ok"] is True
    assert vm.wait(timeout=120) == 0
    secs = time.monotonic() - t
    lines = vm.lines()
    assert lines[0] == FIRST_LINE
    assert lines[1:] == [f"line {i}" for i in range(1, n + 1)]
    check_record_lines(vm.log)
    console_bytes = sum(len(l) + 2 for l in lines)
    return vm.exit()["resources"]["max_rss_kb"], console_bytes / secs / 1e6


def test_console_flood_loses_nothing_and_memory_does_not_grow(scratch):
    # TCG: 0.5-1 MB/s of console here; under this nested KVM each UART byte is an exit (~50 KB/s).
    rss_1mb, _ = tcg_flood(scratch, "f1", 80000)         # ~0.95 MB of console
    rss_5mb, mbps = tcg_flood(scratch, "f5", 400000)     # ~5.1 MB
    print(f"vmwrapper max RSS: {rss_1mb} KiB after 1 MB, {rss_5mb} KiB after 5 MB; {mbps:.2f} MB/s")
    assert rss_5mb - rss_1mb < 2048
    assert rss_5mb < 64 * 1024  # the sanitized build included


# ---- the console log file and the control socket (docs/architecture.md, "vmwrapper's control socket") ----

def vmctl(vm, data, timeout=10):
    """Send bytes to the VM's control socket and return all it answers before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(vm.dir / "ctl.sock"))
        if data:
            s.sendall(data)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def wait_for_line(vm, path, line, timeout=60):
    deadline = time.monotonic() + timeout
    while not (path.exists() and line in cri_lines(path, partial_ok=True)):
        assert time.monotonic() < deadline, f"{line!r} never reached {path}"
        assert vm.proc.poll() is None, "vmwrapper ended"
        time.sleep(0.01)


# The guest prints "before", sleeps 3 s (the test's window to rotate), prints "after".
BEFORE_AFTER = "print:before sleep:3000 print:after exit:0"


def test_reopen_over_the_control_socket_answers_once_done(scratch):
    vm = Spec(scratch, BEFORE_AFTER)
    old = scratch / "console.log.1"
    try:
        wait_for_line(vm, vm.log, "before")
        os.rename(vm.log, old)  # as kubelet rotates: rename, then ReopenContainerLog
        assert vmctl(vm, b"reopen-log\n") == b"ok\n"
        # "ok" comes after the reopen: the new file is there at once.
        assert vm.log.exists()
        assert vm.wait() == 0
    finally:
        vm.kill()
    check_record_lines(old)
    check_record_lines(vm.log)
    assert cri_lines(old) == [FIRST_LINE, "before"]
    assert cri_lines(vm.log) == ["after"]


@pytest.mark.parametrize("how", ["directory-gone", "symlink"])
def test_failed_reopen_says_why_and_the_old_file_goes_on(scratch, how):
    logs = scratch / "logs"
    logs.mkdir()
    vm = Spec(scratch, BEFORE_AFTER, console_log=str(logs / "0.log"))
    target = scratch / "target"
    target.write_bytes(b"not the console's\n")
    try:
        wait_for_line(vm, vm.log, "before")
        if how == "directory-gone":
            old = scratch / "logs.old" / "0.log"
            os.rename(logs, scratch / "logs.old")
        else:
            old = logs / "0.log.1"
            os.rename(vm.log, old)
            os.symlink(target, vm.log)
        reply = vmctl(vm, b"reopen-log\n")
        assert reply.startswith(b"error ") and reply.endswith(b"\n") and reply.count(b"\n") == 1, reply
        assert str(logs / "0.log").encode() in reply
        assert (b"No such file or directory" if how == "directory-gone" else b"symbolic link") in reply
        assert vm.wait() == 0
    finally:
        vm.kill()
    # Everything went on into the file vmwrapper had open.
    assert cri_lines(old) == [FIRST_LINE, "before", "after"]
    assert target.read_bytes() == b"not the console's\n"


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "fifo", "directory"])
def test_a_log_path_that_is_not_a_regular_file_fails_the_start(scratch, kind):
    log = scratch / "console.log"
    target = scratch / "target"
    if kind == "symlink":
        target.write_bytes(b"precious\n")
        os.symlink(target, log)
    elif kind == "dangling-symlink":
        os.symlink(target, log)
    elif kind == "fifo":
        os.mkfifo(log)  # nobody reads it: opening it to write would block
    else:
        log.mkdir()
    vm = Spec(scratch, "print:hi exit:0")
    try:
        assert vm.sync["ok"] is False
        assert '"console_log"' in vm.sync["error"] and str(log) in vm.sync["error"]
        want = {"symlink": "symbolic link", "dangling-symlink": "symbolic link", "fifo": "a FIFO",
                "directory": "a directory"}[kind]
        assert want in vm.sync["error"]
        assert vm.wait() == 125
    finally:
        vm.kill()
    assert not (vm.dir / "exit.json").exists()
    if kind == "symlink":
        assert target.read_bytes() == b"precious\n"
    if kind == "dangling-symlink":
        assert not target.exists()


def test_control_socket_bounds(scratch):
    vm = Spec(scratch, "idle")
    held = []
    try:
        assert vm.sync["ok"] is True
        assert vmctl(vm, b"x" * 300) == b"error line too long\n"
        assert vmctl(vm, b"reopen-log\r\n") == b"error control character in the line\n"
        assert vmctl(vm, b"frobnicate\n") == b"error unknown command\n"
        # Four clients at most: a fifth is answered and closed at once (it sends nothing: its
        # send could meet the closed socket).
        for _ in range(4):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(str(vm.dir / "ctl.sock"))
            held.append(c)
        assert vmctl(vm, b"") == b"error too many clients\n"
        # The held ones are still served, and afterwards a new one is.
        for c in held:
            c.sendall(b"reopen-log\n")
            assert c.recv(4096) == b"ok\n"
            c.close()
        assert vmctl(vm, b"reopen-log\n") == b"ok\n"
        # A client that never finishes its line is cut off (after 5 s), and answered.
        assert vmctl(vm, b"reopen", timeout=30) == b"error timed out waiting for the line\n"
        # SIGHUP, the old way, still reopens.
        os.rename(vm.log, scratch / "console.log.1")
        vm.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not vm.log.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        vm.qmp("quit")
        assert vm.wait() == 137
    finally:
        for c in held:
            c.close()
        vm.kill()


# ---- real third-party unikernels and their exit contracts (issue 13) ----
# The binaries are not ours and are never copied into the repository; the folder's README
# says what each does and how it ends.

UNIKERNELS = REPO.parent / "shared" / "unikernels"


def unikernel(rel):
    path = UNIKERNELS / rel
    assert path.is_file(), f"{path} is missing: the third-party unikernels are expected in {UNIKERNELS}"
    return str(path)


def exit_summary(vm):
    ex = vm.exit()
    return ex["end"], ex["exit_code"], ex["reason"], ex["contract"]


def test_unikraft_helloworld_completes(scratch):
    vm = Spec(scratch, 'netdev.ip=10.0.0.5/24 -- hello "two words"', kernel=unikernel("unikraft-0.17.0/helloworld"),
              machine="pc", firmware="seabios", exit="unikraft")
    assert vm.wait() == 0
    lines = vm.lines()
    assert "Hello world!" in lines
    assert any(l.endswith('/helloworld" "hello" "two words"') for l in lines), lines
    # Its halt is an ACPI poweroff and isa-debug-exit 41, which race: either reads Completed.
    end, code, reason, contract = exit_summary(vm)
    assert (code, reason, contract) == (0, "Completed", "unikraft") and end in ("guest-exit", "poweroff")
    assert "message" not in vm.exit()


def test_unikraft_crash_reads_guest_crashed(scratch):
    # On qboot, Unikraft 0.17 fails its memory-map assertion and crashes (isa-debug-exit 42).
    vm = Spec(scratch, "", kernel=unikernel("unikraft-0.17.0/helloworld"), machine="pc", firmware="qboot",
              exit="unikraft")
    assert vm.wait() == 134
    assert exit_summary(vm) == ("guest-crash", 134, "GuestCrashed", "unikraft")
    msg = vm.exit()["message"]
    assert msg.startswith("Unikraft crashed (isa-debug-exit 42): ") and "Assertion failure" in msg, msg
    assert vm.exit()["qemu_exit_status"] == 85
    # The default contract reads the same end as the bare value.
    d = scratch / "default"
    d.mkdir()
    vm = Spec(d, "", kernel=unikernel("unikraft-0.17.0/helloworld"), machine="pc", firmware="qboot")
    assert vm.wait() == 42
    assert exit_summary(vm) == ("guest-exit", 42, "Error", "default")


def solo5(scratch, name, append="", **over):
    over.setdefault("machine", "pc")
    return Spec(scratch, append, kernel=unikernel(f"solo5-0.12.1/{name}.virtio"), exit="solo5", **over)


@pytest.mark.parametrize("name,line", [("test_hello", "Hello, World"), ("test_quiet", "SUCCESS")])
def test_solo5_exit_line_gives_the_code(scratch, name, line):
    vm = solo5(scratch, name, "arg1 arg2")
    assert vm.wait() == 0
    lines = vm.lines()
    assert line in lines
    if name == "test_hello":
        assert "Command line is: 'arg1 arg2'" in lines
    assert exit_summary(vm) == ("guest-exit", 0, "Completed", "solo5")
    assert vm.exit()["console_line"] == "Solo5: solo5_exit(0) called"
    assert vm.exit()["qemu_exit_status"] == 83  # Solo5's 41 for every end


@pytest.mark.parametrize("name,abort", [
    ("test_exception", "Solo5: ABORT: cpu_x86_64.c:182: Fatal trap"),
    ("test_ssp", "Solo5: ABORT: Stack corruption detected"),
])
def test_solo5_abort_reads_guest_crashed(scratch, name, abort):
    vm = solo5(scratch, name)
    assert vm.wait() == 134
    assert exit_summary(vm) == ("guest-crash", 134, "GuestCrashed", "solo5")
    assert vm.exit()["message"] == abort
    assert abort in vm.lines()
    assert "console_line" not in vm.exit()


def test_solo5_blk_gets_its_disk(scratch):
    disk = scratch / "storage.raw"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    # Solo5 relies on the firmware to give its legacy virtio device an I/O BAR: qboot leaves
    # it at 0 (the guest then aborts), SeaBIOS assigns one.
    vm = solo5(scratch, "test_blk", disk=str(disk), firmware="seabios", devices=["block"])
    assert vm.wait() == 0
    lines = vm.lines()
    assert "Solo5: Application acquired 'storage' as block device" in lines
    assert "SUCCESS" in lines
    assert exit_summary(vm) == ("guest-exit", 0, "Completed", "solo5")


# A private network namespace with taps. vmwrapper starts in it through TAP_LAUNCHER, which
# opens the tap (a tap is reachable only from its namespace) on the fd the spec names.
TAP_LAUNCHER = """
import fcntl, os, struct, sys
for i, name in enumerate(sys.argv[1].split(",")):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))  # TUNSETIFF, TAP, NO_PI
    os.dup2(fd, TAP_FD + i)
    os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""
TAP_FD = 40  # above any fd the test process hands on


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


@pytest.fixture
def tapns(scratch):
    ns = "uk-vmw-" + scratch.name[-12:]
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


def add_tap(ns, name, addr=None):
    sh("ip", "-n", ns, "tuntap", "add", "dev", name, "mode", "tap")
    if addr:
        sh("ip", "-n", ns, "addr", "add", addr, "dev", name)
    sh("ip", "-n", ns, "link", "set", name, "up")


def in_tapns(ns, *taps):
    code = TAP_LAUNCHER.replace("TAP_FD", str(TAP_FD))
    return ["ip", "netns", "exec", ns, "python3", "-c", code, ",".join(taps)]


def nets(n):
    return [{"tap_fd": TAP_FD + i, "mac": f"02:00:00:00:13:{i:02x}"} for i in range(n)]


ICMP_ECHO = """
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
ident, deadline, seq = os.getpid() & 0xffff, time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < deadline:
    seq += 1
    body = struct.pack("!HH", ident, seq) + b"unikd-ping"
    s.sendto(struct.pack("!BBH", 8, 0, csum(struct.pack("!BBH", 8, 0, 0) + body)) + body, (sys.argv[1], 0))
    try:
        while True:
            data, addr = s.recvfrom(2048)
            icmp = data[(data[0] & 0xf) * 4:]
            if addr[0] == sys.argv[1] and icmp[0] == 0 and icmp[4:6] == struct.pack("!H", ident):
                sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""


def test_solo5_net_answers_ping(scratch, tapns):
    add_tap(tapns, "tap0", "10.0.0.1/24")
    vm = solo5(scratch, "test_net", firmware="seabios", net=nets(1), devices=["net"], wrap=in_tapns(tapns, "tap0"))
    try:
        assert vm.sync["ok"] is True, vm.sync
        # Generous: the guest boots in well under a second; this is the bound on a loaded host.
        r = subprocess.run(["ip", "netns", "exec", tapns, "python3", "-c", ICMP_ECHO, "10.0.0.2", "30"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"no echo reply from 10.0.0.2: {r.stderr}"
        lines = vm.lines()
        assert "Solo5: Application acquired 'service0' as network device" in lines
        assert any(l.startswith("[service0] Serving ping on 10.0.0.2") for l in lines), lines
        vm.qmp("quit")
        assert vm.wait() == 137
        assert exit_summary(vm) == ("host-quit", 137, "Killed", "solo5")
    finally:
        vm.kill()


def test_solo5_refuses_an_undeclared_nic(scratch, tapns):
    # test_hello declares no device: a NIC makes it abort at boot, and that is a crash.
    add_tap(tapns, "tap0")
    vm = solo5(scratch, "test_hello", firmware="seabios", net=nets(1), wrap=in_tapns(tapns, "tap0"))
    try:
        assert vm.wait() == 134
    finally:
        vm.kill()
    assert "Solo5: Virtio net: PCI:00:02 not in manifest" in vm.lines()
    assert exit_summary(vm) == ("guest-crash", 134, "GuestCrashed", "solo5")
    assert vm.exit()["message"] == ('Solo5: solo5_abort() called; the Solo5 line before it: '
                                    '"Solo5: PCI enumeration failed. Aborting."')


def virtio_slots(vm):
    """The virtio devices on the PCI bus, in slot order: "net" or "block"."""
    kinds = {0x1000: "net", 0x1001: "block"}
    devs = vm.qmp("query-pci")[0]["return"][0]["devices"]
    return [kinds[d["id"]["device"]] for d in sorted(devs, key=lambda d: d["slot"]) if d["id"]["vendor"] == 0x1af4]


@pytest.mark.parametrize("order", [None, ["net", "block", "net"], ["net", "net", "block"]])
def test_devices_take_pci_slots_in_the_spec_order(scratch, tapns, order):
    disk = scratch / "data.raw"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    add_tap(tapns, "tap0")
    add_tap(tapns, "tap1")
    over = {"devices": order} if order else {}
    vm = Spec(scratch, "idle", machine="pc", disk=str(disk), net=nets(2), wrap=in_tapns(tapns, "tap0", "tap1"),
              **over)
    try:
        assert vm.sync["ok"] is True, vm.sync
        assert virtio_slots(vm) == (order or ["block", "net", "net"])
        vm.qmp("quit")
        assert vm.wait() == 137
    finally:
        vm.kill()


@pytest.mark.parametrize("over,needle", [
    ({"exit": "mirage"}, 'field "exit" has unknown value "mirage"'),
    ({"devices": ["net"]}, 'field "devices[0]" is "net" number 1, but "net" has 0 entries'),
    ({"devices": ["disk"]}, 'field "devices[0]" must be "block" or "net"'),
])
def test_bad_contract_fields_are_refused(scratch, over, needle):
    vm = Spec(scratch, "exit:0", **over)
    assert vm.sync["ok"] is False and needle in vm.sync["error"], vm.sync
    assert vm.wait() == 125
    assert not (vm.dir / "exit.json").exists()
