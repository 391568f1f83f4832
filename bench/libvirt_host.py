"""A private libvirtd for the libvirt column: started by hand (no systemd), inside the run's
network namespace and a mount namespace of its own, where /run is a fresh tmpfs and
/etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and /run/libvirt are
bind mounts of directories under the scratch directory. The host's libvirt configuration
and state are never read or written, no default network or virbr0 appears, and the whole
thing goes with the run. virsh reaches it through the socket's path on the host side
(qemu:///system?socket=…).

Its qemu.conf runs QEMU as root without a security driver and with the console written
straight to a file (stdio_handler = "file", so no virtlogd is needed); cgroups and the
seccomp sandbox stay at libvirt's defaults. The domain's type follows the run's accelerator:
"kvm" under KVM, "qemu" (TCG) without it."""
import os
import shutil
import subprocess
import time
from pathlib import Path

from benchlib import HELLO, QEMU, sh

QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
"""
LIBVIRTD_CONF = """
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

DOMAIN = """<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='microvm'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{qemu}</emulator>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def available():
    """None if libvirt can be used, else why not."""
    for p in ("/usr/sbin/libvirtd", "/usr/bin/virsh", "/usr/bin/unshare"):
        if not os.access(p, os.X_OK):
            return f"{p} is not installed (make bench BENCH_ARGS=--with-libvirt installs libvirt)"
    if not Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so").exists():
        return "libvirt's QEMU driver (libvirt-daemon-driver-qemu) is not installed"
    return None


class Libvirtd:
    def __init__(self, scratch, ns):
        self.scratch = scratch
        self.ns = ns
        self.dir = scratch.root / "libvirt"
        self.sock = self.dir / "run" / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.sock}"
        self.proc = None
        self.consoles = self.dir / "consoles"
        self._machine_before = set()

    def start(self, timeout=90):
        d = self.dir
        for sub in ("run", "lib", "log", "cache", "consoles"):
            (d / sub).mkdir(parents=True)
        shutil.copytree("/etc/libvirt", d / "etc", symlinks=True)
        # No network is started by this libvirtd, whatever the host's config autostarts.
        shutil.rmtree(d / "etc/qemu/networks", ignore_errors=True)
        (d / "etc/qemu/networks/autostart").mkdir(parents=True)
        with open(d / "etc/qemu.conf", "a") as f:
            f.write(QEMU_CONF)
        with open(d / "etc/libvirtd.conf", "a") as f:
            f.write(LIBVIRTD_CONF)
        # libvirt makes a "machine" cgroup partition; remember whether it was there before.
        self._machine_before = {str(p) for p in Path("/sys/fs/cgroup").glob("*/machine")}
        script = f"""
mount -t tmpfs -o mode=0755 ukbench-run /run
mkdir -p /run/libvirt
mount --bind {d}/run /run/libvirt
mount --bind {d}/etc /etc/libvirt
mount --bind {d}/lib /var/lib/libvirt
mount --bind {d}/log /var/log/libvirt
mount --bind {d}/cache /var/cache/libvirt
exec /usr/sbin/libvirtd
"""
        out = open(d / "libvirtd.out", "ab")
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount",
                                      "--propagation", "private", "sh", "-ec", script],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        self.scratch.defer(self.stop)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited {self.proc.returncode}: "
                                   f"{(d / 'libvirtd.out').read_text()[-1500:]}")
            if self.sock.exists() and self.virsh("version", check=False).returncode == 0:
                break
            if time.monotonic() > end:
                raise RuntimeError(f"libvirtd not answering after {timeout} s")
            time.sleep(0.1)
        return self

    def virsh(self, *args, check=True):
        return sh("virsh", "-q", "-c", self.uri, *args, check=check)

    def version(self):
        return self.virsh("version").stdout.strip().replace("\n", "; ")

    def domain_xml(self, name, cmdline, console, accel, memory=64):
        """A transient microvm domain; accel "kvm" or "tcg" (libvirt's domain type "kvm" or "qemu")."""
        domain_type = {"kvm": "kvm", "tcg": "qemu"}[accel]
        return DOMAIN.format(domain_type=domain_type, name=name, memory=memory, kernel=HELLO, cmdline=cmdline,
                             qemu=QEMU, console=console)

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                for name in self.virsh("list", "--name", check=False).stdout.split():
                    if name.startswith(self.scratch.tag):
                        self.virsh("destroy", name, check=False)
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            for p in Path("/sys/fs/cgroup").glob("*/machine"):
                if str(p) not in self._machine_before:
                    for sub in sorted((q for q in p.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
                        try:
                            sub.rmdir()
                        except OSError:
                            pass
                    try:
                        p.rmdir()
                    except OSError:
                        pass
