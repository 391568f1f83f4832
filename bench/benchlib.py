"""Shared pieces of the unikd benchmarks: statistics, a scratch area that is always cleaned
up, network namespaces, inotify, ICMP from inside a namespace, /proc readings, and unikd
itself driven over its CRI socket.

Everything a run creates carries the tag `ukbench-<pid>`: the scratch directory
/tmp/ukbench-<pid>, the network namespaces ukbench-<pid>-*, the cgroup parent
/ukbench-<pid>, QEMU's -name. The clean-up removes exactly what carries the tag, and
nothing else; a run killed with SIGKILL is cleaned up by the next run (stale tags whose
pid is gone)."""
import ctypes
import ctypes.util
import errno
import importlib
import json
import os
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("UNIKD_BIN_DIR", REPO / "bin"))
HELLO = REPO / "tests/guests/hello/hello.elf"
NETGUEST = REPO / "build/guests/netguest"
QEMU = "/usr/bin/qemu-system-x86_64"
FIRST_LINE = b"hello: unikd test guest"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
CLONE_NEWNET = 0x40000000


def mono_ns():
    return time.monotonic_ns()


def realtime_to_mono_offset():
    """realtime - monotonic, taken as the middle of a bracket so it is good to a few µs."""
    best = None
    for _ in range(5):
        a = time.monotonic_ns()
        r = time.time_ns()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    return best[1]


# ---------------------------------------------------------------- statistics

def pct(xs, q):
    """Nearest-rank percentile on the sorted sample (the same rule as vmwrapper_boot.py):
    with 30 samples p99 is the largest one."""
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0, "median": None, "p90": None, "p99": None, "min": None, "max": None, "mean": None}
    return {"n": len(xs), "median": statistics.median(xs), "p90": pct(xs, 90), "p99": pct(xs, 99),
            "min": min(xs), "max": max(xs), "mean": statistics.fmean(xs)}


def ratio(a, b):
    return a / b if a is not None and b else None


# ---------------------------------------------------------------- the accelerator

