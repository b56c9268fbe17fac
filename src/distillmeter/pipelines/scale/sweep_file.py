"""The sweep file: a base config, a grid of overrides, seeds; validated strictly, expanded.

```yaml
base: tiny.yaml                  # a config file (relative to this file), a packaged config's
                                 # name, or an inline mapping
grid:                            # dotted config keys -> lists of values: the product is run
  training.lr: [0.003, 0.01]
  student.model.arch.d_model: [32, 48]
  methods.2.alpha: [0.3, 0.7]    # list items by index
seeds: 2                         # seeds 0..1 (or a list: [0, 3]); default: the base's seeds
ray:                             # for `--ray`: resources each task asks for
  num_gpus: auto                 # auto: 1 when the config runs on CUDA and the cluster has
  num_cpus: 1                    # GPUs, else 0
```

Every key, every dotted path and every expanded config is checked before any work; a
mistake is a UserError naming the file, line and key. Each grid point becomes a directory
named by its overrides and their hash (``lr=0.003,d_model=32-1f2e3d``), stable across edits
of the grid, so ``--resume`` finds it again. Pure: nothing here touches files but the
sweep file and its base, or imports torch.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from distillmeter.errors import UserError
from distillmeter.pipelines.config import RunConfig, TaskConfig, content_hash
from distillmeter.pipelines.config_file import (
    load_config,
    packaged_config,
    parse_config,
    read_yaml_file,
)

TOP_KEYS = ("base", "grid", "seeds", "ray")
RAY_KEYS = ("num_gpus", "num_cpus")
TEACHERS_DIR = "teachers"


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of the grid: its directory name, overrides and config."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


@dataclass(frozen=True)
class RaySettings:
    num_gpus: float | None = None  # None: auto
    num_cpus: float = 1.0


@dataclass
class Sweep:
    """A validated sweep: ``points`` x ``seeds`` jobs."""

    source: str
    grid: dict[str, list[Any]]
    seeds: list[int]
    points: list[SweepPoint]
    ray: RaySettings = field(default_factory=RaySettings)

    def jobs(self) -> list[tuple[SweepPoint, int]]:
        """Every (point, seed), point-major."""
        return [(p, s) for p in self.points for s in self.seeds]


# --------------------------------------------------------------------------- paths


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool, bool]:
    """(the pydantic model inside an annotation, is it a list of them, is it a free dict)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False, False
    if origin is dict or annotation is dict:
        return None, False, True
    if origin is list:
        inner, _, free = _inner_model(typing.get_args(annotation)[0])
        return inner, inner is not None, free
    for arg in typing.get_args(annotation):  # Optional[...], unions
        found = _inner_model(arg)
        if found[0] is not None or found[2]:
            return found
    return None, False, False


def check_path(path: str, resolved: dict[str, Any]) -> str | None:
    """Why ``path`` is not a config key (None when it is). Follows the config's schema, so
    a section that is null in the base (``task.files``) can still be set; list items go
    by index within the base's list; a free mapping (``task.params``) takes any key."""
    model: type[BaseModel] | None = RunConfig
    value: Any = resolved
    parts = path.split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        if model is TaskConfig and part == "params" and i + 1 < len(parts):
            problem = _task_param(path, parts[i + 1], resolved)
            if problem or i + 2 == len(parts):
                return problem
        if model is None:
            return None  # inside a free mapping
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            where = ".".join(parts[:i]) or "the config"
            hint = f" (did you mean '{close[0]}'?)" if close else (
                f" (keys: {', '.join(fields)})")
            return f"'{path}': {where} has no key '{part}'{hint}"
        inner, is_list, free = _inner_model(fields[part].annotation)
        value = value.get(part) if isinstance(value, dict) else None
        if is_list and i + 1 < len(parts):
            idx = parts[i + 1]
            size = len(value) if isinstance(value, list) else 0
            if not idx.isdigit() or int(idx) >= size:
                return (f"'{path}': {'.'.join(parts[:i + 1])} is a list of {size} in the base; "
                        f"'{idx}' is not an index of it")
            value = value[int(idx)]
            i += 1
        elif inner is None and not free and i + 1 < len(parts):
            return f"'{path}': '{'.'.join(parts[:i + 1])}' is a value, not a section"
        model = inner if not free else None
        i += 1
    return None


