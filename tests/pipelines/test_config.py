"""Config validation: typos and bad values stop at once with a message naming them."""

from __future__ import annotations

import pytest
import yaml

from distillmeter.errors import UserError
from distillmeter.pipelines.config import (
    RunConfig,
    builtin_default,
    content_hash,
    logits_key,
    student_config_id,
    teacher_key,
)
from distillmeter.pipelines.config_file import dump_config, load_config, parse_config


def _write(tmp_path, text: str):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


def test_typo_in_a_key_names_it_its_line_and_the_key_meant(tmp_path):
    path = _write(tmp_path, """\
methods:
  - name: baseline
    data: [labelled]
  - name: kd
    data: [labelled]
    loss: kd
    divergance: jsd
""")
    with pytest.raises(UserError) as exc:
        load_config(path)
    assert str(exc.value) == (f"{path}:7: methods[1]: unknown key 'divergance' "
                              "(did you mean 'divergence'?)")


def test_nested_typo_and_bad_value_are_both_reported(tmp_path):
    path = _write(tmp_path, "training:\n  lr: -1\n  batch_sise: 3\n")
    with pytest.raises(UserError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert f"{path}:2: training.lr: Input should be greater than 0 (got -1)" in msg
    assert f"{path}:3: training: unknown key 'batch_sise' (did you mean 'batch_size'?)" in msg


def test_bad_enum_value_names_the_path(tmp_path):
    path = _write(tmp_path, "methods:\n  - name: a\n    data: [labeled]\n")
    with pytest.raises(UserError, match=r"methods\[0\]\.data\[0\]: Input should be 'labelled' "
                       r"or 'synthetic' \(got 'labeled'\)"):
        load_config(path)


def test_unknown_top_level_key_lists_the_sections():
    with pytest.raises(UserError, match="unknown key 'zzz' \\(known keys: task, teacher"):
        parse_config({"zzz": 1}, "x.yaml")


def test_kd_settings_without_kd_loss_are_refused():
    with pytest.raises(UserError, match=r"methods\[0\]\.alpha: alpha only applies with loss: kd"):
        parse_config({"methods": [{"name": "b", "data": ["labelled"], "alpha": 0.2}]}, "x")


@pytest.mark.parametrize("data, fragment", [
    ({"methods": [{"name": "a", "data": ["labelled"]}, {"name": "a", "data": ["labelled"]}]},
     "method names must be unique; repeated: a"),
    ({"methods": [{"name": "teacher", "data": ["labelled"]}]}, "'teacher' is reserved"),
    ({"student": {"model": {}}}, "give exactly one of 'arch'"),
    ({"student": {"model": {"arch": {"d_model": 30, "n_layers": 1, "n_heads": 4,
                                     "d_ff": 64}}}}, "must be divisible by n_heads"),
    ({"teacher": {"train": False}}, "train: false needs model.path"),
    ({"seeds": 0}, "seeds: Input should be greater than or equal to 1"),
    ({"methods": []}, "methods: List should have at least 1 item"),
])
def test_bad_values(data, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        parse_config(data, "x.yaml")


def test_not_yaml_and_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"my.yaml:3: not valid YAML"):
        load_config(_write(tmp_path, "task:\n  name: [unclosed\n"))
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_safe_load_refuses_python_objects(tmp_path):
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(_write(tmp_path, "task: !!python/object/apply:os.system ['echo hi']\n"))


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "{}\n", "---\n"])
def test_a_config_with_no_settings_is_refused_not_run_as_the_default(tmp_path, text):
    with pytest.raises(UserError, match="holds no settings.*with no CONFIG runs the built-in"):
        load_config(_write(tmp_path, text))


def test_resolved_config_writes_every_default_and_loads_back(tmp_path):
    cfg = parse_config({"seeds": 2, "methods": [{"name": "kd", "data": ["labelled"],
                                                 "loss": "kd", "alpha": 0.3}]})
    text = dump_config(cfg)
    data = yaml.safe_load(text)
    assert data["training"]["warmup_frac"] == 0.07  # a default, written out
    assert data["methods"][0]["divergence"] == "forward_kl"
    assert parse_config(data) == cfg
    path = _write(tmp_path, text)
    assert load_config(path) == cfg


def test_packaged_default_yaml_is_the_builtin_default():
    from importlib.resources import files

    text = files("distillmeter").joinpath("configs/default.yaml").read_text()
    assert parse_config(yaml.safe_load(text), "default.yaml") == builtin_default()
    # a config file that names no budget axis trains training.token_budget alone
    assert RunConfig().budgets is None and builtin_default().budgets == [120_000, 240_000,
                                                                           720_000]


def test_default_models_match_the_components_defaults():
    from distillmeter.models import (
        DEFAULT_GENERATION,
        DEFAULT_STUDENT_SPEC,
        DEFAULT_STUDENT_TRAINING,
        DEFAULT_TEACHER_SPEC,
        DEFAULT_TEACHER_TRAINING,
    )
    from distillmeter.tasks import DEFAULT_TASK_PARAMS

    cfg = RunConfig()
    assert cfg.teacher.model.arch.model_dump() == DEFAULT_TEACHER_SPEC.model_dump()
    assert cfg.student.model.arch.model_dump() == DEFAULT_STUDENT_SPEC.model_dump()
    for ours, theirs in ((cfg.teacher.training, DEFAULT_TEACHER_TRAINING),
                         (cfg.training, DEFAULT_STUDENT_TRAINING)):
        for key in ("batch_size", "lr", "min_lr_ratio", "weight_decay", "betas", "grad_clip"):
            assert getattr(ours, key) == theirs[key], key
        # the budget is in tokens (~17 a sequence), the components' in steps
        assert ours.token_budget == pytest.approx(theirs["steps"] * theirs["batch_size"] * 17.2,
                                                  rel=0.01)
        assert ours.warmup_frac == pytest.approx(theirs["warmup_steps"] / theirs["steps"],
                                                 abs=0.01)
    assert cfg.generation.max_new_tokens == DEFAULT_GENERATION["max_new_tokens"]
    assert cfg.generation.batch_size == DEFAULT_GENERATION["batch_size"]
    t = cfg.task
    assert {"name": t.name, "n_labelled": t.n_labelled, "n_pool": t.n_pool,
            "n_test": t.n_test, "n_teacher": t.n_teacher, **t.params} == DEFAULT_TASK_PARAMS


def test_hashes_follow_what_produces_each_artifact():
    base = RunConfig()
    kd = base.method("kd")
    t0 = content_hash(teacher_key(base))
    # the student's training settings do not touch the teacher's work
    other = parse_config({"training": {"lr": 1e-3}})
    assert content_hash(teacher_key(other)) == t0
    assert content_hash(logits_key(other, other.method("kd"))) == content_hash(
        logits_key(base, kd))
    assert student_config_id(other, other.method("kd")) != student_config_id(base, kd)
    # the teacher's seed does
    changed = parse_config({"teacher": {"seed": 1}})
    assert content_hash(teacher_key(changed)) != t0
    assert content_hash(logits_key(changed, changed.method("kd"))) != content_hash(
        logits_key(base, kd))
    # the cache size changes the cache, not the teacher
    k16 = parse_config({"logits": {"top_k": 16}})
    assert content_hash(teacher_key(k16)) == t0
    assert content_hash(logits_key(k16, k16.method("kd"))) != content_hash(logits_key(base, kd))
