"""unikd as a node service: sd_notify against a fake NOTIFY_SOCKET, reload on SIGHUP, the
config file and its errors, journald's log format, `make install` and the systemd unit.

systemd is not PID 1 here, so the test plays its part: a datagram socket bound in the
test's scratch directory receives what unikd sends."""
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import grpc
import pytest

from conftest import BIN, HELLO, REPO
from cri import Unikd, sh, stubs

WAIT = 60  # seconds; a fail-safe for a hung daemon, never an assertion about speed


class Service:
    """unikd processes started by one test, each in the test's own network namespace (as
    cri.Unikd does it), with a fake NOTIFY_SOCKET; all ended in cleanup."""

    def __init__(self, root):
        self.root = Path(root)
        self.ns = "uks-" + self.root.name[-12:]
        self.notify_path = self.root / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(WAIT)
        self.procs = []
        self.lines = []
        self._new = threading.Condition()
        self._readers = []
        self.pb, self.g = stubs()
        self.channels = []

    def start(self, *args, env=None, cwd=None, stderr_file=None):
        if self.ns not in sh("ip", "netns", "list").stdout.split():
            sh("ip", "netns", "add", self.ns)
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        e = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path))
        e.pop("JOURNAL_STREAM", None)
        e.update(env or {})
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys, hiding the cgroup hierarchy.
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", str(BIN / "unikd"), *args], env=e,
                             cwd=cwd, stderr=stderr_file or subprocess.PIPE, text=True)
        self.procs.append(p)
        if not stderr_file:
            t = threading.Thread(target=self._read, args=(p.stderr,), daemon=True)
            t.start()
            self._readers.append(t)
        return p

    def _read(self, f):
        for line in f:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_line(self, pattern, start=0):
        """The index and text of the first stderr line from `start` on that contains pattern."""
        with self._new:
            i = start
            while True:
                while i < len(self.lines):
                    if pattern in self.lines[i]:
                        return i, self.lines[i]
                    i += 1
                assert self._new.wait(WAIT), f"no line with {pattern!r}; log:\n{''.join(self.lines)}"

    def next_notify(self):
        """The next sd_notify datagram, as a dict."""
        data = self.notify.recv(4096).decode()
        return dict(kv.split("=", 1) for kv in data.split("\n") if kv)

    def runtime(self, sock):
        ch = grpc.insecure_channel(f"unix://{sock}")
        self.channels.append(ch)
        return self.g.RuntimeServiceStub(ch)

    def cleanup(self):
        for ch in self.channels:
            ch.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=WAIT)
        for t in self._readers:
            t.join(timeout=WAIT)
        for p in self.procs:
            if p.stderr:
                p.stderr.close()
        self.notify.close()
        if self.ns in sh("ip", "netns", "list").stdout.split():
            sh("ip", "netns", "del", self.ns)


@pytest.fixture
def svc(scratch):
    s = Service(scratch)
    yield s
    s.cleanup()


def base_args(root):
    return ["--state-dir", str(root / "state"), "--run-dir", str(root / "run"), "--network", "none"]


