"""One meter per run directory: a lock file naming its holder (pid, host, start time).

A second meter on the same directory is refused with a message naming the holder. A lock
left by a dead process on this host (a crash, a killed job) is taken over, and the caller
is told so it can put a warning in the ledger. Locks from other hosts cannot be checked
and are never taken over automatically.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from distillmeter.errors import UserError, writing

LOCK_FILE = ".distillmeter.lock"


def pid_alive(pid: int, started: float | None) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, not a process: no holder
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or beyond any pid the OS has
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if started is not None:
        try:
            import psutil

            # The pid was reused by a process that started after the lock was taken.
            if psutil.Process(pid).create_time() > started + 1.0:
                return False
        except Exception:  # psutil.NoSuchProcess and friends: treat as gone
            return False
    return True


class RunLock:
    """``RunLock(run_dir).acquire(run_id)`` -> a warning string if a stale lock was taken
    over, else None; :meth:`release` removes the lock if it is still ours."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as held by an unknown process
        # not written by us (a list, a number): likewise held by an unknown process
        return holder if isinstance(holder, dict) else {}

    def acquire(self, run_id: str) -> str | None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "started_iso": datetime.now(timezone.utc).isoformat(), "run_id": run_id}
        taken_over = None
        for _ in range(3):
            try:
                with writing(self.path):
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released between our open and read: try again
                taken_over = self._stale_or_refuse(holder)
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            try:
                with writing(self.path), os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(me, f)
            except BaseException:  # a lock we could not fill in (disk full) is not left
                self._unlink()
                raise
            self._held = True
            return taken_over
        raise UserError(f"{self.path}: could not take the run lock (another meter keeps "
                        "taking it)")

    def _stale_or_refuse(self, holder: dict) -> str:
        pid, host = holder.get("pid"), holder.get("host")
        since = holder.get("started_iso", "an unknown time")
        who = (f"pid {pid} on host {host}, started {since}" if pid is not None or host
               else f"an unknown process: {self.path} names none")
        if isinstance(pid, int) and host == socket.gethostname():
            if not pid_alive(pid, holder.get("started")):
                return (f"took over a stale run lock left by {who} (that process is gone; "
                        "its run probably crashed)")
        raise UserError(
            f"{self.path.parent} is being metered by another process ({who}). Two meters "
            "on one run directory would corrupt its ledger: use another --out directory, "
            f"or if that process is really gone, delete {self.path}")

    def release(self) -> None:
        if not self._held:
            return
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            self._unlink()
        self._held = False

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:  # gone already, or the directory became read-only: nothing to do
            pass
