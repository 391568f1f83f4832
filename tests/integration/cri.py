"""A real unikd under test, driven through gRPC stubs generated from the project's .proto."""
import atexit
import ctypes
import importlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from conftest import BIN, HELLO, REPO, kill_and_wait

_stubs = None


def stubs():
    """Generate the Python stubs from src/cri/proto/api.proto once per test run."""
    global _stubs
    if _stubs is None:
        out = tempfile.mkdtemp(prefix="uk-stubs-")
        atexit.register(shutil.rmtree, out, True)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "src/cri/proto"),
                        f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"], check=True)
        sys.path.insert(0, out)
        _stubs = (importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc"), out)
    return _stubs[0], _stubs[1]


def ran_counts(log, method):
    """How many of a RuntimeService method's answered calls ran where (the debug log's ran=:
    poller, pool, pool-from-poller; src/cri/grpc_server.c)."""
    counts = {}
    for where in re.findall(rf"rpc=/runtime\.v1\.RuntimeService/{method} code=0 ms=[\d.]+ ran=(\S+)\n", log):
        counts[where] = counts.get(where, 0) + 1
    return counts


def logged_up_to(u, mark):
    """unikd's log once it holds every line of the calls made so far: the log reaches its file
    through a pipe, in order, so it waits for the refusal of a call made now, which names
    mark (ContainerStatus of an id no pod has; with the containerd delegate, whose unknown ids
    go to containerd, see test_delegate's own)."""
    try:
        u.rs.ContainerStatus(u.pb.ContainerStatusRequest(container_id=f"mark-{mark}"))
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
    else:
        raise AssertionError(f"mark-{mark} was found")
    return u.wait_log(f"mark-{mark}")


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)


