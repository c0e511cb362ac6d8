"""Per-file security records, as the Hub reports them with `expand=true` tree and paths-info
listings (`securityFileStatus`, parsed by huggingface_hub into `RepoFile.security`).

The real Hub scans every stored file: an antivirus scan, and for pickles picklescan's list of the
stream's imports, each rated innocuous, suspicious or dangerous. This server runs the same
scanner (picklescan, with its default rating) on a file's bytes the first time a listing asks,
and keeps the record by content id (the same bytes always get the same record). A file the
scanner cannot read (a truncated archive) is rated suspicious, never safe. It has no
antivirus, so `avScan` reports no virus. A file whose `repo/path` matches a `security_pending`
pattern (config, or `HubState.security_pending` in tests) is reported without a record, as a file
still in the Hub's scan queue is.

Record shape (the Hub's): `{status: safe | suspicious | unsafe, avScan: {virusFound,
virusNames}, pickleImportScan: null | {highestSafetyLevel, imports: [{module, name, safety}]}}`.
"""

from __future__ import annotations

import fnmatch
import threading
from pathlib import Path
from typing import Any

from bot.hub.model import FileEntry

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".dat", ".data")
_LEVELS = ("innocuous", "suspicious", "dangerous")
_STATUS = {"innocuous": "safe", "suspicious": "suspicious", "dangerous": "unsafe"}
_cache: dict[tuple[str, str], dict[str, Any]] = {}
_lock = threading.Lock()


def _scan(data_path: Path | None, data: bytes | None, path: str) -> dict[str, Any]:
    import io

    from picklescan.scanner import scan_bytes

    ext = "." + path.rsplit(".", 1)[-1] if "." in path else None
    try:
        if data_path is not None:
            with open(data_path, "rb") as f:
                result = scan_bytes(f, path, ext)
        else:
            result = scan_bytes(io.BytesIO(data or b""), path, ext)
    except Exception:  # unreadable (a truncated archive): not known safe
        return {"highestSafetyLevel": "suspicious", "imports": []}
    imports = sorted(
        ({"module": g.module, "name": g.name, "safety": g.safety.value} for g in result.globals),
        key=lambda i: (i["module"], i["name"]),
    )
    level = max((i["safety"] for i in imports), key=_LEVELS.index, default="innocuous")
    if result.scan_err:
        level = max(level, "suspicious", key=_LEVELS.index)
    return {"highestSafetyLevel": level, "imports": imports}


def file_record(state, repo_id: str, path: str, entry: FileEntry) -> dict[str, Any] | None:
    """The security record of one file of a commit (None: not scanned yet)."""
    key = f"{repo_id}/{path}"
    if any(fnmatch.fnmatch(key, p) for p in getattr(state, "security_pending", ())):
        return None
    cid = (entry.sha256 or entry.oid, path.rsplit(".", 1)[-1])
    with _lock:
        cached = _cache.get(cid)
    if cached is not None:
        return cached
    pickle_scan = None
    if path.lower().endswith(PICKLE_SUFFIXES):
        objects = state.repos.objects
        if entry.lfs:
            pickle_scan = _scan(objects.path_for(entry), None, path)
        else:
            pickle_scan = _scan(None, objects.read_regular(entry.oid), path)
    level = pickle_scan["highestSafetyLevel"] if pickle_scan else "innocuous"
    record = {
        "status": _STATUS[level],
        "avScan": {"virusFound": False, "virusNames": None},
        "pickleImportScan": pickle_scan,
    }
    with _lock:
        _cache[cid] = record
    return record


def with_records(state, repo_id: str, files: dict[str, FileEntry], items: list[dict]) -> None:
    """Add `securityFileStatus` to each file item of an expanded listing."""
    for item in items:
        if item.get("type") == "file" and item["path"] in files:
            record = file_record(state, repo_id, item["path"], files[item["path"]])
            if record is not None:
                item["securityFileStatus"] = record
