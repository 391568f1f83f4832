"""Every row of the exit-reason table (docs/cri.md), through the CRI."""
import grpc
import pytest

from conftest import HELLO
from cri import Unikd




def run(uk, name, args, annotations=None, memory=0):
    sid, cfg = uk.run_pod(name=name)
    cid = uk.create(sid, cfg, args=args, annotations=annotations or {}, memory=memory)
    try:
        uk.start_ctr(cid)
    except grpc.RpcError as e:
        return uk.status(cid).status, e
    return uk.wait_exited(cid, timeout=30), None


@pytest.mark.parametrize("code,reason", [(0, "Completed"), (5, "Error"), (127, "Error")])
def test_guest_exit_code(uk, code, reason):
    st, _ = run(uk, f"e{code}", [f"exit:{code}"])
    assert (st.exit_code, st.reason) == (code, reason)


def test_guest_powers_itself_off(uk):
    st, _ = run(uk, "off", ["print:bye", "poweroff"])
    assert (st.exit_code, st.reason) == (0, "Completed")


def test_guest_panic(uk):
    st, _ = run(uk, "panic", ["panic"])
    assert st.exit_code != 0 and st.reason == "GuestPanicked"


def test_guest_triple_fault(uk):
    st, _ = run(uk, "triple", ["triple"])
    assert st.exit_code != 0 and st.reason == "GuestReset"


def test_killed_after_stop_timeout(uk):
    sid, cfg = uk.run_pod(name="kill")
    cid = uk.create(sid, cfg, args=["idle"])
    uk.start_ctr(cid)
    uk.stop_ctr(cid, timeout=1)  # the idle guest ignores the power button
    st = uk.status(cid).status
    assert st.exit_code == 137


def test_qemu_failure_has_qemus_message(uk):
    # A valid CPU model that QEMU refuses under the chosen accelerator: "host" needs KVM.
    st, e = run(uk, "qfail", ["exit:0"], annotations={"unikd.io/cpu": "host", "unikd.io/accel": "tcg"})
    assert e is not None and e.code() == grpc.StatusCode.UNKNOWN and "requires KVM" in e.details()
    assert st.exit_code != 0 and st.reason == "Error" and "requires KVM" in st.message
