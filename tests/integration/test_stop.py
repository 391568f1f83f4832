"""StopContainer meets its timeout, whatever QEMU does: the kill comes at the deadline."""
import json
import os
import signal
import time

import pytest


def qemu_pid(uk, cid):
    return json.loads((uk.run / "vms" / cid / "vmwrapper.json").read_text())["qemu_pid"]


@pytest.mark.parametrize("timeout", [0, 2])
def test_stop_of_a_stopped_qemu_returns_at_its_timeout(uk, timeout):
    """A SIGSTOPped QEMU answers no QMP command; the stop still returns at its timeout
    (the bound asserted is generous: the timeout plus one second)."""
    sid, cfg = uk.run_pod(name=f"hung{timeout}")
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    pid = qemu_pid(uk, cid)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        uk.stop_ctr(cid, timeout=timeout)
        took = time.monotonic() - t0
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    print(f"StopContainer(timeout={timeout}) of a SIGSTOPped QEMU returned after {took:.2f} s")
    assert took < timeout + 1, f"StopContainer(timeout={timeout}) took {took:.1f} s"
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and st.exit_code == 137 and st.reason == "Killed"
    assert not os.path.exists(f"/proc/{pid}")


def test_a_guest_that_ends_within_the_timeout_is_not_killed(uk):
    """Until the deadline the stop only waits: a guest that ends meanwhile keeps its own
    exit code."""
    sid, cfg = uk.run_pod(name="ends")
    cid = uk.create(sid, cfg, args=["sleep:4000", "exit:5"])
    uk.start_ctr(cid)
    uk.stop_ctr(cid, timeout=120)
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and st.exit_code == 5 and st.reason == "Error"
