"""YAML read with bounds, for config and sweep files: the safe loader (no object
construction), a size limit, a nesting limit, a limit on what aliases expand to (an alias
bomb of a few lines would otherwise expand to billions of values when the config is
hashed), no recursive aliases, no key given twice in one mapping, and no integer longer
than any config value. Each refusal is one UserError naming the file and line.

Also YAML 1.2's exponent floats: PyYAML (YAML 1.1) reads ``1e-3`` as a string, which the
config's strict types would then refuse, though it is how learning rates are written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from distillmeter.errors import UserError

MAX_BYTES = 1 << 20  # a written-out config is ~4 KB; a sweep a few times that
MAX_DEPTH = 32       # a config nests 5 levels deep (teacher.model.arch.d_model)
MAX_VALUES = 10_000  # values after alias expansion; the resolved default holds ~150
MAX_INT_DIGITS = 30  # every config integer is below 10^15; this leaves room to say why


# libyaml's parser when PyYAML was built with it (several times faster), else PyYAML's own
_SafeBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):
    """The safe loader, with exponent floats and bounded integers."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in node.value)
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer of {digits} digits is beyond "
                                   "any config value's range", node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _line(mark: Any) -> str:
    return f":{mark.line + 1}" if mark is not None else ""


def _check_shape(text: str, path: Path) -> None:
    """Nesting depth and the size aliases expand to, from the event stream: linear in the
    text, whatever the aliases would expand to, and without recursion (10,000 nested
    brackets would exhaust Python's stack in the composer)."""
    count = 0
    open_at: list[tuple[int, str | None]] = []  # (count when it opened, anchor)
    sizes: dict[str, int] = {}
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in {a for _, a in open_at}:
                raise UserError(f"{path}{_line(event.start_mark)}: alias *{event.anchor} "
                                "refers to a collection that holds it (a recursive "
                                "structure)")
            count += sizes.get(event.anchor, 1)
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            count += 1
            if isinstance(event, yaml.CollectionStartEvent):
                open_at.append((count - 1, event.anchor))
                if len(open_at) > MAX_DEPTH:
                    raise UserError(f"{path}{_line(event.start_mark)}: nested more than "
                                    f"{MAX_DEPTH} levels deep; a config needs a handful")
            elif event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            start, anchor = open_at.pop()
            if anchor:
                sizes[anchor] = count - start
        if count > MAX_VALUES:
            raise UserError(f"{path}{_line(event.start_mark)}: more than {MAX_VALUES:,} "
                            "values once its aliases are expanded (an alias bomb?); write "
                            "the values out, or use fewer aliases")


def _check_keys(node: yaml.Node | None, path: Path, where: str = "",
                seen: set[int] | None = None) -> None:
    """No key twice in one mapping: YAML keeps the last silently."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, value in node.value:
            sub = where
            if isinstance(key, yaml.ScalarNode):
                sub = f"{where}.{key.value}" if where else key.value
                if key.tag != "tag:yaml.org,2002:merge":
                    ident = (key.tag, key.value)
                    if ident in first:
                        l1, l2 = first[ident].start_mark.line + 1, key.start_mark.line + 1
                        raise UserError(f"{path}:{l2}: {sub}: given twice (lines {l1} and "
                                        f"{l2}); YAML would keep the last silently: "
                                        "remove one")
                    first[ident] = key
            _check_keys(value, path, sub, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, path, f"{where}[{i}]", seen)


def _read_text(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"{path}: larger than {MAX_BYTES >> 20} MiB; a {what} is a few KB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def read_yaml_file(path: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """``(data, node tree)`` of a YAML file within the bounds above; the node tree gives
    error messages their line numbers. Anything unreadable, invalid or past a bound is a
    UserError naming the file and line."""
    text = _read_text(Path(path), what)
    try:
        _check_shape(text, path)
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            _check_keys(root, path)
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}{_line(mark)}: not valid YAML ({problem})") from None
    return data, root


def line_map(root: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """The line (1-based) of every key and list item in a node tree, by its key path."""
    out: dict[tuple[str | int, ...], int] = {}
    todo: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())] if root else []
    seen: set[int] = set()
    while todo:
        node, loc = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    out[loc + (key.value,)] = key.start_mark.line + 1
                    todo.append((value, loc + (key.value,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[loc + (i,)] = item.start_mark.line + 1
                todo.append((item, loc + (i,)))
    return out
