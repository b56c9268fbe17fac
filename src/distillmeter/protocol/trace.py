"""``trace.csv``: the sampled readings (``t,device,energy_j,power_w``), the row writer
(``trace_row``, ``TRACE_HEADER``) and the readers: ``TraceReader`` streams the file in
chunks of numpy arrays (what accounting uses: a trace can be hundreds of MB), and
``read_trace`` / ``parse_trace_lines`` build a whole ``Trace`` from it (for small traces:
replay, rank merging, tests).

The reader has two parsers with one meaning. The fast one takes a chunk of plain rows (the
characters the meter writes, three commas a line, device names like ``gpu:0``) into numpy
arrays at once; anything else (quoted cells, spaces, CRLF line ends, a bad row) hands the
rest of the file to the csv module row by row, which says what is wrong and on which line.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillmeter.protocol.names import TRACE_COLUMNS, TRACE_FILE, ProtocolError, is_device

CHUNK_BYTES = 1 << 20  # the fast parser's chunk: ~35k rows, a few MB of arrays at a time
SLOW_ROWS = 1 << 16  # rows the csv path collects before handing them on as a chunk
# Every byte a meter-written row can hold; a chunk with any other goes to the csv module.
_FAST_BYTES = b"0123456789.,:-+eE\ngpucdram"
_PRINTABLE = bytes(range(0x20, 0x7F))  # a plain first line: nothing text mode would change
_NO_SAMPLES = np.empty(0)


@dataclass
class Trace:
    """Samples per device, columns as lists: ``t``, ``energy_j`` and ``power_w`` (NaN
    where empty), sorted by ``t``."""

    path: Path
    devices: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def series(self, device: str) -> dict[str, list[float]]:
        return self.devices.get(device, {"t": [], "energy_j": [], "power_w": []})


@dataclass
class TraceChunk:
    """A stretch of a trace: per device, arrays ``(t, energy_j, power_w)`` in file order
    (NaN where a cell is empty)."""

    devices: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


class TraceReader:
    """Iterate over a trace in ``TraceChunk``\\ s, one pass, memory bounded by the chunk.

    ``source``: a trace.csv path, or its text as lines (``path`` then names it in
    messages). The header must be exactly ``t,device,energy_j,power_w``; a bad row raises
    ProtocolError naming its line, except a cut-off last row, which is dropped with a
    warning. After the pass: ``warnings``; ``unsorted``, the devices whose samples went back
    in time (in the order first seen: a reader that needs time order sorts them, as
    ``read_trace`` does); ``t_range``, each device's first and last ``t`` in the file;
    ``rows``."""

    def __init__(self, source: Path | str | Iterable[str], path: Path | str | None = None,
                 *, fast: bool = True) -> None:
        if isinstance(source, (str, Path)):
            self.path = Path(source)
            self._file: Path | None = self.path
            self._lines: Iterable[str] | None = None
        else:
            self.path = Path(path if path is not None else TRACE_FILE)
            self._file, self._lines = None, source
        self.fast = fast
        self.warnings: list[str] = []
        self.unsorted: list[str] = []
        self.t_range: dict[str, tuple[float, float]] = {}
        self.rows = 0
        self._last_t: dict[str, float] = {}

    # ------------------------------------------------------------------ the pass
    def __iter__(self) -> Iterator[TraceChunk]:
        self.warnings, self.unsorted, self.t_range, self.rows = [], [], {}, 0
        self._last_t = {}
        if self._file is None:
            assert self._lines is not None
            lines = iter(self._lines)
            first = next(lines, None)
            if first is None:
                raise ProtocolError(f"{self.path}: empty trace (no header)")
            self._check_header(first)
            yield from self._slow(lines, 2)
            return
        try:
            f = open(self._file, "rb")
        except OSError as exc:
            raise ProtocolError(f"{self.path}: cannot read ({exc.strerror})") from None
        with f:
            yield from self._read_file(f)

    def _read_file(self, f: io.BufferedReader) -> Iterator[TraceChunk]:
        buf = self._read(f)
        if not buf:
            raise ProtocolError(f"{self.path}: empty trace (no header)")
        end = buf.find(b"\n") + 1
        head = buf[:end - 1]
        if not self.fast or not end or head.translate(None, _PRINTABLE):
            # not a plain first line (or the csv path asked for): read it all as text,
            # as a file opened in text mode reads it (universal newlines)
            lines = _text_lines(f, buf, self._read)
            first = next(lines, None)
            if first is None:
                raise ProtocolError(f"{self.path}: empty trace (no header)")
            self._check_header(first)
            yield from self._slow(lines, 2)
            return
        self._check_header(head.decode("ascii"))
        buf, lineno = buf[end:], 2
        while True:
            more = self._read(f)
            buf += more
            eof = not more
            cut = len(buf) if eof else buf.rfind(b"\n") + 1
            piece, buf = buf[:cut], buf[cut:]
            parsed = _fast_rows(piece) if piece else None
            if parsed is None and piece:  # the csv module reads the rest, row by row
                yield from self._slow(_text_lines(f, piece + buf, self._read), lineno)
                return
            if parsed is not None:
                lineno += parsed[0].size
                yield self._chunk(*parsed)
            if eof:
                return

    def _read(self, f: io.BufferedReader) -> bytes:
        try:
            return f.read(CHUNK_BYTES)
        except OSError as exc:
            raise ProtocolError(f"{self.path}: cannot read ({exc.strerror})") from None

    def _check_header(self, line: str) -> None:
        header = line.strip().split(",")
        if tuple(h.strip() for h in header) != TRACE_COLUMNS:
            raise ProtocolError(
                f"{self.path}:1: header is {line.strip()!r}, expected {','.join(TRACE_COLUMNS)}"
            )

    def _slow(self, lines: Iterator[str], lineno: int) -> Iterator[TraceChunk]:
        """The csv module's reading of the rows from line ``lineno`` on: each cell checked,
        errors naming their line."""
        counted = _Counted(lines)
        cols: dict[str, tuple[list[float], list[float], list[float]]] = {}
        n = 0
        for i, rec in enumerate(csv.reader(counted), start=lineno):
            if not rec:
                continue
            try:
                if len(rec) != 4:
                    raise ProtocolError(f"{self.path}:{i}: expected 4 columns, found {len(rec)}")
                t = _cell(rec[0], self.path, i, "t")
                if math.isnan(t):
                    raise ProtocolError(f"{self.path}:{i}: t is empty")
                dev = rec[1].strip()
                if not is_device(dev):
                    raise ProtocolError(
                        f"{self.path}:{i}: unknown device {dev!r} (expected gpu:N, cpu:N or "
                        "dram:N)"
                    )
                e = _cell(rec[2], self.path, i, "energy_j")
                p = _cell(rec[3], self.path, i, "power_w")
            except ProtocolError:
                # the last line, without its newline: a write cut off by a crash
                if counted.exhausted() and i == lineno - 1 + counted.count and \
                        not counted.last.endswith("\n"):
                    self.warnings.append(f"{self.path}:{i}: last row is cut off; read up to it")
                    break
                raise
            c = cols.setdefault(dev, ([], [], []))
            c[0].append(t)
            c[1].append(e)
            c[2].append(p)
            n += 1
            if n >= SLOW_ROWS:
                yield self._lists_chunk(cols)
                cols, n = {}, 0
        if cols:
            yield self._lists_chunk(cols)

    # ------------------------------------------------------------------ chunks out
    def _lists_chunk(self, cols: dict[str, tuple[list[float], list[float], list[float]]]
                     ) -> TraceChunk:
        return self._note(TraceChunk({d: (np.array(t), np.array(e), np.array(p))
                                      for d, (t, e, p) in cols.items()}))

    def _chunk(self, t: np.ndarray, names: list[str], inv: np.ndarray, e: np.ndarray,
               p: np.ndarray) -> TraceChunk:
        if len(names) == 1:
            return self._note(TraceChunk({names[0]: (t, e, p)}))
        out = {}
        for k, d in enumerate(names):
            m = inv == k
            out[d] = (t[m], e[m], p[m])
        return self._note(TraceChunk(out))

    def _note(self, chunk: TraceChunk) -> TraceChunk:
        """Keep each device's time range and whether its samples stay in time order."""
        for d, (t, _, _) in chunk.devices.items():
            self.rows += t.size
            last = self._last_t.get(d)
            back = bool((t[1:] < t[:-1]).any()) or (last is not None and t[0] < last)
            if back and d not in self.unsorted:
                self.unsorted.append(d)
            lo, hi = float(t.min()), float(t.max())
            if d in self.t_range:
                lo, hi = min(lo, self.t_range[d][0]), max(hi, self.t_range[d][1])
            self.t_range[d] = (lo, hi)
            self._last_t[d] = float(t[-1])
        return chunk

    def unsorted_warnings(self) -> list[str]:
        """One warning per device whose samples went back in time, in the order the devices
        first appear in the file (not the order the chunks happened to show it: the same
        file read in other chunk sizes says the same)."""
        first = {d: i for i, d in enumerate(self.t_range)}
        return [f"{self.path}: samples of {d} were out of time order; sorted"
                for d in sorted(self.unsorted, key=lambda d: first.get(d, len(first)))]


