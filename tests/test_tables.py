"""Every table the tool prints stays readable at 80 and 120 columns, in a terminal and
piped (training logs, Slurm .out files, CI logs): no stage name, config name or header is
cut. Real reports: a run metered here with several stages, the analysis of recorded runs,
and the progress bars of a pipeline stage."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distillmeter.accounting import account
from distillmeter.energy import EnergyMeter
from distillmeter.tables import fit, print_report

sys.path.insert(0, str(Path(__file__).resolve().parent / "analysis"))
from runbuilder import build_campaign  # noqa: E402

WIDTHS = [(80, False), (80, True), (120, False), (120, True)]  # (columns, a terminal?)
STAGES = ["setup.load", "teacher.generate", "student.train", "eval.student",
          "student.train_with_a_long_user_name"]
HEADERS = ["stage", "energy J", "+- J", "tokens", "J/token", "source", "status"]


def render(draw, width: int, tty: bool) -> list[str]:
    """What ``draw(console)`` prints on a console ``width`` columns wide, as plain lines."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=tty,
                      color_system="standard" if tty else None, legacy_windows=False)
    draw(console)
    return Text.from_ansi(buf.getvalue()).plain.splitlines()


def assert_readable(lines: list[str], width: int, words: list[str],
                    soft_wrapped: tuple[str, ...] = ()) -> None:
    """No cut cell or header, no line wider than the console (except lines printed to be
    wrapped by the terminal: those starting with ``soft_wrapped``), every word there."""
    text = "\n".join(lines)
    assert "…" not in text, text  # rich's mark of a cut cell or header
    assert all(len(line.rstrip()) <= width for line in lines
               if not line.lstrip().startswith(soft_wrapped) or not soft_wrapped), text
    for word in words:
        assert word in text, f"{word!r} is not in the output:\n{text}"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tables") / "run"
    with EnergyMeter(run_dir, idle_seconds=0.2, idle_cache=False, method="kd") as meter:
        for name in STAGES:
            with meter.stage(name) as st:
                sum(i * i for i in range(20000))
                st.add(tokens=1234)
    return account(run_dir)


@pytest.mark.parametrize(("width", "tty"), WIDTHS)
def test_the_report_tables(report, width, tty):
    lines = render(lambda c: print_report(report, c), width, tty)
    assert_readable(lines, width, STAGES + [h for h in HEADERS if h != "stage"] +
                    [f"{s.energy_j['total']:,.1f}" for s in report.stages])


@pytest.mark.parametrize(("width", "tty"), WIDTHS)
def test_the_analysis_tables(tmp_path, width, tty):
    from distillmeter.analysis.directory import analyse_dir
    from distillmeter.render.console import print_summary

    analysis = analyse_dir(build_campaign(tmp_path / "runs"))
    names = [c.label or c.config for c in analysis.configs]
    lines = render(lambda c: print_summary(analysis, c), width, tty)
    # the rules under the table are sentences, printed for the terminal to wrap
    assert_readable(lines, width, names + ["energy/student", "quality", "Pareto"],
                    soft_wrapped=("- ", "Pareto:"))


@pytest.mark.parametrize(("width", "tty"), WIDTHS)
def test_the_progress_bars(width, tty):
    from distillmeter.pipelines.progress import StageProgress

    def draw(console):
        progress = StageProgress(console)
        for name in ("teacher.generate", "student.train"):
            with progress.stage("kd-s0", name, total=2048, unit="seq") as bar:
                bar.advance(tokens=123_456, samples=2048)

    assert_readable(render(draw, width, tty), width, ["teacher.generate", "student.train"])


def _wide_table() -> Table:
    table = Table(title="a wide table")
    for h in ("name", "first measurement J", "second measurement J", "a long comment"):
        table.add_column(h)
    table.add_row("student.train", "1,234.5", "2,345.6", "every word of this stays")
    table.add_row("eval.student", "", "7.5", "empty cells are left out")
    return table


def test_fit_prints_a_table_that_fits_as_it_is():
    lines = render(lambda c: c.print(fit(_wide_table())), 200, False)
    assert any("┃ name" in line for line in lines)  # the table itself, boxed


def test_fit_drops_optional_columns_before_stacking():
    table = _wide_table()
    full = render(lambda c: c.print(table), 200, False)
    width = max(len(line) for line in full) - 10  # the full table does not fit
    lines = render(lambda c: c.print(fit(_wide_table(), ["a long comment"])), width, False)
    assert any("┃ name" in line for line in lines)
    assert not any("a long comment" in line for line in lines)


def test_fit_stacks_rows_it_cannot_narrow():
    lines = render(lambda c: c.print(fit(_wide_table())), 40, False)
    assert_readable(lines, 40, ["student.train", "first measurement J 1,234.5",
                                "a long comment every word of this stays".split()[0]])
    assert lines[0] == "a wide table" and lines[1] == "student.train"
    assert "first measurement J" not in "\n".join(lines[lines.index("eval.student"):])
