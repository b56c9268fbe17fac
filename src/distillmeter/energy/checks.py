"""The meter's checks on what its sensors report: counters that run backwards, and other
processes on a metered device. Each returns warnings ``(message, device)``; the meter writes
them to the ledger (a reading is never corrected silently)."""

from __future__ import annotations

from typing import Any


def contamination_warnings(found: dict[str, list[int]], seen: dict[str, set[int]]
                           ) -> list[tuple[str, str]]:
    """Warnings for processes on a metered device that are not this process or its
    descendants (their work would be counted in this run's energy). ``seen`` remembers
    pids already reported, so each is named once."""
    if not any(found.values()):
        return []
    import psutil

    me = psutil.Process()
    ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
    out = []
    for d, pids in found.items():
        new = [p for p in pids if p not in ours and p not in seen.get(d, set())]
        if not new:
            continue
        seen.setdefault(d, set()).update(new)
        hidden = [p for p in new if not psutil.pid_exists(p)]
        note = (" (some are not visible here: from inside a container NVML reports host "
                "pids, this run's own included)") if hidden else ""
        out.append((f"other processes on {d} (pids {', '.join(map(str, new))}){note}: "
                    f"possible contamination, their work is counted in {d}'s energy", d))
    return out


def backwards_counters(last: dict[str, float], t: float, readings: dict[str, Any]
                       ) -> list[tuple[str, str]]:
    """Warnings ``(message, device)`` for counters that went backwards since ``last``
    (the last value seen per device, updated in place): a reset or a driver reload."""
    out = []
    for d, v in readings.items():
        if v is None:
            continue
        prev = last.get(d)
        if prev is not None and v < prev - 1e-6:
            out.append((f"energy counter of {d} went backwards at t={t:.3f} ({prev:.3f} J "
                        f"-> {v:.3f} J): the counter was reset; energy across this point "
                        "is unreliable", d))
        last[d] = v
    return out
