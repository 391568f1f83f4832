"""Pod networking end to end, all inside network namespaces the tests create: unikd and its
bridge live in one; a second plays another host, a third an outside server for egress."""
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from conftest import HELLO, REPO
from cri import Unikd, sh
from crilog import LineJoiner, cri_lines

NETGUEST = REPO / "build" / "guests" / "netguest"


def code_of(call, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        call(*a, **kw)
    return e.value.code(), e.value.details()


def log_lines(path):
    """The console's lines so far from a CRI log; the guest may still be writing, so a
    line not finished yet is left out."""
    return cri_lines(path, partial_ok=True)




def nft_ruleset(u):
    return u.netns_exec("nft", "list", "table", "ip", "unikd").stdout


def links(u):
    return u.netns_exec("ip", "-o", "link", "show").stdout


def test_bridge_dnsmasq_and_nat_are_up(uk):
    out = uk.netns_exec("ip", "-o", "addr", "show", "dev", "unikd0").stdout
    assert "10.77.0.1/16" in out
    assert "masquerade" in nft_ruleset(uk)
    assert len(uk.dnsmasq_pids()) == 1
    st = uk.rs.Status(uk.pb.StatusRequest())
    assert [c.status for c in st.status.conditions if c.type == "NetworkReady"] == [True]


def test_pod_ip_mac_and_template(uk):
    pb = uk.pb
    sid, cfg = uk.run_pod(name="tpl", hostname="tplhost",
                          dns_config=pb.DNSConfig(servers=["10.77.0.53", "10.77.0.54"], searches=["svc.test"]))
    ip = uk.pod_status(sid).status.network.ip
    assert re.fullmatch(r"10\.77\.\d+\.\d+", ip) and ip != "10.77.0.1"
    cid = uk.create(sid, cfg, command=["print:ip={{ip}}/{{prefix}}", "print:mask={{netmask}}", "print:gw={{gateway}}",
                                       "print:mac={{mac}}", "print:dns={{dns}}", "print:search={{dns_search}}",
                                       "print:host={{hostname}}", "exit:0"])
    uk.start_ctr(cid)
    st = uk.wait_exited(cid)
    lines = log_lines(st.log_path)
    assert f"ip={ip}/16" in lines and "mask=255.255.0.0" in lines and "gw=10.77.0.1" in lines
    assert f"mac=02:{sid[0:2]}:{sid[2:4]}:{sid[4:6]}:{sid[6:8]}:{sid[8:10]}" in lines
    assert "dns=10.77.0.53,10.77.0.54" in lines and "search=svc.test" in lines and "host=tplhost" in lines
    code, msg = code_of(uk.create, sid, cfg, name="bad", args=["print:{{ipaddr}}"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "{{ipaddr}}" in msg


def test_dhcp_host_file_carries_mac_ip_hostname_and_dns(uk):
    pb = uk.pb
    sid, _ = uk.run_pod(name="dh", hostname="dhhost",
                        dns_config=pb.DNSConfig(servers=["10.77.0.53"], searches=["a.test", "b.test"]))
    ip = uk.pod_status(sid).status.network.ip
    d = uk.run / "dnsmasq-unikd0"
    hosts = (d / "hosts.d" / sid).read_text()
    assert ip in hosts and "dhhost" in hosts and f"02:{sid[0:2]}" in hosts
    opts = (d / "opts.d" / sid).read_text()
    assert "10.77.0.53" in opts and "a.test" in opts and "b.test" in opts
    info = json.loads(uk.pod_status(sid, verbose=True).info["info"])
    assert info["lease"]["taken"] is False  # no guest has asked yet


def test_stop_releases_everything(uk):
    pb = uk.pb
    sid, cfg = uk.run_pod(name="rel", port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80,
                                                                     host_port=18080)])
    ip = uk.pod_status(sid).status.network.ip
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    tap = "uk" + sid[:12]
    assert tap in links(uk)
    # A bridge port with no IPv6 address of its own: nothing of the host's sent into the VM.
    assert "inet6" not in uk.netns_exec("ip", "-o", "addr", "show", "dev", tap).stdout
    assert "inet6" in uk.netns_exec("ip", "-o", "addr", "show", "dev", "unikd0").stdout
    assert "18080" in nft_ruleset(uk)
    dns = uk.dnsmasq_pids()
    uk.rs.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    assert tap not in links(uk)
    assert "18080" not in nft_ruleset(uk)
    assert not (uk.run / "dnsmasq-unikd0" / "hosts.d" / sid).exists()
    # dnsmasq keeps running: the host is left to it as a stale entry (src/net/dnsmasq.c).
    assert uk.dnsmasq_pids() == dns
    assert (uk.run / "dnsmasq-unikd0" / "stale.d" / sid).exists()
    assert not (uk.run / "dnsmasq-unikd0" / "opts.d" / sid).exists()
    assert not any(p.read_text().strip() == sid for p in (uk.state / "net" / "ipam").glob("10.*"))
    assert uk.pod_status(sid).status.network.ip == ""
    # The released port and address can be taken by the next pod.
    uk.run_pod(name="rel2", port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18080)])


