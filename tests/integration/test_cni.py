"""CNI mode: pods take their network from Debian's reference CNI plugins (bridge,
host-local, portmap, loopback in /usr/lib/cni), each in a network namespace of its own,
with the VM's tap wired to the pod's eth0. unikd runs in a namespace the test makes, so the
plugins' bridge, veths and iptables rules live there; nothing touches the host's."""
import json
import os
import re
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from conftest import HELLO
from cri import Unikd, sh
from crilog import cri_lines
from test_cri import code_of
from test_network import follow_plain, http_get, netguest, tsc_khz, veth, wait_line  # noqa: F401
from test_guests import SOLO5, UNIKRAFT, http_get as http_until
from test_pool import pool_info, record, wait_ready
from test_exit_events import wait_record

CNI_BIN = "/usr/lib/cni"


def conflist(root, tag, subnet, plugins=None):
    """bridge (ipMasq, hairpin) + host-local (a private dataDir) + portmap + loopback."""
    net = {
        "cniVersion": "1.0.0", "name": f"uknet-{tag}",
        "plugins": plugins or [
            {"type": "bridge", "bridge": f"ukcni{tag[:6]}", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(root / "ipam"),
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ]}
    d = root / "net.d"
    d.mkdir(exist_ok=True)
    (d / "10-uknet.conflist").write_text(json.dumps(net, indent=1))
    return d


def cni_unikd(scratch, subnet="10.88.0.0/24", plugins=None, bin_dirs=CNI_BIN, start=True):
    tag = scratch.name[-8:]
    d = conflist(scratch, tag, subnet, plugins)
    u = Unikd(scratch, extra=["--network", "cni", "--cni-conf-dir", str(d), "--cni-bin-dirs", bin_dirs])
    u.import_image("hello:1", "--kernel", str(HELLO))
    if start:
        u.start()
    return u


def netns_pinned(u=None):
    return sorted(p.name for p in Path("/run/netns").glob("unikd-*"))


def host_local(scratch):
    """The addresses host-local holds in the test's private dataDir."""
    return [p.name for p in (scratch / "ipam").rglob("*") if p.is_file() and p.name[0].isdigit()]


def leftovers(u, scratch):
    """Everything a pod's network may leave: its namespace, veths, taps, iptables rules of the
    plugins (in unikd's namespace) and host-local reservations."""
    links = sh("ip", "-n", u.ns, "-o", "link", "show").stdout
    veths = [l for l in links.splitlines() if "veth" in l]
    rules = sh("ip", "netns", "exec", u.ns, "iptables-save").stdout
    # portmap's and the firewall's fixed chains are the node's, shared by every pod, and stay
    # (as under containerd). A pod owns chains of its own (bridge's CNI-<hash> for ipMasq,
    # portmap's CNI-DN-<hash>) and its jumps in CNI-HOSTPORT-DNAT.
    fixed = {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK", "CNI-FORWARD", "CNI-ADMIN"}
    lines = rules.splitlines()
    cni_rules = [l for l in lines if l.startswith(":CNI-") and l.split()[0][1:] not in fixed] + \
        [l for l in lines if l.startswith("-A CNI-HOSTPORT-DNAT ")]
    reservations = host_local(scratch)
    # The plugins' cache (libcni's, should any plugin keep one) and unikd's per-pod files.
    cache = [str(p) for d in (Path("/var/lib/cni/results"), Path("/var/lib/cni/cache/results"), u.run / "cni")
             if d.is_dir() for p in d.iterdir()]
    return {"netns": netns_pinned(), "veths": veths, "iptables": cni_rules, "host-local": reservations,
            "dhcp": u.dnsmasq_pids(), "cache": cache}


@pytest.fixture
def cni(scratch):
    u = cni_unikd(scratch)
    try:
        yield u
        # Every pod removed through the CRI must take all its network with it.
        for p in u.pods():
            u.remove_pod(p.id)
        left = leftovers(u, scratch)
        assert not any(left.values()), left
    finally:
        u.cleanup()
    assert u.vm_pids() == []
    assert netns_pinned() == []


def test_pods_get_the_cni_address_and_stop_leaves_nothing(cni, scratch):
    u = cni
    st = u.rs.Status(u.pb.StatusRequest()).status
    net = {c.type: c for c in st.conditions}["NetworkReady"]
    assert net.status is True, net.message
    sid, cfg = u.run_pod(name="a")
    ip = u.pod_status(sid).status.network.ip
    assert ip.startswith("10.88.0."), ip
    assert f"unikd-{sid}" in netns_pinned()
    # The pod's own namespace holds eth0 with that address.
    addr = sh("ip", "-n", f"unikd-{sid}", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"{ip}/24" in addr
    u.remove_pod(sid)
    left = leftovers(u, scratch)
    assert not any(left.values()), left


def test_guests_answer_on_their_pod_ips_and_reach_each_other(cni, netguest):  # noqa: F811
    u = cni
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    u.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                   str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)
    u.import_image("httpreply:1", "--kernel", str(UNIKRAFT / "httpreply"), "--unikernel-type", "unikraft",
                   "--unikernel-version", "0.17.0")
    # A DHCP guest: the pod's own dnsmasq gives it the CNI address.
    a_sid, a_cfg = u.run_pod(name="a", hostname="podhost-a")
    a_ip = u.pod_status(a_sid).status.network.ip
    a = u.create(a_sid, a_cfg, image="netguest:1", memory=256 << 20)
    u.start_ctr(a)
    a_log = u.status(a).status.log_path
    assert wait_line(a_log, "netguest: ready")
    assert f"netguest: ip={a_ip}/24" in cri_lines(a_log, partial_ok=True)
    assert http_get(u, f"http://{a_ip}/") == f"netguest podhost-a {a_ip}"
    # A guest configured on its command line (Unikraft's netdev.ip from the pod's namespace).
    b_sid, b_cfg = u.run_pod(name="b")
    b_ip = u.pod_status(b_sid).status.network.ip
    b = u.create(b_sid, b_cfg, image="httpreply:1", memory=128 << 20)
    u.start_ctr(b)
    assert f"netdev.ip={b_ip}/24:10.88.0.1" in json.loads(u.status(b, verbose=True).info["info"])["cmdline"]
    assert wait_line(u.status(b).status.log_path, "Listening on port 8123")  # up before it is asked
    assert "It works!" in http_get(u, f"http://{b_ip}:8123/")
    # Pod to pod: the netguest fetches from the Unikraft pod.
    c_sid, c_cfg = u.run_pod(name="c")
    c = u.create(c_sid, c_cfg, image="netguest:1", memory=256 << 20, envs={"fetch": f"http://{b_ip}:8123/"})
    u.start_ctr(c)
    assert "It works!" in wait_line(u.status(c).status.log_path, "netguest: fetch=")


def test_hostport_from_the_node_and_from_outside(cni, netguest, scratch):  # noqa: F811
    u = cni
    cmdline = (netguest / "cmdline").read_text().strip() + f" tsc_early_khz={tsc_khz()}"
    u.import_image("netguest:1", "--kernel", str(netguest / "vmlinuz"), "--initrd",
                   str(netguest / "initrd.cpio.gz"), "--cmdline", cmdline)
    other = u.ns + "-o"
    try:
        sh("ip", "netns", "add", other)
        veth(u, "ukco", other, "10.66.0.1", "10.66.0.2")
        pb = u.pb
        sid, cfg = u.run_pod(name="hp", hostname="podhost-hp",
                             port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=18095)])
        ip = u.pod_status(sid).status.network.ip
        cid = u.create(sid, cfg, image="netguest:1", memory=256 << 20)
        u.start_ctr(cid)
        assert wait_line(u.status(cid).status.log_path, "netguest: ready")
        assert http_get(u, "http://10.66.0.1:18095/") == f"netguest podhost-hp {ip}"
        assert http_get(u, "http://10.66.0.1:18095/", ns=other) == f"netguest podhost-hp {ip}"
        u.remove_pod(sid)
        left = leftovers(u, scratch)
        assert not any(left.values()), left
    finally:
        sh("ip", "netns", "del", other, check=False)


