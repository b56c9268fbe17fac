"""distillmeter: run language-model distillation pipelines and account for their energy.

The measuring API is importable without torch::

    from distillmeter import EnergyMeter
    with EnergyMeter("runs/my-run") as meter:
        with meter.stage("student.train") as st:
            ...
            st.add(tokens=n)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distillmeter import _moved

__version__ = "0.1.0"

__all__ = ["EnergyMeter", "account", "__version__"]

# modules that moved when the package was laid out by concern keep their old import paths
_moved.install()

if TYPE_CHECKING:  # pragma: no cover
    from distillmeter.accounting import account
    from distillmeter.energy import EnergyMeter


def __getattr__(name: str) -> Any:
    # Lazy, so `import distillmeter` stays cheap and free of optional dependencies.
    if name == "EnergyMeter":
        from distillmeter.energy import EnergyMeter

        return EnergyMeter
    if name == "account":
        from distillmeter.accounting import account

        return account
    raise AttributeError(name)
