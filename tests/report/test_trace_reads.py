"""`report` reads each run's trace.csv once: the pass that accounts a run also answers its
re-accountings with moved boundaries (the sensitivity analysis), the students that take
it as their upstream teacher run, and its power plot."""

from __future__ import annotations

from collections import Counter

from distillmeter.accounting.scan import clear_cache
from distillmeter.cli import main
from distillmeter.protocol.trace import TraceReader


def _count_reads(monkeypatch) -> Counter:
    reads: Counter = Counter()
    real = TraceReader.__iter__

    def counted(self):
        reads[str(self.path.resolve())] += 1
        return real(self)

    monkeypatch.setattr(TraceReader, "__iter__", counted)
    return reads


def test_report_reads_each_trace_once(campaign_dir, monkeypatch, capsys):
    clear_cache()
    reads = _count_reads(monkeypatch)
    assert main(["report", str(campaign_dir)]) == 0  # accounts every run, then analyses
    traces = sorted(str(p.resolve()) for p in campaign_dir.rglob("trace.csv"))
    assert len(traces) > 5 and sorted(reads) == traces
    assert set(reads.values()) == {1}, reads
    assert "sensitivity" in (campaign_dir / "summary.json").read_text()
    assert (campaign_dir / "report.html").read_text().count("<polyline") >= len(traces) - 1


def test_a_second_report_reads_them_once_more_at_most(campaign_dir, monkeypatch, capsys):
    assert main(["report", str(campaign_dir)]) == 0
    clear_cache()  # a new process: report.json is there, the traces are read for the
    reads = _count_reads(monkeypatch)  # sensitivity analysis and the plots
    assert main(["report", str(campaign_dir)]) == 0
    assert set(reads.values()) == {1}, reads
    clear_cache()
    reads.clear()
    assert main(["report", str(campaign_dir), "--no-sensitivity"]) == 0  # the plots alone
    assert set(reads.values()) == {1}, reads
