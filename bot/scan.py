"""`bot scan`: find SD1.5-family UNets in diffusers layout on the Hub, from small files only.

Listing uses `list_models` with the configured searches/authors/tags/library; each candidate is
then judged from its `model_info` (file list, tags, card data) and its `unet/config.json` (a few
hundred bytes). Nothing larger is downloaded, and every skip carries its reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import hf_hub_download

from bot.config import BotConfig
from bot.hubclient import Hub
from bot.policy import RepoFacts, licence_of, policy_skip, size_skip
from bot.repo_files import bytes_matching, has_component, has_pickle_only, weight_files
from engine.classify import ModelKind, classify_unet
from engine.errors import BudgetExhausted, ExitCode

log = logging.getLogger("unetbot.scan")


@dataclass
class Candidate:
    repo_id: str
    sha: str
    status: str  # "supported" | "skipped"
    reason: str
    kind: ModelKind | None = None
    refusal: ExitCode = ExitCode.POLICY_SKIPPED  # why skipped: policy, unsupported, bad input
    licence: str | None = None
    unet_bytes: int = 0
    has_full_pipeline: bool = False
    files: dict[str, int] = field(default_factory=dict, repr=False)
    card_data: dict = field(default_factory=dict, repr=False)

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    @property
    def is_lcm(self) -> bool:
        return self.kind is ModelKind.SD15_LCM

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("files")
        d.pop("card_data")
        d["kind"] = self.kind.value if self.kind else ""
        d["refusal"] = self.refusal.label
        return d


def _facts(info) -> RepoFacts:
    files = {s.rfilename: int(getattr(s, "size", None) or 0) for s in (info.siblings or [])}
    card = info.card_data.to_dict() if info.card_data is not None else {}
    tags = tuple(info.tags or ())
    return RepoFacts(
        repo_id=info.id,
        sha=info.sha or "",
        private=bool(info.private),
        gated=bool(info.gated),
        tags=tags,
        licence=licence_of(card, tags),
        files=files,
    )


def _weights_bytes(files: dict[str, int], component: str) -> int:
    return bytes_matching(files, weight_files(files, component) or [])


def judge(hub: Hub, info, config: BotConfig, bot_namespace: str) -> Candidate:
    """Classify one repo from its model_info and unet/config.json."""
    facts = _facts(info)
    card = info.card_data.to_dict() if info.card_data is not None else {}
    candidate = Candidate(
        facts.repo_id,
        facts.sha,
        "skipped",
        "",
        licence=facts.licence,
        files=facts.files,
        card_data=card,
    )
    reason = policy_skip(facts, config.policy, bot_namespace)
    if reason:
        candidate.reason = reason
        return candidate
    if "unet/config.json" not in facts.files:
        candidate.reason = "no unet/config.json: not a diffusers pipeline layout"
        return candidate
    if has_pickle_only(facts.files, "unet"):
        candidate.reason = "pickle-only UNet weights (.bin); unetbot never unpickles Hub files"
        candidate.refusal = ExitCode.BAD_INPUT
        return candidate
    if weight_files(facts.files, "unet") is None:
        candidate.reason = "no UNet safetensors weights"
        candidate.refusal = ExitCode.BAD_INPUT
        return candidate
    config_path = hub.call(
        f"download {facts.repo_id}/unet/config.json",
        hf_hub_download,
        facts.repo_id,
        "unet/config.json",
        revision=facts.sha or None,
        endpoint=hub.settings.endpoint,
        token=hub.settings.token,
        cache_dir=hub.settings.cache_dir,
    )
    try:
        unet_config = json.loads(Path(config_path).read_text())
    except (OSError, ValueError) as exc:
        candidate.reason = f"unet/config.json is not valid JSON ({exc})"
        candidate.refusal = ExitCode.BAD_INPUT
        return candidate
    classification = classify_unet(unet_config)
    candidate.kind = classification.kind
    if not classification.supported:
        candidate.reason = classification.reason
        candidate.refusal = ExitCode.UNSUPPORTED
        return candidate
    candidate.has_full_pipeline = has_component(facts.files, "vae") and has_component(
        facts.files, "text_encoder"
    )
    candidate.unet_bytes = _weights_bytes(facts.files, "unet")
    total = candidate.unet_bytes
    if candidate.has_full_pipeline:
        total += _weights_bytes(facts.files, "vae") + _weights_bytes(facts.files, "text_encoder")
    reason = size_skip(candidate.unet_bytes, total, config.policy)
    if reason:
        candidate.reason = reason
        return candidate
    candidate.status, candidate.reason = "supported", classification.reason
    return candidate


def model_info(hub: Hub, repo_id: str, revision: str | None = None):
    return hub.call(
        f"model_info {repo_id}",
        hub.api.model_info,
        repo_id,
        revision=revision,
        files_metadata=True,
    )


def list_repo_ids(hub: Hub, config: BotConfig) -> list[str]:
    """Repo ids matching any configured query, deduplicated, in listing order."""
    scan = config.scan
    queries: list[dict] = [{"search": s} for s in scan.searches] or [{}]
    queries += [{"author": a} for a in scan.authors]
    seen: dict[str, None] = {}
    for query in queries:
        models = hub.call(
            f"list_models {query}",
            lambda q=query: list(
                hub.api.list_models(
                    **q,
                    filter=[*scan.tags, *([scan.library] if scan.library else [])] or None,
                    limit=scan.limit_per_query,
                )
            ),
        )
        for m in models:
            seen.setdefault(m.id, None)
    return list(seen)


def scan(hub: Hub, config: BotConfig, bot_namespace: str) -> list[Candidate]:
    """Every listed repo, judged; a spent call/time budget ends the scan early (the next
    scheduled run starts over), it is not an error."""
    out: list[Candidate] = []
    try:
        for repo_id in list_repo_ids(hub, config):
            info = model_info(hub, repo_id)
            out.append(judge(hub, info, config, bot_namespace))
            log.info("%s: %s (%s)", repo_id, out[-1].status, out[-1].reason)
    except BudgetExhausted as exc:
        log.warning("scan stopped early after %d repos: %s", len(out), exc)
    return out
