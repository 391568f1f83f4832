"""unikd with a containerd delegate (issue 16, acceptance points 1, 2, 3 and 6): through
unikd's socket, busybox pods run in a real containerd (Debian's 1.6, runc, the harness of
containerd.py) while the hello guest runs in unikd, and every call reaches the side that owns
its object. One containerd serves the whole module; after every test it must hold nothing
the test made (each test removes its pods through unikd), and it is cleaned and checked at
the end of the module.

What each side holds is read from the side itself, never from unikd's merged answers:
unikd's records (state/sandboxes, state/containers) and image refs (state/images/refs.json),
and containerd's own CRI (ctrd.rs, ctrd.im) and log (a call that reached it names the id)."""
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest

from conftest import BIN, FIRST_LINE, HELLO, kill_and_wait, pids_matching
from containerd import BUSYBOX_IMAGE, PAUSE_IMAGE, Containerd, _busybox, _layer, wait_in_dir
from cri import Unikd, ran_counts, stubs
from registry import Pusher, Registry, sha256

# containerd's CRI log: RFC 3339 times with the trailing zeros of the fraction trimmed.
CTRD_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z (stdout|stderr) [PF] (.*)")
SLEEPER = ["/bin/sh", "-c", "echo hello; exec sleep 1000"]


# ---- the shared containerd ----

@pytest.fixture(scope="module")
def ctrd_shared():
    """One containerd for the module, in a scratch dir of its own (not a test's: the
    per-test leak check would take it for a leak)."""
    root = Path("/tmp") / f"uk-it-ctrd-{uuid.uuid4().hex[:12]}"
    root.mkdir()
    c = Containerd(root)
    try:
        c.start().import_images()
        yield c
    finally:
        c.cleanup()
        leaked = pids_matching(str(root))
        for pid in leaked:
            kill_and_wait(pid)
        subprocess.run(["rm", "-rf", str(root)], check=False, timeout=120)
    assert not leaked, f"processes left behind: {leaked}"
    assert c.pids() == [] and c.mounts() == [] and c.cgroup_dirs() == []
    assert c.ns not in os.listdir("/run/netns")


@pytest.fixture
def ctrd(ctrd_shared):
    """The shared containerd, running; afterwards it must hold no pod, no shim and no image
    the test made (they are removed, and the test fails)."""
    c = ctrd_shared
    if c.proc.poll() is not None:  # a test killed it and failed before its restart
        c.restart()
    pb = stubs()[0]
    images = {i.id for i in c.im.ListImages(pb.ListImagesRequest()).images}
    yield c
    if c.proc.poll() is not None:
        c.restart()
    pods = [(p.id, p.metadata.name) for p in c.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items]
    c.remove_all_pods()
    new_images = [list(i.repo_tags) for i in c.im.ListImages(pb.ListImagesRequest()).images if i.id not in images]
    for i in c.im.ListImages(pb.ListImagesRequest()).images:
        if i.id not in images:
            c.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=i.id)))
    strays = c.stray_shims()
    told = {sid: c.log_lines(sid)[-12:] for sid in strays.values()}
    left = [(pid, cmdline(pid)) for pid in c.pids() if pid != c.proc.pid and pid not in strays]
    for pid in list(strays) + [pid for pid, _ in left]:
        kill_and_wait(pid)
    assert pods == [], f"pods left in containerd: {pods}"
    assert strays == {}, f"shims of ids containerd no longer lists: {strays}; its log on them: {told}"
    assert left == [], f"shims or containers left behind: {left}"
    assert c.cgroup_pids() == set()
    assert new_images == [], "images left in containerd"


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def delegated_unikd(scratch, ctrd, *extra):
    """A unikd (not started) delegating to ctrd, with the hello guest as hello:1."""
    u = Unikd(scratch, extra=["--delegate-endpoint", f"unix://{ctrd.sock}", *extra])
    u.import_image("hello:1", "--kernel", str(HELLO), "--cmdline", "print:default")
    return u


def conditions(u):
    return {c.type: c for c in u.rs.Status(u.pb.StatusRequest()).status.conditions}