def connectable(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


# ---- sd_notify ----

def test_ready_only_once_serving_then_stopping(svc, scratch):
    sock = scratch / "run" / "unikd.sock"
    p = svc.start(*base_args(scratch))
    msg = svc.next_notify()
    # The first word unikd says is READY=1, and by then the socket takes calls.
    assert msg.get("READY") == "1", msg
    assert connectable(sock)
    assert svc.runtime(sock).Version(svc.pb.VersionRequest(), timeout=WAIT).runtime_name == "unikd"
    assert msg["STATUS"] == f"serving on {sock}: 0 pods, 0 containers running"
    p.send_signal(signal.SIGTERM)
    msg = svc.next_notify()
    assert msg.get("STOPPING") == "1" and msg["STATUS"].startswith("stopping"), msg
    assert p.wait(timeout=WAIT) == 0


def test_status_counts_pods(svc, scratch):
    sock = scratch / "run" / "unikd.sock"
    p = svc.start(*base_args(scratch), "--config", str(write(scratch / "u.conf", "[daemon]\n")))
    assert svc.next_notify().get("READY") == "1"
    u = Unikd(scratch)
    u.rs, u.pb = svc.runtime(sock), svc.pb
    u.run_pod(name="counted")
    p.send_signal(signal.SIGHUP)
    assert svc.next_notify().get("RELOADING") == "1"
    msg = svc.next_notify()
    assert msg.get("READY") == "1" and msg["STATUS"] == f"serving on {sock}: 1 pods, 0 containers running"
    for pod in u.pods():
        u.remove_pod(pod.id)


def write(path, text):
    path.write_text(text)
    return path


def test_reload_applies_log_level_and_keeps_the_rest(svc, scratch):
    conf = write(scratch / "unikd.conf", "[daemon]\nlog_level = info\n[vm]\nmemory = 64\n")
    sock = scratch / "run" / "unikd.sock"
    p = svc.start("--config", str(conf), *base_args(scratch))
    ready_at, _ = svc.wait_line('msg="ready"')
    # At info, start-up logs no debug line (with --log-level debug it logs msg="config").
    assert not any("level=debug" in l for l in svc.lines[:ready_at]), svc.lines
    assert svc.next_notify().get("READY") == "1"

    write(conf, "[daemon]\nlog_level = debug\nworkers = 3\n[vm]\nmemory = 96\n[registries]\ninsecure = reg.test:5000\n")
    p.send_signal(signal.SIGHUP)
    msg = svc.next_notify()
    assert msg.get("RELOADING") == "1" and int(msg["MONOTONIC_USEC"]) > 0, msg
    msg = svc.next_notify()
    assert msg.get("READY") == "1" and msg["STATUS"].startswith("serving on"), msg
    i, line = svc.wait_line('msg="reloaded"')
    assert 'applied="daemon.log_level vm.memory registries.insecure"' in line, line
    _, warn = svc.wait_line("change only with a restart")
    assert "level=warn" in warn and 'keys="daemon.workers"' in warn, warn
    # debug now: a successful call is logged.
    svc.runtime(sock).Version(svc.pb.VersionRequest(), timeout=WAIT)
    _, line = svc.wait_line("rpc=/runtime.v1.RuntimeService/Version", i)
    assert "level=debug" in line
    # The worker count stays what it was: it needs a restart.
    info = json.loads(svc.runtime(sock).Status(svc.pb.StatusRequest(verbose=True), timeout=WAIT).info["info"])
    assert info["config"]["workers"] == 16, info["config"]

    # A bad file changes nothing and unikd goes on: still debug.
    write(conf, "[daemon]\nlog_level = warn\n[vm]\nmemory = lots\n")
    p.send_signal(signal.SIGHUP)
    assert svc.next_notify().get("RELOADING") == "1"
    assert svc.next_notify().get("READY") == "1"
    j, line = svc.wait_line("reload failed", i + 1)
    assert "level=error" in line and f'{conf}:4: [vm] memory: "lots" is not a number of MiB' in line, line
    assert p.poll() is None
    svc.runtime(sock).Version(svc.pb.VersionRequest(), timeout=WAIT)
    _, line = svc.wait_line("rpc=/runtime.v1.RuntimeService/Version", j)
    assert "level=debug" in line

    p.send_signal(signal.SIGTERM)
    assert svc.next_notify().get("STOPPING") == "1"
    assert p.wait(timeout=WAIT) == 0


# ---- the config file ----

@pytest.mark.parametrize("text,message", [
    ("[daemon]\nworkers = 4\n[vm]\nmemroy = 64\n",
     ":4: [vm] memroy: unknown key (known in [vm]: vmwrapper, qemu, memory, vcpus, accel, memory_overhead, "
     "cgroup_root)"),
    ("# unikd\n[vm]\nmemory = abc\n", ':3: [vm] memory: "abc" is not a number of MiB'),
    ("[network]\npod_cidr = 10.77.0.0/33\n",
     ':2: [network] pod_cidr: invalid CIDR "10.77.0.0/33": prefix /33 is outside 8..30'),
    ("[daemon]\nlog_level = info\n\n[podman]\n",
     ":4: unknown section [podman] (known: [daemon], [vm], [network], [registries], [delegate], [stream], [pool])"),
    ("[vm]\naccel = xen\n", ':2: [vm] accel: "xen" is not one of auto, kvm, tcg'),
])
def test_config_errors_name_the_line(scratch, text, message):
    conf = write(scratch / "bad.conf", text)
    r = subprocess.run([str(BIN / "unikd"), "--config", str(conf), *base_args(scratch)], capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == 2
    assert r.stderr == f"unikd: {conf}{message}\n"
    assert not (scratch / "state").exists()  # it stopped before doing anything


def test_missing_config_given_with_flag_is_an_error(scratch):
    r = subprocess.run([str(BIN / "unikd"), "--config", str(scratch / "none.conf"), "--version"],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 2 and f"{scratch}/none.conf: No such file or directory" in r.stderr


def test_bad_flag_value_exits_2(scratch):
    r = subprocess.run([str(BIN / "unikd"), "--default-memory", "8", *base_args(scratch)], capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == 2
    assert r.stderr == 'unikd: --default-memory: "8" is out of range: 16..1048576 MiB\n'


def test_flags_override_the_file(svc, scratch):
    conf = write(scratch / "unikd.conf", f"""
[daemon]
socket = {scratch}/file.sock
log_level = warn
workers = 3
[vm]
memory = 128
vcpus = 2
[network]
mode = bridge
""")
    sock = scratch / "flag.sock"
    svc.start("--config", str(conf), *base_args(scratch), "--socket", str(sock), "--log-level", "debug",
              "--default-vcpus", "4")
    _, line = svc.wait_line('msg="config"')
    assert "level=debug" in line  # the flag's level, over the file's warn
    fields = line.split()
    for kv in [f"daemon.socket={sock}", "daemon.workers=3", "vm.memory=128", "vm.vcpus=4", "network.mode=none",
               "daemon.log_level=debug"]:
        assert kv in fields, (kv, line)
    assert svc.next_notify().get("READY") == "1"
    assert connectable(sock) and not (scratch / "file.sock").exists()
    info = json.loads(svc.runtime(sock).Status(svc.pb.StatusRequest(verbose=True), timeout=WAIT).info["info"])
    assert info["config"]["configFile"] == str(conf)
    assert info["config"]["defaultMemoryMiB"] == 128 and info["config"]["defaultVcpus"] == 4
    assert info["config"]["workers"] == 3


def test_relative_dirs_are_resolved_and_vms_run(svc, scratch):
    """A relative --state-dir and --run-dir work all the way to a VM, whose vmwrapper runs in
    another directory."""
    r = subprocess.run([str(BIN / "unikd"), "--state-dir", "state", "image", "import", "hello:1", "--kernel",
                        str(HELLO), "--cmdline", "print:default"], cwd=scratch, capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 0, r.stderr
    svc.start("--state-dir", "./state", "--run-dir", "run//", "--network", "none", cwd=scratch)
    assert svc.next_notify().get("READY") == "1"
    sock = scratch / "run" / "unikd.sock"
    info = json.loads(svc.runtime(sock).Status(svc.pb.StatusRequest(verbose=True), timeout=WAIT).info["info"])
    assert info["config"]["stateDir"] == str(scratch / "state")
    assert info["config"]["runDir"] == str(scratch / "run")
    u = Unikd(scratch)
    u.rs, u.pb = svc.runtime(sock), svc.pb
    try:
        sid, cfg = u.run_pod(name="rel")
        cid = u.create(sid, cfg, args=["exit:3"])
        u.start_ctr(cid)
        st = u.wait_exited(cid)
        assert st.exit_code == 3 and st.reason == "Error"
    finally:
        for pod in u.pods():
            u.remove_pod(pod.id)


def test_help_and_version(scratch):
    r = subprocess.run([str(BIN / "unikd"), "--help"], capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0
    assert "--config FILE" in r.stdout and "/etc/unikd/unikd.conf" in r.stdout and "INI" in r.stdout
    assert "[vm] memory" in r.stdout and "SIGHUP" in r.stdout
    r = subprocess.run([str(BIN / "unikd"), "--version"], capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"unikd \d+\.\d+\.\d+", lines[0])
    assert re.fullmatch(r"qemu: QEMU emulator version .* \(/usr/bin/qemu-system-x86_64\)", lines[1]), lines
    # The QEMU of the config file.
    conf = write(scratch / "q.conf", f"[vm]\nqemu = {scratch}/no-qemu\n")
    r = subprocess.run([str(BIN / "unikd"), "--config", str(conf), "--version"], capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 0 and r.stdout.splitlines()[1] == f"qemu: not found or not runnable ({scratch}/no-qemu)"


# ---- logging ----

def test_journald_gets_priorities_and_no_timestamps(svc, scratch):
    log = scratch / "journal.log"
    with open(log, "w") as f:
        st = os.fstat(f.fileno())
        p = svc.start(*base_args(scratch), "--log-level", "debug", "--workers", "0", stderr_file=f,
                      env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert p.wait(timeout=WAIT) == 2  # a flag error, before logging starts
        p = svc.start(*base_args(scratch), "--log-level", "debug", stderr_file=f,
                      env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert svc.next_notify().get("READY") == "1"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=WAIT) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == '<3>unikd: --workers: "0" is out of range: 1..64 workers'
    logged = lines[1:]
    assert any(l.startswith("<7>level=debug prog=unikd msg=\"config\"") for l in logged), logged
    assert any(l.startswith("<6>level=info prog=unikd msg=\"ready\"") for l in logged), logged
    assert all(re.match(r"<[3467]>level=(error|warn|info|debug) prog=unikd ", l) for l in logged), logged
    assert not any("ts=" in l for l in logged)


def test_plain_stderr_keeps_timestamps(svc, scratch):
    svc.start(*base_args(scratch), env={"JOURNAL_STREAM": "1:1"})
    _, line = svc.wait_line('msg="ready"')
    assert re.match(r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z level=info prog=unikd ", line), line


# ---- make install and the unit ----

def make_install(destdir, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SAN")}
    r = subprocess.run(["make", "-C", str(REPO), "install", f"DESTDIR={destdir}", "PREFIX=/usr", *extra],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture
def destdir():
    d = Path(tempfile.mkdtemp(prefix="uk-install-"))
    yield d
    shutil.rmtree(d)


def test_make_install(destdir):
    make_install(destdir)
    for b in ["unikd", "vmwrapper", "qmp-exec"]:
        f = destdir / "usr/bin" / b
        assert f.is_file() and f.stat().st_mode & stat.S_IXUSR, f
    unit = (destdir / "usr/lib/systemd/system/unikd.service").read_text()
    assert "@" not in unit.replace("$MAINPID", "")
    assert "ExecStart=/usr/bin/unikd --config /etc/unikd/unikd.conf\n" in unit
    assert "Documentation=file:/usr/share/doc/unikd/operations.md\n" in unit
    conf = destdir / "etc/unikd/unikd.conf"
    assert "#vmwrapper = /usr/bin/vmwrapper\n" in conf.read_text()
    for doc in ["README.md", "architecture.md", "cri.md", "examples/pod.json"]:
        assert (destdir / "usr/share/doc/unikd" / doc).is_file(), doc
    # The installed unikd reads the installed config.
    r = subprocess.run([str(destdir / "usr/bin/unikd"), "--config", str(conf), "--version"], capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == 0 and r.stdout.startswith("unikd "), r.stderr
    # An existing config is never overwritten.
    conf.write_text("[vm]\nmemory = 128\n")
    r = make_install(destdir)
    assert "keeping the existing" in r.stdout
    assert conf.read_text() == "[vm]\nmemory = 128\n"


def verify(unit):
    """systemd-analyze verify, which exits 0 on mere warnings: any output counts as failure."""
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=WAIT)
    return r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_systemd_analyze_verify(destdir):
    make_install(destdir)
    installed = (destdir / "usr/lib/systemd/system/unikd.service").read_text()
    # verify checks that ExecStart exists: point it into DESTDIR. The name stays unikd.service.
    d = destdir / "check"
    d.mkdir()
    unit = d / "unikd.service"
    unit.write_text(installed.replace("ExecStart=/usr/bin/", f"ExecStart={destdir}/usr/bin/"))
    ok, out = verify(unit)
    assert ok, out
    # The check can fail: the unit as in the tree, before @BINDIR@ is filled in ...
    shutil.copy(REPO / "systemd/unikd.service", unit)
    ok, out = verify(unit)
    assert not ok and "BINDIR@/unikd" in out, out
    # ... a misspelt value, which systemd only warns about ...
    unit.write_text(installed.replace("ExecStart=/usr/bin/", f"ExecStart={destdir}/usr/bin/")
                    .replace("KillMode=process", "KillMode=proces"))
    ok, out = verify(unit)
    assert not ok and "kill mode" in out, out
    # ... and a binary that is not there.
    unit.write_text(installed)
    ok, out = verify(unit)
    assert not ok and "/usr/bin/unikd" in out, out
