"""Which variants a job runs, per publish target: the one place a `--variants` spec is read.

- no spec: `original` when nothing is published (a local conversion), else `auto`;
- `auto`: the config's per-target lists (`publish.<target>_variants`) of the targets published
  to (of every target when nothing is published);
- `all`: every registry variant that applies to the source;
- a comma list: exactly those; asking for a full checkpoint of a source without VAE + text
  encoder is an error, and a list that leaves a published target empty says so in the notes.

In `auto` and `all`, variants that do not apply to the source (full checkpoints without VAE +
text encoder, the PR's fp16 twins without an fp16 variant beside main weights) are dropped and
the notes say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.config import BotConfig, PublishMode
from engine.errors import BadInput
from engine.run.selection import SourceFacts, parse_variant_names
from engine.run.variants import VARIANTS, PublishTarget, Variant


@dataclass(frozen=True)
class VariantChoice:
    """Variants per publish target, in registry order; `notes` explain what was left out."""

    per_target: dict[PublishTarget, list[Variant]]
    notes: list[str] = field(default_factory=list)

    @property
    def variants(self) -> list[Variant]:
        chosen = {v.name for vs in self.per_target.values() for v in vs}
        return [v for v in VARIANTS.values() if v.name in chosen]

    def names(self, target: PublishTarget) -> list[str]:
        return [v.name for v in self.per_target.get(target, [])]

    def for_targets(self, targets: Iterable[PublishTarget]) -> VariantChoice:
        keep = set(targets)
        return VariantChoice(
            {t: vs for t, vs in self.per_target.items() if t in keep}, list(self.notes)
        )


def choose_variants(
    spec: str | None, mode: PublishMode, facts: SourceFacts, config: BotConfig
) -> VariantChoice:
    targets = mode.targets or tuple(PublishTarget)
    if spec is None:
        spec = "original" if mode is PublishMode.NONE else "auto"
    notes: list[str] = []
    if spec == "auto":
        wanted = [n for t in targets for n in config.publish.variants_for(t)]
        explicit = False
    else:
        wanted = parse_variant_names(spec)
        explicit = "all" not in wanted
        if not explicit:
            wanted = list(VARIANTS)
    wanted = list(dict.fromkeys(wanted))
    impossible = [n for n in wanted if not facts.applies(VARIANTS[n])]
    if impossible and explicit:
        why = "; ".join(f"{n}: {facts.why_not(VARIANTS[n])}" for n in impossible)
        raise BadInput(f"cannot make {why}")
    if impossible:
        why = "; ".join(f"{n} ({facts.why_not(VARIANTS[n])})" for n in impossible)
        notes.append(f"left out {why}")
    usable = [VARIANTS[n] for n in wanted if n not in impossible]
    per_target = {t: [v for v in usable if v.target is t] for t in targets}
    if mode is not PublishMode.NONE:
        for t in targets:
            if not per_target[t]:
                notes.append(
                    f"nothing to publish to the {t.key} target: --variants {spec} has none"
                )
        off_target = [v.name for v in usable if v.target not in targets]
        if off_target:
            notes.append(
                f"not published with --publish {mode.key}: {', '.join(off_target)} "
                "(converted only if another target needs them)"
            )
    if not any(per_target.values()) and spec != "auto":
        raise BadInput(f"--variants {spec}: no variant applies to this source and target")
    return VariantChoice(per_target, notes)
