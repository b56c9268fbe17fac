"""The methods registry: a method's name -> its class (``methods/base.py``'s ``Method``).

It imports nothing, so the run config (``pipelines/config.py``) can check a method's
``loss`` and settings against it without importing any method: the methods' own modules
import the config, never the other way round. The built-in methods register when
``distillmeter.pipelines`` is imported (``methods/__init__.py``); a method of one's own
registers when its module is imported, before the config that names it is read.
"""

from __future__ import annotations

from typing import Any

_METHODS: dict[str, type] = {}


def register(name: str):
    """Class decorator: register a ``Method`` subclass under ``name`` (its ``kind``)::

        @register("ce_smooth")
        class SmoothCE(Method):
            loss = "ce_smooth"
            ...

    Registering another class under a taken name is an error (two methods would answer
    for one config); registering the same class again (a module imported twice) is not."""

    def add(cls: type) -> type:
        known = _METHODS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"method {name!r} is registered already ({known.__module__})")
        cls.kind = name
        _METHODS[name] = cls
        return cls

    return add


def registered() -> dict[str, type]:
    """Every registered method class by name, in registration order."""
    return dict(_METHODS)


def losses() -> list[str]:
    """The ``loss:`` values a method config may take, in registration order."""
    return list(dict.fromkeys(cls.loss for cls in _METHODS.values()))


def settings_by_loss() -> dict[str, tuple[str, ...]]:
    """The method settings each ``loss:`` reads (besides name and data)."""
    out: dict[str, tuple[str, ...]] = {}
    for cls in _METHODS.values():
        out[cls.loss] = tuple(dict.fromkeys(out.get(cls.loss, ()) + tuple(cls.settings)))
    return out


def one_of(names: list[str]) -> str:
    """``'a', 'b' or 'c'``: choices as pydantic words a Literal's."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def method_class(config: Any) -> type:
    """The class of the method ``config`` (a ``MethodConfig``) describes: the one registered
    class with its ``loss`` whose ``selects(config)`` holds."""
    found = [cls for cls in _METHODS.values()
             if cls.loss == config.loss and cls.selects(config)]
    if len(found) != 1:
        names = ", ".join(c.kind for c in found) or "none"
        raise LookupError(f"method {getattr(config, 'name', '?')!r} (loss {config.loss!r}): "
                          f"{len(found)} registered methods answer for it ({names})")
    return found[0]


def get(config: Any):
    """The method ``config`` describes, as its class's instance (``Method``)."""
    return method_class(config)(config)


def unregister(name: str) -> None:
    """Forget the method registered as ``name`` (a test's own method, when it is done)."""
    _METHODS.pop(name, None)
