"""Drive unikd's CRI streaming server with ukstream (tests/stream/client, built by `make
stream-client` into build/ukstream), the Go client on Debian's spdystream 0.2.0.

- portforward(url, port) -> context manager yielding the local port; portforward_client()
  yields the PortForward itself (.port, .wait_error());
- attach(url, stdin=False, stop_after=None) -> an Attach, a Popen-like object with deadline reads;
- raw(url, protocol) -> (status_line, headers).

unikd runs in a network namespace of its own (cri.Unikd.ns) and its streaming server listens on
that namespace's 127.0.0.1, so every helper takes netns= and then runs the client there.
Every read waits on the pipe with select() to a deadline; nothing sleeps."""
import contextlib
import os
import select
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("UKSTREAM_BIN", REPO / "build" / "ukstream"))

# ukstream's exit codes (tests/stream/README.md).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_UPGRADE, EXIT_PEER_CLOSED = 0, 1, 2, 3, 4


def binary():
    """The client's path; a missing client fails the test (it is built by make test)."""
    if not os.access(BINARY, os.X_OK):
        raise FileNotFoundError(f"ukstream client missing: {BINARY} (build it with `make stream-client`)")
    return str(BINARY)


def _argv(netns, *args):
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    return [*prefix, binary(), *args]


class _Pipe:
    """A non-blocking pipe read to deadlines with select(); keeps what it has read."""

    def __init__(self, f):
        self.fd = f.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.eof = False

    def _fill(self, deadline):
        """Read what comes before the deadline; False when it passed without data or at EOF."""
        if self.eof:
            return False
        left = max(deadline - time.monotonic(), 0)  # 0: look once, do not wait
        if not select.select([self.fd], [], [], left)[0]:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until(self, pred, timeout, what):
        """Read until pred(buf) gives an index n > 0; return and consume buf[:n]."""
        deadline = time.monotonic() + timeout
        while True:
            n = pred(self.buf)
            if n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            if not self._fill(deadline):
                if self.eof:
                    raise EOFError(f"ukstream closed its output before {what}; got {self.buf[-2000:]!r}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no {what} within {timeout}s; got {self.buf[-2000:]!r}")

    def readline(self, timeout):
        def nl(b):
            i = b.find(b"\n")
            return i + 1 if i >= 0 else 0
        return self.read_until(nl, timeout, "line").decode(errors="replace").rstrip("\n")