def _task_param(path: str, key: str, resolved: dict[str, Any]) -> str | None:
    """Why ``key`` is not a param of the base's built-in task (None when it is, or when the
    task reads files: its params are then refused as a whole when the point is checked)."""
    from distillmeter.tasks import TASK_PARAMS

    task = resolved.get("task") or {}
    schema = TASK_PARAMS.get(task.get("name")) if task.get("files") is None else None
    if schema is None or key in schema.model_fields:
        return None
    known = list(schema.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (keys: {', '.join(known)})"
    return f"'{path}': task {task.get('name')!r} has no param '{key}'{hint}"


def apply_override(data: dict[str, Any], resolved: dict[str, Any], path: str,
                   value: Any) -> None:
    """Set ``path`` in ``data`` (the config as written). A section the file leaves out is
    first copied from the resolved base, so an override changes one key of the config
    that would have run, not a section rebuilt from scratch."""
    node: Any = data
    res: Any = resolved
    parts = path.split(".")
    for part in parts[:-1]:
        key: Any = int(part) if isinstance(node, list) else part
        res = (res[key] if isinstance(res, list) and key < len(res)
               else res.get(key) if isinstance(res, dict) else None)
        if isinstance(node, dict) and node.get(key) is None:
            node[key] = copy.deepcopy(res) if isinstance(res, (dict, list)) else {}
        node = node[key]
    last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    node[last] = copy.deepcopy(value)


# --------------------------------------------------------------------------- expansion


def _short_keys(paths: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each path that still tells it apart from the others."""
    out = {}
    for p in paths:
        parts = p.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if not cand.isdigit() and sum(q == cand or q.endswith("." + cand)
                                          for q in paths) == 1:
                out[p] = cand
                break
        else:
            out[p] = p
    return out


def point_name(overrides: dict[str, Any]) -> str:
    """``lr=0.003,d_model=32-1f2e3d``: readable, and unique by the hash of the overrides."""
    if not overrides:
        return "base"
    short = _short_keys(list(overrides))
    words = []
    for k, v in overrides.items():
        text = v if isinstance(v, (str, int, float, bool)) or v is None else content_hash(v, 6)
        words.append(f"{short[k]}={text}")
    slug = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", ",".join(words))[:60].strip("_.")
    return f"{slug}-{content_hash(overrides, 6)}"


def expand(base: dict[str, Any], grid: dict[str, list[Any]], seeds: list[int],
           source: str = "sweep") -> list[SweepPoint]:
    """Every combination of the grid's values applied to ``base`` (the config as written),
    each validated as a RunConfig (``seeds`` set so that every listed seed exists)."""
    resolved = parse_config(copy.deepcopy(base), f"{source}: base").resolved()
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        data = copy.deepcopy(base)
        for k, v in overrides.items():
            apply_override(data, resolved, k, v)
        data["seeds"] = max(seeds) + 1
        name = point_name(overrides)
        cfg = parse_config(data, f"{source}: grid point {name}")
        points.append(SweepPoint(name, overrides, cfg))
    return points


# --------------------------------------------------------------------------- the file


def _line(root: yaml.Node | None, *path: str) -> str:
    node = root
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            return ""
        hit = next(((k, v) for k, v in node.value if k.value == part), None)
        if hit is None:
            return ""
        node = hit[1] if part != path[-1] else hit[0]
    return f":{node.start_mark.line + 1}" if node is not None else ""


def _unknown(key: str, known: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
    return f"{where}unknown key '{key}'{hint}"


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        raise UserError(f"{where}: seeds must be a count or a list of seeds, not {value!r}")
    if isinstance(value, int) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(
            s, bool) and s >= 0 for s in value) and len(set(value)) == len(value):
        return list(value)
    raise UserError(f"{where}: seeds must be a count >= 1 or a list of distinct seeds >= 0, "
                    f"got {value!r}")


def _ray(value: Any, where: str) -> RaySettings:
    if value is None:
        return RaySettings()
    if not isinstance(value, dict):
        raise UserError(f"{where}: ray must be a mapping (num_gpus, num_cpus)")
    for k in value:
        if k not in RAY_KEYS:
            raise UserError(_unknown(k, RAY_KEYS, f"{where}: ray: "))
    gpus, cpus = value.get("num_gpus", "auto"), value.get("num_cpus", 1)
    for name, v in (("num_gpus", gpus), ("num_cpus", cpus)):
        if not (v == "auto" and name == "num_gpus") and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise UserError(f"{where}: ray.{name} must be a number >= 0"
                            f"{' or auto' if name == 'num_gpus' else ''}, got {v!r}")
    return RaySettings(None if gpus == "auto" else float(gpus), float(cpus))


def parse_sweep(data: Any, source: str = "sweep", root: yaml.Node | None = None,
                base_dir: Path | None = None) -> Sweep:
    """Validate sweep data (as read from YAML) and expand it."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a sweep is a mapping with base, grid, seeds (and ray)")
    for k in data:
        if k not in TOP_KEYS:
            raise UserError(_unknown(k, TOP_KEYS, f"{source}{_line(root, str(k))}: "))
    base_value = data.get("base", {})
    if isinstance(base_value, str):
        path = Path(base_value)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        if not path.exists():
            path = packaged_config(base_value) or path  # a packaged config's name
        load_config(path)  # validated, errors naming its own file and line
        raw, _ = read_yaml_file(path, "config file")  # the same bounded reading
        base = raw if isinstance(raw, dict) else {}
    elif isinstance(base_value, dict) or base_value is None:
        base = dict(base_value or {})
        parse_config(copy.deepcopy(base), f"{source}: base")
    else:
        raise UserError(f"{source}{_line(root, 'base')}: base must be a config file's path "
                        "or a mapping (an inline config)")
    resolved = parse_config(copy.deepcopy(base), f"{source}: base").resolved()
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise UserError(f"{source}{_line(root, 'grid')}: grid must map dotted config keys "
                        "to lists of values")
    for key, values in grid.items():
        where = f"{source}{_line(root, 'grid', str(key))}: grid: "
        if not isinstance(key, str):
            raise UserError(f"{where}{key!r} is not a dotted config key")
        if key == "seeds":
            raise UserError(f"{where}'seeds' goes at the top level of the sweep, not in grid")
        problem = check_path(key, resolved)
        if problem:
            raise UserError(where + problem)
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}'{key}' must be a non-empty list of values "
                            f"(got {values!r}); a list-valued key takes a list of lists")
    seeds = _seeds(data["seeds"], f"{source}{_line(root, 'seeds')}") if "seeds" in data \
        else list(range(RunConfig.model_validate(base).seeds))
    settings = _ray(data.get("ray"), f"{source}{_line(root, 'ray')}")
    points = expand(base, grid, seeds, source)
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: grid: two points have the same values (a value listed "
                        "twice?)")
    return Sweep(source, dict(grid), seeds, points, settings)


def load_sweep(path: str | Path) -> Sweep:
    """Read (within the bounds of ``config_yaml``), validate and expand a sweep file."""
    path = Path(path)
    data, root = read_yaml_file(path, "sweep file")
    return parse_sweep(data, str(path), root, path.parent)
