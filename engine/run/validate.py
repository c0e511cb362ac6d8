"""Validate one artifact, a manifest, or a folder; and the validation grid of a run.

Fail closed: a validator that raises marks its artifact failed with the exception as the reason;
nothing here can turn an error into a pass. The bot publishes only artifacts that passed.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from engine.errors import BadInput, MissingFile
from engine.formats.manifest import Artifact, Manifest, sha256_file
from engine.formats.validation_record import ValidationResult
from engine.memory import keep_freed_memory, release_memory
from engine.run.variants import variant
from engine.source.layout import Precision
from engine.source.weight_sets import WeightSets
from engine.validation.context import Context, exact_copy, needs_reference

log = logging.getLogger("unetbot.validate")

CHECK_HASHES = "sha256 of every file"


def import_loaders() -> None:
    """Import what every validator loads with (diffusers' model classes: seconds of imports).

    A run calls this while its first files are still being written, so the import overlaps the
    disk work instead of following it: for an exact copy, whose proof is a byte compare and one
    load, the import is most of the validation time."""
    from diffusers import UNet2DConditionModel  # noqa: F401


def hash_problems(artifact: Artifact, out_dir: Path) -> list[str]:
    problems = []
    for f in artifact.files:
        path = out_dir / f.path
        if not path.is_file():
            problems.append(f"{f.path}: missing")
        elif path.stat().st_size != f.bytes or sha256_file(path) != f.sha256:
            problems.append(f"{f.path}: sha256 does not match the manifest")
    return problems


def validate_artifact(artifact: Artifact, ctx: Context, check_hashes: bool = False) -> None:
    """Validate one artifact with its variant's validator and record the result in
    `artifact.validation` (never raises for a bad artifact: a crash is a failure)."""
    problems = hash_problems(artifact, ctx.out_dir) if check_hashes else []
    if problems:
        artifact.validation = ValidationResult.from_problems(problems, {}, [CHECK_HASHES])
    else:
        started = time.perf_counter()
        try:
            result = variant(artifact.variant).validate(artifact, ctx)
        except Exception as exc:  # fail closed: any crash is a failed artifact
            log.debug("validator crashed:\n%s", traceback.format_exc())
            result = ValidationResult.from_problems([f"{type(exc).__name__}: {exc}"])
        if result.passed:
            _stable_diffusion_cpp(artifact, ctx, result)
        result.seconds = round(time.perf_counter() - started, 3)
        artifact.validation = result
    release_memory()
    log.info(
        "validated %s: %s (%s)",
        artifact.variant,
        artifact.validation.status,
        artifact.validation.reason[:200],
    )


def _stable_diffusion_cpp(artifact: Artifact, ctx: Context, result: ValidationResult) -> None:
    """A file stable-diffusion.cpp reads, which passed its own checks, is loaded and run by the
    real library too (engine.validation.sdcpp); without the extra the result records that
    stable-diffusion.cpp was not run. A crash fails the file (fail closed)."""
    from engine.validation import sdcpp

    v = variant(artifact.variant)
    if not sdcpp.applies(v.consumers):
        return
    gate = sdcpp.gate_for(v.gguf_type, exact_copy(v.check, ctx.source))
    started = time.perf_counter()
    try:
        path = ctx.out_dir / artifact.path
        problems, record, wording = sdcpp.check_sdcpp(
            path, artifact.variant, v.full_checkpoint, gate, ctx
        )
    except Exception as exc:  # fail closed
        log.debug("stable-diffusion.cpp check crashed:\n%s", traceback.format_exc())
        problems, record, wording = [f"{type(exc).__name__}: {exc}"], {}, ""
    if record.get("status") != sdcpp.STATUS_NOT_RUN:  # a timing only where it ran
        record["seconds"] = round(time.perf_counter() - started, 3)
    result.metrics[sdcpp.METRICS_KEY] = record
    if wording:
        result.checks.append(wording)
    if problems:
        record["status"] = sdcpp.FAILED
        merged = ValidationResult.from_problems(problems, result.metrics, result.checks)
        result.status, result.reason = merged.status, merged.reason


def write_validation_grid(ctx: Context, manifest: Manifest) -> None:
    """With `ctx.grid`: the source's and every passed variant's LCM sample, decoded by the
    source's VAE, in one PNG recorded as `manifest.grid` (engine.validation.grid says why and
    when)."""
    from engine.validation.grid import GRID_NAME, SOURCE_LABEL, GridColumn, write_grid

    if not ctx.grid or ctx.source.vae is None or not ctx.samples:
        return
    # samples only exist after output checks, which computed (and cached) the reference
    sampled = ctx.reference().sampled
    columns = [GridColumn(SOURCE_LABEL, sampled)]
    columns += [
        GridColumn(a.variant, ctx.samples[a.variant])
        for a in manifest.artifacts
        if a.passed and a.variant in ctx.samples
    ]
    write_grid(ctx.source.vae.folder, columns, ctx.out_dir / GRID_NAME, ctx.source.vae.variant)
    manifest.grid = GRID_NAME
    release_memory()


def validate_manifest(
    out_dir: Path,
    source_dir: Path | None = None,
    check_hashes: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    grid: bool = False,
) -> Manifest:
    """Validate every artifact of `out_dir/manifest.json`, record results, save, return it."""
    out_dir = Path(out_dir)
    manifest = Manifest.load(out_dir)
    source_path = Path(source_dir or manifest.source.get("path", ""))
    if not source_path.is_dir():
        raise MissingFile(f"{source_path}: source folder for validation not found (--source)")
    revision = manifest.source.get("revision", "")
    sets = WeightSets(source_path)
    contexts: dict[Precision, Context] = {}  # one Context per weight set opened

    def context(artifact: Artifact) -> Context:
        """The artifact's own source: the weight set it was made from (manifest details)."""
        precision = Precision(artifact.details.get("source_precision", Precision.MAIN))
        if precision not in contexts:
            source = sets.read_as(precision)
            same = next((c for c in contexts.values() if c.source is source), None)
            contexts[precision] = same or Context(source, out_dir, revision, grid)
        return contexts[precision]

    with keep_freed_memory():
        for artifact in manifest.artifacts:  # references first, while no artifact model is held
            ctx = context(artifact)
            mine = [variant(a.variant) for a in manifest.artifacts if context(a) is ctx]
            if needs_reference([v.check for v in mine], ctx.source):
                ctx.reference()
        release_memory()
        for i, artifact in enumerate(manifest.artifacts):
            if progress:
                progress(artifact.variant, i, len(manifest.artifacts))
            validate_artifact(artifact, context(artifact), check_hashes)
            manifest.save(out_dir)
        if contexts:
            write_validation_grid(
                contexts.get(Precision.HALF) or next(iter(contexts.values())), manifest
            )
    manifest.save(out_dir)
    return manifest


def validate_folder(folder: Path, source_dir: Path | None = None, grid: bool = False) -> Manifest:
    """`bot validate DIR`: sha256 of every file first, then every artifact."""
    if not (Path(folder) / "manifest.json").is_file():
        raise BadInput(f"{folder}: no manifest.json")
    return validate_manifest(Path(folder), source_dir, check_hashes=True, grid=grid)