class _Counted:
    """A line iterator that counts what it gave and can tell whether it is used up."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._peeked: list[str] = []
        self.count = 0
        self.last = ""

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = self._peeked.pop() if self._peeked else next(self._lines)
        self.count += 1
        self.last = line
        return line

    def exhausted(self) -> bool:
        if self._peeked:
            return False
        nxt = next(self._lines, None)
        if nxt is None:
            return True
        self._peeked.append(nxt)
        return False


def _text_lines(f: io.BufferedReader, start: bytes, read) -> Iterator[str]:
    """The file's lines from ``start`` on (what is left of a buffer, then the rest of the
    file) as ``Path.read_text(errors="replace").splitlines(keepends=True)`` gives them:
    decoded, ``\\r\\n`` and ``\\r`` read as ``\\n``. The last piece of each block waits
    for the next, so a line, a ``\\r\\n`` or a character cut between blocks stays whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    data = start or read(f)
    while True:
        eof = not data
        text = pending + decoder.decode(data, final=eof)
        cr = ""
        if not eof and text.endswith("\r"):  # maybe the first half of a \r\n
            text, cr = text[:-1], "\r"
        lines = text.replace("\r\n", "\n").replace("\r", "\n").splitlines(keepends=True)
        pending = ("" if eof or not lines else lines.pop()) + cr
        yield from lines
        if eof:
            return
        data = read(f)


