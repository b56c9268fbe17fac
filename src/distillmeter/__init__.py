"""distillmeter: run language-model distillation pipelines and account for their energy.

The measuring API is importable without torch::

    from distillmeter import EnergyMeter
    with EnergyMeter("runs/my-run") as meter:
        with meter.stage("student.train") as st:
            ...
            st.add(tokens=n)
"""

from __future__ import annotations

from distillmeter.accounting import account
from distillmeter.energy import EnergyMeter

__version__ = "0.1.0"

__all__ = ["EnergyMeter", "account", "__version__"]
