"""unikd's process contract: starts, reports readiness, stops on SIGTERM/SIGINT, one per run dir."""
import signal
import subprocess

import pytest

from conftest import BIN


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_and_stops_cleanly(scratch, sig):
    p = subprocess.Popen([str(BIN / "unikd"), "--state-dir", str(scratch / "state"),
                          "--run-dir", str(scratch / "run"), "--network", "none"], stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            assert "level=error" not in line, line
            if 'msg="ready"' in line:
                break
        assert (scratch / "run" / "unikd.sock").is_socket()
        assert oct((scratch / "run" / "unikd.sock").stat().st_mode & 0o777) == "0o660"
        p.send_signal(sig)
        assert p.wait(timeout=10) == 0
        rest = p.stderr.read()
        assert 'msg="stopping"' in rest
        assert (scratch / "state").is_dir() and (scratch / "run").is_dir()
        assert not (scratch / "run" / "unikd.sock").exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()


def test_bad_flag_is_refused():
    r = subprocess.run([str(BIN / "unikd"), "--nope"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--nope" in r.stderr


def test_help_and_version():
    r = subprocess.run([str(BIN / "unikd"), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--state-dir" in r.stdout
    r = subprocess.run([str(BIN / "unikd"), "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("unikd ")


def test_a_second_unikd_on_the_same_run_dir_is_refused(scratch):
    args = [str(BIN / "unikd"), "--state-dir", str(scratch / "state"), "--run-dir", str(scratch / "run"),
            "--network", "none"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if 'msg="ready"' in line:
                break
        r = subprocess.run(args, capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and "another unikd" in r.stderr
        assert (scratch / "run" / "unikd.sock").is_socket()  # the first one's socket is untouched
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        p.stderr.close()


def test_image_cli(scratch):
    from conftest import HELLO
    base = [str(BIN / "unikd"), "--state-dir", str(scratch / "state"), "image"]
    r = subprocess.run(base + ["import", "demo:1", "--kernel", str(HELLO), "--cmdline", "exit:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("sha256:")
    r = subprocess.run(base + ["list"], capture_output=True, text=True, timeout=30)
    assert "docker.io/library/demo:1" in r.stdout
    r = subprocess.run(base + ["import", "Bad:1", "--kernel", str(HELLO)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "lowercase" in r.stderr
    r = subprocess.run(base + ["import", "x:1", "--kernel", "/nonexistent"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "kernel" in r.stderr
    r = subprocess.run(base + ["rm", "demo:1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    r = subprocess.run(base + ["list"], capture_output=True, text=True, timeout=30)
    assert "demo" not in r.stdout


def test_network_none_reports_network_not_ready(scratch):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from cri import Unikd
    u = Unikd(scratch, extra=["--network", "none"])
    u.start()
    try:
        st = u.rs.Status(u.pb.StatusRequest())
        net = [c for c in st.status.conditions if c.type == "NetworkReady"][0]
        assert net.status is False and "none" in net.message and net.reason
        sid, _ = u.run_pod(name="nonet")
        assert u.pod_status(sid).status.network.ip == ""
    finally:
        u.cleanup()
