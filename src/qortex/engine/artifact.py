"""Model artifacts: an `.npz` of arrays plus a `.json` of metadata, bound by a SHA-256 hash.

The hash covers the exact `.npz` bytes and the canonical JSON of the metadata (sorted keys, no
whitespace, without the hash itself), so editing, truncating or swapping either file is caught.
Arrays are loaded with allow_pickle=False; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qortex.engine.errors import ArtifactError

__all__ = ["DEFAULT_NAME", "FORMAT", "content_hash", "npz_encode", "read", "read_bytes", "read_default", "write"]

FORMAT = "qortex-engine/1"
DEFAULT_NAME = "default"


def canonical_json(meta: dict[str, Any]) -> bytes:
    """Returns the canonical encoding the hash covers."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def content_hash(npz_bytes: bytes, meta: dict[str, Any]) -> str:
    """Returns the hex SHA-256 over the npz bytes and the metadata without its content_hash."""
    body = {k: v for k, v in meta.items() if k != "content_hash"}
    digest = hashlib.sha256()
    digest.update(len(npz_bytes).to_bytes(8, "big"))
    digest.update(npz_bytes)
    digest.update(canonical_json(body))
    return digest.hexdigest()


def paths(path: Path) -> tuple[Path, Path]:
    """Returns (npz path, json path) for `model`, `model.npz` or `model.json`."""
    base = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def npz_encode(arrays: dict[str, npt.NDArray[Any]]) -> bytes:
    """Returns the arrays as .npz bytes that depend only on the arrays (sorted, fixed timestamps).

    np.savez stamps each member with the current time; a reproducible artifact should not.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def write(path: Path, arrays: dict[str, npt.NDArray[Any]], meta: dict[str, Any]) -> Path:
    """Writes the artifact pair and returns the .npz path.

    Both files are written in full beside their targets before either is renamed into place, so a
    save that fails part way (a full disk) leaves the previous artifact loadable, not half replaced.
    """
    npz_path, json_path = paths(path)
    npz_bytes = npz_encode(arrays)
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["content_hash"] = content_hash(npz_bytes, meta)
    json_bytes = (json.dumps(meta, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    staged: dict[Path, Path] = {}
    try:
        # Resolved, as a plain write goes through a link and leaves the link in place.
        for target, data in ((npz_path.resolve(), npz_bytes), (json_path.resolve(), json_bytes)):
            staged[target] = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
            # O_EXCL: never someone else's file; 0o666 less the umask, as a plain write would create it.
            with os.fdopen(os.open(staged[target], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        for target, partial in staged.items():
            os.replace(partial, target)
    finally:
        for partial in staged.values():
            partial.unlink(missing_ok=True)
    return npz_path


def read(path: Path) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Reads and verifies an artifact pair; raises ArtifactError on any problem."""
    npz_path, json_path = paths(path)
    for p in (npz_path, json_path):
        if not p.is_file():
            raise ArtifactError(f"artifact file not found: {p}")
    return read_bytes(npz_path.read_bytes(), json_path.read_bytes(), str(npz_path))


def read_default() -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Reads the shipped default artifact from the package data."""
    folder = resources.files("qortex.engine").joinpath("artifacts")
    npz = folder.joinpath(DEFAULT_NAME + ".npz")
    meta = folder.joinpath(DEFAULT_NAME + ".json")
    if not npz.is_file() or not meta.is_file():
        raise ArtifactError(
            "default model artifact not found (qortex/engine/artifacts/default.npz and default.json); "
            "generate it with `python -m qortex.engine.train_default`"
        )
    return read_bytes(npz.read_bytes(), meta.read_bytes(), "default")


def read_bytes(npz_bytes: bytes, json_bytes: bytes, where: str) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """Verifies the hash, then parses the arrays without pickle."""
    try:
        meta = json.loads(json_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArtifactError(f"artifact {where}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"artifact {where}: metadata must be a JSON object")
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"artifact {where}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    recorded = meta.get("content_hash")
    if not isinstance(recorded, str):
        raise ArtifactError(f"artifact {where}: metadata has no content_hash")
    try:
        actual = content_hash(npz_bytes, meta)
    except ValueError as exc:
        raise ArtifactError(f"artifact {where}: metadata cannot be canonicalised ({exc})") from None
    if actual != recorded:
        raise ArtifactError(
            f"artifact {where}: content hash mismatch (recorded {recorded[:16]}..., computed "
            f"{actual[:16]}...); the .npz or .json was modified, truncated or swapped"
        )
    try:
        loaded = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
        # np.load answers a bare .npy with one array; an artifact is always an .npz archive.
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ArtifactError(f"artifact {where}: arrays must be an .npz archive, not a single .npy array")
        with loaded as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"artifact {where}: arrays cannot be read ({exc})") from None
    return arrays, meta