def test_hostport_taken_is_refused(uk):
    pb = uk.pb
    pm = [pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18081)]
    sid, _ = uk.run_pod(name="hp1", port_mappings=pm)
    code, msg = code_of(uk.run_pod, name="hp2", port_mappings=pm)
    assert code == grpc.StatusCode.ALREADY_EXISTS and "18081" in msg and sid in msg
    # UDP on the same number is another port.
    uk.run_pod(name="hp3", port_mappings=[pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=18081)])
    code, msg = code_of(uk.run_pod, name="hp4", port_mappings=[pb.PortMapping(protocol=pb.SCTP, container_port=1,
                                                                             host_port=1)])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SCTP" in msg


def test_two_hundred_cycles_no_duplicate_no_leak(uk):
    alive, seen_alive_dups = {}, []
    for i in range(200):
        sid, _ = uk.run_pod(name=f"cy{i}")
        ip = uk.pod_status(sid).status.network.ip
        if ip in alive.values():
            seen_alive_dups.append(ip)
        alive[sid] = ip
        if len(alive) > 5:  # keep a few alive so addresses are in use while others cycle
            old = next(iter(alive))
            uk.remove_pod(old)
            del alive[old]
    assert seen_alive_dups == []
    for sid in list(alive):
        uk.remove_pod(sid)
    assert list((uk.state / "net" / "ipam").glob("10.*")) == []
    assert list((uk.run / "dnsmasq-unikd0" / "hosts.d").iterdir()) == []


def test_exhausted_range_is_resource_exhausted(scratch):
    u = Unikd(scratch, extra=["--pod-cidr", "10.78.0.0/29"])
    u.start()
    try:
        ids = [u.run_pod(name=f"ex{i}")[0] for i in range(5)]  # .2 .. .6
        code, msg = code_of(u.run_pod, name="ex5")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "10.78.0.0/29" in msg
        u.remove_pod(ids[0])
        u.run_pod(name="ex6")
    finally:
        u.cleanup()


def test_an_address_comes_back_to_dnsmasq_through_one_restart(scratch):
    """Stopped pods restart nothing; the address of one that dnsmasq still holds, handed out
    again once the range wraps, restarts it once, which forgets every stale host."""
    u = Unikd(scratch, extra=["--pod-cidr", "10.78.0.0/29"])
    u.start()
    try:
        d = u.run / "dnsmasq-unikd0"
        dns = u.dnsmasq_pids()
        gone = []
        for i in range(5):  # .2 .. .6, round robin
            sid, _ = u.run_pod(name=f"wr{i}")
            gone.append((sid, u.pod_status(sid).status.network.ip))
            u.remove_pod(sid)
        assert [ip for _, ip in gone] == [f"10.78.0.{n}" for n in range(2, 7)]
        assert u.dnsmasq_pids() == dns
        assert sorted(p.name for p in (d / "stale.d").iterdir()) == sorted(sid for sid, _ in gone)
        sid, _ = u.run_pod(name="wr5")
        assert u.pod_status(sid).status.network.ip == "10.78.0.2"
        assert u.dnsmasq_pids() != dns and len(u.dnsmasq_pids()) == 1
        assert list((d / "stale.d").iterdir()) == []
        assert "10.78.0.2" in (d / "hosts.d" / sid).read_text()
    finally:
        u.cleanup()


