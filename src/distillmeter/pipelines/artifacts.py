"""Artifacts: what a stage leaves behind, identified by the hash of what produced it.

Every artifact is a folder ``RUN_DIR/artifacts/<kind>-<hash>/`` with a ``manifest.json``
listing its files with their sha256 and size. A resumed run finds teacher-side work by kind
and hash under the output directory and trusts it only when every checksum matches; a
manifest is written last (atomically), so a folder without one is unfinished work.

Provenance comes from where an artifact lies: the run directory holding it measured the
stage that produced it (``produced_by.stage``), even after that directory was moved aside
as ``<run>.failed-<n>`` by a resume.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from distillmeter import protocol
from distillmeter.storage.atomic import write_atomic

MANIFEST = "manifest.json"


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    bytes: int


class ArtifactManifest(BaseModel):
    """``manifest.json``. Kind-specific fields (a cache's ``bytes_per_token``, the synthetic
    data's ``kept_fraction``) ride along in ``info``."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    hash: str
    complete: bool = True
    stage: str
    run_id: str | None = None
    files: dict[str, FileEntry] = {}
    info: dict[str, Any] = {}


class ArtifactError(ValueError):
    """An artifact that is missing, unfinished or corrupted (names the file)."""


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def artifact_dir(run_dir: Path, kind: str, key_hash: str) -> Path:
    return Path(run_dir) / protocol.ARTIFACTS_DIR / f"{kind}-{key_hash}"


def write_manifest(folder: Path, manifest: ArtifactManifest, *,
                   checksum: list[str] | None = None) -> ArtifactManifest:
    """Checksum the files named (default: every file in the folder but the manifest) and
    write the manifest last."""
    folder = Path(folder)
    names = checksum if checksum is not None else sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp"))
    files = dict(manifest.files)
    for name in names:
        files[name] = file_entry(folder / name)
    manifest = manifest.model_copy(update={"files": files})
    write_atomic(folder / MANIFEST, manifest.model_dump_json(indent=2))
    return manifest


def read_manifest(folder: Path) -> ArtifactManifest:
    """Read an artifact's manifest; ArtifactError naming it when absent or invalid."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{path}: no manifest (unfinished artifact)")
    try:
        return ArtifactManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: invalid manifest ({str(exc).splitlines()[0]})") from None


def verify(folder: Path, manifest: ArtifactManifest | None = None) -> list[str]:
    """Problems with an artifact's files (missing, wrong size, wrong sha256); [] if sound."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    bad = []
    for name, entry in manifest.files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            bad.append(f"{folder / MANIFEST}: names {name!r}, outside the artifact")
        elif not path.is_file():
            bad.append(f"{path}: missing")
        elif path.stat().st_size != entry.bytes:
            bad.append(f"{path}: {path.stat().st_size} bytes, manifest says {entry.bytes}")
        elif sha256_file(path) != entry.sha256:
            bad.append(f"{path}: sha256 does not match the manifest (corrupted)")
    return bad


def load_verified(folder: Path) -> ArtifactManifest:
    """The manifest of a complete artifact whose every checksum matches; else ArtifactError."""
    manifest = read_manifest(folder)
    if not manifest.complete:
        raise ArtifactError(f"{folder}: unfinished artifact")
    bad = verify(folder, manifest)
    if bad:
        raise ArtifactError("; ".join(bad))
    return manifest


def find(out_dir: Path, kind: str, key_hash: str) -> list[Path]:
    """Complete artifacts of ``kind`` and ``key_hash`` anywhere under ``out_dir``'s run
    directories (not yet verified), newest first."""
    hits = []
    pattern = f"*/{protocol.ARTIFACTS_DIR}/{kind}-{key_hash}/{MANIFEST}"
    for m in Path(out_dir).glob(pattern):
        try:
            if read_manifest(m.parent).complete:
                hits.append(m.parent)
        except ArtifactError:
            continue
    return sorted(hits, key=lambda p: p.stat().st_mtime, reverse=True)


def find_verified(out_dir: Path, kind: str, key_hash: str,
                  warn=None) -> Path | None:
    """The newest artifact of ``kind``/``key_hash`` whose checksums all match, or None.
    Corrupted candidates are reported through ``warn`` and skipped."""
    for folder in find(out_dir, kind, key_hash):
        try:
            load_verified(folder)
            return folder
        except ArtifactError as exc:
            if warn is not None:
                warn(f"ignoring corrupted artifact: {exc}")
    return None


def run_dir_of(folder: Path) -> Path:
    """The run directory an artifact lies in (``RUN/artifacts/<name>``)."""
    return Path(folder).parent.parent
