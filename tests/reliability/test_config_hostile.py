"""The hostile configs of issue 18 (and 17's device that does not exist): each is refused
before any work with one line naming the file, the line and the key, and exit 2. Before
these checks, each one ran (wrongly), hung, or ended in a traceback. A config that passes
stops where work would begin (``_stop_before_work``), so these tests run no pipeline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from distillmeter.cli import main
from distillmeter.errors import UserError
from distillmeter.pipelines.config_file import load_config, parse_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class _WouldWork(Exception):
    """Every check before work passed: the runner is about to plan the teacher."""


@pytest.fixture(autouse=True)
def _stop_before_work(monkeypatch):
    """A config that passed every check stops where work would begin (the runner plans the
    teacher right after preflight, before any directory exists), so a check that fails to
    refuse costs nothing and shows as _WouldWork."""
    import distillmeter.pipelines.runner as runner

    def would_work(*args, **kwargs):
        raise _WouldWork

    monkeypatch.setattr(runner, "plan_teacher", would_work)


def _refused(tmp_path: Path, capsys, text: str) -> str:
    """`distillmeter run` on the config: exit 2, one line, nothing written; the line."""
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err.removeprefix("error: ").rstrip("\n").replace(str(path), "hostile.yaml")


BOMB = "task:\n  params:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))


@pytest.mark.parametrize("text, expected", [
    (BOMB, "hostile.yaml:6: more than 10,000 values once its aliases are expanded (an alias "
           "bomb?); write the values out, or use fewer aliases"),
    ("seeds: 2\nthreads: 1\nseeds: 3\n",
     "hostile.yaml:3: seeds: given twice (lines 1 and 3); YAML would keep the last silently: "
     "remove one"),
    ("training:\n  lr: 0.01\n  lr: 0.02\n",
     "hostile.yaml:3: training.lr: given twice (lines 2 and 3); YAML would keep the last "
     "silently: remove one"),
    ("", "hostile.yaml: the config holds no settings (it is empty or only comments); "
         "`distillmeter run` with no CONFIG runs the built-in default"),
    ("# nothing but a comment\n",
     "hostile.yaml: the config holds no settings (it is empty or only comments); "
     "`distillmeter run` with no CONFIG runs the built-in default"),
    ("task:\n  params: {width: abc, min_digits: 2}\n",
     "hostile.yaml:2: task.params.width: Input should be a valid integer (got 'abc')"),
    ("task:\n  params: {width: null}\n",
     "hostile.yaml:2: task.params.width: Input should be a valid integer (got None)"),
    ("teacher:\n  seed: 18446744073709551616\n",
     "hostile.yaml:2: teacher.seed: Input should be less than or equal to 4294967295 (got "
     "18446744073709551616)"),
    ("training:\n  betas: [1, 2]\n",
     "hostile.yaml:2: training.betas[0]: Input should be less than 1 (got 1); "
     "training.betas[1]: Input should be less than 1 (got 2)"),
    ("meter:\n  devices: maybe\n",
     "hostile.yaml:2: meter.devices: unknown device selector 'maybe': use gpu, cpu, dram or a "
     "device name such as gpu:0 (or 'auto')"),
    ("training:\n  lr: .inf\n",
     "hostile.yaml:2: training.lr: Input should be a finite number (got inf)"),
    ("meter:\n  idle_seconds: .inf\n",
     "hostile.yaml:2: meter.idle_seconds: Input should be a finite number (got inf)"),
    ("threads: 100000\n",
     "hostile.yaml:1: threads: Input should be less than or equal to 1024 (got 100000)"),
    ("seeds: " + "9" * 5000 + "\n",
     "hostile.yaml:1: not valid YAML (an integer of 5000 digits is beyond any config value's "
     "range)"),
    ("task:\n  params:\n    x: " + "[" * 100 + "]" * 100 + "\n",
     "hostile.yaml:3: nested more than 32 levels deep; a config needs a handful"),
    ("methods:\n  - name: kd\n    data: [labelled]\n    loss: kd\n    temperature: .inf\n",
     "hostile.yaml:5: methods[0].temperature: Input should be a finite number (got inf)"),
    ("task:\n  params: {width: 3, min_digit: 2}\n",
     "hostile.yaml:2: task.params: unknown key 'min_digit' (did you mean 'min_digits'?)"),
    ("task:\n  params: {width: -7}\n",
     "hostile.yaml:2: task.params.width: Input should be greater than or equal to 1 (got -7)"),
    ("task:\n  params: {width: 100000}\n",
     "hostile.yaml:2: task.params.width: Input should be less than or equal to 9 (got 100000)"),
    ("task:\n  params: {width: 7, min_digits: 2}\n",
     "hostile.yaml:2: task.params.width: examples of this task are up to 34 tokens (32 "
     "characters + BOS and EOS), longer than teacher.model.arch.max_len (32); lower width or "
     "raise max_len (got 7)"),
    ("task:\n  params: {width: 2, min_digits: 2}\n",
     "hostile.yaml:1: task.n_teacher: the splits ask for 24,384 distinct prompts (n_labelled "
     "+ n_pool + n_test + n_teacher), but task 'arithmetic' with width=2, min_digits=2 has "
     "8,100, and at most half of them (4,050) are drawn; lower the counts or widen the task "
     "(got 20000)"),
    ("task:\n  name: arithmatic\n",
     "hostile.yaml:2: task.name: unknown task 'arithmatic' (did you mean 'arithmetic'? "
     "built-in tasks: arithmetic; for your own data give task.files)"),
    ("carbon:\n  country: UK\n",
     "hostile.yaml:2: carbon.country: no grid intensity for country 'UK' (did you mean 'GB', "
     "United Kingdom?); or give carbon.grid_gco2_per_kwh"),
    ("carbon:\n  country: NO\n",
     "hostile.yaml:2: carbon.country: Input should be a valid string (got False); YAML reads "
     "yes/no/on/off/true/false unquoted as booleans: quote it"),
    ("carbon:\n  grid_gco2_per_kwh: .inf\n",
     "hostile.yaml:2: carbon.grid_gco2_per_kwh: Input should be a finite number (got inf)"),
    ("carbon:\n  pue: .inf\n", "hostile.yaml:2: carbon.pue: Input should be a finite number "
                               "(got inf)"),
    ("carbon:\n  price_per_kwh: .nan\n",
     "hostile.yaml:2: carbon.price_per_kwh: Input should be a finite number (got nan)"),
    ("task:\n  n_teacher: 0\n",
     "hostile.yaml:2: task.n_teacher: teacher.train: true trains the teacher on "
     "task.n_teacher examples: give at least 1 (or teacher.train: false with a trained "
     "checkpoint) (got 0)"),
    ("seeds: true\n", "hostile.yaml:1: seeds: Input should be a valid integer (got True)"),
    ("training:\n  lr: '0.01'\n",
     "hostile.yaml:2: training.lr: Input should be a valid number (got '0.01')"),
])
def test_a_hostile_value_is_one_line_naming_file_line_and_key(tmp_path, capsys, text,
                                                              expected):
    assert _refused(tmp_path, capsys, text) == expected


def test_the_carbon_country_list_is_the_packaged_grid_table(tmp_path, capsys):
    """An unknown code with no close match lists the table's codes (read through the
    accounting's lookup), so the user sees what exists."""
    from distillmeter.accounting import grid_table

    line = _refused(tmp_path, capsys, "carbon:\n  country: XX\n")
    assert line.startswith("hostile.yaml:2: carbon.country: no grid intensity for country 'XX'")
    assert f"known codes: {', '.join(sorted(grid_table()['countries']))};" in line
    for code in ("gb", "GBR", "de"):  # codes in any case, and alpha-3, are accepted
        assert load_config(_write(tmp_path, f"carbon:\n  country: {code}\n")).carbon.country


