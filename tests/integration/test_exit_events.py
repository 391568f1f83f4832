"""A VM's end is recorded as it happens (the exit watcher on vmwrapper's pidfd), not when a
CRI call looks: each test waits for the end and for unikd's record on disk without making a
single CRI call, then checks what ContainerStatus says."""
import ctypes
import json
import os
import select
import signal
import time

from conftest import wait_gone
from cri import logged_up_to

CREATED, RUNNING, EXITED = 0, 1, 2  # the record's state, numbered as the CRI's ContainerState
IN_MOVED_TO = 0x80  # records are written to a temp file and renamed over the old one


def record(uk, cid):
    return json.loads((uk.state / "containers" / f"{cid}.json").read_text())


def wait_record(uk, cid, ok, what, timeout=30):
    """Wait (on inotify, not a timer) until ok(the container's record); return the record."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert fd >= 0
    try:
        assert libc.inotify_add_watch(fd, str(uk.state / "containers").encode(), IN_MOVED_TO) >= 0
        deadline = time.monotonic() + timeout
        rec = record(uk, cid)
        # Each rename into the directory wakes us; the deadline bounds the wait.
        while not ok(rec) and select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            os.read(fd, 65536)
            rec = record(uk, cid)
        assert ok(rec), f"the record of {cid} never said {what}: {rec}"
        return rec
    finally:
        os.close(fd)


def wait_record_state(uk, cid, state, timeout=30):
    """Wait until the container's record says state; return it."""
    return wait_record(uk, cid, lambda r: r["state"] == state, state, timeout)


def wait_record_exited(uk, cid, timeout=30):
    """Wait (on inotify, not a timer) until the container's record says EXITED; return it."""
    return wait_record_state(uk, cid, EXITED, timeout)


def vm_state(uk, cid):
    return json.loads((uk.run / "vms" / cid / "vmwrapper.json").read_text())


def started(uk, name, args):
    sid, cfg = uk.run_pod(name=name)
    cid = uk.create(sid, cfg, args=args)
    uk.start_ctr(cid)
    return cid


def kill_qemu(uk, cid):
    """QEMU dies as the OOM killer would kill it: vmwrapper records 137 "Killed" and leaves."""
    wpid = record(uk, cid)["wrapper_pid"]
    os.kill(vm_state(uk, cid)["qemu_pid"], signal.SIGKILL)
    assert wait_gone(wpid, 30), "vmwrapper did not leave after its QEMU died"


def test_guest_exit_is_recorded_without_a_call(uk):
    cid = started(uk, "ev", ["sleep:3000", "exit:7"])
    wpid = record(uk, cid)["wrapper_pid"]
    assert wait_gone(wpid, 60), "the guest did not exit"
    rec = wait_record_exited(uk, cid)
    assert (rec["exit_code"], rec["reason"]) == (7, "Error")
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (7, "Error")
    assert [c.state for c in uk.containers(id=cid)] == [uk.pb.CONTAINER_EXITED]
    assert logged_up_to(uk, "ended1").count(f'ctr={cid} msg="vm ended"') == 1


def test_killed_supervisor_is_recorded_without_a_call(uk):
    cid = started(uk, "kw", ["idle"])
    wpid = record(uk, cid)["wrapper_pid"]
    qemu = vm_state(uk, cid)["qemu_pid"]
    os.kill(wpid, signal.SIGKILL)
    assert wait_gone(wpid, 30)
    rec = wait_record_exited(uk, cid)
    assert (rec["exit_code"], rec["reason"]) == (255, "Unknown")
    assert wait_gone(qemu, 30), "QEMU outlived its vmwrapper"  # PR_SET_PDEATHSIG
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (255, "Unknown")


def test_stop_after_an_unseen_end(uk):
    # The end and the stop race: whichever records it, the stop sees an EXITED container
    # with the VM's own code.
    cid = started(uk, "se", ["idle"])
    kill_qemu(uk, cid)
    uk.stop_ctr(cid, 0)
    st = uk.status(cid).status
    assert st.state == uk.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (137, "Killed")
    assert logged_up_to(uk, "ended2").count(f'ctr={cid} msg="vm ended"') == 1


def test_restart_sees_ends_while_down_and_after(uk):
    down = started(uk, "down", ["idle"])
    after = started(uk, "after", ["idle"])
    uk.kill()  # SIGKILL: no clean-up, the VMs run on
    kill_qemu(uk, down)  # ends while unikd is down
    uk.start()
    # Reconciliation records it before the server answers anything.
    rec = record(uk, down)
    assert rec["state"] == EXITED and (rec["exit_code"], rec["reason"]) == (137, "Killed")
    assert record(uk, after)["state"] != EXITED
    # The restarted unikd watches the VM it reattached.
    kill_qemu(uk, after)
    rec = wait_record_exited(uk, after)
    assert (rec["exit_code"], rec["reason"]) == (137, "Killed")
    for cid in (down, after):
        st = uk.status(cid).status
        assert st.state == uk.pb.CONTAINER_EXITED and (st.exit_code, st.reason) == (137, "Killed")


def test_running_record_follows_the_answer(uk):
    # StartContainer answers once the record names vmwrapper; the RUNNING record is written
    # right after the answer, by the same worker, with no further call.
    cid = started(uk, "runrec", ["idle"])
    rec = wait_record_state(uk, cid, RUNNING)
    assert rec["wrapper_pid"] == vm_state(uk, cid)["pid"]


def test_start_whose_running_record_was_lost_is_completed(uk):
    # A unikd killed between its answer and the RUNNING record leaves the record that names
    # vmwrapper (a start under way); the restart completes it from the VM that runs.
    cid = started(uk, "lostrec", ["idle"])
    wait_record_state(uk, cid, RUNNING)
    uk.kill()
    path = uk.state / "containers" / f"{cid}.json"
    rec = json.loads(path.read_text())
    rec["state"] = CREATED
    path.write_text(json.dumps(rec))
    uk.start()
    assert 'msg="completed an interrupted start: the VM runs"' in uk.log()
    assert record(uk, cid)["state"] == RUNNING
    assert uk.status(cid).status.state == uk.pb.CONTAINER_RUNNING
    # Reattached: its end is recorded as it happens.
    kill_qemu(uk, cid)
    rec = wait_record_exited(uk, cid)
    assert (rec["exit_code"], rec["reason"]) == (137, "Killed")
