"""The Hub's verdict on pickle files (layer 1 of the pickle path, engine.source.pickle_source).

The Hub scans every file it stores (an antivirus scan, and for pickles the imports the stream
would make, by picklescan) and reports each file's record with the tree listing:
`get_paths_info(..., expand=True)` (the same record `list_repo_tree(expand=True)` gives, for
exactly the files asked, in one call). A pickle is downloaded only when its record exists and
says safe: a file the Hub marks unsafe or suspicious, one with a virus finding or with imports
above "innocuous", and one the Hub has not scanned (no record) are a policy skip (exit 6) naming
the file and the reason, before any download.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.client.hub import Hub
from engine.errors import PolicySkipped


def _imports(scan: dict | None) -> list[dict]:
    return list((scan or {}).get("imports") or [])


def verdict_of(path: str, security) -> tuple[dict | None, str]:
    """(record for the manifest, "") when the Hub says the file is safe, else (None, why)."""
    if security is None:
        return None, f"{path}: the Hub has no security scan of it yet (not known safe)"
    status = str(security.get("status") or "")
    av = security.get("av_scan") or {}
    scan = security.get("pickle_import_scan")
    level = str((scan or {}).get("highestSafetyLevel") or "")
    flagged = [
        f"{i.get('module')}.{i.get('name')} ({i.get('safety')})"
        for i in _imports(scan)
        if i.get("safety") != "innocuous"
    ]
    if av.get("virusFound"):
        names = ", ".join(av.get("virusNames") or []) or "unnamed"
        return None, f"{path}: the Hub's antivirus scan found {names}"
    if flagged or (level and level != "innocuous"):
        return None, f"{path}: the Hub's pickle scan flags {', '.join(flagged) or level} imports"
    if not security.get("safe") or status != "safe":
        return None, f"{path}: the Hub marks it {status or 'not safe'}"
    if scan is None:
        return None, f"{path}: the Hub's record has no pickle import scan (not known safe)"
    record = {
        "verdict": "safe",
        "status": status,
        "highest_safety_level": level or "innocuous",
        "imports": sorted(f"{i.get('module')}.{i.get('name')}" for i in _imports(scan)),
    }
    return record, ""


def hub_verdicts(hub: Hub, repo_id: str, revision: str, paths: Iterable[str]) -> dict[str, dict]:
    """The Hub's safe record of each pickle in `paths`; PolicySkipped at the first that is not."""
    paths = sorted(set(paths))
    if not paths:
        return {}
    infos = hub.call(
        f"security scan records of {repo_id}",
        hub.api.get_paths_info,
        repo_id,
        paths,
        expand=True,
        revision=revision or None,
    )
    by_path = {getattr(i, "path", ""): getattr(i, "security", None) for i in infos}
    out: dict[str, dict] = {}
    for path in paths:
        record, why = verdict_of(path, by_path.get(path))
        if record is None:
            raise PolicySkipped(f"{repo_id}: {why}; pickles are downloaded only when the Hub "
                                "reports them safe")  # fmt: skip
        out[path] = record
    return out
