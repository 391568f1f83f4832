"""Shared fixtures for the integration tests: paths, unique scratch dirs, and process cleanup.

Every test gets a scratch directory whose name is unique to it; any process still running
with that name in its command line when the test ends is killed, and the test fails, so a
leak cannot go unnoticed."""
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("UNIKD_BIN_DIR", REPO / "bin"))
GUESTS = Path(os.environ.get("UNIKD_GUEST_DIR", REPO / "tests" / "guests"))
HELLO = GUESTS / "hello" / "hello.elf"
FIRST_LINE = "hello: unikd test guest"

# Every process the tests start (unikd, vmwrapper, the helpers) writes its sanitizer reports
# (AddressSanitizer, LeakSanitizer at exit, UndefinedBehaviorSanitizer) to files here rather
# than to a stderr that nobody reads; a test after which a report appears fails with it.
SAN_DIR = Path(tempfile.mkdtemp(prefix="uk-san-"))
atexit.register(shutil.rmtree, SAN_DIR, True)  # empty unless a test failed on a report
os.environ["ASAN_OPTIONS"] = f"detect_leaks=1:log_path={SAN_DIR}/asan"
os.environ["LSAN_OPTIONS"] = f"log_path={SAN_DIR}/lsan"
os.environ["UBSAN_OPTIONS"] = f"print_stacktrace=1:halt_on_error=1:log_path={SAN_DIR}/ubsan"


def sanitizer_reports():
    return set(SAN_DIR.iterdir())


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Set up before, and so torn down after, every other fixture of a test: by then its
    processes have ended and written what they had to say."""
    before = sanitizer_reports()
    yield
    new = sorted(sanitizer_reports() - before)
    reports = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[:20000]}" for p in new)
    assert not new, f"sanitizer reports:\n{reports}"


def wait_gone(pid, timeout=30):
    """Wait on a pidfd for the process to end (an event, no polling); True if it did.
    SIGKILL is delivered asynchronously: a leak check right after kill() can still see the
    process, so every kill in a teardown waits here."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def kill_and_wait(pid, timeout=30):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return wait_gone(pid, timeout)


def pids_matching(tag):
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if tag.encode() in cmd:
            found.append(int(d.name))
    return found


@pytest.fixture
def scratch():
    """A unique directory; its name doubles as the tag for leak checks."""
    d = Path("/tmp") / f"uk-it-{uuid.uuid4().hex[:12]}"
    d.mkdir()
    tmp_before = set(Path("/tmp").glob("vmwrapper.*"))
    yield d
    stray_dirs = set(Path("/tmp").glob("vmwrapper.*")) - tmp_before
    leaked = pids_matching(str(d))
    for pid in leaked:
        kill_and_wait(pid)
    subprocess.run(["rm", "-rf", str(d)], check=False)
    assert not leaked, f"processes left behind: {leaked}"
    assert not stray_dirs, f"vmwrapper temp dirs left behind: {stray_dirs}"


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def uk(scratch):
    """A running unikd in its own network namespace, with the hello guest imported as
    hello:1 (default command line `print:default`); torn down and leak-checked after."""
    from cri import Unikd
    u = Unikd(scratch)
    u.import_image("hello:1", "--kernel", str(HELLO), "--cmdline", "print:default")
    u.start_or_cleanup()
    yield u
    u.cleanup()
    assert u.vm_pids() == [], "VM processes left behind"
    assert u.dnsmasq_pids() == [], "dnsmasq left behind"
