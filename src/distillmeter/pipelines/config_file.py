"""A run config from a YAML file: read with the safe loader, validated, and every mistake
named with its key path and line (``my.yaml:14: methods[1]: unknown key 'divergance' (did
you mean 'divergence'?)``). Packaged configs are found by name."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distillmeter.errors import UserError
from distillmeter.pipelines.config import RunConfig


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location (for its line number)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            return node
        if node is None:
            return None
    return node


def _key_node(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    parent = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == str(loc[-1])), None)
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config section (a pydantic model class) that a location points into."""
    model: Any = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        ann = field.annotation
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
            inner = getattr(cand, "__args__", ())
            sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)),
                       None)
            if sub is not None:
                model = sub
                break
        else:
            return None
    return model


def _path_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(err: dict[str, Any], root: yaml.Node | None, source: str) -> str:
    raw = tuple(err.get("loc", ()))

    def untagged(parts: tuple) -> tuple:  # pydantic's validator tags: function-after[...]
        return tuple(p for p in parts if not (isinstance(p, str) and "[" in p))

    extra = err.get("type") == "extra_forbidden" and bool(raw)
    # an unknown key is the user's own text, whatever characters it holds ('[' included)
    loc = untagged(raw[:-1]) + raw[-1:] if extra else untagged(raw)
    if extra:
        key = loc[-1]
        parent = _model_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else (
            f" (known keys: {', '.join(known)})" if known else "")
        node = _key_node(root, loc)
        where = _path_str(loc[:-1])
        msg = f"unknown key '{key}'{hint}"
    else:
        node = _node_at(root, loc)
        where = _path_str(loc)
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if "input" in err and err.get("type") not in ("missing",) and not isinstance(
                err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return f"{source}{line}: {where + ': ' if where else ''}{msg}"


def parse_config(data: Any, source: str = "config", root: yaml.Node | None = None) -> RunConfig:
    """Validate plain data as a RunConfig; raise UserError naming every bad key or value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: the config must be a mapping of sections "
                        f"(task, teacher, student, methods, ...), not {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_explain(e, root, source) for e in exc.errors()]
        raise UserError("\n".join(lines)) from None


def packaged_config(name: str) -> Path | None:
    """A config shipped in ``distillmeter/configs/`` by its name (``.yaml`` optional)."""
    from importlib.resources import files

    if "/" in name or "\\" in name:
        return None
    stem = name.removesuffix(".yaml")
    ref = files("distillmeter").joinpath("configs", f"{stem}.yaml")
    return Path(str(ref)) if ref.is_file() else None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config file (``yaml.safe_load``: no object construction).
    A bare name that is not a file here, such as ``smollm2-1.7b-to-135m-gsm8k``, is looked
    up among the packaged example configs."""
    path = Path(path)
    if not path.exists():
        path = packaged_config(str(path)) or path
    data, root = read_yaml_file(path, "config file")
    return parse_config(data, str(path), root)


def read_yaml_file(path: Path, what: str) -> tuple[Any, Any]:
    """``(data, node tree)`` of a YAML file, read with the safe loader; the node tree gives
    error messages their line numbers. Unreadable or invalid YAML is a UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}{line}: not valid YAML ({problem})") from None
    return data, root


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (keys in declaration order)."""
    return yaml.safe_dump(cfg.resolved(), sort_keys=False, default_flow_style=False)
