"""`python -m bot.ci`: the small glue the GitHub Actions workflow (.github/workflows/bot.yml) calls.

The workflow's `run:` steps stay one-line calls so that every decision lives here, in tested
Python, rather than in YAML or shell:

- `config`: which bot config the run uses (repository variable > `UNETBOT_CONFIG` > the repo
  file `.github/unetbot.yml` > built-in defaults), exported through `$GITHUB_ENV`.
- `single-entry REPO_ID`: a manual dispatch names one repo, so the plan job skips scanning and
  emits a one-entry matrix in the same `chunk_0..chunk_3` / `count` / `has_work` shape as
  `bot plan --github-output`.
- `convert REPO_ID`: one matrix job: convert, validate and publish one source repo, then leave
  `result.json` and `convert.log` next to the manifest for the report job. Empty workflow inputs
  (a scheduled run has no inputs) fall back to the config's defaults here, not in YAML.
- `summary DIR...`: the run's job summary (Markdown) from the manifests and results the convert
  jobs uploaded; an empty or missing folder reads "no work this run".

Only the standard library is imported at module level: the report job runs this without
installing the project's (large) dependencies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

REPO_CONFIG = Path(".github/unetbot.yml")
MAX_CHUNKS = 4  # must match bot.plan.MAX_CHUNKS and the workflow's convert-0..convert-3 jobs
RESULT_NAME = "result.json"
LOG_NAME = "convert.log"
PLAN_NAME = "plan.json"
MANIFEST_NAME = "manifest.json"
# Exit codes of `bot` (bot/exit_codes.py), repeated so `summary` needs no project imports.
SKIP_CODES = {3: "unsupported", 6: "skipped by policy"}
FAIL_CODES = {1: "internal error", 2: "bad input", 4: "validation failed", 5: "Hub error"}


# --- config -----------------------------------------------------------------------------------


def resolve_config(override: str, environ: Mapping[str, str], root: Path = Path(".")) -> str:
    """The config path for this run, '' for built-in defaults.

    An explicit repository variable wins, then an inherited `UNETBOT_CONFIG`, then the file
    checked in at `.github/unetbot.yml`; a missing file is not an error (defaults are safe).
    """
    for candidate in (override, environ.get("UNETBOT_CONFIG", "")):
        if candidate.strip():
            return candidate.strip()
    path = Path(root) / REPO_CONFIG
    return str(path) if path.is_file() else ""


# --- plan -------------------------------------------------------------------------------------


def single_entry_outputs(repo_id: str) -> dict[str, str]:
    """Plan outputs for one named repo: chunk_0 holds it, chunk_1..3 are empty.

    `revision`, `kind` and `targets` are left empty: the convert job resolves the head
    revision and what is still to publish itself, exactly as for a scanned entry.
    """
    repo_id = repo_id.strip()
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub repo id (owner/name)")
    entry = {"repo_id": repo_id, "revision": "", "kind": "", "targets": ""}
    outputs = {f"chunk_{i}": "" for i in range(MAX_CHUNKS)}
    outputs["chunk_0"] = json.dumps({"include": [entry]}, separators=(",", ":"))
    outputs.update(count="1", has_work="true")
    return outputs


def append_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append `key=value` lines to a `$GITHUB_OUTPUT` / `$GITHUB_ENV` file (values are 1 line)."""
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key}: a multi-line value cannot be written as key=value")
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(f"{key}={value}\n" for key, value in values.items())


# --- convert ----------------------------------------------------------------------------------


def slug(repo_id: str) -> str:
    """A folder name for a repo id (the same scheme as `bot demo`)."""
    return repo_id.replace("/", "__")


def parse_bool(value: str) -> bool:
    """Workflow booleans arrive as 'true'/'false', or '' on a scheduled run (no inputs)."""
    value = value.strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise ValueError(f"{value!r} is not a boolean")


def job_exit_code(code: int) -> int:
    """A skip (unsupported, policy) is a decision shown in the summary, not a failed job."""
    return 0 if code in SKIP_CODES else code


