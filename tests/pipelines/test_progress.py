"""The live progress bar marks estimated power and stays within 80 columns."""

from __future__ import annotations

import io
import time

from rich.console import Console

from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.progress import StageProgress, power_text
from distillmeter.protocol import ESTIMATED_SOURCES


def test_power_text() -> None:
    assert power_text(None) == "- W"
    assert power_text(611.84) == "611.8 W"
    assert power_text(11.8, estimated=True) == "~12 W est"  # +-50%: no tenths
    assert power_text(8.77, estimated=True) == "~9 W est"
    assert power_text(0.45, estimated=True) == "~0.5 W est"


def test_the_bar_marks_what_the_meter_estimates(tmp_path) -> None:
    """A real meter on this machine (an estimate where there is no RAPL, as here): the
    context tells the bar whether the meter's power comes from an estimate."""
    buf = io.StringIO()
    ui = StageProgress(Console(file=buf, width=80, force_terminal=False))
    ctx = Context(cfg=RunConfig(), out_dir=tmp_path, ui=ui, device="cpu")
    meter = ctx.open_meter(tmp_path / "run", method="kd", seed=0, config_id="x")
    meter.idle_seconds = 0.0
    with meter:
        estimated = any(s in ESTIMATED_SOURCES for s in meter.sources.values())
        with ui.metered(meter, "run", "teacher.generate", 4000, "prompt") as bar:
            deadline = time.monotonic() + 5.0
            while meter.latest_power_w() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            bar.advance(tokens=120_000, samples=4000)
    assert ui.power_estimated() == estimated
    line = next(x for x in buf.getvalue().splitlines() if "teacher.generate" in x)
    assert len(line.rstrip()) <= 80
    assert (" W est" in line) == estimated and ("~" in line) == estimated