def kvm_why_not():
    """None if /dev/kvm opens read-write (what QEMU and vmwrapper's `auto` need), else why not."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    return None


def host_accel():
    """The accelerator a benchmark runs every side of a comparison under: kvm where /dev/kvm
    works, else tcg (as vmwrapper's `auto` chooses)."""
    return "kvm" if kvm_why_not() is None else "tcg"


# ---------------------------------------------------------------- processes and /proc

def sh(*args, check=True, timeout=60, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=check, **kw)


def pids_tagged(tag, comm=None):
    """Processes whose command line contains tag, not followed by another digit (so the tag
    ukbench-12 never matches ukbench-123), and whose comm is comm, if given."""
    out = []
    me = os.getpid()
    pat = re.compile(re.escape(tag.encode()) + rb"(?![0-9])")
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            if not pat.search(cmd):
                continue
            if comm is not None:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() != comm:
                        continue
            out.append(int(d))
        except OSError:
            pass
    return out


def proc_cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def smaps_rollup_kb(pid):
    """{Rss, Pss, Pss_Anon, Pss_File, Shared_*, Private_*, ...} in kB from smaps_rollup."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        return None
    return out


def smaps_by_mapping_kb(pid):
    """Rss and Private (clean+dirty) per mapped object from /proc/<pid>/smaps, largest first:
    [(name, rss_kb, private_kb)]; anonymous mappings are "[anon]"."""
    out = {}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    parts = line.split(None, 5)
                    name = parts[5].strip() if len(parts) == 6 and parts[5].strip() else "[anon]"
                    name = os.path.basename(name) if name.startswith("/") else name
                    out.setdefault(name, [0, 0])
                elif name and line.startswith("Rss:"):
                    out[name][0] += int(line.split()[1])
                elif name and line.startswith(("Private_Clean:", "Private_Dirty:")):
                    out[name][1] += int(line.split()[1])
    except OSError:
        return None
    return sorted(((k, v[0], v[1]) for k, v in out.items()), key=lambda x: -x[1])


def thread_switches(pid):
    """{tid: (comm, voluntary+involuntary context switches)} for every thread of pid."""
    out = {}
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/comm") as f:
                    comm = f.read().strip()
                sw = 0
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if "ctxt_switches" in line:
                            sw += int(line.split()[1])
                out[t] = (comm, sw)
            except OSError:
                pass
    except OSError:
        pass
    return out


def meminfo_kb():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def kill_wait(pids, sig=signal.SIGKILL, timeout=10.0):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # Not our child: a zombie waits for its parent, and counts as gone.
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.01)


# ---------------------------------------------------------------- scratch and clean-up

class Scratch:
    """The run's tag, its directory, and a stack of clean-ups run in reverse order on exit,
    on an exception, and on SIGINT/SIGTERM/SIGHUP."""

    def __init__(self):
        self.tag = f"ukbench-{os.getpid()}"
        self.root = Path("/tmp") / self.tag
        self._undo = []
        self._done = False

    def __enter__(self):
        clean_stale()
        self.root.mkdir(mode=0o755)
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def defer(self, fn, *args, **kw):
        self._undo.append((fn, args, kw))

    def cleanup(self):
        if self._done:
            return
        self._done = True
        while self._undo:
            fn, args, kw = self._undo.pop()
            try:
                fn(*args, **kw)
            except Exception as e:  # keep going: every step must get its chance
                print(f"bench: clean-up step {getattr(fn, '__name__', fn)} failed: {e}", file=sys.stderr)
        sweep_tag(self.tag)

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def netns(self, suffix):
        name = f"{self.tag}-{suffix}"
        sh("ip", "netns", "add", name)
        self.defer(sh, "ip", "netns", "del", name, check=False)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name


def nsexec(ns, *args, check=True, **kw):
    # nsenter, not `ip netns exec`: that one mounts a fresh /sys, hiding the cgroup tree.
    return sh("nsenter", f"--net=/run/netns/{ns}", *args, check=check, **kw)


def fast_neigh(ns, dev):
    """Neighbour resolution on dev retried every 10 ms instead of every second, so the first
    reply from a booting guest is not held back by an ARP entry that failed while it booted.
    (A new namespace has no neigh/default sysctls: it is set per device.)"""
    nsexec(ns, "sh", "-c", f"echo 10 > /proc/sys/net/ipv4/neigh/{dev}/retrans_time_ms")


def cpu_times():
    """The machine's CPU time so far (/proc/stat, first line): (busy, total) in ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])  # guest time is already in user
    return total - idle, total


def busy_between(a, b):
    """Fraction of all CPUs busy between two cpu_times() readings."""
    return (b[0] - a[0]) / max(1, b[1] - a[1])


def wait_quiet(threshold=0.10, sample_s=1.0, timeout_s=90.0):
    """Wait until the whole machine was busy less than threshold over one sample (kernel
    threads included: write-back, cgroup and RCU work after a big start-up). Returns the
    seconds waited and the last sample's busy fraction."""
    t0 = time.monotonic()
    while True:
        a = cpu_times()
        time.sleep(sample_s)
        busy = busy_between(a, cpu_times())
        if busy < threshold or time.monotonic() - t0 >= timeout_s:
            return time.monotonic() - t0, busy


def umount_lazy(path):
    sh("umount", "-l", path, check=False)


def sweep_tag(tag):
    """Everything that carries the tag and is still there: processes, namespaces, cgroups,
    tmpfs mounts, the scratch directory."""
    kill_wait(pids_tagged(tag))
    with open("/proc/self/mounts") as f:
        for line in f:
            where = line.split()[1]
            if where.startswith(f"/tmp/{tag}/"):
                umount_lazy(where)
    for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = ns.split(" ")[0]
        if name == tag or name.startswith(tag + "-"):
            sh("ip", "netns", "del", name, check=False)
    for d in Path("/sys/fs/cgroup").glob(f"*/{tag}"):
        rm_cgroup_tree(d)
    for d in Path("/sys/fs/cgroup").glob(tag):
        rm_cgroup_tree(d)
    root = Path("/tmp") / tag
    if root.exists():
        sh("rm", "-rf", "--one-file-system", root, check=False)


def rm_cgroup_tree(d):
    """rmdir a cgroup and its children, deepest first (cgroupfs refuses rm -r)."""
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        d.rmdir()
    except OSError:
        pass


def clean_stale():
    """Leftovers of an earlier run that was killed outright (its pid is gone)."""
    tags = set()
    for p in Path("/tmp").glob("ukbench-*"):
        tags.add(p.name)
    for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
        m = re.match(r"(ukbench-\d+)", ns)
        if m:
            tags.add(m.group(1))
    for tag in tags:
        m = re.fullmatch(r"ukbench-(\d+)", tag)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        print(f"bench: removing the leftovers of an earlier run that was killed ({tag})", file=sys.stderr)
        sweep_tag(tag)


# ---------------------------------------------------------------- inotify

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100


class Inotify:
    def __init__(self):
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds = {}

    def watch(self, path, mask=IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO):
        wd = libc.inotify_add_watch(self.fd, str(path).encode(), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.wds[wd] = Path(path)
        return wd

    def unwatch(self, wd):
        libc.inotify_rm_watch(self.fd, wd)
        self.wds.pop(wd, None)

    def wait(self, timeout_s):
        """Block until at least one event (True) or the timeout (False); drains the queue."""
        r, _, _ = select.select([self.fd], [], [], max(timeout_s, 0))
        if not r:
            return False
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self):
        os.close(self.fd)


def start_pod(u, name, args, memory_mib, watch=False, annotations=None, image="hello:1", needle=FIRST_LINE,
              times=None):
    """Run, create and start one pod; returns (sid, cid, t_sent, t_running, LineWatch|None).
    With times (a dict), also the monotonic ns when RunPodSandbox and CreateContainer answered."""
    pb, rs = u.pb, u.rs
    (u.logs / name / "c").mkdir(parents=True)
    lw = LineWatch(u.log_path(name), needle=needle, cri=True) if watch else None
    cfg = u.pod_config(name)
    ccfg = u.container_config(args, memory_mib=memory_mib, annotations=annotations, image=image)
    t0 = mono_ns()
    sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    if times is not None:
        times["run"] = mono_ns()
    cid = rs.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, config=ccfg,
                                                       sandbox_config=cfg)).container_id
    if times is not None:
        times["create"] = mono_ns()
    rs.StartContainer(pb.StartContainerRequest(container_id=cid))
    return sid, cid, t0, mono_ns(), lw


