"""Reading console logs in the CRI log format that vmwrapper writes for unikd (and kubelet
reads): `<RFC3339 UTC time, 9 fractional digits> stdout <P|F> <bytes>\\n` per record; P
records are 16 KiB pieces of a longer line, joined until the F that ends it.
See docs/architecture.md, "The console log"."""
import re

RECORD = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([PF]) (.*)", re.S)
LINE_MAX = 16 * 1024


class CriLogError(AssertionError):
    pass


def parse_cri_records(data, partial_ok=False):
    """The records of a log's bytes, as (timestamp, stream, tag, content) with content as
    bytes. Every record must match the format exactly. A last piece without its "\\n" is a
    record still being written: an error, unless partial_ok (a live file), then left out."""
    pieces = data.split(b"\n")
    tail = pieces.pop()  # after the last "\n": empty for a complete file
    if tail and not partial_ok:
        raise CriLogError(f"unterminated record at the end: {tail[:120]!r}")
    out = []
    for i, rec in enumerate(pieces):
        m = RECORD.fullmatch(rec)
        if not m:
            raise CriLogError(f"record {i} is malformed: {rec[:120]!r}")
        ts, stream, tag, content = m.groups()
        if len(content) > LINE_MAX:
            raise CriLogError(f"record {i} has {len(content)} bytes of content, more than {LINE_MAX}")
        if tag == b"P" and len(content) != LINE_MAX:
            raise CriLogError(f"record {i} is a P record of {len(content)} bytes, not {LINE_MAX}")
        out.append((ts.decode(), stream.decode(), tag.decode(), content))
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def parse_cri_log(path, binary=False, partial_ok=False):
    """[(stream, tag, content)] of a log file; content is str (UTF-8, invalid bytes
    replaced) unless binary."""
    return [(s, t, c if binary else c.decode(errors="replace"))
            for _, s, t, c in parse_cri_records(_read(path), partial_ok)]


def join_records(records, partial_ok=False):
    """Lines from (stream, tag, content) records: P pieces are joined until their F. A
    line still open at the end is an error unless partial_ok (a live file), then left out."""
    lines, pending = [], []
    for _, tag, content in records:
        pending.append(content)
        if tag == "F":
            lines.append(pending[0][:0].join(pending))
            pending = []
    if pending and not partial_ok:
        raise CriLogError(f"the last line has {len(pending)} P records and no F")
    return lines


def cri_lines(*paths, binary=False, partial_ok=False):
    """The console's lines from one log file, or from several read in order (the rotated
    file first), reassembled across P/F records and across the files."""
    records = []
    for p in paths:
        records += parse_cri_log(p, binary=binary, partial_ok=partial_ok)
    return join_records(records, partial_ok)


class LineJoiner:
    """Follows a log record by record (say, from `tail -F`): feed() takes one record line
    (bytes, its "\\n" optional) and returns the console line it completes as text (UTF-8,
    invalid bytes replaced), or None while the line goes on in P records."""

    def __init__(self):
        self.pending = []

    def feed(self, record):
        m = RECORD.fullmatch(record[:-1] if record.endswith(b"\n") else record)
        if not m:
            raise CriLogError(f"malformed record: {record[:120]!r}")
        self.pending.append(m.group(4))
        if m.group(3) == b"P":
            return None
        line, self.pending = b"".join(self.pending), []
        return line.decode(errors="replace")
