"""Which registry variants a run makes: a `--variants` spec read against what the source has.

`all` keeps only the variants that apply to the source (full checkpoints need VAE + text encoder,
the PR's fp16 twins need an fp16 variant beside main weights), known before any download.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import BadInput
from engine.run.variants import VARIANTS, Variant


def parse_variant_names(spec: str | list[str]) -> list[str]:
    """The names of a comma list (or list), deduplicated in order; `all` stays a name here."""
    names = spec if isinstance(spec, list) else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise BadInput("no variants given; see `bot variants`")
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n != "all" and n not in VARIANTS]
    if unknown:
        raise BadInput(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return names


@dataclass(frozen=True)
class SourceFacts:
    """What decides whether a variant applies to a source (known before any download)."""

    has_full_pipeline: bool  # VAE + text encoder usable: full checkpoints apply
    fp16_twin: bool = False  # main weights and an fp16 variant: the PR's fp16 twins apply

    def applies(self, variant: Variant) -> bool:
        return (self.has_full_pipeline or not variant.full_checkpoint) and (
            self.fp16_twin or not variant.fp16_twin
        )

    def why_not(self, variant: Variant) -> str:
        if variant.full_checkpoint and not self.has_full_pipeline:
            return "the source has no VAE + text encoder in diffusers layout"
        if variant.fp16_twin and not self.fp16_twin:
            return "the source has no fp16 variant beside its main weights"
        return ""


def resolve_variants(spec: str | list[str], facts: SourceFacts | None = None) -> list[Variant]:
    """Expand a comma list (or `all`) into variants in registry order; `all` keeps only those
    that apply to the source when its facts are known."""
    names = parse_variant_names(spec)
    if "all" in names:
        return [v for v in VARIANTS.values() if facts is None or facts.applies(v)]
    wanted = set(names)
    return [v for v in VARIANTS.values() if v.name in wanted]