def remove_pod(u, sid):
    pb, rs = u.pb, u.rs
    rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def wait_pool_ready(u, n, timeout_s=300.0):
    """Until unikd's log has said n times in all that a pool VM is ready (inotify on the log)."""
    ino = Inotify()
    ino.watch(u.logfile)
    end = time.monotonic() + timeout_s
    try:
        while u.logfile.read_text().count('msg="pool VM ready"') < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{n} pool VMs were not ready after {timeout_s} s")
            ino.wait(left)
    finally:
        ino.close()


class LineWatch:
    """Waits for a line that starts with `needle` in a file that may not exist yet (a CRI
    log, a serial console file), woken by inotify on its directory, not by polling."""

    def __init__(self, path, needle=FIRST_LINE, cri=False):
        self.path = Path(path)
        self.needle = needle
        self.cri = cri
        self.offset = 0
        self.buf = b""
        self.ino = Inotify()
        self.ino.watch(self.path.parent)

    def _scan(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return None
        self.offset += len(data)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            content = line
            if self.cri:  # "<ts> stdout F <content>"
                parts = line.split(b" ", 3)
                content = parts[3] if len(parts) == 4 else b""
            if content.rstrip(b"\r").startswith(self.needle):
                return line
        return None

    def wait(self, timeout_s=30.0):
        """Returns (monotonic ns when seen, the raw line)."""
        end = time.monotonic() + timeout_s
        while True:
            line = self._scan()
            if line is not None:
                return mono_ns(), line
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line starting with {self.needle!r} in {self.path} after {timeout_s} s")
            self.ino.wait(left)

    def close(self):
        self.ino.close()


def cri_record_realtime_ns(line):
    """The timestamp of a CRI log record (RFC 3339, nine fractional digits, Z) in ns."""
    ts = line.split(b" ", 1)[0].decode()
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z", ts)
    if not m:
        return None
    import calendar
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int(m.group(2))


# ---------------------------------------------------------------- ICMP from a namespace

def socket_in_netns(ns, family, type_, proto):
    """A socket created inside network namespace ns (setns in a throwaway thread: the
    namespace is per thread, and a socket keeps the one it was made in)."""
    box = {}

    def make():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            box["s"] = socket.socket(family, type_, proto)
        except Exception as e:
            box["e"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["s"]


def _csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Pinger:
    """ICMP echo from inside a namespace: wait_reply(ip) sends an echo request every
    `interval` and returns the monotonic time of the first reply."""

    def __init__(self, ns, interval=0.005):
        self.s = socket_in_netns(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.s.setblocking(False)
        self.interval = interval
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def _send(self, ip):
        self.seq = (self.seq + 1) & 0xFFFF
        hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        payload = b"ukbench"
        pkt = struct.pack("!BBHHH", 8, 0, _csum(hdr + payload), self.ident, self.seq) + payload
        try:
            self.s.sendto(pkt, (ip, 0))
        except OSError as e:  # EHOSTUNREACH while the neighbour entry has failed
            if e.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN, errno.ENOBUFS):
                raise

    def wait_reply(self, ip, timeout_s=60.0):
        end = time.monotonic() + timeout_s
        sent = 0
        while time.monotonic() < end:
            self._send(ip)
            sent += 1
            r, _, _ = select.select([self.s], [], [], self.interval)
            while r:
                try:
                    data, addr = self.s.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # an ICMP error queued for the socket
                    break
                ihl = (data[0] & 0xF) * 4
                typ, _, _, ident, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if typ == 0 and ident == self.ident and addr[0] == ip:
                    return mono_ns(), sent
                r, _, _ = select.select([self.s], [], [], 0)
        raise TimeoutError(f"no ICMP echo reply from {ip} within {timeout_s} s")

    def close(self):
        self.s.close()


# ---------------------------------------------------------------- CRI stubs and unikd

_stubs = None


def stubs(scratch):
    """Python stubs generated from the project's api.proto (as the integration tests do)."""
    global _stubs
    if _stubs is None:
        out = scratch.root / "stubs"
        out.mkdir()
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "src/cri/proto"),
                        f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"], check=True)
        sys.path.insert(0, str(out))
        _stubs = (importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc"))
    return _stubs


RPC_LINE = re.compile(r"ts=(\S+?)Z level=\w+ prog=unikd rpc=/runtime\.v1\.\w+/(\w+) code=(\d+) ms=([\d.]+)")


def server_times_in_order(rpc_lines, order):
    """Match calls made one at a time, in `order` (method names), to unikd's rpc= log lines
    (Unikd.new_rpc_times), one per call in the same order: {method: [(ms inside unikd,
    realtime ns of the line)]}. Lines of other methods are skipped; a call without its own
    line raises, as every later match would be wrong."""
    wanted = set(order)
    lines = iter([x for x in rpc_lines if x[0] in wanted])
    out = {}
    for i, k in enumerate(order):
        got = next(lines, None)
        if got is None or got[0] != k:
            raise RuntimeError(f"unikd's log does not match call {i} ({k}): found {got[0] if got else 'no line'}")
        out.setdefault(k, []).append((got[1], got[2]))
    return out


class RunQueueWait:
    """Time spent runnable but not running (schedstat's second field, ns), summed over the
    calling thread and, apart, over the threads of `pid` that `burst()` woke (the ones that
    serve those calls). read() costs a few µs per thread: call it outside a timed window."""

    def __init__(self, pid, burst):
        def switches(tids):
            out = {}
            for t in tids:
                try:
                    with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                        out[t] = int(f.read().split()[2])
                except OSError:
                    pass
            return out
        tids = os.listdir(f"/proc/{pid}/task")
        a = switches(tids)
        burst()
        b = switches(tids)
        self.fds = []
        self.me = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        for t in (t for t in a if t in b and b[t] != a[t]):
            try:
                self.fds.append(os.open(f"/proc/{pid}/task/{t}/schedstat", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                pass

    def read(self):
        """(this thread's wait, the serving threads' summed wait), in ms."""
        return (int(os.pread(self.me, 128, 0).split()[1]) / 1e6,
                sum(int(os.pread(fd, 128, 0).split()[1]) for fd in self.fds) / 1e6)

    def close(self):
        for fd in self.fds + [self.me]:
            os.close(fd)
        self.fds, self.me = [], -1


def log_ts_ns(ts):
    """unikd's log timestamp (2026-11-25T14:34:18.194991, UTC) in ns since the epoch."""
    import calendar
    sec, frac = ts.split(".")
    return calendar.timegm(time.strptime(sec, "%Y-%m-%dT%H:%M:%S")) * 1_000_000_000 + int(frac.ljust(9, "0"))


class Unikd:
    """bin/unikd in a network namespace of the run's own, with its state, run and log
    directories under the scratch directory and an empty config file (so a node's
    /etc/unikd/unikd.conf cannot change what is measured). accel, if given, is its --accel:
    the VMs' accelerator unless a pod's annotation says otherwise. log_level None: no flag, the
    level is the config file's (info until set_log_level), which a SIGHUP changes live."""

    def __init__(self, scratch, name, ns, network="bridge", log_level="debug", accel=None, extra=()):
        import grpc  # noqa: F401  (fail early with a clear message if python3-grpcio is missing)
        self.scratch = scratch
        self.name = name
        self.ns = ns
        self.root = scratch.root / name
        self.state = self.root / "state"
        self.run = self.root / "run"
        self.logs = self.root / "logs"
        self.sock = self.run / "unikd.sock"
        self.logfile = self.root / "unikd.log"
        self.cgroup_parent = f"/{scratch.tag}"
        self.args = ["--config", str(self.root / "unikd.conf"), "--state-dir", str(self.state),
                     "--run-dir", str(self.run), *(["--log-level", log_level] if log_level else []),
                     "--network", network,
                     *(["--accel", accel] if accel else []), *extra]
        self.proc = None
        self.channel = None
        self.pb, self.g = stubs(scratch)
        self.log_offset = 0
        self.root.mkdir()
        self.logs.mkdir()
        (self.root / "unikd.conf").write_text("")
        # The run directory on a tmpfs, as /run is on a systemd host (docs/architecture.md,
        # "Where state lives"); a disk-backed one would charge unikd's run-time files
        # (vmwrapper.json, dnsmasq's hosts files) journal commits that a node never makes.
        self.run.mkdir()
        sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=256m", f"{scratch.tag}-run", self.run)
        scratch.defer(umount_lazy, self.run)

    def import_image(self, name, *args):
        r = sh(BIN / "unikd", "--config", self.root / "unikd.conf", "--state-dir", self.state, "image", "import",
               name, *args, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"unikd image import {name}: {r.stderr.strip()}")

    def start(self, timeout=60):
        import grpc
        lw = LineWatch(self.logfile, needle=b"", cri=False)
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", str(BIN / "unikd"), *self.args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.scratch.defer(self.stop)
        end = time.monotonic() + timeout
        try:
            while True:
                text = self.logfile.read_text(errors="replace")
                if 'msg="ready"' in text:
                    break
                if self.proc.poll() is not None:
                    raise RuntimeError(f"unikd {self.name} exited {self.proc.returncode} before it was ready:\n"
                                       f"{text[-2000:]}")
                if time.monotonic() > end:
                    raise RuntimeError(f"unikd {self.name} not ready after {timeout} s:\n{text[-2000:]}")
                lw.ino.wait(0.5)
        finally:
            lw.close()
        self.log_offset = self.logfile.stat().st_size
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.rs = self.g.RuntimeServiceStub(self.channel)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def set_log_level(self, level, timeout=10.0):
        """The config file's log level, applied live by a SIGHUP (only without --log-level,
        which wins over the file); returns once unikd logged its reload."""
        (self.root / "unikd.conf").write_text(f"[daemon]\nlog_level = {level}\n")
        size = self.logfile.stat().st_size
        ino = Inotify()
        try:
            ino.watch(self.root)
            os.kill(self.pid, signal.SIGHUP)
            end = time.monotonic() + timeout
            while True:
                with open(self.logfile, "rb") as f:
                    f.seek(size)
                    if b'msg="reloaded"' in f.read():
                        return
                if time.monotonic() > end:
                    raise RuntimeError(f"unikd {self.name} did not log its reload within {timeout} s")
                ino.wait(0.5)
        finally:
            ino.close()

    def new_rpc_times(self):
        """Server-side RPC times (unikd's debug log: rpc=… ms=…) logged since the last call,
        in order: [(method, ms, realtime ns of the log line, i.e. the handler's end)]."""
        with open(self.logfile, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
        self.log_offset += len(data)
        return [(m.group(2), float(m.group(4)), log_ts_ns(m.group(1)))
                for m in RPC_LINE.finditer(data.decode(errors="replace"))]

    def remove_all(self):
        pb = self.pb
        for p in self.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            self.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
            self.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))

    def stop(self):
        """Remove every pod through the CRI, stop unikd, then whatever it leaves on purpose
        (dnsmasq outlives unikd, to be adopted by the next start)."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None and self.channel is not None:
                self.remove_all()
        except Exception as e:
            print(f"bench: removing {self.name}'s pods failed: {e}", file=sys.stderr)
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        kill_wait(pids_tagged(str(self.root)))

    # ---- request builders
    def pod_config(self, name, annotations=None, uid=None):
        pb = self.pb
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid or f"uid-{name}", namespace="bench", attempt=0),
            hostname=name, log_directory=str(self.logs / name), annotations=annotations or {},
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=self.cgroup_parent))

    def container_config(self, args, memory_mib=0, annotations=None, command=(), envs=None, image="hello:1"):
        pb = self.pb
        res = None
        if memory_mib:
            res = pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=memory_mib << 20))
        return pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c", attempt=0),
                                  image=pb.ImageSpec(image=image), command=list(command), args=list(args),
                                  envs=[pb.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
                                  annotations=annotations or {}, log_path="c/0.log", linux=res)

    def log_path(self, pod_name):
        return self.logs / pod_name / "c" / "0.log"

    def vm_dir(self, cid):
        return self.run / "vms" / cid


def timed(fn, *a, **kw):
    t0 = time.perf_counter_ns()
    r = fn(*a, **kw)
    return r, (time.perf_counter_ns() - t0) / 1e6


def host_facts():
    facts = {"nproc": os.cpu_count(), "kernel": os.uname().release}
    mi = meminfo_kb()
    facts["mem_total_gib"] = round(mi["MemTotal"] / 2**20, 1)
    try:
        facts["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                  if line.startswith("model name"))
    except StopIteration:
        pass
    facts["loadavg_at_start"] = open("/proc/loadavg").read().split()[:3]
    facts["kvm_why_not"] = kvm_why_not()
    facts["kvm"] = facts["kvm_why_not"] is None
    try:
        facts["qemu"] = sh(QEMU, "--version").stdout.split("\n")[0]
    except Exception:
        pass
    return facts


def build_facts():
    out = {}
    try:
        out["commit"] = sh("git", "-C", REPO, "rev-parse", "HEAD").stdout.strip()
        out["worktree_dirty"] = bool(sh("git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                                        "src", "vmwrapper").stdout.strip())
    except Exception:
        pass
    import hashlib
    for b in ("unikd", "vmwrapper"):
        p = BIN / b
        if p.exists():
            out[f"{b}_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            out[f"{b}_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(p.stat().st_mtime))
    out["bin_dir"] = str(BIN)
    return out


def dump_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")