def test_pods_add_and_delete_in_parallel(cni, scratch):
    """Different pods' ADD and DEL run at once; each pod gets an address of its own."""
    u = cni
    with ThreadPoolExecutor(6) as ex:
        sids = [sid for sid, _ in ex.map(lambda i: u.run_pod(name=f"p{i}"), range(6))]
    ips = [u.pod_status(s).status.network.ip for s in sids]
    assert len(set(ips)) == 6 and all(ip.startswith("10.88.0.") for ip in ips), ips
    assert sorted(host_local(scratch)) == sorted(ips)
    assert sorted(netns_pinned()) == sorted(f"unikd-{s}" for s in sids)
    with ThreadPoolExecutor(6) as ex:
        list(ex.map(u.remove_pod, sids))
    assert u.pods() == []
    left = leftovers(u, scratch)
    assert not any(left.values()), left


def refused_run_pod(u, name):
    code, msg = code_of(u.run_pod, name=name)
    assert not netns_pinned(), netns_pinned()
    assert u.pods() == []
    return code, msg


def test_plugin_failures_are_clear_and_leave_nothing(scratch):
    # A failing plugin: host-local with a range it cannot use.
    bad_ipam = [{"type": "bridge", "bridge": "ukcnibad", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/33"}]],
                                                                  "dataDir": str(scratch / "ipam")}}]
    u = cni_unikd(scratch, plugins=bad_ipam)
    try:
        code, msg = refused_run_pod(u, "fail")
        assert "bridge" in msg or "host-local" in msg, msg
        # A missing plugin binary.
        conflist(scratch, "x", "10.88.1.0/24", [{"type": "nosuchplugin"}])
        u.stop()
        u.start()
        code, msg = refused_run_pod(u, "missing")
        assert "nosuchplugin" in msg, msg
        # A result without IPs: loopback alone.
        conflist(scratch, "x", "10.88.1.0/24", [{"type": "loopback"}])
        u.stop()
        u.start()
        code, msg = refused_run_pod(u, "noip")
        assert "no IP" in msg, msg
    finally:
        u.cleanup()


