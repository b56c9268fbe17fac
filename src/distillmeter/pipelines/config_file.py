"""A run config from a YAML file: read within bounds (``config_yaml``), validated, and every
mistake named on one line with its key path and line (``my.yaml:14: methods[1]: unknown key
'divergance' (did you mean 'divergence'?)``). Values echoed in a message are shortened and
pass through the redactor, so a secret pasted in the wrong key is not printed back.
Packaged configs are found by name."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distillmeter.errors import UserError
from distillmeter.pipelines.config import RunConfig, TaskConfig
from distillmeter.pipelines.config_yaml import line_map, read_yaml_file

__all__ = ["dump_config", "load_config", "packaged_config", "parse_config", "read_yaml_file"]

MAX_ECHO = 48  # characters of a bad value shown back in a message
_SECTION = re.compile(r"Input should be a valid dictionary or instance of \w+")


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location (for its line number), or None when the
    file does not hold that key."""
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


def _nearest(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The node of ``loc``, else of its nearest ancestor the file holds (a default that
    does not fit is named at the section the file gives)."""
    node = _node_at(root, loc) if loc else None
    for n in range(len(loc) - 1, 0, -1):
        if node is not None:
            break
        node = _key_node(root, loc[:n]) or _node_at(root, loc[:n])  # "task:", or "- item"
    return node


def _key_node(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    parent = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        return next((k for k, _ in parent.value if k.value == str(loc[-1])), None)
    return None


def _model_at(loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The config section (a pydantic model class) that a location points into; a built-in
    task's ``params`` by that task's schema."""
    model: Any = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if model is TaskConfig and part == "params":
            from distillmeter.tasks import TASK_PARAMS

            name = data.get("task", {}).get("name", "arithmetic") if isinstance(
                data, dict) and isinstance(data.get("task", {}), dict) else None
            return TASK_PARAMS.get(name) if isinstance(name, str) else None
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


# what pydantic adds to a location for the member of a union it tried
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none"})


def _data_loc(raw: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location as the user's keys: pydantic adds tags of its own (the member of
    a union it tried: ``str``, ``list[str]``, ``function-after[...]``)."""
    return tuple(p for p in raw if not (isinstance(p, str) and (
        "[" in p or p in _TYPE_TAGS)))


def _echo(value: Any) -> str:
    text = repr(value)
    if len(text) > MAX_ECHO:
        text = f"{text[:MAX_ECHO - 12]}... ({len(text)} chars)"
    return text


def _merge(msgs: list[str]) -> str:
    """The messages of one location in one clause: a union's members say "Input should be
    a valid string", "Input should be a valid list": "Input should be a valid string or a
    valid list"."""
    msgs = list(dict.fromkeys(_SECTION.sub("Input should be a mapping of keys",
                                            m.removeprefix("Value error, ")) for m in msgs))
    prefix = "Input should be "
    if len(msgs) > 1 and all(m.startswith(prefix) for m in msgs):
        return prefix + " or ".join(m.removeprefix(prefix) for m in msgs)
    return "; ".join(msgs)


def _explain(loc: tuple[Any, ...], errs: list[dict[str, Any]], root: yaml.Node | None,
             source: str, data: Any) -> tuple[str, str]:
    """``(file:line, what is wrong)`` for the errors at one location."""
    err = errs[0]
    if err.get("type") == "extra_forbidden" and loc:
        key = loc[-1]
        parent = _model_at(loc[:-1], data)
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else (
            f" (known keys: {', '.join(known)})" if known else "")
        node = _key_node(root, loc)
        where = _path_str(loc[:-1])
        msg = f"unknown key '{key}'{hint}"
    else:
        node = _nearest(root, loc)
        where = _path_str(loc)
        msg = _merge([str(e.get("msg", "invalid value")) for e in errs])
        value = err.get("input")
        structure = isinstance(value, (dict, list, tuple))
        if "input" in err and err.get("type") != "missing" and (
                not structure or not value) and not (
                isinstance(value, str) and repr(value) in msg):
            msg += f" (got {_echo(value)})"
            if isinstance(value, bool) and any(e.get("type") == "string_type" for e in errs):
                msg += "; YAML reads yes/no/on/off/true/false unquoted as booleans: quote it"
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return f"{source}{line}", f"{where + ': ' if where else ''}{msg}"


def _redact(text: str) -> str:
    from distillmeter.privacy.redact import redact_text

    return redact_text(text)


def parse_config(data: Any, source: str = "config", root: yaml.Node | None = None) -> RunConfig:
    """Validate plain data as a RunConfig; raise UserError naming every bad key or value,
    one line each (the errors at one key, or on one line of the file, make one line)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: the config must be a mapping of sections "
                        f"(task, teacher, student, methods, ...), not {type(data).__name__}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        by_loc: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for e in exc.errors():
            raw = tuple(e.get("loc", ()))
            # an unknown key is the user's own text, whatever it holds ('[' included)
            loc = _data_loc(raw[:-1]) + raw[-1:] if e.get("type") == "extra_forbidden" \
                else _data_loc(raw)
            by_loc.setdefault(loc, []).append(e)
        at_line: dict[str, list[str]] = {}  # problems on one line of the file: one line
        for loc, errs in by_loc.items():
            place, what = _explain(loc, errs, root, source, data)
            at_line.setdefault(place, []).append(what)
        lines = [f"{place}: {'; '.join(whats)}" for place, whats in at_line.items()]
        raise UserError(_redact("\n".join(lines))) from None
    cfg._origin = {"source": source, "lines": line_map(root)}
    return cfg


def packaged_config(name: str) -> Path | None:
    """A config shipped in ``distillmeter/configs/`` by its name (``.yaml`` optional)."""
    from importlib.resources import files

    if "/" in name or "\\" in name:
        return None
    stem = name.removesuffix(".yaml")
    ref = files("distillmeter").joinpath("configs", f"{stem}.yaml")
    return Path(str(ref)) if ref.is_file() else None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config file (bounded safe loading: no object
    construction). A bare name that is not a file here, such as
    ``smollm2-1.7b-to-135m-gsm8k``, is looked up among the packaged example configs. A
    file with no settings (empty, or only comments) is refused: the built-in default is
    `distillmeter run` with no CONFIG, never a config that was meant to say something."""
    path = Path(path)
    if not path.exists():
        path = packaged_config(str(path)) or path
    data, root = read_yaml_file(path, "config file")
    if data is None or data == {}:
        raise UserError(f"{path}: the config holds no settings (it is empty or only "
                        "comments); `distillmeter run` with no CONFIG runs the built-in "
                        "default")
    return parse_config(data, str(path), root)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (keys in declaration order)."""
    return yaml.safe_dump(cfg.resolved(), sort_keys=False, default_flow_style=False)
