"""`distillmeter report` and `distillmeter plan` on real run directories."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from runbuilder import build_campaign

from distillmeter.cli import main

REQUIRED = ("config", "method", "n_seeds", "energy_j_mean", "energy_j_std", "quality_mean",
            "quality_std", "pareto", "teacher_side_j_mean", "student_side_j_mean",
            "eval_j_mean")


def test_report_writes_the_three_files(campaign_dir: Path, capsys) -> None:
    (campaign_dir / "broken").mkdir()
    (campaign_dir / "broken" / "ledger.jsonl").write_text("not json\n{}\n")
    assert main(["report", str(campaign_dir)]) == 0
    out = capsys.readouterr().out
    # configurations are called by their method where it is unique in the group
    assert "\n  kd " in out and "\n  baseline " in out and "skipped" in out
    summary = json.loads((campaign_dir / "summary.json").read_text())
    assert len(summary["configs"]) == 3
    for rec in summary["configs"]:
        for key in REQUIRED:
            assert key in rec, key
        assert rec["n_seeds"] == 3 and rec["energy_j_ci95"][0] < rec["energy_j_mean"]
    for key in ("break_even", "skipped", "groups", "sensitivity", "efficiency"):
        assert summary[key], key
    assert summary["skipped"][0]["run_dir"] == "broken"
    assert "ledger.jsonl:1" in summary["skipped"][0]["reason"]
    assert summary["sensitivity"]["failed"] == []
    kd = next(c for c in summary["configs"] if c["config"] == "kd-cfg")
    assert kd["teacher_side_j_mean"] == pytest.approx(3133.859, abs=1e-3)  # upstream logits
    rows = list(csv.DictReader((campaign_dir / "summary.csv").open()))
    assert [r["config"] for r in rows] == ["baseline-cfg", "kd-cfg", "sft_synth-cfg"]
    assert float(rows[1]["energy_j_mean"]) == pytest.approx(kd["energy_j_mean"])
    html = (campaign_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "http" not in html.lower().replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert html.count("<svg") >= 3 + 10  # Pareto, two bar charts, one timeline per run
    # the sensitivity table names each run's configuration as the group table does
    sens = html.split("<h2>Sensitivity")[1].split("<h2>")[0]
    assert '<td class="l">kd</td>' in sens and "kd-cfg" not in sens
    # the verdict: first in summary.json and on the page, last in the terminal
    assert list(summary)[1] == "verdict" and len(summary["verdict"]) == 2  # kd, sft_synth
    assert html.index('class="verdict"') < html.index("<h2>Group")
    tail = out.rstrip().splitlines()
    start = max(i for i, line in enumerate(tail) if line.startswith("verdict"))
    assert start > max(i for i, line in enumerate(tail) if line.startswith("wrote "))
    assert tail[start + 1].startswith("  - kd: ") and "baseline's energy" in out[-900:]


def test_amortize_grid_and_pue(campaign_dir: Path) -> None:
    assert main(["report", str(campaign_dir), "--no-sensitivity"]) == 0
    base = {c["config"]: c for c in json.loads((campaign_dir / "summary.json").read_text())
            ["configs"]}
    assert main(["report", str(campaign_dir), "--no-sensitivity", "--amortize", "3",
                 "--grid", "100", "--pue", "1.5"]) == 0
    s = json.loads((campaign_dir / "summary.json").read_text())
    assert s["sensitivity"] is None and s["amortize"] == 3
    for c in s["configs"]:
        b = base[c["config"]]
        shared = b["teacher_side_j_mean"]  # all teacher-side work here is upstream
        assert c["energy_j_mean"] == pytest.approx(b["energy_j_mean"] - shared * 2 / 3)
        assert c["co2e_g_mean"] == pytest.approx(c["energy_j_mean"] / 3.6e6 * 1.5 * 100)


def test_user_mistakes_are_one_line_errors(tmp_path: Path, campaign_dir: Path,
                                           capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err
    assert main(["report", str(campaign_dir), "--amortize", "0"]) == 2
    assert "--amortize" in capsys.readouterr().err
    assert main(["report", str(campaign_dir), "--pue", "0.5"]) == 2
    only_broken = tmp_path / "only"
    (only_broken / "r").mkdir(parents=True)
    (only_broken / "r" / "ledger.jsonl").write_text("{]\n{}\n")
    assert main(["report", str(only_broken)]) == 2
    assert "no run could be read" in capsys.readouterr().err


def test_plan_picks_and_explains(campaign_dir: Path, capsys) -> None:
    assert main(["plan", str(campaign_dir), "--budget-kwh", "0.0018"]) == 0
    out = capsys.readouterr().out
    assert "pick sft_synth (config sft_synth-cfg)" in out and "kd does not fit" in out
    assert "teacher-side energy is" in out and "upper end of the 95% interval" in out
    assert main(["plan", str(campaign_dir), "--budget-kwh", "1e-5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["groups"][0]["choice"] is None
    assert res["groups"][0]["cheapest"] == "baseline-cfg"
    assert main(["plan", str(campaign_dir)]) == 2
    assert "give a budget" in capsys.readouterr().err
    assert main(["plan", str(campaign_dir), "--budget-usd", "1"]) == 2
    assert "--price-per-kwh" in capsys.readouterr().err
    assert main(["plan", str(campaign_dir), "--budget-usd", "0.001",
                 "--price-per-kwh", "0.3"]) == 0


def test_html_is_well_formed_and_escaped(campaign_dir: Path) -> None:
    # a hostile label must come out as text, never as markup
    ledger = campaign_dir / "kd-s0" / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace('"kd-cfg"', '"kd<script>x</script>&"', 1))
    assert main(["report", str(campaign_dir), "--no-sensitivity"]) == 0
    html = (campaign_dir / "report.html").read_text()
    assert "<script>" not in html and "kd&lt;script&gt;" in html
    body = html.split("<body>", 1)[1].split("</body>", 1)[0]
    for svg in body.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>", 1)[0] + "</svg>")  # parses as XML


def test_report_on_a_single_run_directory(campaign_dir: Path) -> None:
    one = campaign_dir / "baseline-s0"
    assert main(["report", str(one), "--no-sensitivity"]) == 0
    summary = json.loads((one / "summary.json").read_text())
    assert [c["n_seeds"] for c in summary["configs"]] == [1]
    html = (one / "report.html").read_text()
    assert "No trace to plot" not in html and html.count("<svg") >= 4  # timeline included


def test_dash_only_tables_collapse_to_a_line(campaign_dir: Path) -> None:
    # every student is below Q 0.9 and the H100 has a floor: no break-even table, but
    # the efficiency table stays
    assert main(["report", str(campaign_dir), "--no-sensitivity"]) == 0
    html = (campaign_dir / "report.html").read_text()
    assert "No break-even or payback stated: no student here reaches Q = 0.9" in html
    assert "<th" in html.split("Efficiency")[1].split("<h2>")[0]
    # a CPU with no known floor: the efficiency table is one line saying why
    for env in campaign_dir.glob("*/environment.json"):
        env.write_text(json.dumps({"hardware": {"cpu": {"model": "AMD EPYC"}}}))
    for rep in campaign_dir.glob("*/report.json"):
        rep.unlink()
    assert main(["report", str(campaign_dir), "--no-sensitivity", "--min-q", "0.5"]) == 0
    html = (campaign_dir / "report.html").read_text()
    eff = html.split("Efficiency")[1].split("<h2>")[0]
    assert "<table" not in eff and "No stage can be held against a hardware floor" in eff
    assert "no floor known for " in eff and "student.train" in eff
    # each reason names the stages it holds for: tokens are counted in student.train
    assert "no tokens counted" not in eff or "no tokens counted: setup." in eff
    assert "<th" in html.split("<h3>Break-even")[1].split("<h2>")[0]  # candidates now


def test_estimates_are_marked_in_report_and_plan(tmp_path: Path, capsys) -> None:
    runs = build_campaign(tmp_path / "runs", source="estimate")
    assert main(["report", str(runs), "--no-sensitivity"]) == 0
    out = capsys.readouterr().out
    assert "~ ... est.: estimated energy" in out and " est. vs ~" in out
    html = (runs / "report.html").read_text()
    assert "(estimate)" in html and " est. vs ~" in html
    assert main(["plan", str(runs), "--budget-kwh", "1"]) == 0
    out = capsys.readouterr().out
    assert "(estimated energy)" in out and "~: estimated energy" in out
    assert main(["report", str(runs), "--min-q", "-1"]) == 2
    assert "--min-q" in capsys.readouterr().err