def test_malformed_config_is_network_plugin_not_ready(scratch):
    u = cni_unikd(scratch, start=False)
    (scratch / "net.d" / "10-uknet.conflist").write_text("{ not json")
    u.start(allow_errors=True)
    try:
        net = {c.type: c for c in u.rs.Status(u.pb.StatusRequest()).status.conditions}["NetworkReady"]
        assert net.status is False and net.reason == "NetworkPluginNotReady" and "10-uknet.conflist" in net.message
        code, msg = refused_run_pod(u, "notready")
        assert code == grpc.StatusCode.UNAVAILABLE and "NetworkPluginNotReady" in msg, (code, msg)
        # A valid file appears: the watch loads it, and pods get addresses.
        conflist(scratch, scratch.name[-8:], "10.88.2.0/24")
        follow_plain(u.root / "unikd.log", 'msg="CNI config loaded"')  # unikd's inotify reload
        net = {c.type: c for c in u.rs.Status(u.pb.StatusRequest()).status.conditions}["NetworkReady"]
        assert net.status is True, net.message
        sid, _ = u.run_pod(name="ready")
        assert u.pod_status(sid).status.network.ip.startswith("10.88.2.")
    finally:
        u.cleanup()


def test_bridge_and_cni_unikds_side_by_side(scratch):
    bridge_root = Path(str(scratch) + "-b")
    bridge_root.mkdir()
    b = Unikd(bridge_root)
    b.import_image("hello:1", "--kernel", str(HELLO))
    c = cni_unikd(scratch)
    b.start()
    try:
        b_sid, _ = b.run_pod(name="br")
        c_sid, _ = c.run_pod(name="cn")
        assert b.pod_status(b_sid).status.network.ip.startswith("10.77.")
        assert c.pod_status(c_sid).status.network.ip.startswith("10.88.0.")
    finally:
        b.cleanup()
        c.cleanup()
        subprocess.run(["rm", "-rf", str(bridge_root)], check=False)


