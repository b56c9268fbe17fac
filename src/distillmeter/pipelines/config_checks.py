"""The config checks that need more than one field's bounds: the task's own params (by its
schema in ``tasks.TASK_PARAMS``) and whether its examples fit the models, the carbon country
(against the packaged grid table) and the meter's device selectors. Each raises when the
config loads, naming the key (and, for a config read from a file, its line); what only the
machine that runs it can tell is ``config_host``'s."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from distillmeter.configbase import error_at
from distillmeter.errors import UserError

_SPLITS = ("n_labelled", "n_pool", "n_test", "n_teacher")


def _prefixed(exc: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    details = [InitErrorDetails(type=e["type"], loc=prefix + tuple(e["loc"]),
                                input=e.get("input"), **({"ctx": e["ctx"]} if "ctx" in e
                                                           else {}))
               for e in exc.errors()]
    return ValidationError.from_exception_data("config", details)


def where(origin: dict[str, Any], loc: tuple[str | int, ...]) -> str:
    """``file:line: key`` for a key path, from where a config was read (``origin``: its
    ``source`` and the ``lines`` of its keys); ``key`` alone for a config made in code."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    source, lines = origin.get("source"), origin.get("lines", {})
    if source is None:
        return key
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    return f"{source}{f':{line}' if line else ''}: {key}"


def check_task(name: str, params: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """A built-in task's name and params (returned with its schema's defaults written out),
    and its splits (``sizes``: ``n_labelled``, ...) within the distinct prompts it can
    draw. Locations are relative to ``task``."""
    from distillmeter.tasks import TASK_PARAMS, unknown_task

    problem = unknown_task(name)
    if problem:
        raise error_at(("name",), problem, name)
    try:
        checked = TASK_PARAMS[name].model_validate(params)
    except ValidationError as exc:
        raise _prefixed(exc, ("params",)) from None
    total, distinct = sum(sizes.values()), checked.distinct_prompts()
    if total > distinct // 2:
        largest = max(sizes, key=lambda k: sizes[k])
        shown = ", ".join(f"{k}={v:,}" for k, v in checked.model_dump().items())
        raise error_at((largest,), (
            f"the splits ask for {total:,} distinct prompts ({' + '.join(sizes)}), but task "
            f"{name!r} with {shown} has {distinct:,}, and at most half of them "
            f"({distinct // 2:,}) are drawn; lower the counts or widen the task"),
            sizes[largest])
    return checked.model_dump()


def check_task_fits(name: str, params: dict[str, Any], max_lens: dict[str, int]) -> None:
    """A built-in task's longest example (BOS and EOS included) fits each built-in model's
    ``max_len`` (``max_lens``: ``{"teacher": 32, ...}``; a checkpoint's tokenizer and
    length are known only when it is read). The location is the RunConfig's."""
    from distillmeter.tasks import TASK_PARAMS

    checked = TASK_PARAMS[name].model_validate(params)
    longest = checked.longest_example() + 2
    for role, limit in max_lens.items():
        if longest > limit:
            key = checked.length_key
            raise error_at(("task", "params", key), (
                f"examples of this task are up to {longest} tokens ({longest - 2} characters "
                f"+ BOS and EOS), longer than {role}.model.arch.max_len ({limit}); lower "
                f"{key} or raise max_len"), params.get(key))


def check_devices(value: str | list[str]) -> str | list[str]:
    """``meter.devices``: ``auto`` or selectors the meter knows (``gpu``, ``cpu:0``, ...)."""
    from distillmeter.energy.sensors import parse_device_selection

    empty = not value.strip() if isinstance(value, str) else not value
    if empty:
        raise ValueError("name at least one device (gpu, cpu, dram or a device such as "
                         "gpu:0), or auto")
    parse_device_selection(value)  # ValueError naming the selector it does not know
    return value


def _initials(name: str) -> str:
    return "".join(w[0] for w in re.findall(r"[A-Za-z]+", name.split("(")[0])).upper()


def check_country(value: str) -> str:
    """``carbon.country``: a code of the packaged grid table (ISO alpha-2, or alpha-3), read
    through accounting's own lookup; close matches are named (``UK``: ``GB``)."""
    from distillmeter.accounting.carbon import grid_intensity, grid_table

    if not value.strip():
        raise ValueError("an empty country code; give one (e.g. US, DE, FR) or null")
    try:
        grid_intensity(None, value)
        return value
    except UserError:
        pass
    countries = grid_table()["countries"]
    key = value.strip().upper()
    close = [code for code, row in countries.items()
             if key in (_initials(row["name"]), row["name"].upper())]
    if not close:
        names = {row["name"].upper(): code for code, row in countries.items()}
        near = difflib.get_close_matches(key, list(names), n=2, cutoff=0.75)
        close = [names[n] for n in near] or difflib.get_close_matches(
            key, [*countries, *(r.get("iso3", "") for r in countries.values())], n=2,
            cutoff=0.67)
    hint = ""
    if close:
        hint = " (did you mean " + " or ".join(
            f"'{c}', {countries[c]['name']}" if c in countries else f"'{c}'"
            for c in close) + "?)"
    known = "" if close else f"; known codes: {', '.join(sorted(countries))}"
    raise ValueError(f"no grid intensity for country {value!r}{hint}{known}; or give "
                     "carbon.grid_gco2_per_kwh")
