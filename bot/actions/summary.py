"""`python -m bot.actions.summary DIR...`: the scheduled workflow's job summary (Markdown).

Reads the manifests, `result.json` files and `plan.json` the plan and convert jobs uploaded and
writes one table row per artifact, then one line per publish, skip and failure; an empty or
missing folder reads "no work this run". The report job runs this without installing the
project's (large) dependencies, so it imports only the standard library and the error contract
(`engine/errors.py`, itself stdlib-only). Everything else the workflow calls is a `bot actions`
command (bot/actions/cli.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from engine.errors import ExitCode

RESULT_NAME = "result.json"
LOG_NAME = "convert.log"
PLAN_NAME = "plan.json"
MANIFEST_NAME = "manifest.json"


# --- summary ----------------------------------------------------------------------------------


def _human(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _cell(value: object) -> str:
    """Table cells come from Hub data: keep them on one line and keep `|` from splitting them."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _readable(paths: Iterable[Path], lines: list[str], unreadable: str) -> Iterator[dict]:
    """Each file's JSON object; for a file that cannot be read, `unreadable` (a format string
    taking the path) goes to `lines` in its place, so the summary still names it."""
    for path in paths:
        data = _load(path)
        if data is None:
            lines.append(unreadable.format(_cell(path)))
        else:
            yield data


def collect(dirs: Iterable[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(manifests, results, plans) found under the given folders; missing folders are skipped."""
    found: dict[str, list[Path]] = {MANIFEST_NAME: [], RESULT_NAME: [], PLAN_NAME: []}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for name, paths in found.items():
            paths.extend(sorted(d.rglob(name)))
    return found[MANIFEST_NAME], found[RESULT_NAME], found[PLAN_NAME]


def summary_markdown(
    manifest_paths: Sequence[Path],
    result_paths: Sequence[Path] = (),
    plan_paths: Sequence[Path] = (),
) -> str:
    """The job summary: one table row per artifact, then one line per publish, skip, failure."""
    lines = ["## unetbot run", ""]
    rows: list[str] = []
    for manifest in _readable(manifest_paths, rows, "| `{}` | | | | unreadable manifest |"):
        source = manifest.get("source") or {}
        repo = source.get("repo") or "(local)"
        revision = (source.get("revision") or "")[:12]
        for a in manifest.get("artifacts") or []:
            validation = a.get("validation") or {}
            status = validation.get("status", "not validated")
            if status != "passed" and validation.get("reason"):
                status = f"{status}: {validation['reason']}"
            rows.append(
                f"| {_cell(repo)} | `{_cell(revision)}` | {_cell(a.get('variant', '?'))} "
                f"| {_human(int(a.get('bytes') or 0))} | {_cell(status)} |"
            )
    if rows:
        lines += [
            "| source repo | revision | variant | size | validation |",
            "| --- | --- | --- | ---: | --- |",
            *rows,
            "",
        ]
    notes: list[str] = []
    for r in _readable(result_paths, notes, "- ❌ `{}`: unreadable result"):
        repo, code = _cell(r.get("repo_id") or r.get("src") or "?"), _exit_code(r)
        notes += [f"- ✅ {repo}: published {_cell(url)}" for url in r.get("published") or []]
        if r.get("error"):
            notes.append(f"- ❌ {repo}: {_label(code)}: {_cell(r['error'])}")
        elif code is not None and code.is_skip:
            notes.append(f"- ⏭️ {repo}: {code.label}: {_cell(r.get('skipped', ''))}")
        elif code:
            detail = ", ".join(r.get("failed") or []) or r.get("skipped", "")
            notes.append(f"- ❌ {repo}: {_label(code)}: {_cell(detail)}")
        elif r.get("skipped"):
            notes.append(f"- ⏭️ {repo}: {_cell(r['skipped'])}")
        elif r.get("dry_run"):
            notes.append(f"- 🔍 {repo}: dry run, would convert {', '.join(r.get('planned') or [])}")
    for path in plan_paths:
        plan = _load(path) or {}
        for key, icon in (("skipped", "⏭️"), ("deferred", "⏳")):
            notes += [
                f"- {icon} {_cell(e.get('repo_id', '?'))}: {key}: {_cell(e.get('reason', ''))}"
                for e in plan.get(key) or []
            ]
        if plan.get("done"):
            notes.append(f"- {len(plan['done'])} repo(s) already published for their revision")
    if not rows and not any(n.startswith(("- ✅", "- ❌", "- 🔍")) for n in notes):
        lines += ["No work this run: nothing new to convert or publish.", ""]
    if notes:
        lines += [*notes, ""]
    return "\n".join(lines)


def _exit_code(result: dict) -> ExitCode | None:
    try:
        return ExitCode(int(result.get("exit_code") or 0))
    except (TypeError, ValueError):
        return None


def _label(code: ExitCode | None) -> str:
    return code.label if code is not None else "unknown exit code"


def main(argv: Sequence[str] | None = None) -> int:
    dirs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if any(str(d).startswith("-") for d in dirs):
        print("usage: python -m bot.actions.summary DIR...", file=sys.stderr)
        return 2
    sys.stdout.write(summary_markdown(*collect(dirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