def test_nesting_past_the_parsers_own_limit_is_one_line(tmp_path, capsys):
    line = _refused(tmp_path, capsys, "x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert line.startswith("hostile.yaml:1: ") and ("nested" in line or "nesting" in line)


def test_a_recursive_alias_is_refused(tmp_path, capsys):
    assert _refused(tmp_path, capsys, "task:\n  params: &p {width: 3, x: *p}\n") == (
        "hostile.yaml:2: alias *p refers to a collection that holds it (a recursive "
        "structure)")


def test_aliases_within_the_bound_still_work(tmp_path):
    """Anchors are a fair way to share a section; what they expand to is what is bounded."""
    cfg = load_config(_write(tmp_path, "teacher:\n  training: &t {lr: 0.003, batch_size: 32}\n"
                                       "training: *t\n"))
    assert cfg.training.lr == cfg.teacher.training.lr == 0.003


def test_exponent_floats_are_numbers(tmp_path):
    """PyYAML reads `1e-3` as a string (YAML 1.1); the strict types would refuse it, and it
    is how learning rates are written."""
    cfg = load_config(_write(tmp_path, "training:\n  lr: 1e-3\n  weight_decay: 1E-2\n"))
    assert cfg.training.lr == 0.001 and cfg.training.weight_decay == 0.01


def test_a_file_too_large_is_refused_without_reading_it_all(tmp_path, capsys):
    line = _refused(tmp_path, capsys, "# " + "x" * (2 << 20) + "\nseeds: 1\n")
    assert line == "hostile.yaml: larger than 1 MiB; a config file is a few KB"


def test_a_secret_in_a_bad_value_is_not_echoed(tmp_path, capsys):
    token = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7"
    line = _refused(tmp_path, capsys, f"device: {token}\n")
    assert token not in line and "<redacted>" in line
    assert line.startswith("hostile.yaml:1: device: Input should be 'auto', 'cpu' or 'cuda'")


def test_a_long_bad_value_is_shortened(tmp_path, capsys):
    line = _refused(tmp_path, capsys, f"device: {'word' * 500}\n")
    assert line.endswith("... (2002 chars))") and len(line) < 200


def test_a_device_the_machine_does_not_have_is_refused_before_any_work(tmp_path, capsys):
    """Issue 17: `meter.devices: [gpu:0]` on a machine without a GPU measured 0 J and
    exited 0. Now preflight's first check names the device and what the machine has."""
    from distillmeter.pipelines.config_host import devices_here

    have, _ = devices_here()
    missing = next(f"gpu:{i}" for i in range(64) if f"gpu:{i}" not in have)
    line = _refused(tmp_path, capsys, f"seeds: 1\nmeter:\n  devices: [cpu, {missing}]\n")
    assert line.startswith(f"hostile.yaml:3: meter.devices: {missing} not found on this "
                           "machine")
    assert f"it has: {', '.join(have)}" in line


def test_device_cuda_without_cuda_names_the_key(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _refused(tmp_path, capsys, "seeds: 1\ndevice: cuda\n") == (
        "hostile.yaml:2: device: cuda, but torch sees no CUDA device (use device: auto or "
        "cpu)")


def test_an_unknown_country_in_the_environment_is_refused_before_any_work(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISTILLMETER_COUNTRY", "UK")
    line = _refused(tmp_path, capsys, "seeds: 1\n")
    assert line == ("$DISTILLMETER_COUNTRY: no grid intensity for country 'UK' (did you mean "
                    "'GB', United Kingdom?); or give carbon.grid_gco2_per_kwh")


def test_estimate_and_plan_candidates_read_configs_the_same_way(tmp_path, capsys):
    """`estimate` loads a config and `plan --candidates` a sweep whose base is a config:
    both go through the same bounded reading and checks, before reading any run."""
    bad = _write(tmp_path, "training:\n  lr: .inf\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(["estimate", str(bad), "--from", str(runs)]) == 2
    assert capsys.readouterr().err == f"error: {bad}:2: training.lr: Input should be a " \
                                      "finite number (got inf)\n"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": bad.name, "grid": {"training.lr": [0.01]}}))
    assert main(["plan", str(runs), "--budget-kwh", "1", "--candidates", str(sweep)]) == 2
    assert "training.lr: Input should be a finite number" in capsys.readouterr().err
    sweep.write_text("base: {seeds: 1}\ngrid:\n  task.params.min_digit: [1]\n")
    assert main(["plan", str(runs), "--budget-kwh", "1", "--candidates", str(sweep)]) == 2
    assert "has no param 'min_digit' (did you mean 'min_digits'?)" in capsys.readouterr().err


def test_the_resolved_default_is_finite_everywhere():
    """The strict base refuses inf/nan in every float of every section (a section that
    forgot a bound still gets this one)."""
    from distillmeter.pipelines.config import RunConfig

    def floats(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from floats(v)
        elif isinstance(node, list):
            for v in node:
                yield from floats(v)
        elif isinstance(node, float):
            yield node

    assert all(math.isfinite(x) for x in floats(RunConfig().resolved()))
    with pytest.raises(UserError, match="distributed.timeout_s: Input should be a finite"):
        parse_config({"distributed": {"timeout_s": math.inf}})
