"""storage.atomic.write_atomic, the package's one way to replace a file: the old file or
the new one, never half of one, no temporary file left behind, and a full disk as one line
naming the file (a real ENOSPC, from /dev/full)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from distillmeter.errors import OutputError
from distillmeter.storage.atomic import write_atomic


def test_text_bytes_and_a_writer_function_replace_the_file(tmp_path):
    target = tmp_path / "out.json"
    assert write_atomic(target, "first\n") == target
    assert target.read_text() == "first\n"
    write_atomic(target, b"\x00second")
    assert target.read_bytes() == b"\x00second"
    write_atomic(target, lambda tmp: tmp.write_text("third"), fsync=False)
    assert target.read_text() == "third"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # shared, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def _fill(tmp: Path) -> None:
    tmp.write_text("partial")  # half a file in the temporary, then the disk is full
    with open("/dev/full", "w") as full:
        full.write("x" * 100_000)
        full.flush()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(OutputError) as info:
        write_atomic(target, _fill)
    assert info.value.full and str(target) in str(info.value)
    assert "\n" not in str(info.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_any_other_failure_passes_through_and_leaves_nothing(tmp_path):
    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("writer bug")

    with pytest.raises(RuntimeError, match="writer bug"):
        write_atomic(tmp_path / "x.csv", broken)
    assert list(tmp_path.iterdir()) == []