class _Proc:
    """The running client: stdout and stderr read to deadlines, killed and reaped by close()."""

    def __init__(self, argv, stdin):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self.out = _Pipe(self.proc.stdout)
        self.err = _Pipe(self.proc.stderr)
        self._err_all = b""  # all of stderr read so far
        self._err_seen = 0  # where wait_stderr goes on from

    @property
    def returncode(self):
        return self.proc.poll()

    def poll(self):
        return self.proc.poll()

    def wait(self, timeout=30):
        """Wait for the exit (subprocess waits on the child, no sleeping loop); the return code."""
        return self.proc.wait(timeout=timeout)

    def _take_err(self):
        self._err_all += self.err.buf
        self.err.buf = b""

    def stderr_lines(self, timeout=0):
        """stderr so far as lines; with timeout, first read up to EOF for at most that long
        (after the exit, EOF comes at once)."""
        deadline = time.monotonic() + timeout
        while self.err._fill(deadline):
            self._take_err()
        self._take_err()
        return self._err_all.decode(errors="replace").splitlines()

    def wait_stderr(self, text, timeout=30):
        """The next stderr line (after those this already returned) that contains text."""
        deadline = time.monotonic() + timeout
        while True:
            while (nl := self._err_all.find(b"\n", self._err_seen)) >= 0:
                line = self._err_all[self._err_seen:nl].decode(errors="replace")
                self._err_seen = nl + 1
                if text in line:
                    return line
            if not self.err._fill(deadline):
                if self.err.eof:
                    raise EOFError(f"ukstream ended without a stderr line with {text!r}: {self._err_all[-2000:]!r}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no stderr line with {text!r} within {timeout}s: {self._err_all[-2000:]!r}")
            self._take_err()

    def close(self):
        """SIGTERM, then SIGKILL after 5 s; always reaped; pipes closed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PortForward(_Proc):
    """`ukstream portforward` once its session is up: .port is the local port."""
    port: int

    def wait_error(self, requestid=None, timeout=30):
        """The TEXT of the next `error requestid=N: TEXT` line on stderr (for that N if given)."""
        tag = "error requestid=" + ("" if requestid is None else f"{requestid}:")
        return self.wait_stderr(tag, timeout).split(": ", 1)[1]


@contextlib.contextmanager
def portforward_client(url, port, *, netns=None, listen="127.0.0.1:0", close_on_error=False, timeout=30):
    """Run `ukstream portforward` for the pod port `port` and yield the PortForward once the
    session is up (the client prints its `listening` line only then). The client is stopped
    and reaped on exit, even when the body failed."""
    args = ["portforward", url, "--listen", listen, "--port", str(port)]
    if close_on_error:
        args.append("--close-on-error")
    client = PortForward(_argv(netns, *args), stdin=False)
    try:
        try:
            line = client.out.readline(timeout)
        except (EOFError, TimeoutError) as e:
            client.close()
            raise AssertionError(f"ukstream portforward did not start: {e}; stderr: "
                                 f"{client.stderr_lines(5)}") from None
        assert line.startswith("listening "), f"unexpected first line {line!r}"
        client.port = int(line.rsplit(":", 1)[1])
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def portforward(url, port, **kw):
    """portforward_client() yielding only the local port (an int)."""
    with portforward_client(url, port, **kw) as client:
        yield client.port


class Attach(_Proc):
    """`ukstream attach`: read the console with readline()/read_until(), type with write()."""

    def readline(self, timeout=30):
        """The next stdout line, without its newline; TimeoutError/EOFError otherwise."""
        return self.out.readline(timeout)

    def wait_line(self, text, timeout=30):
        """Skip stdout lines up to the first that contains text; return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.out.readline(max(deadline - time.monotonic(), 0))
            if text in line:
                return line

    def read_until(self, data, timeout=30):
        """stdout up to and including the bytes data."""
        data = data.encode() if isinstance(data, str) else data

        def found(b):
            i = b.find(data)
            return i + len(data) if i >= 0 else 0
        return self.out.read_until(found, timeout, repr(data))

    def read_bytes(self, n, timeout=30):
        return self.out.read_until(lambda b: n if len(b) >= n else 0, timeout, f"{n} bytes")

    def write(self, data):
        data = data.encode() if isinstance(data, str) else data
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def finish(self, timeout=30):
        """Wait for the exit; (return code, the final `status: …` line or None)."""
        rc = self.wait(timeout)
        status = [l for l in self.stderr_lines(5) if l.startswith("status: ")]
        return rc, (status[-1] if status else None)


def attach(url, stdin=False, stop_after=None, *, netns=None, protocols=None, stderr=False, tty=False, rcvbuf=None):
    """Start `ukstream attach`. stop_after=N: stop reading after N bytes of output and keep the
    connection open (a slow client); the client then exits 4 when the server drops it. Use it
    as a context manager, or call close()."""
    args = ["attach", url]
    if stdin:
        args.append("--stdin")
    if stderr:
        args.append("--stderr")
    if tty:
        args.append("--tty")
    if stop_after is not None:
        args += ["--stop-reading-after-bytes", str(int(stop_after))]
    if rcvbuf:
        args += ["--rcvbuf", str(int(rcvbuf))]
    if protocols:
        args += ["--protocol", ",".join([protocols] if isinstance(protocols, str) else protocols)]
    return Attach(_argv(netns, *args), stdin=stdin)


def raw(url, protocol, *, netns=None, upgrade="SPDY/3.1", method="POST", headers=(), timeout=30):
    """Send the upgrade request alone; return (status_line, headers), header names in lower
    case, repeated headers joined by ", ". protocol: a name, a list, or None to offer none.
    raw_response() also returns the body of a refusal."""
    status, hdrs, _ = raw_response(url, protocol, netns=netns, upgrade=upgrade, method=method,
                                   headers=headers, timeout=timeout)
    return status, hdrs


def raw_response(url, protocol, *, netns=None, upgrade="SPDY/3.1", method="POST", headers=(), timeout=30):
    """raw(), plus the response body (empty for a 101)."""
    protos = [] if protocol is None else [protocol] if isinstance(protocol, str) else list(protocol)
    args = ["raw", url, "--protocol", ",".join(protos), "--upgrade", upgrade, "--method", method]
    for h in headers:
        args += ["--header", h]
    r = subprocess.run(_argv(netns, *args), capture_output=True, text=True, timeout=timeout)
    if r.returncode not in (EXIT_OK, EXIT_NOT_UPGRADE):
        raise AssertionError(f"ukstream raw failed ({r.returncode}): {r.stderr.strip()}")
    head, _, body = r.stdout.partition("\n\n")
    lines = head.splitlines()
    hdrs = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        name = name.lower()
        hdrs[name] = f"{hdrs[name]}, {value}" if name in hdrs else value
    return lines[0], hdrs, body.rstrip("\n")
