"""`bot actions ...`: the steps of the scheduled workflow (.github/workflows/bot.yml).

The workflow's `run:` steps stay one-line calls so that every decision lives here, in tested
Python, rather than in YAML or shell:

- `config`: which bot config the run uses (repository variable > `UNETBOT_CONFIG` > the repo
  file `.github/unetbot.yml` > built-in defaults), exported through `$GITHUB_ENV`;
- `single-entry REPO_ID`: a manual dispatch names one repo, so the plan step skips scanning and
  emits a one-entry matrix in the same `chunk_0..chunk_3` / `count` / `has_work` shape as
  `bot plan --github-output`;
- `convert REPO_ID`: one matrix job: the job pipeline (bot/job/run.py) for one source repo, leaving
  `result.json` and `convert.log` (both redacted) next to the manifest for the report job. Empty
  workflow inputs (a scheduled run has none) fall back to the config's defaults here.

The report job's summary is `python -m bot.actions.summary` (standard library only).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from bot.actions.summary import LOG_NAME, RESULT_NAME
from bot.log import RedactingFilter, redact, setup_logging
from engine.errors import BadInput, ExitCode, UnetbotError, exit_code_for

REPO_CONFIG = Path(".github/unetbot.yml")
app = typer.Typer(no_args_is_help=True, help="Steps of the scheduled GitHub Actions workflow.")
log = logging.getLogger("unetbot.actions")


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


def single_entry_outputs(repo_id: str) -> dict[str, str]:
    """Plan outputs for one named repo: chunk_0 holds it, chunk_1..3 are empty.

    `revision`, `kind` and `targets` are left empty: the convert job resolves the head
    revision and what is still to publish itself, exactly as for a scanned entry.
    """
    from bot.schedule.plan import (
        MAX_CHUNKS,  # bot.schedule.plan pulls the Hub client: every `bot` command loads us
    )

    repo_id = repo_id.strip()
    parts = repo_id.split("/")
    if (
        len(parts) != 2
        or not all(parts)
        or any(not c.isprintable() or c.isspace() for c in repo_id)
    ):
        raise BadInput(f"{repo_id!r} is not a Hub repo id (owner/name)")
    entry = {"repo_id": repo_id, "revision": "", "kind": "", "targets": ""}
    outputs = {f"chunk_{i}": "" for i in range(MAX_CHUNKS)}
    outputs["chunk_0"] = json.dumps({"include": [entry]}, separators=(",", ":"))
    outputs.update(count="1", has_work="true")
    return outputs


def append_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append `key=value` lines to a `$GITHUB_OUTPUT` / `$GITHUB_ENV` file (values are 1 line)."""
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise BadInput(f"{key}: a multi-line value cannot be written as key=value")
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(f"{key}={value}\n" for key, value in values.items())


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
    raise BadInput(f"{value!r} is not a boolean")


def job_exit_code(code: ExitCode) -> ExitCode:
    """A skip (unsupported, policy) is a decision shown in the summary, not a failed job."""
    return ExitCode.OK if code.is_skip else code


def run_convert_job(
    repo_id: str,
    revision: str,
    variants: str,
    publish: str,
    dry_run: bool,
    out_root: Path,
) -> ExitCode:
    """One matrix job: the job pipeline for one repo; result.json + convert.log; the job's exit
    code. `publish` '' means the config's `publish.mode`, `variants` '' the config's lists."""
    from bot.client.hub import hub_for
    from bot.client.pacing import RateLimits
    from bot.config import PublishMode, load_config
    from bot.job.run import JobRequest, run_job
    from bot.settings import load_settings

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
        mode = PublishMode.parse(publish or config.publish.mode)
        record["publish"] = mode.key
        request = JobRequest(
            repo_id,
            folder / "convert",
            variants=variants or None,
            publish=mode,
            revision=revision or None,
            dry_run=dry_run,
        )
        limits = RateLimits.of(config.budget)
        hub = hub_for(settings, config.scan.max_calls, config.budget.max_minutes, limits)
        result = run_job(request, config, hub)
        record.update(result.to_dict())
        code = result.exit_code
    except UnetbotError as exc:
        code = exit_code_for(exc)
        record.update(error=redact(str(exc)), exit_code=int(code))
        logger.error("%s: %s", repo_id, exc)
    finally:
        logger.removeHandler(handler)
        handler.close()
    (folder / RESULT_NAME).write_text(redact(json.dumps(record, indent=2)) + "\n")
    return job_exit_code(code)


def _fail(exc: UnetbotError) -> None:
    typer.echo(f"error: {redact(str(exc))}", err=True)
    raise typer.Exit(exit_code_for(exc))


@app.command("config")
def config_cmd(
    github_env: Annotated[Path, typer.Option(help="The $GITHUB_ENV file.")],
    override: Annotated[str, typer.Option(help="Repository variable (wins when set).")] = "",
) -> None:
    """Export UNETBOT_CONFIG for the following steps."""
    path = resolve_config(override, os.environ)
    try:
        append_outputs(github_env, {"UNETBOT_CONFIG": path})
    except UnetbotError as exc:
        _fail(exc)
    typer.echo(f"bot config: {path or '(built-in defaults)'}", err=True)


@app.command("single-entry")
def single_entry_cmd(
    repo_id: str,
    github_output: Annotated[Path, typer.Option(help="The $GITHUB_OUTPUT file.")],
) -> None:
    """Plan outputs for one named repo (no scan)."""
    try:
        append_outputs(github_output, single_entry_outputs(repo_id))
    except UnetbotError as exc:
        _fail(exc)


@app.command("convert")
def convert_cmd(
    repo_id: str,
    revision: Annotated[str, typer.Option()] = "",
    variants: Annotated[str, typer.Option(help="'' or auto: the config's lists")] = "",
    publish: Annotated[str, typer.Option(help="pr | repo | all | none ('' = config)")] = "",
    dry_run: Annotated[str, typer.Option("--dry-run", help="true | false ('' = false)")] = "",
    out: Annotated[Path, typer.Option()] = Path("out"),
) -> None:
    """One matrix job: convert, validate and publish one repo."""
    try:
        dry = parse_bool(dry_run)
    except UnetbotError as exc:
        _fail(exc)
    raise typer.Exit(int(run_convert_job(repo_id, revision, variants, publish, dry, out)))