def _cell(value: str, path: Path, lineno: int, column: str) -> float:
    if value is None or value.strip() == "":
        return math.nan
    try:
        x = float(value)
    except ValueError:
        raise ProtocolError(
            f"{path}:{lineno}: column {column} is not a number ({value!r})"
        ) from None
    if not math.isfinite(x):
        raise ProtocolError(f"{path}:{lineno}: column {column} is not finite ({value!r})")
    return x


def _fast_rows(piece: bytes) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray,
                                      np.ndarray] | None:
    """Parse plain rows at once: ``(t, device names, each row's name index, energy_j,
    power_w)``, or None when the piece holds anything but plain rows (the csv path then
    reads it and names what is wrong)."""
    if piece.translate(None, _FAST_BYTES):
        return None
    if not piece.endswith(b"\n"):
        piece += b"\n"  # the last row of a file without a final newline
    a = np.frombuffer(piece, dtype=np.uint8)
    ends = np.flatnonzero(a == 10)
    commas = np.flatnonzero(a == 44)
    n = ends.size
    if commas.size != 3 * n:
        return None
    c = commas.reshape(n, 3)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if (c[:, 0] < starts).any() or (c[:, 2] > ends).any():
        return None  # some line has more commas and another fewer
    d0 = c[:, 0] + 1
    length = c[:, 1] - d0
    if length.min() < 5 or length.max() > 16:  # shorter than "gpu:0": not a device
        return None
    width = int(length.max())
    offsets = np.arange(width)
    idx = np.minimum(d0[:, None] + offsets, a.size - 1)
    mat = np.where(offsets < length[:, None], a[idx], 0).astype(np.uint8)
    names = np.ascontiguousarray(mat).view(f"S{width}").ravel()
    uniq, first, inv = np.unique(names, return_index=True, return_inverse=True)
    devices = [u.decode("ascii") for u in uniq]
    if not all(is_device(d) for d in devices):
        return None
    order = np.argsort(first, kind="stable")  # devices in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    devices = [devices[k] for k in order]
    inv = rank[inv.ravel()]
    body = piece.replace(b",,", b",nan,").replace(b",\n", b",nan\n")
    try:
        vals = np.loadtxt(io.BytesIO(body), delimiter=",", usecols=(0, 2, 3),
                          dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    t, e, p = vals[:, 0].copy(), vals[:, 1].copy(), vals[:, 2].copy()
    if not np.isfinite(t).all() or np.isinf(e).any() or np.isinf(p).any():
        return None  # an empty t, or a number too large to be finite
    return t, devices, inv, e, p


# ---------------------------------------------------------------------- whole traces
def collect(reader: TraceReader) -> Trace:
    """Read a whole trace into a ``Trace`` (each device's samples sorted by time)."""
    cols: dict[str, list[list[np.ndarray]]] = {}
    for chunk in reader:
        for d, arrays in chunk.devices.items():
            c = cols.setdefault(d, [[], [], []])
            for k in range(3):
                c[k].append(arrays[k])
    trace = Trace(path=reader.path, warnings=list(reader.warnings))
    for d, c in cols.items():
        t, e, p = (np.concatenate(x) if x else _NO_SAMPLES for x in c)
        if d in reader.unsorted:
            order = np.argsort(t, kind="stable")
            t, e, p = t[order], e[order], p[order]
        trace.devices[d] = {"t": t.tolist(), "energy_j": e.tolist(), "power_w": p.tolist()}
    trace.warnings.extend(reader.unsorted_warnings())
    return trace


def parse_trace_lines(lines: Iterable[str], path: Path | str = TRACE_FILE) -> Trace:
    """Parse trace.csv text. The header must be exactly ``t,device,energy_j,power_w``. A
    cut-off last row is dropped with a warning; other bad rows raise ProtocolError."""
    return collect(TraceReader(lines, path))


def read_trace(path: Path | str) -> Trace:
    """Read ``trace.csv`` (or a run directory's trace). A missing trace is an empty one."""
    path = Path(path)
    if path.is_dir():
        path = path / TRACE_FILE
    if not path.exists():
        t = Trace(path=path)
        t.warnings.append(no_trace_warning(path))
        return t
    return collect(TraceReader(path))


def no_trace_warning(path: Path) -> str:
    return f"{path}: no trace; energy comes from boundary readings only"


def trace_row(t: float, device: str, energy_j: float | None, power_w: float | None) -> str:
    """One trace.csv row (with newline); None becomes an empty cell."""
    e = "" if energy_j is None else f"{energy_j:.3f}"
    p = "" if power_w is None else f"{power_w:.3f}"
    return f"{t:.6f},{device},{e},{p}\n"


TRACE_HEADER = ",".join(TRACE_COLUMNS) + "\n"
