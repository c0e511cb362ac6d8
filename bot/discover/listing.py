"""Discovery: the repos a run looks at, listed by what the Hub indexes rather than by name.

Most SD1.5 fine-tunes are named after neither "lcm" nor "stable-diffusion"; what they share is
what the Hub derives from their files: the `diffusers` library tag (a root `model_index.json`
or a diffusers `config.json`), the pipeline class tag `diffusers:<Class>` of
`model_index.json`, and a `text-to-image` pipeline tag (hub-docs model-cards.md "Specifying a
library"; the diffusers docs filter with `tags="diffusers:StableDiffusionPipeline"`). Each
configured filter (`scan.filters`, default the `diffusers` library tag, which holds every
pipeline class and the bare UNet repos) is one `list_models` listing; `scan.searches` and
`scan.authors` add listings, and a search already covered by a plain filter listing is not
sent (its repos are in that listing). Single-file SD1.5 checkpoints (Civitai-style repos) carry
no library tag: their cards tag them `stable-diffusion` and `text-to-image`, so
`scan.single_file_tags` is one more listing of the repos carrying all of them, without the
library filter; `judge` then reads the file list and each root checkpoint's header.

Listings ask for `expand` fields, so one list page (up to 1,000 repos) already holds what
deciding whether to look closer needs: head sha, downloads, tags, card data, gated/private.
A repo whose sha the ledger knows costs nothing more; policy skips and pipeline classes that
can never hold an SD1.5-family UNet are decided from the page alone (`listing_verdict`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from bot.client.hub import Hub
from bot.config import PolicyConfig, ScanConfig
from bot.discover.policy import RepoFacts, licence_of, policy_skip
from engine.errors import ExitCode

log = logging.getLogger("unetbot.discovery")
# ExpandModelProperty_T names (huggingface_hub hf_api.py) answering the first questions.
EXPAND = [
    "sha",
    "lastModified",
    "createdAt",
    "downloads",
    "likes",
    "tags",
    "cardData",
    "private",
    "gated",
    "library_name",
    "pipeline_tag",
]
CLASS_TAG = "diffusers:"
# Pipeline classes whose denoiser is never an SD1.5-family UNet, by class-name prefix (the
# classes of diffusers' pipelines/auto_pipeline.py `AUTO_*_PIPELINES_MAPPING` and pipeline
# packages), with the family a refusal names. Unknown classes are judged in full.
FOREIGN_PIPELINES = (
    ("StableDiffusionXL", "SDXL"),
    ("StableDiffusion3", "SD3"),
    ("StableDiffusionUpscale", "SD x4 upscaler"),
    ("StableDiffusionLatentUpscale", "SD latent upscaler"),
    ("StableUnCLIP", "SD 2.1 unCLIP"),
    ("StableCascade", "Stable Cascade"),
    ("StableVideoDiffusion", "Stable Video Diffusion"),
    ("StableAudio", "Stable Audio"),
    ("Flux", "Flux"),
    ("Kandinsky", "Kandinsky"),
    ("IF", "DeepFloyd IF"),
    ("Wuerstchen", "Wuerstchen"),
    ("PixArt", "PixArt"),
    ("Sana", "Sana"),
    ("HunyuanDiT", "Hunyuan-DiT"),
    ("HunyuanVideo", "HunyuanVideo"),
    ("AuraFlow", "AuraFlow"),
    ("Lumina", "Lumina"),
    ("Chroma", "Chroma"),
    ("CogView", "CogView"),
    ("CogVideoX", "CogVideoX"),
    ("QwenImage", "Qwen-Image"),
    ("ZImage", "Z-Image"),
    ("Wan", "Wan"),
    ("LTX", "LTX-Video"),
    ("Mochi", "Mochi"),
    ("HiDream", "HiDream"),
    ("Kolors", "Kolors"),
    ("AudioLDM", "AudioLDM"),
    ("ShapE", "Shap-E"),
)
_FOREIGN = [(re.compile(rf"{prefix}(?=[A-Z0-9]|$)"), label) for prefix, label in FOREIGN_PIPELINES]


@dataclass(frozen=True)
class Query:
    """One listing: repos carrying all `filters` (and matching `search` / `author`)."""

    filters: tuple[str, ...]
    search: str | None = None
    author: str | None = None

    def covers(self, other: Query) -> bool:
        """Every repo `other` lists is in this listing (so `other` need not be sent)."""
        return (
            self.search is None and self.author is None and set(self.filters) <= set(other.filters)
        )

    def describe(self) -> str:
        parts = [f"filter={','.join(self.filters)}"] if self.filters else []
        parts += [f"search={self.search}"] if self.search else []
        parts += [f"author={self.author}"] if self.author else []
        return " ".join(parts) or "all models"


def queries(scan: ScanConfig) -> list[Query]:
    """The listings of a scan config, without those another listing covers."""
    common = [*scan.tags, *([scan.library] if scan.library else [])]

    def tags(*extra: str) -> tuple[str, ...]:
        return tuple(sorted(set(extra) | set(common)))

    wanted = [Query(tags(f)) for f in scan.filters]
    wanted += [Query(tags(), search=s) for s in scan.searches]
    wanted += [Query(tags(), author=a) for a in scan.authors]
    if scan.single_file_tags:  # no library tag: single-file checkpoints carry none
        wanted.append(Query(tuple(sorted(set(scan.single_file_tags) | set(scan.tags)))))
    unique = list(dict.fromkeys(wanted))
    return [q for q in unique if not any(o != q and o.covers(q) for o in unique)]


@dataclass(frozen=True)
class Listed:
    """One repo as a list page shows it (nothing else was asked for it)."""

    repo_id: str
    sha: str
    downloads: int = 0
    tags: tuple[str, ...] = ()
    card: dict = field(default_factory=dict, compare=False)
    private: bool = False
    gated: bool = False

    @property
    def pipeline_class(self) -> str | None:
        for tag in self.tags:
            if tag.startswith(CLASS_TAG):
                return tag[len(CLASS_TAG) :]
        return None

    @property
    def licence(self) -> str | None:
        return licence_of(self.card, self.tags)

    def facts(self) -> RepoFacts:
        """Policy facts from the page (no file list: opt-out files are checked by `judge`)."""
        return RepoFacts(
            self.repo_id, self.sha, self.private, self.gated, self.tags, self.licence, {}
        )


def listed_from(info) -> Listed:
    card = info.card_data.to_dict() if getattr(info, "card_data", None) is not None else {}
    return Listed(
        info.id,
        info.sha or "",
        int(info.downloads or 0),
        tuple(info.tags or ()),
        card,
        bool(info.private),
        bool(info.gated),
    )


@dataclass
class Listing:
    repos: list[Listed]
    complete: bool  # every listing ran to its end: a repo missing from it is gone or hidden


def list_repos(hub: Hub, scan: ScanConfig) -> Listing:
    """Every repo of the configured listings, once each, in listing order."""
    seen: dict[str, Listed] = {}
    limit = scan.limit_per_query or None
    for query in queries(scan):
        infos = hub.call(
            f"list_models {query.describe()}",
            lambda q=query: list(
                hub.api.list_models(
                    filter=list(q.filters) or None,
                    search=q.search,
                    author=q.author,
                    expand=EXPAND,  # type: ignore[arg-type]
                    sort="downloads" if limit else None,
                    limit=limit,
                )
            ),
        )
        for info in infos:
            if info.id not in seen and info.sha:
                seen[info.id] = listed_from(info)
        log.info("%s: %d repos", query.describe(), len(infos))
    return Listing(list(seen.values()), complete=limit is None)


def foreign_family(pipeline_class: str | None) -> str | None:
    """The family of a pipeline class that never holds an SD1.5-family UNet, or None."""
    if not pipeline_class:
        return None
    for pattern, label in _FOREIGN:
        if pattern.match(pipeline_class):
            return label
    return None


def listing_verdict(
    listed: Listed, policy: PolicyConfig, bot_namespace: str
) -> tuple[str, ExitCode] | None:
    """A refusal decided from the list page alone (policy, or a pipeline class that never
    holds an SD1.5-family UNet), or None when the repo needs a closer look."""
    reason = policy_skip(listed.facts(), policy, bot_namespace)
    if reason:
        return reason, ExitCode.POLICY_SKIPPED
    family = foreign_family(listed.pipeline_class)
    if family:
        return (
            f"{family} pipeline ({CLASS_TAG}{listed.pipeline_class}): not an SD1.5-family UNet",
            ExitCode.UNSUPPORTED,
        )
    return None
