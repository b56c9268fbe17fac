"""The verdict, as `run` and `report` end with it in the terminal (plain wrapped lines, one
per method against the baseline; no table) and as report.html opens with it."""

from __future__ import annotations

import textwrap
from html import escape

from rich.console import Console

from distillmeter.analysis.result import Analysis
from distillmeter.terminal import get_console, printable


def print_verdict(a: Analysis, console: Console | None = None) -> None:
    """Print ``a.verdict`` under a heading, one wrapped line per sentence, estimates
    explained when any figure is one."""
    console = console or get_console()
    if not a.verdict:
        return
    console.print()
    console.print("[bold]verdict[/bold] (each method against the baseline; 95% ranges)",
                  highlight=False)
    width = max(min(console.width, 100), 40)
    for v in a.verdict:
        _wrapped(console, v["text"], "  - ", width)
    if any(v.get("estimated") for v in a.verdict):
        _wrapped(console, "~ ... est.: estimated energy (a model, not a counter: see the "
                 "sources in report.html)", "  ", width)


def _wrapped(console: Console, text: str, first: str, width: int) -> None:
    # a label or path longer than a line stays whole (break_long_words=False)
    lines = textwrap.wrap(printable(text), width=width, initial_indent=first,
                          subsequent_indent=" " * len(first), break_on_hyphens=False,
                          break_long_words=False)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def verdict_html(a: Analysis) -> str:
    """The verdict as the report page's opening section (escaped text)."""
    if not a.verdict:
        return ('<section class="verdict"><h2>Verdict</h2><p>No configuration to compare '
                'with a baseline.</p></section>')
    items = "".join(f"<li>{escape(v['text'])}</li>" for v in a.verdict)
    est = any(v.get("estimated") for v in a.verdict)
    foot = ("Each method against the baseline of its group. Ranges are every difference "
            "(or ratio) both 95% intervals allow; <em>separable</em> means the intervals do "
            "not overlap, otherwise the sentence says the two cannot be told apart. "
            f"Break-even and payback are stated only for students with Q &ge; {a.min_q:g}.")
    if est:
        foot += (" <span class=\"est\">~ &hellip; est.</span>: estimated energy (a model, "
                 "not a counter; see the sources at the end).")
    return (f'<section class="verdict"><h2>Verdict</h2><ul>{items}</ul>'
            f'<p class="small">{foot}</p></section>')