def wait_delegate_ready(u, timeout=30):
    """unikd reconnects on its own backoff (100 ms to 1 s) and shows no event for it: ask its
    Status again, a little apart, until DelegateReady is true or the time is up."""
    end = time.monotonic() + timeout
    while not (ready := conditions(u)["DelegateReady"]).status:
        assert time.monotonic() < end, f"DelegateReady still false: {ready.reason} {ready.message}"
        threading.Event().wait(0.1)


def stop_unikd(u):
    """Remove every pod listed through u (both sides), stop it, check nothing of unikd's is left.
    A test that failed with containerd just restarted: unikd lists only its own pods until it
    reconnects, so wait for that first."""
    try:
        try:
            if u.proc and u.proc.poll() is None:
                wait_delegate_ready(u)
        finally:
            u.cleanup()
    finally:
        vms, dns = u.vm_pids(), u.dnsmasq_pids()
        for pid in vms + dns:
            kill_and_wait(pid)
    assert vms == [] and dns == [], f"VM processes or dnsmasq left behind: {vms} {dns}"


@pytest.fixture
def dk(scratch, ctrd):
    u = delegated_unikd(scratch, ctrd)
    try:
        u.start()
        yield u
    finally:
        stop_unikd(u)


# ---- requests and what each side holds ----

def code_of(call, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        call(*a, **kw)
    return e.value.code(), e.value.details()


def ctrd_pod_config(u, ctrd, name, labels=None, network=None, pid=None, ipc=None, **kw):
    """A pod meant for containerd: in the test's cgroup parent, with host namespaces on demand."""
    pb = u.pb
    ns = pb.NamespaceOption(network=network or pb.POD, pid=pid or pb.POD, ipc=ipc or pb.POD)
    return u.pod_config(name=name, labels=labels, linux=pb.LinuxPodSandboxConfig(
        cgroup_parent=ctrd.cgroup_parent, security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)),
        **kw)


def run_pod(u, cfg, handler=""):
    return u.rs.RunPodSandbox(u.pb.RunPodSandboxRequest(config=cfg, runtime_handler=handler)).pod_sandbox_id


def record_ids(u):
    """The ids unikd keeps records for: (sandboxes, containers)."""
    def ids(d):
        return {p.name[:-5] for p in d.glob("*.json") if re.fullmatch(r"[0-9a-f]{64}\.json", p.name)} \
            if d.exists() else set()
    return ids(u.state / "sandboxes"), ids(u.state / "containers")


def ctrd_ids(ctrd):
    """The ids containerd has, asked directly: (pods, containers)."""
    pb = stubs()[0]
    return ({p.id for p in ctrd.rs.ListPodSandbox(pb.ListPodSandboxRequest()).items},
            {c.id for c in ctrd.rs.ListContainers(pb.ListContainersRequest()).containers})


def ctrd_log_mentions(ctrd, ids):
    """The ids that containerd's log names: a call that reached it (create, start, stop,
    remove, exec) logs its id."""
    text = (ctrd.root / "containerd.log").read_text(errors="replace")
    return [i for i in ids if i in text]


def unikd_refs(u):
    """unikd's own image store: {normalised reference: image id}."""
    p = u.state / "images" / "refs.json"
    return json.loads(p.read_text())["refs"] if p.exists() else {}


