"""One source through the whole cycle: judge -> pending targets -> fetch -> convert + validate
-> publish. `bot convert`, each matrix job of the scheduled workflow (`bot actions convert`),
`bot demo` and the tests all run this one path: a `JobRequest` in, a `JobResult` out.

A local folder is a source like a Hub repo whose fetch returns its own path and whose targets
are never published. Expected failures raise `engine.errors` exceptions (the CLI maps them to
exit codes); a refusal (unsupported model, policy, bad input found from the file list) is a
result with its exit code, so the scheduled run can report it beside the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bot.choice import choose_variants
from bot.config import BotConfig, PublishMode
from bot.job.convert_stage import convert_stage
from bot.job.pickles import opened_pickles, opened_single_file, record_opening
from bot.job.types import JobRequest, JobResult
from engine.errors import BadInput, ExitCode
from engine.run.convert import source_facts
from engine.source.weight_sets import WeightSets
from engine.writers.original import Provenance

if TYPE_CHECKING:
    from bot.client.hub import Hub

__all__ = ["JobRequest", "JobResult", "run_job"]


def run_job(request: JobRequest, config: BotConfig, hub: Hub | None = None) -> JobResult:
    """Run one job; `hub` is needed for a Hub source (a local folder never touches the Hub)."""
    if request.publish is not PublishMode.NONE and not request.validate:
        raise BadInput("--skip-validation cannot be combined with publishing")
    if Path(request.source).is_dir() or Path(request.source).is_file():
        if request.publish is not PublishMode.NONE:
            raise BadInput(f"{request.source}: publishing needs a Hub repo id, not a local folder")
        return _run_local(request, config)
    if hub is None:
        raise BadInput(f"{request.source}: not a local folder, and no Hub to fetch it from")
    from bot.job.hub_source import run_hub  # the Hub client's imports, only for a Hub source

    return run_hub(request, config, hub)


def _run_local(request: JobRequest, config: BotConfig) -> JobResult:
    result = JobResult(request.source, Path(request.out))
    src, out = Path(request.source), Path(request.out)
    # run_job sends only an existing file or folder here
    opener = opened_single_file(src, out) if src.is_file() else opened_pickles(src, out)
    with opener as (source_dir, opened):
        sets = WeightSets(source_dir)  # opened once: judged here, then converted
        source = sets.main  # judge: configs and headers only
        if not source.classification.supported:
            result.skipped = source.classification.reason
            result.exit_code = ExitCode.UNSUPPORTED
            return result
        choice = choose_variants(request.variants, request.publish, source_facts(source), config)
        result.planned = [v.name for v in choice.variants]
        result.notes += choice.notes
        if request.dry_run:
            return result
        grid = request.grid and source.classification.is_lcm
        stem = _stem(src, opened)
        convert_stage(request, result, sets, choice, Provenance(), stem, grid)
        record_opening(result, opened, request.source)
    return result


def _stem(source: Path, opened) -> str | None:
    """Outputs are named after the source: a checkpoint's file stem, a converted folder's name
    (None: the engine names them after the folder it opens)."""
    if opened is None:
        return None
    if source.is_file():
        return opened.info.stem
    return source.resolve().name