def run_convert_job(
    repo_id: str,
    revision: str,
    variants: str,
    publish: str,
    dry_run: bool,
    out_root: Path,
) -> int:
    """Convert, validate and publish one repo; write result.json + convert.log; return the
    job's exit code. `publish` may be `all` (both the PR and the quantized repos in one pass,
    which `bot convert` does not offer) or '' (the config's `publish.mode`)."""
    from bot import exit_codes
    from bot.config import load_config
    from bot.log import RedactingFilter, setup_logging
    from bot.settings import load_settings
    from bot.workflow import MODES, run_hub_convert
    from engine.errors import UnetbotError

    folder = Path(out_root) / slug(repo_id)
    folder.mkdir(parents=True, exist_ok=True)
    logger = setup_logging()
    handler = logging.FileHandler(folder / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    record: dict = {"repo_id": repo_id, "revision": revision, "dry_run": dry_run}
    try:
        settings = load_settings()
        config = load_config(settings.config_path)
        mode = publish or config.publish.mode
        if mode not in (*MODES, "none"):
            raise ValueError(f"--publish must be one of pr, repo, all, none; not {mode!r}")
        record["publish"] = mode
        result = run_hub_convert(
            repo_id,
            variants or "auto",
            folder / "convert",
            revision or None,
            mode,
            dry_run,
            None,
            True,
        )
        record.update(result.to_dict())
        code = result.exit_code
    except UnetbotError as exc:
        code = exit_codes.exit_code_for(exc)
        record.update(error=str(exc), exit_code=code)
        logger.error("%s: %s", repo_id, exc)
    except ValueError as exc:
        code = exit_codes.BAD_INPUT
        record.update(error=str(exc), exit_code=code)
        logger.error("%s: %s", repo_id, exc)
    finally:
        logger.removeHandler(handler)
        handler.close()
    (folder / RESULT_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return job_exit_code(code)


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
    rows = []
    for path in manifest_paths:
        manifest = _load(path)
        if manifest is None:
            rows.append(f"| `{_cell(path)}` | | | | unreadable manifest |")
            continue
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
    notes = []
    for path in result_paths:
        r = _load(path)
        if r is None:
            notes.append(f"- ❌ `{_cell(path)}`: unreadable result")
            continue
        repo, code = _cell(r.get("repo_id") or r.get("src") or "?"), int(r.get("exit_code") or 0)
        notes += [f"- ✅ {repo}: published {_cell(url)}" for url in r.get("published") or []]
        if r.get("error"):
            label = FAIL_CODES.get(code) or SKIP_CODES.get(code) or f"exit {code}"
            notes.append(f"- ❌ {repo}: {label}: {_cell(r['error'])}")
        elif code in SKIP_CODES:
            notes.append(f"- ⏭️ {repo}: {SKIP_CODES[code]}: {_cell(r.get('skipped', ''))}")
        elif code:
            detail = ", ".join(r.get("failed") or []) or r.get("skipped", "")
            notes.append(f"- ❌ {repo}: {FAIL_CODES.get(code, f'exit {code}')}: {_cell(detail)}")
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


# --- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bot.ci", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("config", help="Export UNETBOT_CONFIG for the following steps.")
    c.add_argument("--override", default="", help="Repository variable (wins when non-empty).")
    c.add_argument("--github-env", type=Path, required=True)

    s = sub.add_parser("single-entry", help="Plan outputs for one named repo (no scan).")
    s.add_argument("repo_id")
    s.add_argument("--github-output", type=Path, required=True)

    v = sub.add_parser("convert", help="One matrix job: convert, validate, publish one repo.")
    v.add_argument("repo_id")
    v.add_argument("--revision", default="")
    v.add_argument("--variants", default="")
    v.add_argument("--publish", default="", help="pr | repo | all | none ('' = config)")
    v.add_argument("--dry-run", default="", help="true | false ('' = false)")
    v.add_argument("--out", type=Path, default=Path("out"))

    m = sub.add_parser("summary", help="Markdown job summary from manifests and results.")
    m.add_argument("dirs", nargs="*", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            path = resolve_config(args.override, os.environ)
            append_outputs(args.github_env, {"UNETBOT_CONFIG": path})
            print(f"bot config: {path or '(built-in defaults)'}", file=sys.stderr)
        elif args.command == "single-entry":
            append_outputs(args.github_output, single_entry_outputs(args.repo_id))
        elif args.command == "convert":
            return run_convert_job(
                args.repo_id,
                args.revision,
                args.variants,
                args.publish,
                parse_bool(args.dry_run),
                args.out,
            )
        elif args.command == "summary":
            sys.stdout.write(summary_markdown(*collect(args.dirs)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
