"""log_report against a real MLflow file store in tmp_path, fed the recorded H100 run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distillmeter.accounting import account, write_report
from distillmeter.errors import UserError
from distillmeter.integrations.mlflow import report_metrics, safe_name

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed "
                             "(pip install 'distillmeter[mlflow]')")

from distillmeter.integrations.mlflow import log_report  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local file store; MLflow 3 wants an explicit opt-in for it."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    yield mlflow.tracking.MlflowClient(uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    rd = tmp_path / "run"
    shutil.copytree(FIXTURE, rd)
    (rd / "config.yaml").write_text("training:\n  lr: 0.003\n  batch_size: 32\n"
                                    "methods:\n- name: kd\n")
    write_report(rd, account(rd))
    return rd


def _artifacts(client, run_id: str) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run_id, "distillmeter"))


def test_logs_totals_stages_params_and_artifacts(store, run_dir, tmp_path):
    html = tmp_path / "page.html"
    html.write_text("<html><body>report</body></html>")
    run_id = log_report(run_dir, html_path=html)
    assert mlflow.active_run() is None  # it started a run for us, and ended it
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED"
    report = account(run_dir)
    m = run.data.metrics
    assert m["dm.total.energy_j"] == pytest.approx(report.totals.energy_j)
    assert m["dm.total.unattributed_j"] == pytest.approx(report.totals.unattributed_j)
    for side, j in report.totals.by_side.items():
        assert m[f"dm.side.{side}_j"] == pytest.approx(j)
    for st in report.stages:
        assert m[f"dm.stage.{st.name}.energy_j"] == pytest.approx(
            sum(s.energy_j["total"] for s in report.stages if s.name == st.name))
        assert m[f"dm.stage.{st.name}.seconds"] == pytest.approx(
            sum(s.seconds for s in report.stages if s.name == st.name))
    p = run.data.params
    assert p["dm.run_id"] == report.run_id
    assert p["dm.source.gpu_0"] == "nvml_counter"  # ":" is not a safe name character
    assert p["dm.config.training.lr"] == "0.003"
    assert p["dm.config.methods"] == json.dumps([{"name": "kd"}])
    assert run.data.tags["distillmeter.run_id"] == report.run_id
    assert _artifacts(store, run_id) == ["distillmeter/config.yaml", "distillmeter/page.html",
                                         "distillmeter/report.json"]
    logged = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="distillmeter/report.json", dst_path=str(tmp_path / "dl")))
    assert json.loads(logged.read_text())["totals"]["energy_j"] == pytest.approx(
        report.totals.energy_j)


def test_logs_into_the_active_run_and_leaves_it_open(store, run_dir):
    with mlflow.start_run() as active:
        mlflow.log_param("user_param", "kept")
        run_id = log_report(run_dir, raw=True)
        assert run_id == active.info.run_id
        assert mlflow.active_run() is not None
    run = store.get_run(run_id)
    assert run.data.params["user_param"] == "kept"
    assert "dm.total.kwh" in run.data.metrics
    assert _artifacts(store, run_id) == ["distillmeter/config.yaml",
                                         "distillmeter/ledger.jsonl",
                                         "distillmeter/report.json",
                                         "distillmeter/trace.csv"]


def test_unaccounted_run_dir_is_accounted_without_writing(store, tmp_path):
    rd = tmp_path / "raw"
    shutil.copytree(FIXTURE, rd)
    run_id = log_report(rd)
    assert not (rd / "report.json").exists()
    assert store.get_run(run_id).data.metrics["dm.total.energy_j"] > 0


def test_mistakes_are_user_errors(store, tmp_path, run_dir):
    with pytest.raises(UserError, match="no such run directory"):
        log_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run directory"):
        log_report(tmp_path / "empty")
    with pytest.raises(UserError, match="no such HTML report"):
        log_report(run_dir, html_path=tmp_path / "nope.html")


def test_metric_names_are_safe():
    assert safe_name("dm.quality.acc,none (mmlu)") == "dm.quality.acc_none _mmlu_"
    report = account(FIXTURE)
    names = report_metrics(report)
    assert all(safe_name(n) == n for n in names)
    for st in report.stages:  # J/token only where the stage counted tokens
        assert (f"dm.stage.{st.name}.j_per_token" in names) == (st.tokens > 0)
