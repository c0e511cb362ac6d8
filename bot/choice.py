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

The byte budget (README "Byte budget"): with `auto`, the variants published into the bot's
namespace (every target but the PR) are estimated from the source's size before any download,
and while their sum exceeds `budget.max_published_bytes_per_source` they are dropped in the order
of `budget.drop_order` (any repo variant it does not name goes after, last in the registry
first), so the cap always holds. Sources with at least `budget.full_set_min_downloads` downloads
get the configured lists whole. The job checks the same cap again with the exact bytes of what
passed validation (`trim_to_budget`). An explicit `--variants` list is the operator's and is never
trimmed. Dropped variants are never converted; the cards name them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.config import BotConfig, BudgetConfig, PublishMode
from engine.errors import BadInput
from engine.run.selection import SourceFacts, parse_variant_names
from engine.run.variants import VARIANTS, PublishTarget, Variant


@dataclass(frozen=True)
class VariantChoice:
    """Variants per publish target, in registry order; `notes` explain what was left out."""

    per_target: dict[PublishTarget, list[Variant]]
    notes: list[str] = field(default_factory=list)
    # variant -> why the byte budget left it out (README "Byte budget"); said in the cards
    over_budget: dict[str, str] = field(default_factory=dict)

    @property
    def variants(self) -> list[Variant]:
        chosen = {v.name for vs in self.per_target.values() for v in vs}
        return [v for v in VARIANTS.values() if v.name in chosen]

    def names(self, target: PublishTarget) -> list[str]:
        return [v.name for v in self.per_target.get(target, [])]

    def for_targets(self, targets: Iterable[PublishTarget]) -> VariantChoice:
        keep = set(targets)
        return VariantChoice(
            {t: vs for t, vs in self.per_target.items() if t in keep},
            list(self.notes),
            dict(self.over_budget),
        )


@dataclass(frozen=True)
class SourceSize:
    """What the byte budget knows of a source before any download."""

    fp16_unet_bytes: int  # the UNet in half precision: the registry's sizes are relative to it
    downloads: int = 0

    @classmethod
    def of(cls, unet_bytes: int, fp16_twin: bool, downloads: int = 0) -> SourceSize:
        """From the judged repo: `unet_bytes` is its larger UNet weight set, so with main
        weights and an fp16 variant (`fp16_twin`) the main set is fp32 and the fp16 set half of
        it. A source with one fp32 set is taken at its full size (the dtype is not known before
        the download): its estimate is twice the truth and it is trimmed harder, never less."""
        return cls(unet_bytes // 2 if fp16_twin else unet_bytes, downloads)

    def capped(self, budget: BudgetConfig) -> bool:
        """False for a popular source (`budget.full_set_min_downloads`): it gets every file."""
        least = budget.full_set_min_downloads
        return not (least and self.downloads >= least)

    def estimate(self, variant: Variant) -> int:
        return round(variant.size_vs_fp16_unet * self.fp16_unet_bytes)


def drop_sequence(budget: BudgetConfig, names: Iterable[str]) -> list[str]:
    """The order in which `names` give way to the cap: `budget.drop_order` first, then any
    name it leaves out, last registry entry first."""
    names = set(names)
    listed = [n for n in budget.drop_order if n in names]
    rest = [n for n in reversed(VARIANTS) if n in names and n not in listed]
    return listed + rest


def trim_to_budget(
    sizes: dict[str, int], budget: BudgetConfig, *, estimated: bool
) -> dict[str, str]:
    """Which of `sizes` (variant -> bytes published in the bot's namespace) to drop, with why:
    in `drop_sequence` order until the rest fits `budget.max_published_bytes_per_source`."""
    cap = budget.max_published_bytes_per_source
    total = sum(sizes.values())
    if cap <= 0 or total <= cap:
        return {}
    what = "estimated" if estimated else "validated"
    why = (
        f"byte budget: {what} files of this source total {total / 1e9:.2f} GB, over "
        f"budget.max_published_bytes_per_source {cap / 1e9:.2f} GB"
    )
    dropped: dict[str, str] = {}
    for name in drop_sequence(budget, sizes):
        if total <= cap:
            break
        total -= sizes[name]
        dropped[name] = f"{why}; dropped in budget.drop_order ({sizes[name] / 1e9:.2f} GB)"
    return dropped


def choose_variants(
    spec: str | None,
    mode: PublishMode,
    facts: SourceFacts,
    config: BotConfig,
    size: SourceSize | None = None,
) -> VariantChoice:
    """`size`: the source's size for the byte budget (None: no budget, e.g. a local folder)."""
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
    over_budget: dict[str, str] = {}
    if spec == "auto" and size is not None and mode is not PublishMode.NONE:
        over_budget = _over_budget(usable, targets, size, config.budget)
        if over_budget:
            notes.append(f"byte budget: left out {', '.join(over_budget)}")
            usable = [v for v in usable if v.name not in over_budget]
    per_target = {t: [v for v in usable if v.target is t] for t in targets}
    if mode is not PublishMode.NONE:
        for t in targets:
            if not per_target[t]:
                trimmed = any(VARIANTS[n].target is t for n in over_budget)
                why = "the byte budget left it empty" if trimmed else f"--variants {spec} has none"
                notes.append(f"nothing to publish to the {t.key} target: {why}")
        off_target = [v.name for v in usable if v.target not in targets]
        if off_target:
            notes.append(
                f"not published with --publish {mode.key}: {', '.join(off_target)} "
                "(converted only if another target needs them)"
            )
    if not any(per_target.values()) and spec != "auto":
        raise BadInput(f"--variants {spec}: no variant applies to this source and target")
    return VariantChoice(per_target, notes, over_budget)


def _over_budget(
    usable: list[Variant],
    targets: tuple[PublishTarget, ...],
    size: SourceSize,
    budget: BudgetConfig,
) -> dict[str, str]:
    if not size.capped(budget):
        return {}
    sizes = {v.name: size.estimate(v) for v in usable if not v.target.is_pr and v.target in targets}
    return trim_to_budget(sizes, budget, estimated=True)
