"""The convert + validate stage of a job, into its output folder: the one step both the local and
the Hub path run (the output folder's rules first, then the engine, with a progress bar)."""

from __future__ import annotations

from pathlib import Path

from bot.choice import VariantChoice
from bot.job.outdir import prepare_output_folder
from bot.job.types import JobRequest, JobResult
from bot.progress import stage_bar
from engine.errors import ExitCode
from engine.formats.journal import run_journal
from engine.run.convert import convert as engine_convert
from engine.run.pipeline import convert_and_validate
from engine.source.weight_sets import WeightSets
from engine.writers.original import Provenance


def convert_stage(
    request: JobRequest,
    result: JobResult,
    source: WeightSets | Path,
    choice: VariantChoice,
    provenance: Provenance,
    stem: str | None,
    grid: bool,
) -> None:
    """The convert + validate stage into `request.out` (made ready first: outdir rules)."""
    out = Path(request.out)
    names = [v.name for v in choice.variants]
    about = {"source": request.source, "revision": provenance.source_revision, "variants": names}
    with run_journal(out, about) as journal:
        prepare_output_folder(out, journal)
        if request.validate:
            with stage_bar("convert + validate") as hook:
                result.manifest = convert_and_validate(
                    source, out, names, provenance, stem, hook, grid
                )
        else:
            with stage_bar("convert") as hook:
                result.manifest = engine_convert(source, out, names, provenance, stem, hook)
    if result.failed():
        result.exit_code = ExitCode.VALIDATION_FAILED