class Unikd:
    """unikd in a network namespace of its own, so its bridge, taps, dnsmasq and nftables
    table never touch the host's namespace."""

    def __init__(self, root, extra=()):
        self.root = Path(root)
        self.ns = "uk-" + self.root.name[-12:]
        self.state = self.root / "state"
        self.run = self.root / "run"
        self.logs = self.root / "logs"
        self.sock = self.run / "unikd.sock"
        self.extra = list(extra)
        self.proc = None
        self.pb, g = stubs()
        self._g = g
        self.channel = None

    def import_image(self, name, *args):
        r = subprocess.run([str(BIN / "unikd"), "--state-dir", str(self.state), "image", "import", name, *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def netns_exec(self, *args, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns, *args], capture_output=True, text=True,
                              timeout=kw.pop("timeout", 60), **kw)

    def start(self, allow_errors=False):
        """Start unikd and wait for its readiness line. An error logged before it fails the
        start, unless allow_errors (a test that makes errors on purpose checks the log)."""
        if self.ns not in sh("ip", "netns", "list").stdout.split():
            sh("ip", "netns", "add", self.ns)
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        self.logfile = open(self.root / "unikd.log", "a")
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys, hiding the cgroup hierarchy.
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", str(BIN / "unikd"), "--state-dir", str(self.state), "--run-dir", str(self.run),
                                      "--log-level", "debug", *self.extra],
                                     stderr=subprocess.PIPE, text=True)
        # The readiness line is the event we wait for; everything after goes to the file.
        for line in self.proc.stderr:
            self.logfile.write(line)
            if 'msg="ready"' in line:
                break
            if "level=error" in line and not allow_errors:
                raise AssertionError(line)
        else:
            rc = self.proc.wait(timeout=60)
            self.proc.stderr.close()
            self.logfile.close()
            self.proc = None
            raise AssertionError(f"unikd ended before it was ready (status {rc})")
        self.logfile.flush()  # before cat appends to the same file
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=self.logfile)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.rs = self._g.RuntimeServiceStub(self.channel)
        self.im = self._g.ImageServiceStub(self.channel)
        return self

    def start_or_cleanup(self, **kw):
        """start(); on a failure, what it made (the namespace, a unikd still running, its
        dnsmasq) goes at once: a fixture's teardown never runs when its setup fails."""
        try:
            return self.start(**kw)
        except BaseException:
            self.cleanup()
            raise

    def stop(self, sig=signal.SIGTERM):
        if self.channel:
            self.channel.close()
            self.channel = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.proc.wait(timeout=60)
        else:
            rc = self.proc.returncode if self.proc else None
        if self.proc:
            self._drain.wait(timeout=10)
            self.proc.stderr.close()
            self.logfile.close()
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL unikd at once, as the OOM killer would: no clean-up runs, and calls in
        flight lose their connection. The VMs, vmwrapper and dnsmasq are left as they are."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        return self.stop()

    def log(self):
        return (self.root / "unikd.log").read_text()

    # --- helpers that build the usual requests ---
    def wait_log(self, *texts, timeout=30):
        """Wait (on inotify, not a timer) until unikd's log holds one of texts; return the log."""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        assert fd >= 0
        try:
            assert libc.inotify_add_watch(fd, str(self.root / "unikd.log").encode(), 0x2) >= 0  # IN_MODIFY
            end = time.monotonic() + timeout
            while not any(t in (log := self.log()) for t in texts):
                left = end - time.monotonic()
                assert left > 0, f"{texts!r} never came in the log"
                if select.select([fd], [], [], left)[0]:
                    os.read(fd, 4096)
            return log
        finally:
            os.close(fd)

    def pod_config(self, name="pod", uid=None, namespace="default", attempt=0, labels=None, annotations=None,
                   **kw):
        pb = self.pb
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid or f"uid-{name}", namespace=namespace,
                                           attempt=attempt),
            log_directory=str(self.logs / name), labels=labels or {}, annotations=annotations or {}, **kw)

    def run_pod(self, **kw):
        cfg = self.pod_config(**kw)
        return self.rs.RunPodSandbox(self.pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id, cfg

    def container_config(self, name="c", image="hello:1", args=(), command=(), envs=None, attempt=0,
                         labels=None, annotations=None, memory=0, quota=0, period=0, mounts=(), devices=()):
        pb = self.pb
        res = None
        if memory or quota:
            res = pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=memory, cpu_quota=quota, cpu_period=period))
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt), image=pb.ImageSpec(image=image),
            command=list(command), args=list(args),
            envs=[pb.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
            labels=labels or {}, annotations=annotations or {}, log_path=f"{name}/{attempt}.log", linux=res,
            mounts=list(mounts), devices=list(devices))

    def create(self, sid, pod_cfg, **kw):
        cfg = self.container_config(**kw)
        return self.rs.CreateContainer(self.pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=cfg, sandbox_config=pod_cfg)).container_id

    def start_ctr(self, cid):
        self.rs.StartContainer(self.pb.StartContainerRequest(container_id=cid))

    def status(self, cid, verbose=False):
        return self.rs.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid, verbose=verbose))

    def pod_status(self, sid, verbose=False):
        return self.rs.PodSandboxStatus(self.pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose))

    def stop_ctr(self, cid, timeout=0):
        self.rs.StopContainer(self.pb.StopContainerRequest(container_id=cid, timeout=timeout))

    def remove_pod(self, sid):
        self.rs.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        self.rs.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=sid))

    def containers(self, **filt):
        f = self.pb.ContainerFilter(**filt) if filt else None
        return list(self.rs.ListContainers(self.pb.ListContainersRequest(filter=f)).containers)

    def pods(self, **filt):
        f = self.pb.PodSandboxFilter(**filt) if filt else None
        return list(self.rs.ListPodSandbox(self.pb.ListPodSandboxRequest(filter=f)).items)

    def wait_exited(self, cid, timeout=60):
        """Stop with a generous grace period returns once the VM has ended, without polling."""
        st = self.status(cid).status
        if st.state == self.pb.CONTAINER_RUNNING:
            self.stop_ctr(cid, timeout=timeout)
        return self.status(cid).status

    def pids(self, comm=None):
        """Processes whose command line names our root; optionally only those called comm."""
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if str(self.root).encode() in (d / "cmdline").read_bytes() and \
                            (comm is None or (d / "comm").read_text().strip() == comm):
                        pids.append(int(d.name))
                except OSError:
                    pass
        return [p for p in pids if not self.proc or p != self.proc.pid]

    def vm_pids(self):
        """vmwrapper and QEMU processes of this unikd."""
        return self.pids("vmwrapper") + self.pids("qemu-system-x86")

    def dnsmasq_pids(self):
        return self.pids("dnsmasq")

    def cleanup(self):
        """Remove every pod through the CRI, stop unikd, its dnsmasq, and the namespace."""
        try:
            if self.proc and self.proc.poll() is None:
                for p in self.pods():
                    self.remove_pod(p.id)
        finally:
            self.stop()
            # dnsmasq outlives unikd on purpose (a restart adopts it): the test ends it.
            for pid in self.dnsmasq_pids():
                kill_and_wait(pid)
            if self.ns in sh("ip", "netns", "list").stdout.split():
                sh("ip", "netns", "del", self.ns)
            # The default cgroup parent stays while any unikd uses it; empty, it can go.
            for d in Path("/sys/fs/cgroup").glob("*/unikd"):
                try:
                    d.rmdir()
                except OSError:
                    pass
            try:
                Path("/sys/fs/cgroup/unikd").rmdir()
            except OSError:
                pass
