"""Every key of the resolved default config, and of the packaged onpolicy config, set to each
of nine wrong values (a wrong type, negative, zero, huge, inf, nan, an empty string, an
empty list, null), as issue 18's campaign did: each is refused by `distillmeter run CONFIG`
with exit 2 and one line naming the file, the key's line and the key, before anything is
written to --out, or it is a legitimately valid value listed in VALID with the reason.

Validation only: a refused value stops in `load_config`, and a value accepted reaches
`run_all`, which the test replaces by one that stops there (nothing runs, nothing is
written), so the whole campaign is a few seconds of parsing."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import yaml

from distillmeter.cli import main
from distillmeter.pipelines.config import builtin_default
from distillmeter.pipelines.config_file import load_config

BASES: dict[str, dict[str, Any]] = {"default": builtin_default().resolved(),
                                    "onpolicy": load_config("onpolicy").resolved()}

WRONG: dict[str, Any] = {"wrong type": "abc", "negative": -7, "zero": 0, "huge": 10**18,
                         "inf": math.inf, "nan": math.nan, "empty string": "",
                         "empty list": [], "null": None}

# (key, wrong value) -> why it is a legitimate setting; in both configs unless the key
# names a method (methods[i] differ between them: see _VALID_BY_BASE).
_ZERO_TRAINING = {
    "min_lr_ratio": "the schedule decays to 0",
    "warmup_frac": "no warmup",
    "weight_decay": "no weight decay",
    "betas[0]": "Adam without momentum (RMSProp's update)",
    "betas[1]": "no averaging of squared gradients: unusual, and a valid Adam rate",
}
VALID: dict[tuple[str, str], str] = {
    **{(f"{side}.{key}", "zero"): why for side in ("teacher.training", "training")
       for key, why in _ZERO_TRAINING.items()},
    **{(f"{side}.grad_clip", value): "no clipping (a norm no gradient reaches, or null)"
       for side in ("teacher.training", "training") for value in ("huge", "null")},
    ("generation.temperature", "zero"): "greedy decoding (the default 0.0, as an integer)",
    ("eval.lm_eval.num_fewshot", "zero"): "zero-shot evaluation",
    ("eval.lm_eval.metric", "wrong type"): "a metric's name is the harness's: only its "
                                           "results say which exist",
    ("eval.lm_eval.include_path", "wrong type"): "a folder read only with backend: lm_eval, "
                                                 "checked then before any work (config_host)",
    ("meter.idle_seconds", "zero"): "no idle measurement (docs/energy.md)",
    ("carbon.grid_gco2_per_kwh", "zero"): "a zero-carbon supply (a contract, own solar)",
    ("carbon.price_per_kwh", "zero"): "free electricity",
}
_VALID_BY_BASE: dict[str, dict[tuple[str, str], str]] = {
    "default": {("methods[2].alpha", "zero"): "kd with alpha 0: the KD term alone",
                ("budgets", "null"): "no budget axis: training.token_budget alone"},
    "onpolicy": {("methods[1].alpha", "zero"): "kd with alpha 0: the KD term alone",
                 ("methods[2].sample_temperature", "zero"): "greedy on-policy samples"},
}
# Valid for the config's keys alone; a rule across sections may refuse it (the default's
# synthetic methods need a prompt pool), and then the refusal must be as good as any.
MAY_BE_REFUSED: dict[tuple[str, str, str], str] = {
    ("default", "task.n_pool", "zero"): "no prompt pool: valid for methods that use none",
}


def _keys(node: Any, loc: tuple = ()) -> list[tuple]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        out.append(loc + (k,))
        out.extend(_keys(v, loc + (k,)))
    return out


def _name(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _get(data: Any, loc: tuple) -> Any:
    for part in loc:
        data = data[part]
    return data


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when PyYAML has it


def _dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


def _lines(text: str) -> dict[tuple, int]:
    """The 1-based line of every key (and list item) of a YAML text, by PyYAML's composer.
    A wrong value is a scalar or ``[]``, written on its key's line, so the lines of the
    unmutated config are the mutated ones' too."""
    out: dict[tuple, int] = {}
    todo = [(yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), ())]
    while todo:
        node, loc = todo.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[loc + (key.value,)] = key.start_mark.line + 1
                todo.append((value, loc + (key.value,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[loc + (i,)] = item.start_mark.line + 1
                todo.append((item, loc + (i,)))
    return out


LINES = {base: _lines(_dump(data)) for base, data in BASES.items()}


def _mutations(base: str, loc: tuple) -> list[tuple[str, Any]]:
    original = _get(BASES[base], loc)
    out = []
    for what, value in WRONG.items():
        if what == "wrong type" and isinstance(original, str):
            value = 12345
        if value == original and type(value) is type(original):
            continue  # the key holds it already (a seed of 0, a null path)
        out.append((what, value))
    return out


CASES = [(base, loc) for base in BASES for loc in _keys(BASES[base])]


class _WouldRun(Exception):
    """The config passed validation: `distillmeter run` would start working."""


def _would_run(*args, **kwargs):
    raise _WouldRun


@pytest.mark.parametrize("base, loc", CASES, ids=[f"{b}:{_name(loc)}" for b, loc in CASES])
def test_every_wrong_value_is_refused_before_work_or_is_valid(tmp_path, capsys, monkeypatch,
                                                              base, loc):
    import distillmeter.pipelines.runner as runner

    monkeypatch.setattr(runner, "run_all", _would_run)
    key = _name(loc)
    valid = {**VALID, **_VALID_BY_BASE[base]}
    problems = []
    for what, value in _mutations(base, loc):
        data = copy.deepcopy(BASES[base])
        parent = _get(data, loc[:-1])
        parent[loc[-1]] = value
        path = tmp_path / f"{what.replace(' ', '_')}.yaml"
        text = _dump(data)
        path.write_text(text, encoding="utf-8")
        out = tmp_path / f"out-{what.replace(' ', '_')}"
        try:  # a value accepted reaches run_all, which stops it there: nothing runs
            rc = main(["run", str(path), "--out", str(out), "--quiet"])
        except _WouldRun:
            rc = None
        err = capsys.readouterr().err
        if (key, what) in valid:
            if rc is not None:
                problems.append(f"{what} ({value!r}): listed as valid ({valid[key, what]}) "
                                f"but refused: {err.strip()}")
            continue
        if rc is None:
            if (base, key, what) not in MAY_BE_REFUSED:
                problems.append(f"{what} ({value!r}): accepted")
            continue
        expected = f"error: {path}:{LINES[base][loc]}: {key}"
        if rc != 2 or "Traceback" in err or err.count("\n") != 1 or \
                not err.startswith(expected + ":"):
            problems.append(f"{what} ({value!r}): rc {rc}, stderr {err!r} (expected one line "
                            f"starting {expected!r})")
        if out.exists():
            problems.append(f"{what} ({value!r}): {out} was created")
    assert not problems, f"{base} config, {key}:\n  " + "\n  ".join(problems)


def test_the_allow_list_names_only_real_keys_and_values():
    """Every entry of VALID is a mutation this test makes (a renamed key would otherwise
    leave a stale entry that silently allows nothing)."""
    made = {(base, _name(loc), what) for base, loc in CASES for what, _ in _mutations(base, loc)}
    for base in BASES:
        for key, what in {**VALID, **_VALID_BY_BASE[base]}:
            assert (base, key, what) in made, (base, key, what)
    assert set(MAY_BE_REFUSED) <= made