def eth0_mac(sid):
    """The MAC the plugins gave the pod's eth0."""
    return json.loads(sh("ip", "-n", f"unikd-{sid}", "-j", "link", "show", "dev", "eth0").stdout)[0]["address"]


def solo5_nic(lines):
    """The PCI slot and the MAC of the NIC that Solo5 configured, as its console says."""
    for l in lines:
        m = re.search(r"Solo5: PCI:(\S+): configured, mac=([0-9a-f:]{17}),", l)
        if m:
            return m.group(1), m.group(2)
    raise AssertionError(f"Solo5 configured no NIC: {lines[-10:]}")


POOL = ["--pool-size", "1", "--pool-idle-timeout", "0"]


@pytest.fixture
def cnipool(scratch):
    """A CNI-mode unikd with a pool of one VM per key and the third-party guests imported.
    Teardown: pods removed; pool VMs outlive unikd on purpose (a restart adopts them), so unikd
    is started once more without a pool, which must end every one it finds."""
    for f in (SOLO5 / "test_net.virtio", UNIKRAFT / "httpreply"):
        assert f.is_file(), f"third-party unikernel missing: {f}"
    u = cni_unikd(scratch, start=False)
    u.extra += POOL
    u.import_image("solo5-net:1", "--kernel", str(SOLO5 / "test_net.virtio"))
    u.import_image("httpreply:1", "--kernel", str(UNIKRAFT / "httpreply"), "--unikernel-type", "unikraft",
                   "--unikernel-version", "0.17.0")
    u.start_or_cleanup()
    try:
        yield u
    finally:
        try:
            if u.proc and u.proc.poll() is None:
                for p in u.pods():
                    u.remove_pod(p.id)
            u.stop()
            u.extra = [x for x in u.extra if x not in POOL]
            u.start()
            u.wait_log("the pool is off", "ready")
        finally:
            u.cleanup()
    assert u.vm_pids() == []
    assert netns_pinned() == []


def solo5_mac_is_eth0s(u, sid, cid):
    """Solo5's test_net serves: the MAC it configured is eth0's; its PCI slot."""
    log = u.status(cid).status.log_path
    served = wait_line(log, "[service0] Serving ping")
    slot, mac = solo5_nic(cri_lines(log, partial_ok=True))
    assert mac == eth0_mac(sid), mac
    assert served.endswith(mac.replace(":", "")), served
    return slot


