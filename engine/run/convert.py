"""Run a list of variants on one source and describe the results in a manifest.

This is the engine's entry point for the bot: `convert(source, out_dir, variants, ...)`, where
`source` is a folder or the `WeightSets` a caller already opened (engine.source.weight_sets).
A variant that fails to write raises (nothing partial is left: every writer writes to a temp name
and renames); validation is a separate step (`engine.validation`) that fills each artifact's
`validation` field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInput, UnsupportedArchitecture
from engine.formats.manifest import Artifact, Manifest, describe_files
from engine.memory import release_memory
from engine.run.selection import SourceFacts, resolve_variants
from engine.run.variants import Variant
from engine.source.folder import Source
from engine.source.layout import Precision
from engine.source.weight_sets import WeightSets, weight_sets
from engine.writers.original import Provenance

log = logging.getLogger("unetbot.engine")

ProgressHook = Callable[[str, int, int], None]


def _files_read(source: Source) -> dict[str, list[str]]:
    """component -> the files it was read from, relative to the source root."""
    components = (source.unet, source.vae, source.text_encoder)
    return {
        c.name: [p.relative_to(source.root).as_posix() for p in c.files]
        for c in components
        if c is not None
    }


def source_summary(source: Source, provenance: Provenance) -> dict:
    return {
        "repo": provenance.source_repo,
        "revision": provenance.source_revision,
        "path": str(source.root),
        "kind": source.classification.kind,
        "reason": source.classification.reason,
        "dtype": source.unet.dtype,
        "unet_bytes": source.unet.weight_bytes,
        "has_vae": source.vae is not None,
        "has_text_encoder": source.text_encoder is not None,
        "unet_config": source.unet.config,
        "license_files": [p.name for p in source.license_files],
        "precision": str(source.precision),
        "files": _files_read(source),
        "ignored": {
            c.name: dict(c.ignored)
            for c in (source.unet, source.vae, source.text_encoder)
            if c is not None and c.ignored
        },
        "notes": list(source.notes),
    }


def plan_variants(source: Source, spec: str | list[str]) -> list[Variant]:
    """Variants to run for `spec` on `source`; refuses unsupported sources and impossible asks."""
    if not source.classification.supported:
        raise UnsupportedArchitecture(
            f"{source.unet.folder}: {source.classification.reason}; refusing to convert"
        )
    facts = source_facts(source)
    variants = resolve_variants(spec, facts)
    impossible = [f"{v.name} ({facts.why_not(v)})" for v in variants if not facts.applies(v)]
    if impossible:
        raise BadInput(f"{source.root}: cannot make {'; '.join(impossible)}")
    return variants


def source_facts(source: Source) -> SourceFacts:
    """Whether full checkpoints and the fp16 twins apply to this (opened) source."""
    return SourceFacts(source.has_full_pipeline, source.fp16_twin_available)


@dataclass
class Run:
    """One conversion run: the opened source (one per weight set read), the variants to write
    and where they go."""

    sources: dict[Precision, Source]  # every precision maps to the Source it reads
    variants: list[Variant]
    out_dir: Path
    stem: str
    provenance: Provenance
    manifest: Manifest

    @property
    def source(self) -> Source:
        """The source the lossy variants are made from (half precision when there is one)."""
        return self.sources[Precision.HALF]

    def source_for(self, variant: Variant) -> Source:
        return self.sources[variant.precision]


def start_run(
    source: WeightSets | Path,
    out_dir: Path,
    variants: str | list[str],
    provenance: Provenance = Provenance(),
    stem: str | None = None,
    precision: Precision | None = None,
) -> Run:
    """Open and check the whole source (unless `source` was opened already), resolve the
    variants, then create `out_dir`.

    Every check that can refuse the input (layout, configs, every header of every file, every
    tensor name and shape) runs when a weight set is opened and in `plan_variants`, before the
    folder is created: a refused source leaves the output location exactly as it was. Each
    variant reads its own weight set (`Variant.precision`, engine.source.weight_sets); the fp16
    variant is opened only when a chosen variant reads it."""
    sets = weight_sets(source, precision)
    chosen = plan_variants(sets.main, variants)
    sources = {
        p: sets.read_as(p) if any(v.precision is p for v in chosen) else sets.main
        for p in Precision
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = sources[Precision.HALF]
    stem = stem or (provenance.source_repo.split("/")[-1] if provenance.source_repo else "")
    stem = stem or primary.root.name
    summary = source_summary(primary, provenance)
    used = {id(sources[v.precision]): sources[v.precision] for v in chosen}
    summary["files"] = _merged_files(list(used.values()) or [primary])
    manifest = Manifest(source=summary)
    return Run(sources, chosen, out_dir, stem, provenance, manifest)


def _merged_files(sources: list[Source]) -> dict[str, list[str]]:
    """component -> every file read for it by the sources this run uses."""
    merged: dict[str, list[str]] = {}
    for source in sources:
        for component, files in _files_read(source).items():
            merged.setdefault(component, [])
            merged[component] += [f for f in files if f not in merged[component]]
    return merged


def write_variant(run: Run, variant: Variant, earlier: dict) -> Artifact:
    """Write one variant and describe it (sha256 of every file); `earlier` gains its result.

    `earlier` maps variant names to what this run already wrote, for writers that reuse it (a
    full GGUF copies the UNet tensors of the UNet-only GGUF of its type)."""
    started = time.perf_counter()
    source = run.source_for(variant)
    written = variant.write(source, run.out_dir, run.stem, run.provenance, earlier)
    earlier[variant.name] = written
    files = describe_files(run.out_dir, written.files, written.sha256)
    main = next(f for f in files if f.path == str(written.main.relative_to(run.out_dir)))
    details = {
        **written.details,
        "source_precision": str(variant.precision),
        "source_files": [f for fs in _files_read(source).values() for f in fs],
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("wrote %s (%s, %.1fs)", variant.name, main.path, details["seconds"])
    release_memory()  # a diffusers quantization leaves GBs of freed heap behind
    return Artifact(
        variant=variant.name,
        format=variant.format,
        path=main.path,
        bytes=sum(f.bytes for f in files),
        sha256=main.sha256,
        consumers=list(variant.consumers),
        files=files,
        details=details,
    )


def convert(
    source: WeightSets | Path,
    out_dir: Path,
    variants: str | list[str],
    provenance: Provenance = Provenance(),
    stem: str | None = None,
    progress: ProgressHook | None = None,
    precision: Precision | None = None,
) -> Manifest:
    """Write every requested variant of `source` into `out_dir` and save the manifest."""
    run = start_run(source, out_dir, variants, provenance, stem, precision)
    earlier: dict = {}
    for i, variant in enumerate(run.variants):
        if progress:
            progress(variant.name, i, len(run.variants))
        run.manifest.artifacts.append(write_variant(run, variant, earlier))
        run.manifest.save(run.out_dir)
    if progress:
        progress("done", len(run.variants), len(run.variants))
    run.manifest.save(run.out_dir)
    return run.manifest
