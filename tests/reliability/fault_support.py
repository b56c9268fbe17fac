"""Helpers for the process- and storage-fault tests (signals, a full disk, a read-only
directory): configs, and ways to make those faults real in a child process without root
tricks.

- A full disk: ``RLIMIT_FSIZE`` in the child. Every write past the limit fails with EFBIG,
  as a full disk fails with ENOSPC: same write path, same partial last write; SIGXFSZ
  (which would kill the child) is ignored, as its default would not happen on a real full
  disk. ``/dev/full`` (ENOSPC itself) for one chosen file.
- A read-only directory: ``chmod a-w``. The tests run as root here, where permissions do
  not stop writes; the child then drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its
  capability bounding set before it execs (prctl), so root is held to the modes like any
  user. :func:`readonly_works` checks that this really refuses a write, and the tests skip
  (saying why) only where it cannot.
"""

from __future__ import annotations

import copy
import ctypes
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from reliability_support import TINY_RUN

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2

# A student whose training is long enough (~1.5 s here) to be signalled in the middle.
SIGNAL_RUN = copy.deepcopy(TINY_RUN)
SIGNAL_RUN["task"]["n_labelled"] = 300
SIGNAL_RUN["training"] = {"token_budget": 60000, "batch_size": 8}
SIGNAL_RUN["methods"] = [{"name": "kd", "data": ["labelled"], "loss": "kd"}]

# An evaluation long enough (~1.5 s here) to be killed in the middle, after a real training.
EVAL_RUN = copy.deepcopy(TINY_RUN)
EVAL_RUN["task"]["n_test"] = 1000
EVAL_RUN["training"] = {"token_budget": 20000, "batch_size": 8}
EVAL_RUN["methods"] = [{"name": "kd", "data": ["labelled"], "loss": "kd"}]

# Every file of the runs under 20 kB (the teacher as small as the student), while the
# analysis's summary.json and report.html are larger: a 20 kB file size limit lets the
# runs finish and fails the report.
SMALL_FILES_RUN = copy.deepcopy(TINY_RUN)
SMALL_FILES_RUN["teacher"]["model"]["arch"] = {"d_model": 16, "n_layers": 1, "n_heads": 2,
                                               "d_ff": 32}


def file_size_limit(nbytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: writes past ``nbytes`` in any one file fail (EFBIG)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _drop_dac() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def held_to_modes() -> Callable[[], None] | None:
    """A ``preexec_fn`` under which file modes bind this (root) user too; None when not
    root, where they bind already."""
    return _drop_dac if os.geteuid() == 0 else None


def make_readonly(path: Path) -> None:
    """``chmod a-w`` on ``path`` and everything below it."""
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode & ~0o222)


def make_writable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o200)


def readonly_works(tmp: Path) -> str | None:
    """None if a child held to the modes cannot write into a read-only directory here;
    else why not (the reason a test skips with)."""
    probe = tmp / "probe-readonly"
    probe.mkdir()
    make_readonly(probe)
    try:
        r = subprocess.run([sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                           preexec_fn=held_to_modes(), capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot drop CAP_DAC_OVERRIDE here ({exc})"
    finally:
        make_writable(probe)
    if r.returncode == 0:
        return "a read-only directory does not stop this user's writes here"
    return None


def start_cli(*args: str, preexec: Callable[[], None] | None = None) -> subprocess.Popen:
    """``distillmeter ARGS`` as a real process, ``preexec`` run in the child before exec."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "distillmeter.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def run_cli(*args: str, preexec: Callable[[], None] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    p = start_cli(*args, preexec=preexec)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def one_error_line(stderr: str, *needles: str) -> str:
    """The stderr's single ``error:`` line, checked to name each of ``needles``, and the
    absence of any traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
