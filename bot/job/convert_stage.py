"""The convert + validate stage of a job, into its output folder: the one step both the local and
the Hub path run (the output folder's rules first, then the engine, with a progress bar)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.choice import VariantChoice
from bot.job.outdir import prepare_output_folder
from bot.job.types import JobRequest, JobResult
from bot.progress import Hook, display, stage_bar
from engine.errors import ExitCode
from engine.formats.journal import run_journal
from engine.formats.manifest import MANIFEST_NAME
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
        detail = f"{len(names)} variant{'s' if len(names) != 1 else ''}"
        if request.validate:
            with stage_bar("convert + validate", detail) as bar:
                hook = _finished_artifacts(out, bar, validated=True)
                result.manifest = convert_and_validate(
                    source, out, names, provenance, stem, hook, grid
                )
        else:
            with stage_bar("convert", detail) as bar:
                hook = _finished_artifacts(out, bar, validated=False)
                result.manifest = engine_convert(source, out, names, provenance, stem, hook)
    if result.failed():
        result.exit_code = ExitCode.VALIDATION_FAILED


def _finished_artifacts(out: Path, bar: Hook, validated: bool) -> Hook:
    """`bar`, plus one display line per artifact once it is finished (validated, or written
    when not validating), read from the manifest the engine saves after each step."""
    said: set[str] = set()

    def hook(item: str, index: int, total: int) -> None:
        try:
            artifacts = json.loads((out / MANIFEST_NAME).read_bytes())["artifacts"]
        except (OSError, ValueError, KeyError, TypeError):
            artifacts = []
        for a in artifacts:
            check = a.get("validation")
            if a["variant"] in said or (validated and not check):
                continue
            said.add(a["variant"])
            status = check["status"] if check else "written, not validated"
            size = f"{a['bytes'] / 1e6:.1f} MB"
            display().event(f"  {a['variant']}: {status} ({size}, {out / a['path']})")
        bar(item, index, total)

    return hook
