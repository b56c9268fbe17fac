"""A method added as one module (``plugin_method.py``, only in the test suite) appears in
``distillmeter run`` (a real tiny run), the forecast (``plan_work``, ``distillmeter
estimate``), the verdict and ``distillmeter plan``; and no code outside
``pipelines/methods/`` branches on a method's name or kind."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.errors import UserError
from distillmeter.pipelines import methods
from distillmeter.pipelines.config_file import parse_config
from distillmeter.pipelines.methods import registry
from distillmeter.pipelines.work import plan_work

SRC = Path(__file__).resolve().parents[2] / "src" / "distillmeter"
METHODS = [{"name": "baseline", "data": ["labelled"]},
           {"name": "smooth", "data": ["labelled"], "loss": "ce_smooth"}]


@pytest.fixture(scope="module")
def plugin():
    """The test method, registered for this module's tests only (the rest of the suite
    sees the built-in methods alone: their error messages list the losses)."""
    import plugin_method

    if "smooth_ce" not in registry.registered():
        importlib.reload(plugin_method)
    yield plugin_method
    registry.unregister("smooth_ce")
    registry.unregister("finetune_ce")


@pytest.fixture(scope="module")
def plugin_run(plugin, tmp_path_factory, tiny_run_dict):
    data = copy.deepcopy(tiny_run_dict)
    data["methods"] = METHODS
    cfg_path = tmp_path_factory.mktemp("cfg") / "plugin.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(cfg_path), "--out", str(out), "--quiet"]) == 0
    return cfg_path, out


def test_the_config_selects_it_by_its_loss(plugin):
    cfg = parse_config({"methods": METHODS})
    kinds = [type(methods.get(m)) for m in cfg.methods]
    assert kinds[1] is plugin.SmoothCE and methods.get(cfg.methods[1]).kind == "smooth_ce"
    with pytest.raises(UserError, match="'onpolicy', 'dpo', 'ce_smooth' or 'ce_more'"):
        parse_config({"methods": [{"name": "x", "data": ["labelled"], "loss": "ce_smoth"}]})


def test_distillmeter_run_trains_it_with_its_own_loss(plugin_run):
    _, out = plugin_run
    rep = protocol.load_report(out / "smooth-s0")
    assert rep.method == "smooth" and rep.labels["loss"] == "ce_smooth"
    assert rep.labels["label_smoothing"] == 0.1
    assert [s.name for s in rep.stages] == ["setup.load", "student.train", "eval.student"]
    train = next(s for s in rep.stages if s.name == "student.train")
    assert train.energy_j["total"] > 0 and train.tokens >= 800
    log = next((out / "smooth-s0" / protocol.ARTIFACTS_DIR).glob("train-*/train.json"))
    parts = json.loads(log.read_text())["last_parts"]
    assert set(parts) == {"ce_smooth"}  # its loss ran, not the baseline's
    # labels alone: no teacher stage counted
    assert rep.upstream == []


def test_the_forecast_plans_it_as_it_ran(plugin_run):
    cfg_path, out = plugin_run
    plan = plan_work(parse_config(yaml.safe_load(cfg_path.read_text())))
    run = next(r for r in plan.runs if r.key == "smooth")
    rep = protocol.load_report(out / "smooth-s0")
    assert run.config_id == rep.config_id and run.run_names == ["smooth-s0"]
    planned = {s.name: s for s in run.stages}
    measured = next(s for s in rep.stages if s.name == "student.train")
    assert planned["student.train"].info["steps"] == measured.info["steps"]
    assert planned["student.train"].info["params"] == measured.info["params"]


def test_estimate_verdict_and_plan_name_it(plugin_run, capsys):
    cfg_path, out = plugin_run
    capsys.readouterr()
    assert main(["estimate", str(cfg_path), "--from", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "smooth" in json.dumps(doc)
    summary = json.loads((out / "summary.json").read_text())
    verdict = summary.get("verdict") or []
    assert any(v.get("method") == "smooth" or "smooth" in v.get("text", "") for v in verdict)
    assert main(["plan", str(out), "--budget-kwh", "1", "--json"]) == 0
    assert "smooth" in capsys.readouterr().out


def test_a_student_that_starts_from_the_baseline_names_it_upstream(plugin, tmp_path,
                                                                   tiny_run_dict):
    data = copy.deepcopy(tiny_run_dict)
    data["methods"] = [{"name": "more", "data": ["labelled"], "loss": "ce_more"},
                       {"name": "baseline", "data": ["labelled"]}]
    cfg_path = tmp_path / "more.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = parse_config(data)
    from distillmeter.pipelines.artifact_plan import plan_students
    from distillmeter.pipelines.config import student_config_id

    assert [r.name for r in plan_students(cfg)] == ["baseline-s0", "more-s0"]  # its start first
    assert student_config_id(cfg, cfg.method("more")) != student_config_id(
        cfg, cfg.method("more").model_copy(update={"loss": "ce"}))
    out = tmp_path / "runs"
    assert main(["run", str(cfg_path), "--out", str(out), "--quiet", "--no-report"]) == 0
    base, more = (protocol.load_report(out / n) for n in ("baseline-s0", "more-s0"))
    named = protocol.read_ledger(out / "more-s0").run_start.upstream
    ref = [u for u in named if u.run_id == base.run_id]
    assert ref and ref[0].stages == ["student.train"]  # the baseline's training, named
    counted = [s for s in more.upstream if s.name == "student.train"]
    assert counted and counted[0].energy_j["total"] > 0  # and its energy counted

    def losses(name: str) -> list[float]:
        log = next((out / name / protocol.ARTIFACTS_DIR).glob("train-*/train.json"))
        return json.loads(log.read_text())["losses"]

    # it starts where the baseline ended (3.05 vs the baseline's last 3.07, recorded), not
    # from a fresh student (the baseline's first: 3.31)
    first, base = losses("more-s0")[0], losses("baseline-s0")
    assert abs(first - base[-1]) < abs(first - base[0]) / 3


# ------------------------------------------------------------------ no branching outside
# A method's kind read outside methods/: its loss compared, its teacher mode or its
# on-policy flag read, its loss, kind or name or data source compared to a literal. Stage
# info read by the cost model (``info.get("kd")``: what a recorded stage did) and its op
# names are work, not a method.
_NAMES = "|".join(sorted({*registry.registered(), *registry.losses(), "online", "cached",
                           "synthetic", "smooth_ce", "ce_smooth"}, key=len, reverse=True))
BRANCHING = [
    re.compile(r"\.loss\s*(==|!=|\bin\b|\bnot in\b)"),
    re.compile(r"\.teacher_mode\b"),
    re.compile(r"\.onpolicy\b|\bhas_onpolicy\b"),
    re.compile(rf"(==|!=)\s*['\"]({_NAMES})['\"]"),
    re.compile(rf"['\"]({_NAMES})['\"]\s*(==|!=)"),
    re.compile(r"['\"](synthetic|labelled)['\"]\s+(not\s+)?in\s+\w+(\.method)?\.data\b"),
]


def branching_lines(root: Path) -> list[str]:
    """``path:line: text`` of each line under ``root`` (outside ``pipelines/methods/``) that
    branches on a method's name or kind."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("pipelines/methods/"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if "info.get(" in code or re.search(r"\bop\s*(==|!=)", code):
                continue  # a recorded stage's info, a cost-model op: work, not a method
            if any(p.search(code) for p in BRANCHING):
                hits.append(f"{rel}:{n}: {line.strip()}")
    return hits


def test_no_code_outside_methods_branches_on_a_method(tmp_path):
    assert branching_lines(SRC) == []
    # the check finds such a branch where there is one
    (tmp_path / "x.py").write_text('if method.loss == "kd":\n    pass\n'
                                   'mode = m.teacher_mode\nif "synthetic" in m.data:\n'
                                   'if m.name == "baseline":\n'
                                   'ok = op != "kd"\n')
    assert len(branching_lines(tmp_path)) == 4
