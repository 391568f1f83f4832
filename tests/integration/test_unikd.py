"""unikd's process contract before the CRI: starts, reports readiness, stops on SIGTERM/SIGINT."""
import signal
import subprocess

import pytest

from conftest import BIN


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_and_stops_cleanly(scratch, sig):
    p = subprocess.Popen([str(BIN / "unikd"), "--state-dir", str(scratch / "state"),
                          "--run-dir", str(scratch / "run")], stderr=subprocess.PIPE, text=True)
    try:
        first = p.stderr.readline()
        assert 'msg="ready"' in first, first
        p.send_signal(sig)
        assert p.wait(timeout=10) == 0
        rest = p.stderr.read()
        assert 'msg="stopping"' in rest
        assert (scratch / "state").is_dir() and (scratch / "run").is_dir()
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