def log_contents(path):
    """The lines of a CRI log file, as far as written, in either side's time format."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    out = []
    for rec in data.decode(errors="replace").splitlines():
        m = CTRD_RECORD.fullmatch(rec)
        assert m, f"not a CRI log record: {rec!r}"
        out.append(m.group(2))
    return out


def wait_log_line(path, line, timeout=120):
    """Wait (inotify on the log's directory) until the log at path has line."""
    return wait_in_dir(path.parent, lambda: line in log_contents(path), timeout, what=f"{line!r} in {path}")


def logged_up_to(u, mark):
    """unikd's log once it holds every line of the calls made so far: the log reaches its file
    through a pipe, in order, so it waits for the refusal of a call made now (an unknown
    runtime handler, named in the refusal)."""
    req = u.pb.RunPodSandboxRequest(config=u.pod_config(name=mark), runtime_handler=f"mark-{mark}")
    assert code_of(u.rs.RunPodSandbox, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    return u.wait_log(f"mark-{mark}")


def ids_of(items):
    return [i.id for i in items]


def unikernel_pod(u, name, labels=None, args=("idle",)):
    """A pod with handler unikd and a started hello guest; waits for its banner."""
    cfg = u.pod_config(name=name, labels=labels)
    sid = run_pod(u, cfg, "unikd")
    cid = u.create(sid, cfg, args=list(args), labels=labels)
    u.start_ctr(cid)
    wait_log_line(u.logs / name / "c" / "0.log", FIRST_LINE)
    return sid, cid, cfg


def busybox_pod(u, ctrd, name, labels=None, handler=""):
    """A pod without (or with the given) handler, meant for containerd, with a started busybox
    that says hello and sleeps; waits for its line."""
    cfg = ctrd_pod_config(u, ctrd, name, labels=labels)
    sid = run_pod(u, cfg, handler)
    cid = u.create(sid, cfg, image=BUSYBOX_IMAGE, command=SLEEPER, labels=labels)
    u.start_ctr(cid)
    wait_log_line(u.logs / name / "c" / "0.log", "hello")
    return sid, cid, cfg


# ---- 1. a busybox pod in containerd and a unikernel pod in unikd, through one socket ----

def test_both_kinds_of_pods_through_one_socket(dk, ctrd):
    pb = dk.pb
    # Version is unikd's; Status adds the delegate's health to unikd's conditions.
    assert dk.rs.Version(pb.VersionRequest()).runtime_name == "unikd"
    conds = {c.type: c for c in dk.rs.Status(pb.StatusRequest()).status.conditions}
    assert conds["RuntimeReady"].status and conds["NetworkReady"].status, conds
    assert conds["DelegateReady"].status, conds["DelegateReady"]

    uni, uc, _ = unikernel_pod(dk, "uni", labels={"side": "unikd", "app": "t"})
    bb_cfg = ctrd_pod_config(dk, ctrd, "bb", labels={"side": "ctrd", "app": "t"})
    bb = run_pod(dk, bb_cfg)  # no handler: the default side, containerd
    # Each pod is on its side, and only there.
    assert ctrd_ids(ctrd)[0] == {bb}
    assert record_ids(dk)[0] == {uni}
    st = dk.pod_status(bb).status
    assert st.id == bb and st.state == pb.SANDBOX_READY and st.network.ip.startswith("10.99.0."), st

    bc = dk.create(bb, bb_cfg, image=BUSYBOX_IMAGE, command=SLEEPER, labels={"side": "ctrd", "app": "t"})
    assert ctrd_ids(ctrd)[1] == {bc} and record_ids(dk)[1] == {uc}
    assert dk.status(bc).status.state == pb.CONTAINER_CREATED
    dk.start_ctr(bc)
    wait_log_line(dk.logs / "bb" / "c" / "0.log", "hello")
    assert dk.status(bc).status.state == pb.CONTAINER_RUNNING
    assert dk.status(uc).status.state == pb.CONTAINER_RUNNING

    # ExecSync and Exec are containerd's for its container: the output, and its stream URL.
    r = dk.rs.ExecSync(pb.ExecSyncRequest(container_id=bc, cmd=["echo", "hello"], timeout=60))
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"hello\n", b"")
    r = dk.rs.ExecSync(pb.ExecSyncRequest(container_id=bc, cmd=["sh", "-c", "echo oops >&2; exit 3"], timeout=60))
    assert (r.exit_code, r.stderr) == (3, b"oops\n")
    req = pb.ExecRequest(container_id=bc, cmd=["sh"], stdin=True, stdout=True)
    via, direct = urlsplit(dk.rs.Exec(req).url), urlsplit(ctrd.rs.Exec(req).url)
    assert via.scheme == direct.scheme == "http" and via.netloc == direct.netloc, (via, direct)
    assert via.path.startswith("/exec/") and via.path != direct.path  # a token of its own
    # Attach and PortForward likewise.
    req = pb.AttachRequest(container_id=bc, stdout=True, stderr=True)
    via, direct = urlsplit(dk.rs.Attach(req).url), urlsplit(ctrd.rs.Attach(req).url)
    assert via.netloc == direct.netloc and via.path.startswith("/attach/"), (via, direct)
    req = pb.PortForwardRequest(pod_sandbox_id=bb, port=[80])
    via, direct = urlsplit(dk.rs.PortForward(req).url), urlsplit(ctrd.rs.PortForward(req).url)
    assert via.netloc == direct.netloc and via.path.startswith("/portforward/"), (via, direct)
    # unikd's own containers have no exec yet (issue 17): unikd answers, not containerd.
    code, _ = code_of(dk.rs.ExecSync, pb.ExecSyncRequest(container_id=uc, cmd=["x"], timeout=5))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    code, _ = code_of(dk.rs.Exec, pb.ExecRequest(container_id=uc, cmd=["x"], stdout=True))
    assert code == grpc.StatusCode.UNIMPLEMENTED

    # Lists: both sides, unikd's first, each side filtering.
    R, NR = pb.PodSandboxStateValue(state=pb.SANDBOX_READY), pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY)
    pods = dk.pods()
    assert ids_of(pods) == [uni, bb] and [p.state for p in pods] == [pb.SANDBOX_READY] * 2
    assert ids_of(dk.pods(id=bb)) == [bb] and ids_of(dk.pods(id=uni)) == [uni]
    assert ids_of(dk.pods(state=R)) == [uni, bb] and ids_of(dk.pods(state=NR)) == []
    assert ids_of(dk.pods(label_selector={"app": "t"})) == [uni, bb]
    assert ids_of(dk.pods(label_selector={"side": "ctrd"})) == [bb]
    assert ids_of(dk.pods(label_selector={"side": "unikd"})) == [uni]
    ctrs = dk.containers()
    assert ids_of(ctrs) == [uc, bc] and [c.state for c in ctrs] == [pb.CONTAINER_RUNNING] * 2
    assert ctrs[1].pod_sandbox_id == bb and ctrs[1].image.image == BUSYBOX_IMAGE
    assert ids_of(dk.containers(id=bc)) == [bc] and ids_of(dk.containers(pod_sandbox_id=bb)) == [bc]
    assert ids_of(dk.containers(pod_sandbox_id=uni)) == [uc]
    assert ids_of(dk.containers(label_selector={"side": "ctrd"})) == [bc]
    assert ids_of(dk.containers(label_selector={"app": "t"})) == [uc, bc]
    stats = dk.rs.ListContainerStats(pb.ListContainerStatsRequest()).stats
    assert [s.attributes.id for s in stats] == [uc, bc]
    stats = dk.rs.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(label_selector={"side": "ctrd"}))).stats
    assert [s.attributes.id for s in stats] == [bc]
    stats = dk.rs.ListPodSandboxStats(pb.ListPodSandboxStatsRequest()).stats
    assert [s.attributes.id for s in stats] == [uni, bb]

    # Quick calls with a router (src/cri/grpc_server.h): the status of unikd's own pod and
    # container runs on the gRPC poller; containerd's, and the merged list, go to the read pool.
    quick = ("Version", "ContainerStatus", "PodSandboxStatus", "ListContainers", "ListPodSandbox")
    log = logged_up_to(dk, "q0")
    before = {m: ran_counts(log, m) for m in quick}
    for _ in range(3):
        assert dk.rs.Version(pb.VersionRequest()).runtime_name == "unikd"
        assert dk.status(uc).status.id == uc and dk.status(bc).status.id == bc
        assert dk.pod_status(uni).status.id == uni and dk.pod_status(bb).status.id == bb
        assert ids_of(dk.containers()) == [uc, bc] and ids_of(dk.pods()) == [uni, bb]
    assert dk.pod_status(uni, verbose=True).info  # reads dnsmasq's leases: not on a poller
    log = logged_up_to(dk, "q1")
    made = {m: {k: n - before[m].get(k, 0) for k, n in ran_counts(log, m).items() if n > before[m].get(k, 0)}
            for m in quick}
    assert made == {"Version": {"poller": 3},
                    "ContainerStatus": {"poller": 3, "pool-from-poller": 3},
                    "PodSandboxStatus": {"poller": 3, "pool-from-poller": 4},
                    "ListContainers": {"pool-from-poller": 3},
                    "ListPodSandbox": {"pool-from-poller": 3}}, made

    # The busybox container's life goes on in containerd.
    dk.stop_ctr(bc, timeout=0)
    st = dk.status(bc).status
    assert (st.state, st.exit_code) == (pb.CONTAINER_EXITED, 137)
    EXITED, RUNNING = (pb.ContainerStateValue(state=s) for s in (pb.CONTAINER_EXITED, pb.CONTAINER_RUNNING))
    assert ids_of(dk.containers(state=EXITED)) == [bc] and ids_of(dk.containers(state=RUNNING)) == [uc]
    dk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=bc))
    assert ctrd_ids(ctrd)[1] == set() and ids_of(dk.containers()) == [uc]
    dk.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=bb))
    assert ids_of(dk.pods(state=NR)) == [bb] and ids_of(dk.pods(state=R)) == [uni]
    dk.rs.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=bb))
    assert ctrd_ids(ctrd) == (set(), set())
    assert ids_of(dk.pods()) == [uni]
    code, _ = code_of(dk.pod_status, bb)
    assert code == grpc.StatusCode.NOT_FOUND  # containerd's answer, passed on

    # The unikernel pod went on running the whole time, and was unikd's alone.
    assert dk.status(uc).status.state == pb.CONTAINER_RUNNING
    dk.stop_ctr(uc, timeout=0)
    dk.remove_pod(uni)
    assert record_ids(dk) == (set(), set())
    assert ctrd_log_mentions(ctrd, [uni, uc]) == []


