"""The convert stage of a Hub repo of single-file checkpoints (bot/discover/single_files.py).

Each checkpoint is a source of its own: downloaded alone (with the repo's licence files), split
into a diffusers folder read with SD1.5's configs (engine.writers.single_file), converted and
validated into `OUT/<file stem>/` with outputs named after the file. The job's manifest
(`OUT/manifest.json`) lists every checkpoint's artifacts under its folder, and
`source.single_files` says which file each came from; the quantized repos get them all in one
commit per target, and the cards say which file each output was made from. A UNet-only
checkpoint gets no full-checkpoint variants.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack
from pathlib import Path

from bot.choice import VariantChoice
from bot.client.hub import Hub
from bot.config import BotConfig
from bot.job.convert_stage import convert_stage
from bot.job.fetch import download
from bot.job.outdir import prepare_output_folder
from bot.job.pickles import opened_single_file, record_opening
from bot.job.types import JobRequest, JobResult
from engine.errors import ExitCode
from engine.formats.manifest import Artifact, Manifest
from engine.source.layout import LICENSE_NAMES
from engine.writers.original import Provenance


def _prefixed(artifact: Artifact, folder: str) -> Artifact:
    files = [dataclasses.replace(f, path=f"{folder}/{f.path}") for f in artifact.files]
    details = {**artifact.details, "source_checkpoint": folder}
    return dataclasses.replace(
        artifact, path=f"{folder}/{artifact.path}", files=files, details=details
    )


def _for_contents(choice: VariantChoice, contents: str) -> VariantChoice:
    """The variants a checkpoint can give: no full checkpoints from a UNet-only file."""
    if contents == "full":
        return choice
    per_target = {
        t: [v for v in vs if not v.full_checkpoint] for t, vs in choice.per_target.items()
    }
    return dataclasses.replace(choice, per_target=per_target)


def convert_single_files(
    hub: Hub,
    request: JobRequest,
    result: JobResult,
    candidate,
    chosen: VariantChoice,
    config: BotConfig,
    stack: ExitStack,
) -> tuple[Path, str, str]:
    """Convert every recognised checkpoint of `candidate`; (the folder whose `unet/config.json`
    and licence files go with the quantized repos, its UNet folder, the cards' note)."""
    names = sorted(candidate.single_files)
    licences = [n for n in LICENSE_NAMES if n in candidate.files]
    wanted = names + licences
    size = sum(candidate.files.get(n, 0) for n in wanted)
    budget = config.budget.max_download_bytes
    snapshot = download(hub, candidate.repo_id, candidate.sha, wanted, size, len(wanted), budget)
    out = Path(request.out)
    prepare_output_folder(out)
    provenance = Provenance(candidate.repo_id, candidate.sha)
    artifacts: list[Artifact] = []
    records: dict[str, dict] = {}
    first: Path | None = None
    source: dict = {}
    for name in names:
        verdict = candidate.single_files[name].get("hub")  # a .ckpt: the Hub's record
        root, record = stack.enter_context(opened_single_file(snapshot / name, out, verdict))
        for licence in licences:
            os.symlink((snapshot / licence).resolve(), root / licence)
        stem = record.info.stem
        sub = JobResult(name, out / stem)
        choice = _for_contents(chosen, record.info.contents)
        convert_stage(dataclasses.replace(request, out=out / stem), sub, root, choice,
                      provenance, stem, False)  # fmt: skip
        record_opening(sub, record, f"{candidate.repo_id}/{name}")
        assert sub.manifest is not None
        artifacts += [_prefixed(a, stem) for a in sub.manifest.artifacts]
        records[name] = {**record.to_dict(), "outputs": [f"{stem}/{a.path}" for a in
                                                         sub.manifest.artifacts]}  # fmt: skip
        result.notes += sub.notes
        source = source or dict(sub.manifest.source)
        first = first or root
    assert first is not None
    source.pop("single_file", None)
    source["path"] = str(snapshot)
    source["single_files"] = records
    result.manifest = Manifest(source=source, artifacts=artifacts)
    result.manifest.save(out)
    if result.failed():
        result.exit_code = ExitCode.VALIDATION_FAILED
    note = "Made from the repo's single-file checkpoints, each read with SD1.5's configs: " + (
        "; ".join(f"{n} -> {', '.join(r['outputs'])}" for n, r in records.items())
    )
    return first, "unet", note
