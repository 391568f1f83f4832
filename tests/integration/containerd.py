"""A private containerd (Debian's 1.6, with runc and the CNI plugins in /usr/lib/cni) for one test.

Facts about this machine the harness is built on (see issue 16):
- containerd 1.6 writes /run/containerd/s (shim sockets) and /var/lib/cni whatever its config
  says, so it runs in a private mount namespace with /run and /var/lib bound from the scratch dir;
- the test's network namespace is entered with `nsenter --net`: `ip netns exec` remounts /sys and
  hides the cgroup mounts from runc;
- both namespaces are held by a process of their own, so containerd can be SIGKILLed and started
  again in them (kill, restart) and find its shims and its pods' mounts as on a real node;
- root here lacks CAP_SYS_RESOURCE, so the CRI plugin needs `restrict_oom_score_adj = true`;
- there is no registry: the images (busybox, and a pause image made of the same busybox) are
  built offline from Debian's busybox-static as an OCI layout tar and imported with ctr.
"""
import ctypes
import hashlib
import io
import json
import os
import select
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import grpc

from conftest import REPO, kill_and_wait
from cri import stubs

BUSYBOX_IMAGE = "uk.test/busybox:1"
PAUSE_IMAGE = "uk.test/pause:1"
BRIDGE = "uk-cni0"
# The CRI plugin's last line before it takes calls.
CRI_STARTED = b'msg="Start streaming server"'
CACHE = REPO / "build" / "ctrd-images"
HELPER = REPO / "tests" / "helpers" / "private-mounts.sh"
CG = Path("/sys/fs/cgroup")
# The applets the images link to busybox; enough for a shell, sleep, echo and cat.
APPLETS = ("sh", "sleep", "echo", "cat", "ls", "true", "false", "env", "ps", "kill", "hostname")
# The pause process: PID 1 of the pod's PID namespace, it ends at once on SIGTERM (wait is
# interrupted by the trap; the kernel kills the orphaned sleep with the namespace).
PAUSE_CMD = ["/bin/sh", "-c", "trap exit TERM; while :; do sleep 3600 & wait; done"]


def _busybox():
    """The static busybox binary from Debian's busybox-static, downloaded once into build/."""
    out = CACHE / "busybox"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    deb = CACHE / "deb"
    shutil.rmtree(deb, ignore_errors=True)
    deb.mkdir()
    opts = ["-q"]
    if os.getuid() == 0:  # as root apt downloads as _apt, who cannot write here
        opts += ["-o", "APT::Sandbox::User=root"]
    r = subprocess.run(["apt-get", *opts, "download", "busybox-static"], cwd=deb, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"apt-get download busybox-static: {r.stderr}"
    [pkg] = deb.glob("busybox-static_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(pkg), str(deb / "x")], check=True, timeout=60)
    tmp = CACHE / "busybox.tmp"
    shutil.copyfile(deb / "x" / "bin" / "busybox", tmp)
    tmp.chmod(0o755)
    tmp.rename(out)  # atomic: a cached busybox is always whole
    shutil.rmtree(deb, ignore_errors=True)
    return out


def _layer(busybox):
    """An uncompressed, reproducible layer: /bin/busybox, its applet links, /tmp and /etc."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def entry(name, **kw):
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid = 0, 0, 0
            for k, v in kw.items():
                setattr(ti, k, v)
            return ti
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            t.addfile(entry(d, type=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755))
        data = busybox.read_bytes()
        t.addfile(entry("bin/busybox", mode=0o755, size=len(data)), io.BytesIO(data))
        for a in APPLETS:
            t.addfile(entry(f"bin/{a}", type=tarfile.SYMTYPE, linkname="busybox", mode=0o777))
    return buf.getvalue()


def _blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    blobs[d] = data
    return {"digest": f"sha256:{d}", "size": len(data)}


def build_images(out):
    """Write an OCI layout tar holding BUSYBOX_IMAGE and PAUSE_IMAGE (one shared layer), each
    named by an io.containerd.image.name annotation, for `ctr images import`."""
    layer = _layer(_busybox())
    blobs = {}
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(blobs, layer)}
    manifests = []
    for name, cfg in ((BUSYBOX_IMAGE, {"Cmd": ["/bin/sh"]}), (PAUSE_IMAGE, {"Entrypoint": PAUSE_CMD})):
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Env": ["PATH=/bin"], "WorkingDir": "/", **cfg},
                  "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
        cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                 **_blob(blobs, json.dumps(config, sort_keys=True).encode())}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cdesc, "layers": [layer_desc]}
        mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 **_blob(blobs, json.dumps(manifest, sort_keys=True).encode()),
                 "platform": {"architecture": "amd64", "os": "linux"},
                 "annotations": {"io.containerd.image.name": name,
                                 "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}
        manifests.append(mdesc)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode(),
             **{f"blobs/sha256/{d}": b for d, b in blobs.items()}}
    with tarfile.open(out, "w") as t:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data))
    return out


CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
"""


def _conflist(subnet, data_dir):
    return {"cniVersion": "1.0.0", "name": "uk-test", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "loopback"}]}