# ---- 2. host namespaces go to containerd, whatever the handler ----

def test_host_network_pod_without_handler_goes_to_containerd(dk, ctrd):
    pb = dk.pb
    cfg = ctrd_pod_config(dk, ctrd, "hn", network=pb.NODE)
    sid = run_pod(dk, cfg)
    assert ctrd_ids(ctrd)[0] == {sid} and record_ids(dk) == (set(), set())
    assert dk.pod_status(sid).status.linux.namespaces.options.network == pb.NODE
    # Its container is containerd's busybox, in containerd's network namespace.
    cid = dk.create(sid, cfg, image=BUSYBOX_IMAGE, command=SLEEPER)
    dk.start_ctr(cid)
    assert ctrd_ids(ctrd)[1] == {cid} and record_ids(dk)[1] == set()
    r = dk.rs.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/proc/net/dev"], timeout=60))
    assert r.exit_code == 0, r
    inside = {line.split(":")[0].strip() for line in r.stdout.decode().splitlines()[2:]}
    links = subprocess.run(["ip", "-n", ctrd.ns, "-o", "link", "show"], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    assert inside == {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}, (inside, links)
    dk.remove_pod(sid)
    assert ctrd_ids(ctrd) == (set(), set()) and dk.pods() == []


@pytest.mark.parametrize("ns", ["network", "pid", "ipc"])
def test_host_namespace_pod_with_unikd_handler_goes_to_containerd(dk, ctrd, ns):
    """A VM cannot share the host's namespaces: such a pod runs in containerd even when it
    names unikd's handler (spec: "whatever the handler"), and runs there."""
    pb = dk.pb
    sid = run_pod(dk, ctrd_pod_config(dk, ctrd, "hu", **{ns: pb.NODE}), "unikd")
    assert ctrd_ids(ctrd)[0] == {sid} and record_ids(dk) == (set(), set())
    assert dk.pod_status(sid).status.state == pb.SANDBOX_READY
    dk.remove_pod(sid)
    assert ctrd_ids(ctrd) == (set(), set())


def test_handlers_and_default_side(scratch, ctrd):
    """[delegate] handlers and default = unikd: an empty handler and every listed handler
    run in unikd; a host-network pod still goes to containerd; an unlisted handler is refused
    with the served handlers listed."""
    u = delegated_unikd(scratch, ctrd, "--delegate-handlers", "unikd", "--delegate-handlers", "uk-b",
                        "--delegate-default", "unikd")
    try:
        u.start()
        pb = u.pb
        a = run_pod(u, u.pod_config(name="a"))
        b = run_pod(u, u.pod_config(name="b"), "uk-b")
        h = run_pod(u, ctrd_pod_config(u, ctrd, "h", network=pb.NODE))
        assert record_ids(u)[0] == {a, b}
        assert ctrd_ids(ctrd)[0] == {h}
        code, msg = code_of(u.rs.RunPodSandbox, pb.RunPodSandboxRequest(config=u.pod_config(name="r"),
                                                                       runtime_handler="kata"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
        assert "runtime_handler" in msg and '"kata"' in msg and '"unikd"' in msg and '"uk-b"' in msg, msg
        pods = ids_of(u.pods())
        assert set(pods[:2]) == {a, b} and pods[2:] == [h], pods
        # A pod of containerd's own runtime goes there, and so does a pull for it: by the
        # pod unikd recorded, not by the default side its empty image handler would pick.
        assert conditions(u)["DelegateReady"].status  # kubelet's first call: the runtimes are learnt
        r_cfg = ctrd_pod_config(u, ctrd, "r")
        r = run_pod(u, r_cfg, "runc")
        assert ctrd_ids(ctrd)[0] == {h, r}
        req = pb.PullImageRequest(image=pb.ImageSpec(image="127.0.0.1:1/none:1"), sandbox_config=r_cfg)
        assert code_of(u.im.PullImage, req) == code_of(ctrd.im.PullImage, req)
    finally:
        stop_unikd(u)


# ---- 3. images: pulled by the side of the pod they are for, listed and removed on both ----

def netns_popen(ns):
    def popen(args, **kw):
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", *args], **kw)
    return popen


def push_busybox(reg, ns):
    """A busybox image of its own id (a config unlike the harness's) to a registry in ns."""
    from test_pull import in_netns
    layer = _layer(_busybox())
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"uk.test": "pulled"}},
              "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}
    return in_netns(ns, lambda: Pusher(reg.host).push_image("bb", "2", layers=(layer,), config=config))


@pytest.fixture
def registries(scratch, dk, ctrd):
    """A registry in containerd's network namespace and one in unikd's: each side pulls from
    127.0.0.1 in its own namespace (plain HTTP to a loopback registry, for both)."""
    regs = []
    try:
        for name, ns in (("ctrd", ctrd.ns), ("unikd", dk.ns)):
            regs.append(Registry(scratch / f"reg-{name}", popen=netns_popen(ns)).start())
        yield regs
    finally:
        for r in regs:
            r.stop()


def test_images_on_both_sides(dk, ctrd, registries):
    from test_pull import push_hello
    pb = dk.pb
    creg, ureg = registries
    bb_img = push_busybox(creg, ctrd.ns)
    push_hello(dk, ureg)
    bb_ref, hello_ref = f"{creg.host}/bb:2", f"{ureg.host}/hello:1"
    uni_cfg = dk.pod_config(name="uni")
    uni = run_pod(dk, uni_cfg, "unikd")
    bb_cfg = ctrd_pod_config(dk, ctrd, "bb")
    bb = run_pod(dk, bb_cfg)

    # Kubelet's order: the pod first, then the pull with its sandbox_config.
    bb_id = dk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=bb_ref), sandbox_config=bb_cfg)).image_ref
    assert bb_id == bb_img["config"]["digest"]
    assert ctrd.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=bb_ref))).image.id == bb_id
    assert bb_ref not in unikd_refs(dk)
    hello_id = dk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=hello_ref),
                                                   sandbox_config=uni_cfg)).image_ref
    assert unikd_refs(dk).get(hello_ref) == hello_id
    # Without a pod, the image's runtime handler picks the side: unikd's handler, unikd's store.
    dk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=hello_ref)))
    assert hello_ref not in unikd_refs(dk)
    assert dk.im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=hello_ref, runtime_handler="unikd"))
                           ).image_ref == hello_id
    assert unikd_refs(dk).get(hello_ref) == hello_id
    assert not ctrd.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=hello_ref))).HasField("image")
    # A pull for no pod goes to the default side; containerd's error comes back unchanged.
    gone = "127.0.0.1:1/none:1"
    req = pb.PullImageRequest(image=pb.ImageSpec(image=gone))
    assert code_of(dk.im.PullImage, req) == code_of(ctrd.im.PullImage, req)

    # Both run from their side's image.
    cid = dk.create(bb, bb_cfg, image=bb_ref, command=SLEEPER)
    assert dk.status(cid).status.image_ref in (bb_id, f"{creg.host}/bb@{bb_img['digest']}")
    assert ctrd_ids(ctrd)[1] == {cid}
    ucid = dk.create(uni, uni_cfg, image=hello_ref, args=["exit:0"])
    assert dk.status(ucid).status.image_ref == hello_id

    # ListImages: both sides' images, each id once; ImageStatus from the side that has it.
    listed = dk.im.ListImages(pb.ListImagesRequest()).images
    ids = ids_of(listed)
    assert len(ids) == len(set(ids)), ids
    theirs = set(ids_of(ctrd.im.ListImages(pb.ListImagesRequest()).images))
    assert set(ids) == set(unikd_refs(dk).values()) | theirs
    tags = {t: i.id for i in listed for t in i.repo_tags}
    assert tags[bb_ref] == bb_id and tags[hello_ref] == hello_id
    assert {BUSYBOX_IMAGE, PAUSE_IMAGE, "docker.io/library/hello:1"} <= set(tags)
    for ref, want in ((bb_ref, bb_id), (hello_ref, hello_id), (BUSYBOX_IMAGE, tags[BUSYBOX_IMAGE])):
        assert dk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref))).image.id == want, ref
    assert not dk.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image="nowhere:1"))).HasField("image")
    # ImageFsInfo: containerd's filesystem and unikd's.
    fs = [f.fs_id.mountpoint for f in dk.im.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems]
    [theirs_fs] = [f.fs_id.mountpoint for f in ctrd.im.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems]
    assert theirs_fs in fs and any(m.startswith(str(dk.state)) for m in fs), fs

    # RemoveImage: each from its side (by id and by reference), the other side untouched.
    dk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    dk.rs.RemoveContainer(pb.RemoveContainerRequest(container_id=ucid))
    dk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=bb_id)))
    assert not ctrd.im.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=bb_ref))).HasField("image")
    dk.im.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=hello_ref)))
    assert hello_ref not in unikd_refs(dk)
    ids = set(ids_of(dk.im.ListImages(pb.ListImagesRequest()).images))
    assert bb_id not in ids and hello_id not in ids
    assert set(ids_of(ctrd.im.ListImages(pb.ListImagesRequest()).images)) == theirs - {bb_id}
    assert "docker.io/library/hello:1" in unikd_refs(dk)
    for sid in (uni, bb):
        dk.remove_pod(sid)