def test_cni_pods_start_from_the_warm_pool_with_their_eth0s_mac(cnipool, scratch):
    """In CNI mode a pool VM starts without its NIC: the guest's MAC must be the one the plugins
    gave the pod's eth0, which exists only after the pod's ADD. The claim plugs the NIC in,
    with that MAC and the pod's own tap, before the guest's first instruction. Real guests
    (Solo5 and Unikraft builds) see the MAC in the PCI slot that a cold start gives, take the
    pod's address from its DHCP server and answer on it; a microvm guest, whose virtio-mmio bus
    cannot take a device late, is not pooled and starts cold."""
    u = cnipool
    # Solo5: cold, which teaches the pool the key, then from the pool.
    slots = {}
    for how in ("cold", "warm"):
        sid, cfg = u.run_pod(name=f"solo5-{how}")
        if how == "warm":
            wait_ready(u, 1)
        cid = u.create(sid, cfg, image="solo5-net:1")
        u.start_ctr(cid)
        slots[how] = solo5_mac_is_eth0s(u, sid, cid)
        assert ("pool_vm" in record(u, cid)) == (how == "warm")
        u.remove_pod(sid)
    assert slots["cold"] == slots["warm"], slots
    assert 'container started from the pool' in u.log()

    # Unikraft over DHCP: the pod's own dnsmasq serves only eth0's MAC, the guest's ARP
    # answers say its MAC, and it answers HTTP on the pod's address.
    ann = {"unikd.io/network-config": "dhcp"}
    for how in ("cold", "warm"):
        sid, cfg = u.run_pod(name=f"uk-{how}", annotations=ann)
        ip = u.pod_status(sid).status.network.ip
        if how == "warm":
            wait_ready(u, 3)  # the Solo5 key's refill and this key's first
        cid = u.create(sid, cfg, image="httpreply:1", memory=128 << 20)
        u.start_ctr(cid)
        assert ("pool_vm" in record(u, cid)) == (how == "warm")
        assert "It works!" in http_until(u, ip, 8123, 60)
        neigh = json.loads(sh("ip", "-n", u.ns, "-j", "neigh", "show", ip).stdout)
        assert [x.get("lladdr") for x in neigh] == [eth0_mac(sid)], (how, neigh)
        u.remove_pod(sid)
    assert u.log().count("container started from the pool") == 2

    # A microvm guest (our hello) is not pooled: cold, and its key is never learnt.
    keys = len(pool_info(u)["keys"])
    sid, cfg = u.run_pod(name="micro")
    cid = u.create(sid, cfg, args=["exit:0"])
    u.start_ctr(cid)
    assert u.wait_exited(cid).exit_code == 0
    assert "pool_vm" not in record(u, cid)
    assert len(pool_info(u)["keys"]) == keys
    u.remove_pod(sid)
    assert not any(leftovers(u, scratch).values())

    # Restarted in bridge mode, the node drops the keys whose NIC a claim plugs and ends
    # their VMs: no pod there could take them.
    vms = len(pool_info(u)["vms"])
    assert keys == 2 and vms == 2, pool_info(u)
    u.stop()
    u.extra[u.extra.index("cni")] = "bridge"
    u.start()
    log = u.wait_log('msg="ready"')
    assert log.count("was learnt under another network mode") == keys, log
    assert log.count("removed a pool VM from before that cannot be adopted") == vms, log
    info = pool_info(u)
    assert info["keys"] == [] and info["vms"] == [], info


def test_a_cni_claim_cut_short_by_a_crash_ends_in_step(cnipool, scratch):
    """unikd killed while a CNI claim is in vmwrapper's socket (the record names the pool VM;
    the tap's fd travels with the claim line): the restarted unikd finds the claim taken and
    the container RUNNING, or ends the VM and undoes the start, so it can be started again.
    Either way the guest ends up serving with eth0's MAC, and nothing is left over."""
    u = cnipool
    sid, cfg = u.run_pod(name="teach")
    u.start_ctr(u.create(sid, cfg, image="solo5-net:1"))
    u.remove_pod(sid)
    wait_ready(u, 1)
    vm = pool_info(u)["vms"][0]
    sid, cfg = u.run_pod(name="cut")
    cid = u.create(sid, cfg, image="solo5-net:1")
    # vmwrapper stopped, the claim waits in its socket once the record names the VM.
    os.kill(vm["vmwrapper_pid"], signal.SIGSTOP)
    try:
        call = threading.Thread(target=code_of, args=(u.start_ctr, cid))  # ends with unikd
        call.start()
        wait_record(u, cid, lambda r: r.get("pool_vm") == vm["id"], "its pool VM")
        u.kill()
        call.join()
    finally:
        os.kill(vm["vmwrapper_pid"], signal.SIGCONT)
    u.start()
    state = u.status(cid).status.state
    print(f"after the restart the container is {u.pb.ContainerState.Name(state)}")
    if state == u.pb.CONTAINER_CREATED:
        assert vm["vmwrapper_pid"] not in u.pids("vmwrapper"), "a claim that was undone left its VM"
        u.start_ctr(cid)
    else:
        assert state == u.pb.CONTAINER_RUNNING, state
    solo5_mac_is_eth0s(u, sid, cid)
    u.remove_pod(sid)
    assert not any(leftovers(u, scratch).values())
