"""Section 7 of `make bench`: the latency of fast CRI calls while slow ones are in flight.

The load is issue 12's reproduction: 40 PullImage from a registry inside unikd's network
namespace that accepts connections and never answers (127.0.0.1:5999, plain HTTP as every
loopback registry), and 20 StopContainer(timeout=20) of hello guests running `idle`, which
never see ACPI. While they are in flight, one client calls Version and ListContainers back to
back on its open channel, and Version on a new channel (a new connection and its HTTP/2
handshake) every tenth round. The same calls are timed first without the load.

Run from cri_bench.py (`--sections 7`); it works with or without KVM and says which
accelerator the VMs ran on."""
import json
import socket
import threading
import time

import benchlib as B
from benchlib import summary

PORT = 5999
PULLS = 40
STOPS = 20
STOP_TIMEOUT_S = 20


class BlackHole:
    """A plain-HTTP 'registry' inside the network namespace ns that accepts connections and
    never answers: a pull hangs until curl gives up, or until close(). The integration
    tests use it too (tests/integration/test_availability.py)."""

    def __init__(self, ns):
        self.listener = B.socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM, 0)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", PORT))
        self.listener.listen(256)
        self.conns = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.cond:
                self.conns.append(c)
                self.cond.notify_all()

    def wait_accepted(self, n, timeout=60):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.conns) >= n, timeout):
                raise RuntimeError(f"only {len(self.conns)} of {n} pulls reached the black hole")

    def close(self):
        """The pulls in flight fail at once (EOF); later ones are refused."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)
        with self.cond:
            for c in self.conns:
                c.close()


def measure(u, seconds, new_channel_every=10):
    """Version and ListContainers back to back for `seconds`; Version on a new channel every
    new_channel_every rounds. Latencies in ms."""
    import grpc
    pb, rs = u.pb, u.rs
    lat = {"Version": [], "ListContainers": [], "Version, new connection": []}
    pc = time.perf_counter_ns
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        for k, fn, req in (("Version", rs.Version, pb.VersionRequest()),
                           ("ListContainers", rs.ListContainers, pb.ListContainersRequest())):
            t0 = pc()
            fn(req, timeout=30)
            lat[k].append((pc() - t0) / 1e6)
        if i % new_channel_every == 0:
            t0 = pc()
            ch = grpc.insecure_channel(f"unix://{u.sock}", options=[("grpc.use_local_subchannel_pool", 1)])
            try:
                u.g.RuntimeServiceStub(ch).Version(pb.VersionRequest(), timeout=30)
            finally:
                ch.close()
            lat["Version, new connection"].append((pc() - t0) / 1e6)
        i += 1
    return lat


def start_idle_pods(u, n):
    pb, rs = u.pb, u.rs
    ids = []
    for i in range(n):
        cfg = u.pod_config(f"load-{i}")
        (u.logs / f"load-{i}" / "c").mkdir(parents=True)
        sid = rs.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        cid = rs.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, config=u.container_config(["idle"], memory_mib=16), sandbox_config=cfg)).container_id
        rs.StartContainer(pb.StartContainerRequest(container_id=cid))
        ids.append(cid)
    return ids


def run_load(u, im, ns, seconds):
    """The load, the measurement under it, and the proof that the load lasted throughout."""
    pb, rs = u.pb, u.rs
    ids = start_idle_pods(u, STOPS)
    accel = json.loads((u.vm_dir(ids[0]) / "vmwrapper.json").read_text()).get("accel")
    idle = measure(u, 3)
    hole = BlackHole(ns)
    pulls, stops = [], []
    try:
        pulls = [im.PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=f"127.0.0.1:{PORT}/x{i}:1")),
                                     timeout=600) for i in range(PULLS)]
        stops = [rs.StopContainer.future(pb.StopContainerRequest(container_id=c, timeout=STOP_TIMEOUT_S),
                                         timeout=600) for c in ids]
        hole.wait_accepted(4, 60)  # the image pool's threads, all hung in a pull
        t0 = time.monotonic()
        loaded = measure(u, seconds)
        window = time.monotonic() - t0
        in_flight = {"pulls": sum(not f.done() for f in pulls), "stops": sum(not f.done() for f in stops),
                     "pulls_at_the_black_hole": len(hole.conns)}
        for f in stops:
            f.result()
    finally:
        hole.close()
        for f in pulls + stops:
            try:
                f.result(timeout=120)
            except Exception:
                pass
    return {"accel": accel, "idle_ms": idle, "load_ms": loaded, "window_s": window, "in_flight_at_end": in_flight}


def section_load(ctx):
    a, T, res, scratch = ctx.args, ctx.table, ctx.results, ctx.scratch
    seconds = min(a.load_seconds, STOP_TIMEOUT_S - 4)  # the stops must outlast the window
    ctx.log(f"7. CRI latency under load: {PULLS} black-hole pulls + {STOPS} StopContainer({STOP_TIMEOUT_S}), "
          f"{seconds:.0f} s")
    ns = scratch.netns("d")
    u = B.Unikd(scratch, "load", ns, network="none", log_level="info", accel=ctx.accel)
    u.import_image("hello:1", "--kernel", str(B.HELLO))
    u.start()
    try:
        im = u.g.ImageServiceStub(u.channel)
        r = run_load(u, im, ns, seconds)
    finally:
        u.stop()
    s = {"idle": {k: summary(v) for k, v in r["idle_ms"].items()},
         "load": {k: summary(v) for k, v in r["load_ms"].items()}}
    fl = r["in_flight_at_end"]
    T.section(f"7. CRI latency under load: {PULLS} black-hole pulls + {STOPS} StopContainer(timeout={STOP_TIMEOUT_S}) "
              f"of idle guests in flight, {STOPS} VMs on {r['accel']} (ms)")
    for k, v in s["idle"].items():
        T.row(f"{k}, no load", v)
    for k, v in s["load"].items():
        T.row(f"{k}, under load", v, f"max {v['max']:.1f}")
    T.text(f"still in flight after the {r['window_s']:.1f} s window",
           f"{fl['pulls']}/{PULLS} pulls ({fl['pulls_at_the_black_hole']} at the black hole), "
           f"{fl['stops']}/{STOPS} stops")
    rounded = {w: {k: [round(x, 3) for x in v] for k, v in r[w].items()} for w in ("idle_ms", "load_ms")}
    res["load"] = {"pulls": PULLS, "stops": STOPS, "stop_timeout_s": STOP_TIMEOUT_S, "accel": r["accel"],
                   "window_s": r["window_s"], "in_flight_at_end": fl, "summary_ms": s,
                   "samples_ms": rounded["load_ms"], "idle_samples_ms": rounded["idle_ms"]}