# ---- 6. bad input ----

def test_unknown_runtime_handler_is_refused_listing_the_served_ones(dk, ctrd):
    """unikd's handlers, the empty one and containerd's own runtimes (learnt from its Status,
    which kubelet calls first) are served; any other is INVALID_ARGUMENT listing them."""
    pb = dk.pb
    assert conditions(dk)["DelegateReady"].status
    for handler in ("kata", "gvisor"):
        code, msg = code_of(dk.rs.RunPodSandbox, pb.RunPodSandboxRequest(config=dk.pod_config(name="x"),
                                                                        runtime_handler=handler))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
        assert "runtime_handler" in msg and f'"{handler}"' in msg, msg
        assert '"unikd"' in msg and '""' in msg and '"runc"' in msg, msg
    assert record_ids(dk) == (set(), set()) and ctrd_ids(ctrd) == (set(), set())
    # containerd's own runtime goes to containerd.
    sid = run_pod(dk, ctrd_pod_config(dk, ctrd, "r"), "runc")
    assert ctrd_ids(ctrd)[0] == {sid} and record_ids(dk) == (set(), set())
    dk.remove_pod(sid)


@pytest.mark.parametrize("kind", ["file", "directory", "missing", "config-file"])
def test_delegate_endpoint_not_a_socket_stops_start_up(scratch, kind):
    path = scratch / "containerd.sock"
    if kind in ("file", "config-file"):
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    args = ["--state-dir", str(scratch / "state"), "--run-dir", str(scratch / "run"), "--network", "none"]
    if kind == "config-file":
        conf = scratch / "unikd.conf"
        conf.write_text(f"[delegate]\nendpoint = unix://{path}\n")
        args += ["--config", str(conf)]
    else:
        args += ["--delegate-endpoint", f"unix://{path}"]
    r = subprocess.run([str(BIN / "unikd"), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "[delegate] endpoint" in r.stderr and str(path) in r.stderr, r.stderr
    assert not (scratch / "state").exists() and not (scratch / "run").exists()