def wait_in_dir(directory, done, timeout, proc=None, what="the awaited change"):
    """Wait on inotify (a file created, renamed in or written in directory) until done()
    holds; with proc, also on its pidfd, to fail at once if it ends first. Returns done()."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert fd >= 0
    pfd = os.pidfd_open(proc.pid) if proc else None
    try:
        # IN_MODIFY | IN_CREATE | IN_MOVED_TO
        assert libc.inotify_add_watch(fd, str(directory).encode(), 0x2 | 0x100 | 0x80) >= 0
        end = time.monotonic() + timeout
        while not (res := done()):
            assert proc is None or proc.poll() is None, f"the process ended (status {proc.returncode}) before {what}"
            left = end - time.monotonic()
            assert left > 0, f"{what} never came"
            if fd in select.select([fd] + ([pfd] if pfd is not None else []), [], [], left)[0]:
                os.read(fd, 4096)
        return res
    finally:
        os.close(fd)
        if pfd is not None:
            os.close(pfd)


def _ppids():
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            out[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _cmdline_has(pid, text):
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Containerd:
    """containerd in a network namespace and a private mount namespace of its own, with its
    root, state, sockets, CNI config and IPAM data under root (the test's scratch dir)."""

    def __init__(self, root, subnet="10.99.0.0/24"):
        self.root = Path(root) / "ctrd"
        self.tag = uuid.uuid4().hex[:10]
        self.ns = f"uk-ctrd-{self.tag}"
        self.sock = self.root / "run" / "containerd.sock"
        self.cgroup_parent = f"/uk-ctrd-{self.tag}"
        self.logs = self.root / "logs"
        self.subnet = subnet
        self.proc = None
        self.holder = None
        self.logfile = None
        self.channel = None
        self.rs = self.im = None

    # --- lifecycle ---
    def _write_config(self):
        for d in ("root", "state", "run", "cni", "ipam", "logs", "bind/run", "bind/var-lib"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "cni" / "10-uk-test.conflist").write_text(
            json.dumps(_conflist(self.subnet, self.root / "ipam"), indent=1))
        cfg = self.root / "config.toml"
        cfg.write_text(CONFIG.format(root=self.root / "root", state=self.root / "state", sock=self.sock,
                                     pause=PAUSE_IMAGE, cni=self.root / "cni"))
        return cfg

    def start(self, timeout=60):
        """The namespaces, then containerd in them. The private mount namespace is held by a
        process of its own (a shell waiting on its stdin), not by containerd, so that a
        containerd killed and started again (kill, restart) finds the mounts its shims and
        pods made: the pods' network namespaces stay mounted under its /run."""
        cfg = self._write_config()
        subprocess.run(["ip", "netns", "add", self.ns], check=True, timeout=30)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True, timeout=30)
        # The CNI bridge, made before the plugin would with an address of its own: the bridge
        # plugin sets a bridge's MAC to the one it reads, and a bridge it has just made may
        # still have none (kernel: EINVAL, "could not set bridge's mac", now and then).
        subprocess.run(["ip", "-n", self.ns, "link", "add", BRIDGE, "address", "02:" + ":".join(
            self.tag[i:i + 2] for i in range(0, 10, 2)), "type", "bridge"], check=True, timeout=30)
        self.logfile = open(self.root / "containerd.log", "ab")
        # nsenter first (it needs the host's /run/netns), then the private mounts; never
        # `ip netns exec`, whose fresh /sys hides the cgroup hierarchy from runc. The holder
        # says "ready" once the mounts are made, and ends when its stdin closes; its command
        # line names our root, so a leak check on the scratch dir sees it.
        self.holder = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount", "--propagation", "private",
             "sh", str(HELPER), str(self.root / "bind/run"), str(self.root / "bind/var-lib"),
             "sh", "-c", "echo ready; read -r _", str(self.root / "namespace-holder")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.logfile)
        line = self.holder.stdout.readline()
        assert line == b"ready\n", f"the namespace holder failed (status {self.holder.poll()}): {line!r}"
        self._launch(cfg, timeout)
        return self

    def _launch(self, cfg, timeout):
        # A socket left by a killed containerd would satisfy the wait at once: remove it
        # (containerd would replace it anyway).
        self.sock.unlink(missing_ok=True)
        log = self.root / "containerd.log"
        starts = log.read_bytes().count(CRI_STARTED)
        self.proc = subprocess.Popen(
            ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "containerd", "--config", str(cfg)],
            stdout=self.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_in_dir(self.sock.parent, self.sock.exists, timeout, self.proc, f"containerd's socket {self.sock}")
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        grpc.channel_ready_future(self.channel).result(timeout=timeout)
        pb, g = stubs()
        self.rs, self.im = g.RuntimeServiceStub(self.channel), g.ImageServiceStub(self.channel)
        # The CRI plugin starts after the socket serves, and until then answers "server is
        # not initialized yet": wait for its last start-up line; it marks itself ready a
        # statement after that line, so only that short gap is retried.
        wait_in_dir(self.root, lambda: log.read_bytes().count(CRI_STARTED) > starts, timeout, self.proc,
                    "the CRI plugin's start")
        for _ in range(1000):
            try:
                self.rs.Version(pb.VersionRequest())
                return
            except grpc.RpcError as e:
                if "not initialized" not in (e.details() or ""):
                    raise
        raise AssertionError("containerd's CRI plugin never finished its start")

    def kill(self):
        """SIGKILL containerd alone, as the OOM killer would: its shims, containers and pods
        go on running, its socket stays behind."""
        if self.channel:
            self.channel.close()
            self.channel = None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def restart(self, timeout=60):
        """Start containerd again in the same namespaces, on the same socket and state."""
        assert self.proc.poll() is not None, "containerd is still running"
        self._launch(self.root / "config.toml", timeout)
        return self

    def stray_shims(self):
        """{pid: id} of the shims serving an id that containerd's CRI no longer lists."""
        pb, _ = stubs()
        known = {p.id for p in self.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items} | \
            {c.id for c in self.rs.ListContainers(pb.ListContainersRequest()).containers}
        out = {}
        for pid in self.pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv[0].endswith("containerd-shim-runc-v2") and "-id" in argv:
                sid = argv[argv.index("-id") + 1]
                if sid not in known:
                    out[pid] = sid
        return out

    def log_lines(self, text):
        return [line for line in (self.root / "containerd.log").read_text(errors="replace").splitlines()
                if text in line]

    def remove_all_pods(self):
        """Stop and remove every pod (with its containers) through containerd's own CRI."""
        pb, _ = stubs()
        for p in self.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
            self.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))

    def ctr(self, *args, check=True, timeout=120):
        r = subprocess.run(["ctr", "-a", str(self.sock), "-n", "k8s.io", *args], capture_output=True, text=True,
                           timeout=timeout)
        assert not check or r.returncode == 0, f"ctr {' '.join(args)}: {r.stderr}"
        return r

    def import_images(self):
        tar = build_images(self.root / "images.tar")
        self.ctr("images", "import", str(tar))
        names = self.ctr("images", "ls", "-q").stdout.split()
        assert BUSYBOX_IMAGE in names and PAUSE_IMAGE in names, names
        return self

    def pids(self):
        """containerd, every shim it started (they name its socket and are reparented away)
        and all their descendants: the containers, runc, the pause processes. Not the
        namespace holder, which lives as long as the harness does."""
        ppids = _ppids()
        roots = {p for p in ppids if _cmdline_has(p, str(self.root))}
        if self.proc and self.proc.poll() is None:
            roots.add(self.proc.pid)
        found, todo = set(), list(roots)
        while todo:
            p = todo.pop()
            if p not in found:
                found.add(p)
                todo += [c for c, pp in ppids.items() if pp == p]
        found.discard(os.getpid())
        if getattr(self, "holder", None):
            found.discard(self.holder.pid)
        return sorted(found)

    def cgroup_dirs(self):
        return [d for d in CG.glob(f"*/{self.cgroup_parent.lstrip('/')}") if d.is_dir()] + \
            ([CG / self.cgroup_parent.lstrip("/")] if (CG / "cgroup.controllers").exists() and
             (CG / self.cgroup_parent.lstrip("/")).is_dir() else [])

    def cgroup_pids(self):
        out = set()
        for top in self.cgroup_dirs():
            for f in top.rglob("cgroup.procs"):
                try:
                    out |= {int(x) for x in f.read_text().split()}
                except OSError:
                    pass
        return out

    def mounts(self):
        """Host mounts under our scratch dir (the private namespace should leave none)."""
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(self.root) in line]

    def cleanup(self):
        """Stop containerd and kill what it left (shims, runc, containers), then remove the
        cgroups, the network namespace and the files. Safe to call twice and after a failure."""
        if self.channel:
            self.channel.close()
            self.channel = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for _ in range(5):  # a process forked while we were killing is caught on the next pass
            victims = set(self.pids()) | self.cgroup_pids()
            if not victims:
                break
            for p in victims:
                kill_and_wait(p)
        if getattr(self, "holder", None):
            self.holder.stdin.close()  # its `read` ends: the mount namespace goes with it
            try:
                self.holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(timeout=30)
            self.holder.stdout.close()
            self.holder = None
        if self.proc:
            self.proc.wait(timeout=30)
            self.proc = None
        if getattr(self, "logfile", None):
            self.logfile.close()
            self.logfile = None
        try:
            for top in self.cgroup_dirs():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    d.rmdir()
                top.rmdir()
        finally:
            subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True, timeout=30)
            # Mounts left on the host (there should be none) would make rm -rf reach into them.
            if self.root.exists() and not self.mounts():
                subprocess.run(["rm", "-rf", str(self.root)], check=False, timeout=120)

