"""vmwrapper's attach socket (docs/architecture.md, "The attach socket") against real QEMU and
the hello guest: the console to every client, input to the guest, the limits and the end."""
import contextlib
import socket
import time

from test_vmwrapper import Spec

FLOOD = 200000
# The first thing typed: a byte that reaches QEMU's 16550 before the guest sets it up is
# lost when the guest enables the FIFO (at most that one byte: the UART takes no more until
# then), so input starts with a line end that nobody minds losing or getting.
PRIMER = b"\n"


class Client:
    """One connection to attach.sock; what it has read so far is in buf."""

    def __init__(self, vm):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(vm.dir / "attach.sock"))
        self.buf = bytearray()
        self.eof = None  # how the stream ended: "eof" or "reset"

    def _recv(self, deadline, what):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}; the last bytes: {bytes(self.buf[-300:])!r}"
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(256 * 1024)
        except ConnectionResetError:
            chunk, self.eof = b"", "reset"
        if not chunk:
            self.eof = self.eof or "eof"
        self.buf += chunk
        return chunk

    def read_until(self, pred, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not pred(self.buf):
            if not self._recv(deadline, what):
                assert pred(self.buf), f"the stream ended ({self.eof}) before {what}"
                return

    def read_to_end(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self._recv(deadline, "the end of the stream"):
            pass

    def more(self):
        n = len(self.buf)
        self.read_until(lambda b: len(b) > n, "more console")

    def kept(self):
        """Whether vmwrapper kept this client: it gets console, rather than EOF at once."""
        self.read_until(lambda b: b"\r\n" in b or self.eof, "console or the end")
        return not self.eof

    def has(self, text):
        return self.read_until(lambda b: text.encode() in b, repr(text))

    def lines_after_first(self):
        """The lines it got after its first line end (the first may have begun before it
        attached), a last partial line included."""
        text = self.buf.decode()
        rest = text[text.index("\n") + 1:].split("\r\n")
        return rest if rest[-1] else rest[:-1]

    def close(self):
        self.s.close()


@contextlib.contextmanager
def running(scratch, cmdline, **spec):
    """vmwrapper with the hello guest, and a way to attach to it; every client is closed and
    the VM stopped at the end, whatever happened."""
    vm = Spec(scratch, cmdline, **spec)
    clients = []

    def attach():
        clients.append(Client(vm))
        return clients[-1]
    try:
        yield vm, attach
    finally:
        for c in clients:
            c.close()
        vm.kill()


def complete_lines(buf):
    """The lines of a client's stream that have their line end (the last may be cut)."""
    return buf.decode(errors="replace").split("\r\n")[:-1]


def numbered(lines, word="line"):
    return [int(l.split()[1]) for l in lines if l.startswith(word + " ")]


def test_clients_see_the_console_from_when_they_attach(scratch):
    with running(scratch, "tick:100") as (vm, attach):
        a = attach()
        a.has("tick 3\r\n")
        # b attaches after a has had tick 3: it gets nothing from before.
        b = attach()
        b.read_until(lambda buf: len(numbered(complete_lines(buf)[1:], "tick")) >= 3, "three ticks")
        vm.qmp("quit")
        assert vm.wait() == 137
        a.read_to_end()
        b.read_to_end()
        assert a.eof == b.eof == "eof"
        log = vm.lines()
        # Every tick, in order (the last may have been cut by the quit).
        ticks = numbered(log, "tick")
        assert ticks[:-1] == list(range(1, len(ticks))) and len(ticks) >= 6
        # Each client got exactly the console's tail, from when it attached to the end.
        for c in (a, b):
            got = c.lines_after_first()
            assert got and log[-len(got):] == got
        assert numbered(b.lines_after_first(), "tick")[0] > 3
        assert len(a.lines_after_first()) > len(b.lines_after_first())


def test_stdin_reaches_the_guest_from_any_client(scratch):
    with running(scratch, "echo", stdin=True) as (vm, attach):
        a, b = attach(), attach()
        a.s.sendall(PRIMER + b"hello from a\n")
        a.has("echo: hello from a\r\n")
        b.has("echo: hello from a\r\n")
        b.s.sendall(b"and from b\r\n")
        a.has("echo: and from b\r\n")
        # More than the 4 KiB input buffer at once: every line, in order.
        batch = [f"batch {i:03d} " + "y" * 90 for i in range(60)]
        a.s.sendall("".join(l + "\n" for l in batch).encode())
        a.has("echo: " + batch[-1] + "\r\n")
        echoed = [l[len("echo: "):] for l in complete_lines(a.buf) if l.startswith("echo: batch")]
        assert echoed == batch
        vm.qmp("quit")
        assert vm.wait() == 137
        log = vm.lines()
        assert "echo: hello from a" in log and "echo: and from b" in log
        assert [l for l in log if l.startswith("echo: batch")] == ["echo: " + l for l in batch]


def test_a_client_that_stops_reading_is_dropped_and_the_log_keeps_every_line(scratch):
    with running(scratch, f"input lines:{FLOOD} idle", stdin=True) as (vm, attach):
        slow = attach()
        fast = attach()
        fast.s.sendall(PRIMER + b"go\n")
        last = f"line {FLOOD}\r\n".encode()
        fast.read_until(lambda buf: buf.endswith(last), f"line {FLOOD}", timeout=300)
        # The slow one reads now: what it was sent, then the end, while the VM still runs.
        slow.read_to_end()
        assert vm.proc.poll() is None
        assert slow.eof == "eof"
        got_slow = numbered(complete_lines(slow.buf))
        assert got_slow == list(range(1, len(got_slow) + 1)) and len(got_slow) < FLOOD
        assert numbered(complete_lines(fast.buf)) == list(range(1, FLOOD + 1))
        vm.qmp("quit")
        assert vm.wait() == 137
        assert numbered(vm.lines()) == list(range(1, FLOOD + 1))
        assert "attach client dropped" in (scratch / "vmwrapper.log").read_text()


def test_clients_over_the_limit_are_closed(scratch):
    with running(scratch, "tick:50") as (vm, attach):
        clients = [attach() for _ in range(16)]
        for c in clients:
            # Some console: it was accepted.
            c.has("\r\n")
        extra = attach()
        extra.read_to_end()
        assert extra.eof == "eof" and not extra.buf
        # A freed slot takes the next one, once vmwrapper has seen the close (a client that
        # comes in the same round is still one too many).
        clients[0].close()
        assert any(attach().kept() for _ in range(100))
        # The others were not disturbed.
        for c in clients[1:]:
            c.more()


def test_at_the_end_clients_get_the_last_bytes_then_eof_and_nothing_is_left(scratch):
    with running(scratch, "input lines:1000 exit:3", stdin=True) as (vm, attach):
        c = attach()
        c.s.sendall(PRIMER + b"\n")
        c.read_to_end()
        assert c.eof == "eof"
        # exit.json is written before the clients are let go.
        assert vm.exit()["exit_code"] == 3
        assert numbered(complete_lines(c.buf)) == list(range(1, 1001))
        assert vm.wait() == 3
        assert numbered(vm.lines()) == list(range(1, 1001))
        assert not (vm.dir / "attach.sock").exists()