def test_update_runtime_config_moves_new_pods(uk):
    pb = uk.pb
    uk.rs.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.79.0.0/24"))))
    sid, _ = uk.run_pod(name="moved")
    assert uk.pod_status(sid).status.network.ip.startswith("10.79.0.")
    assert "10.79.0.1/24" in uk.netns_exec("ip", "-o", "addr", "show", "dev", "unikd0").stdout


def test_dnsmasq_is_restarted_and_adopted(uk):
    old = uk.dnsmasq_pids()
    assert len(old) == 1
    os.kill(old[0], 9)
    # unikd notices through dnsmasq's pidfd and starts another; its log line is the event.
    follow_plain(uk.root / "unikd.log", 'msg="dnsmasq died and was restarted"')
    new = uk.dnsmasq_pids()
    assert len(new) == 1 and new != old
    sid, _ = uk.run_pod(name="after")
    assert (uk.run / "dnsmasq-unikd0" / "hosts.d" / sid).exists()
    uk.stop()
    uk.start()
    assert uk.dnsmasq_pids() == new  # adopted, not a second one


# ---- a real Linux guest under TCG: DHCP, DNS config, HTTP, hostPorts, egress ----

def tsc_khz():
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 0


def import_netguest(u, netguest):
    """The netguest as image netguest:1, its command line told the host's TSC frequency."""
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    u.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                   str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)


@pytest.fixture
def netguest():
    subprocess.run(["bash", str(REPO / "tests/guests/netguest/build.sh"), str(NETGUEST)], check=True,
                   capture_output=True, timeout=900)
    return NETGUEST


def wait_line(path, prefix, timeout=120):
    """Wait for the guest to print a line, by following its log with `tail -F`: an event
    stream, not a poll of our own."""
    t = subprocess.Popen(["tail", "-n", "+1", "-F", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout, t.kill)
    timer.start()
    joiner = LineJoiner()
    try:
        # One CRI record per line of tail's output; the joiner strips the prefix and joins
        # the P pieces of a long line. Bytes, so a "\r" in a record stays inside it.
        for record in t.stdout:
            line = joiner.feed(record)
            if line is not None and line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} in {path}")
    finally:
        timer.cancel()
        t.kill()
        t.wait()
        t.stdout.close()


