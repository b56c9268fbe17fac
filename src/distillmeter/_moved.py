"""Old import paths of modules that moved when the package was laid out by concern
(docs/DESIGN.md, "Layout"): ``import distillmeter.pipelines.real_models`` and the like keep
working, with a DeprecationWarning naming where the code lives now.

An old path is served by a module assembled on import from the new modules' public names
(the first listed module wins where two define the same name), so that a module split in
two still answers for everything it used to hold. Nothing here runs until an old path is
imported; new code imports the new modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

_P = "distillmeter."

# old module -> the modules its public names live in now
MOVED: dict[str, tuple[str, ...]] = {
    "accounting.merge": ("protocol.merge", "accounting.ranks"),
    "pipelines.config_sections": ("tasks.config", "models.config", "engines.lm_eval"),
    "pipelines.distributed": ("pipelines.scale.distributed",),
    "pipelines.file_data": ("tasks.files", "tasks.verifiers", "tasks.chat", "paths"),
    "pipelines.generation": ("engines.generation",),
    "pipelines.lm_eval_backend": ("engines.lm_eval",),
    "pipelines.lm_eval_stage": ("engines.lm_eval", "pipelines.evaluation"),
    "pipelines.memory": ("models.memory",),
    "pipelines.rank_jobs": ("pipelines.scale.rank_jobs", "pipelines.scale.rank_meter"),
    "pipelines.real_models": ("models.checkpoints", "models.memory", "pipelines.preflight",
                              "pipelines.components"),
    "pipelines.sweep": ("pipelines.scale.sweep",),
    "pipelines.sweep_ray": ("pipelines.scale.sweep_ray",),
    "pipelines.sweep_run": ("pipelines.scale.sweep_run", "pipelines.scale.sweep_jobs"),
    "pipelines.vllm_backend": ("engines.vllm", "engines", "pipelines.logit_cache"),
}

# old module -> why it is gone (importing it raises ImportError with this text)
REMOVED: dict[str, str] = {
    "pipelines.summary": "the per-method table it printed repeated the analysis; `distillmeter "
                         "run` now ends with the analysis (distillmeter.analysis, "
                         "distillmeter.report.console) and the verdict",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str) -> None:
        self.old = old

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default: an empty module, filled in exec_module

    def exec_module(self, module: ModuleType) -> None:
        if self.old in REMOVED:
            raise ImportError(f"{_P}{self.old} was removed: {REMOVED[self.old]}",
                              name=_P + self.old)
        new = [_P + m for m in MOVED[self.old]]
        warnings.warn(f"{_P}{self.old} moved to {', '.join(new)}; import it from there",
                      DeprecationWarning, stacklevel=2)
        for name in reversed(new):
            src = importlib.import_module(name)
            module.__dict__.update({k: v for k, v in vars(src).items()
                                    if not k.startswith("_")})
        module.__doc__ = f"Moved: {', '.join(new)} (an alias kept for old imports)."


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        old = fullname[len(_P):] if fullname.startswith(_P) else None
        if old not in MOVED and old not in REMOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(old))


def install() -> None:
    """Serve the old paths (once; after the normal finders, so a real module wins)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
