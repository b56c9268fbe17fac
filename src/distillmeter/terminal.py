"""What distillmeter prints in a terminal: one way to get a console, and user-controlled
text (stage names, method labels, run names, paths, metric names, messages quoting them)
made inert before it is printed.

- :func:`get_console` is the console every command prints through. When the output is not a
  terminal (piped to ``grep``, a log file, a CI job, click's test runner) it soft-wraps:
  a line is never broken at the 80 columns rich assumes there, so a path in a message can
  be copied and grepped whole. Tables are still fitted to that width (``tables.fit``).
  It never highlights (rich's highlighter is quadratic in a long word), and as a last
  guard it shows any control character that reached a rendered segment as an escape.
- :func:`printable` shows control characters as escapes (``\\x1b``, ``\\n``, ``\\t``;
  also C1 controls, bidirectional overrides and line separators), so a name cannot clear
  the screen, recolour the terminal, move the cursor or forge a table row.
- :func:`literal` is :func:`printable` with rich markup escaped too, for user text put
  inside a markup string (``f"[bold]{literal(name)}[/]"``): ``[red]`` in a name is shown,
  not obeyed. :func:`plain_text` makes a ``Text`` (no markup at all).
- :func:`json_text` does the same for JSON printed with ``--json``, which stays valid.
- :func:`shorten` cuts text longer than a limit in the middle, with a marker that says how
  much was cut (``student.aaaa…[+99,950 chars]…aaaa``): tables cut cells this way, so a
  100,000-character name costs as little to print as a short one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape as _markup_escape
from rich.segment import Segment
from rich.text import Text

# Characters shown as escapes: C0 and C1 controls and DEL (category Cc), and the format and
# separator characters that reorder or break lines (bidi overrides and isolates, U+2028/9).
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029]")
# Inside a rendered segment rich's own line breaks stay.
_UNSAFE_IN_SEGMENT = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029]")
# JSON writers escape C0 controls in strings (outside them only whitespace stands)
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f" + _BIDI + "\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# A table cell longer than this is cut (see shorten): longer than the stage names, method
# labels and run names people write, short enough that a cut one still fits a line of 80.
MAX_CELL = 72


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control character shown as an escape (``ESC`` as ``\\x1b``, a
    newline as ``\\n``): it prints on one line and changes nothing in the terminal."""
    s = str(text)
    return _UNSAFE.sub(_escape_char, s) if _UNSAFE.search(s) else s


def literal(text: object) -> str:
    """``text`` made safe to put inside a rich markup string: control characters escaped
    (:func:`printable`) and markup tags escaped, so they are shown as written."""
    return _markup_escape(printable(text))


def json_text(text: str) -> str:
    """JSON text made inert for a terminal, still the same JSON: the characters
    :func:`printable` escapes that JSON writers leave raw (C1 controls, bidirectional
    overrides, line separators; they can only stand inside strings) as ``\\uXXXX``."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def shorten(text: str, limit: int = MAX_CELL) -> str:
    """``text`` itself when at most ``limit`` characters, else its head and tail around a
    marker saying how many characters were cut. Linear in ``len(text)``."""
    if len(text) <= limit:
        return text
    marker = f"…[+{len(text) - limit:,} chars]…"
    keep = max(limit - len(marker), 8)
    head = keep - keep // 3
    return f"{text[:head]}{marker}{text[len(text) - (keep - head):]}"


def plain_text(text: object, *, style: str = "", limit: int | None = None) -> Text:
    """A ``Text`` of user-controlled ``text``: escaped (:func:`printable`), never parsed
    as markup, cut to ``limit`` characters (:func:`shorten`) when given."""
    s = printable(text)
    return Text(shorten(s, limit) if limit is not None else s, style=style)


def safe_cell(cell: RenderableType, limit: int = MAX_CELL) -> RenderableType:
    """A table cell made inert: a string becomes a ``Text`` (not markup), escaped and cut
    to ``limit``; a ``Text`` keeps its styles unless it holds a control character or is
    too long, when it is rebuilt from its plain text in its base style."""
    if isinstance(cell, str):
        return plain_text(cell, limit=limit)
    if isinstance(cell, Text):
        plain = cell.plain
        if len(plain) > limit or _UNSAFE.search(plain):
            return plain_text(plain, style=cell.style, limit=limit)
    return cell


class SafeConsole(Console):
    """A rich ``Console`` that shows control characters in rendered text as escapes (the
    last guard: callers escape user text themselves, so widths stay right)."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None
               ) -> Iterable[Segment]:
        for seg in super().render(renderable, options):
            if seg.control is None and _UNSAFE_IN_SEGMENT.search(seg.text):
                seg = Segment(_UNSAFE_IN_SEGMENT.sub(_escape_char, seg.text), seg.style)
            yield seg


def get_console(*, stderr: bool = False) -> Console:
    """The console distillmeter prints through (stdout, or stderr for ``measure`` and
    progress): the terminal's width on a terminal; elsewhere $COLUMNS or 80 columns for
    tables, and soft wrap for every other line (never broken in the middle of a path). No
    highlighting."""
    console = SafeConsole(stderr=stderr, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console