def follow_plain(path, needle, timeout=30, count=1):
    """Wait for a line of a plain log (unikd's own) by following it with `tail -F`: the
    count-th line holding needle."""
    t = subprocess.Popen(["tail", "-n", "+1", "-F", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    timer = threading.Timer(timeout, t.kill)
    timer.start()
    seen = 0
    try:
        for line in t.stdout:
            seen += needle in line
            if seen >= count:
                return line
        raise AssertionError(f"{count} lines with {needle!r} never came in {path} (saw {seen})")
    finally:
        timer.cancel()
        t.kill()
        t.wait()
        t.stdout.close()


def http_get(u, url, ns=None):
    code = ("import urllib.request,sys;"
            f"print(urllib.request.urlopen({url!r}, timeout=10).read().decode().strip())")
    r = subprocess.run(["ip", "netns", "exec", ns or u.ns, "python3", "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def veth(u, name, peer_ns, ours, theirs):
    sh("ip", "-n", u.ns, "link", "add", name, "type", "veth", "peer", "name", name + "p", "netns", peer_ns)
    sh("ip", "-n", u.ns, "addr", "add", ours + "/24", "dev", name)
    sh("ip", "-n", u.ns, "link", "set", name, "up")
    sh("ip", "-n", peer_ns, "addr", "add", theirs + "/24", "dev", name + "p")
    sh("ip", "-n", peer_ns, "link", "set", name + "p", "up")
    sh("ip", "-n", peer_ns, "link", "set", "lo", "up")


def test_linux_guest_network_end_to_end(uk, netguest):
    pb = uk.pb
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    uk.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                    str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)
    other, outside = uk.ns + "-o", uk.ns + "-x"
    server = None
    try:
        sh("ip", "netns", "add", other)
        sh("ip", "netns", "add", outside)
        veth(uk, "ukho", other, "10.66.0.1", "10.66.0.2")      # another host
        veth(uk, "ukhx", outside, "10.67.0.1", "10.67.0.2")    # an outside server, egress target
        server = subprocess.Popen(["ip", "netns", "exec", outside, "python3", "-m", "http.server", "8000",
                                   "--bind", "10.67.0.2", "--directory", str(uk.root)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        (uk.root / "egress.txt").write_text("egress-ok\n")
        ann = {"unikd.io/accel": "tcg"}
        a_sid, a_cfg = uk.run_pod(name="a", hostname="podhost-a", annotations=ann,
                                  dns_config=pb.DNSConfig(servers=["10.77.0.53"], searches=["svc.test"]),
                                  port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18090)])
        a_ip = uk.pod_status(a_sid).status.network.ip
        a = uk.create(a_sid, a_cfg, image="netguest:1", memory=256 << 20)
        uk.start_ctr(a)
        a_log = uk.status(a).status.log_path
        assert wait_line(a_log, "netguest: ready")
        lines = log_lines(a_log)
        assert f"netguest: ip={a_ip}/16" in lines
        assert "netguest: gw=10.77.0.1" in lines
        assert "netguest: dns=10.77.0.53" in lines
        assert "netguest: search=svc.test" in lines
        assert "netguest: hostname=podhost-a" in lines
        info = json.loads(uk.pod_status(a_sid, verbose=True).info["info"])
        assert info["lease"]["taken"] is True
        # The node reaches the pod; a hostPort answers on the node's own address and from another host.
        assert http_get(uk, f"http://{a_ip}/") == f"netguest podhost-a {a_ip}"
        assert http_get(uk, "http://10.66.0.1:18090/") == f"netguest podhost-a {a_ip}"
        assert http_get(uk, "http://10.66.0.1:18090/", ns=other) == f"netguest podhost-a {a_ip}"
        # A second pod reaches the first, and the outside through NAT.
        b_sid, b_cfg = uk.run_pod(name="b", annotations=ann)
        b = uk.create(b_sid, b_cfg, image="netguest:1", memory=256 << 20,
                      envs={"fetch": f"http://{a_ip}/", "ping": "10.67.0.2"})
        uk.start_ctr(b)
        b_log = uk.status(b).status.log_path
        assert wait_line(b_log, "netguest: fetch=") == f"netguest: fetch=netguest podhost-a {a_ip}"
        assert wait_line(b_log, "netguest: ping=") == "netguest: ping=ok"
        c_sid, c_cfg = uk.run_pod(name="c", annotations=ann)
        c = uk.create(c_sid, c_cfg, image="netguest:1", memory=256 << 20,
                      envs={"fetch": "http://10.67.0.2:8000/egress.txt"})
        uk.start_ctr(c)
        assert wait_line(uk.status(c).status.log_path, "netguest: fetch=") == "netguest: fetch=egress-ok"
    finally:
        served = ""
        if server:
            server.kill()
            server.wait()
            served = server.stderr.read()
            server.stderr.close()
        for ns in (other, outside):
            sh("ip", "netns", "del", ns, check=False)
    # The outside server saw the node's address, not the pod's: the egress was masqueraded.
    assert "10.67.0.1 " in served and "/egress.txt" in served
