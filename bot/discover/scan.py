"""`bot scan`: find SD1.5-family UNets in diffusers layout on the Hub, from small files only.

Listing is bot/discover/listing.py (tag and library filters, `expand`ed list pages); the incremental
run that judges only what changed since the ledger's record is bot/schedule/incremental.py. Here:
how one candidate is judged, from its `model_info` (file list, tags, card data), the repo layout
(`engine.source.repo_kind`: pipeline, bare UNet, adapter, ControlNet...), its UNet `config.json` (a
few hundred bytes, size- and depth-capped) and, for root `.safetensors` files, their headers (an
HTTP range read: is the repo already shipping an original-format checkpoint?). Nothing larger is
downloaded, and every skip carries its reason.

Each candidate is judged inside its own error boundary: a hostile or broken repo becomes a
skipped row with its reason, never the end of the run. Only a spent budget, or a Hub that keeps
answering 429, ends a scan early: the rest is deferred, never recorded as failed.

A judgement also records the candidate's input fingerprint (bot/discover/fingerprint.py), from the
same `model_info`, so later runs can tell a README-only commit from new weights.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import hf_hub_download

from bot.client.headers import safetensors_header
from bot.client.hub import Hub
from bot.client.repo_files import bytes_matching, has_component, weight_files
from bot.client.security import hub_verdicts
from bot.config import BotConfig
from bot.discover.fingerprint import fingerprint_of
from bot.discover.listing import list_repos
from bot.discover.policy import RepoFacts, licence_of, policy_skip, size_skip
from bot.discover.single_files import judge_single_files
from bot.reasons import ships_original
from engine.errors import (
    BadInput,
    BudgetExhausted,
    ExitCode,
    HubRateLimited,
    PolicySkipped,
    UnetbotError,
)
from engine.formats.config_json import parse_json_object
from engine.run.selection import SourceFacts
from engine.source.checkpoint_match import match_original_checkpoint
from engine.source.classify import ModelKind, classify_unet
from engine.source.layout import COMPONENT_STEMS, FP16, Precision, pickle_weight_sets, weight_sets
from engine.source.pickle_source import pickle_sets
from engine.source.repo_kind import RepoKind, classify_repo, layout_json_files

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
    unet_folder: str = "unet"  # "" for a bare UNet repo
    fp16_twin: bool = False  # the UNet has main weights and an fp16 variant
    # Why the PR target is skipped although the repo converts (it already ships an original
    # single-file checkpoint of this UNet), or "".
    pr_skip: str = ""
    fingerprint: str = ""  # the inputs' fingerprint (bot/discover/fingerprint.py), "" when unknown
    # Pickle weight files the conversion reads (components without safetensors weights) -> the
    # Hub's security record of each, all safe (bot/client/security.py); {} for none.
    pickles: dict[str, dict] = field(default_factory=dict, repr=False)
    # A repo of single-file checkpoints (bot/discover/single_files.py): root file -> what it holds.
    single_files: dict[str, dict] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict, repr=False)
    card_data: dict = field(default_factory=dict, repr=False)

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    @property
    def is_lcm(self) -> bool:
        return self.kind is ModelKind.SD15_LCM

    @property
    def facts(self) -> SourceFacts:
        return SourceFacts(self.has_full_pipeline, self.fp16_twin)

    def refuse(self, reason: str, code: ExitCode) -> Candidate:
        self.status, self.reason, self.refusal = "skipped", reason, code
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("files")
        d.pop("card_data")
        d["pickles"] = sorted(self.pickles)
        d["kind"] = self.kind.value if self.kind else ""
        d["refusal"] = self.refusal.label
        return d


def repo_facts(info) -> RepoFacts:
    """Policy facts from a `model_info` (file list with sizes, tags, card)."""
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


def _weights_bytes(files: dict[str, int], component: str, unet_folder: str = "unet") -> int:
    """Bytes of the larger weight set of a component (what a PR mirroring it downloads)."""
    sizes = [
        bytes_matching(files, weight_files(files, component, p, unet_folder) or [])
        for p in Precision
    ]
    return max(sizes)


def _small_json(hub: Hub, facts: RepoFacts, path: str) -> dict:
    """A small JSON file of the repo at the judged revision, size- and depth-capped."""
    local = hub.call(
        f"download {facts.repo_id}/{path}",
        hf_hub_download,
        facts.repo_id,
        path,
        revision=facts.sha or None,
        endpoint=hub.settings.endpoint,
        token=hub.settings.token,
        cache_dir=hub.settings.cache_dir,
    )
    return parse_json_object(Path(local).read_bytes(), f"{facts.repo_id}/{path}")


def _existing_checkpoint(
    hub: Hub, facts: RepoFacts, candidates: tuple[str, ...], unet_config: dict
) -> str:
    """Why the PR is not needed: a root file that already is an original checkpoint of this
    UNet (decided from its header alone, read with an HTTP range request), or ""."""
    for filename in candidates:
        try:
            table = safetensors_header(hub, facts.repo_id, filename, facts.sha or None)
        except (BadInput, ValueError, RecursionError, AttributeError, TypeError) as exc:
            log.info("%s/%s: not a readable safetensors header (%s)", facts.repo_id, filename, exc)
            continue
        match = match_original_checkpoint(table, unet_config, filename)
        if match.matches:
            log.info("%s: %s", facts.repo_id, match.reason)
            what = "a full checkpoint" if match.contents == "full" else "the UNet alone"
            return ships_original(filename, what)
    return ""


def judge(hub: Hub, info, config: BotConfig, bot_namespace: str) -> Candidate:
    """Classify one repo from its model_info, layout and UNet config (small files only)."""
    facts = repo_facts(info)
    card = info.card_data.to_dict() if info.card_data is not None else {}
    candidate = Candidate(
        facts.repo_id, facts.sha, "skipped", "", licence=facts.licence, files=facts.files,
        card_data=card, fingerprint=fingerprint_of(info),
    )  # fmt: skip
    reason = policy_skip(facts, config.policy, bot_namespace)
    if reason:
        return candidate.refuse(reason, ExitCode.POLICY_SKIPPED)
    jsons = [] if "unet/config.json" in facts.files else layout_json_files(facts.files)
    small = {path: _small_json(hub, facts, path) for path in jsons}
    layout = classify_repo(facts.files, small.get("model_index.json"), small.get("config.json"))
    if layout.kind is RepoKind.SINGLE_FILES:
        return judge_single_files(
            hub, facts, layout.root_checkpoints, config, candidate, layout.root_pickles
        )
    if not layout.convertible:
        code = ExitCode.BAD_INPUT if layout.kind is RepoKind.NO_MODEL else ExitCode.UNSUPPORTED
        return candidate.refuse(layout.reason, code)
    folder = candidate.unet_folder = layout.unet_folder or ""
    if weight_files(facts.files, "unet", unet_folder=folder) is None:
        return candidate.refuse("no UNet weights (safetensors or .bin)", ExitCode.BAD_INPUT)
    config_path = f"{folder}/config.json" if folder else "config.json"
    unet_config = small.get(config_path) or _small_json(hub, facts, config_path)
    classification = classify_unet(unet_config)
    candidate.kind = classification.kind
    if not classification.supported:
        return candidate.refuse(classification.reason, ExitCode.UNSUPPORTED)
    candidate.has_full_pipeline = bool(folder) and all(
        has_component(facts.files, c) for c in ("vae", "text_encoder")
    )
    stem = COMPONENT_STEMS["unet"]
    sets = weight_sets(facts.files, folder, stem) or pickle_weight_sets(facts.files, folder, stem)
    candidate.fp16_twin = None in sets and FP16 in sets
    candidate.unet_bytes = _weights_bytes(facts.files, "unet", folder)
    total = candidate.unet_bytes
    if candidate.has_full_pipeline:
        total += _weights_bytes(facts.files, "vae") + _weights_bytes(facts.files, "text_encoder")
    reason = size_skip(candidate.unet_bytes, total, config.policy)
    if reason:
        return candidate.refuse(reason, ExitCode.POLICY_SKIPPED)
    pickles = [p for _, chosen in pickle_sets(facts.files) for p in chosen.weights]
    try:  # the Hub's verdict on every pickle the conversion could read, before any download
        candidate.pickles = hub_verdicts(hub, facts.repo_id, facts.sha, pickles)
    except PolicySkipped as exc:
        return candidate.refuse(str(exc), ExitCode.POLICY_SKIPPED)
    candidate.pr_skip = _existing_checkpoint(hub, facts, layout.root_checkpoints, unet_config)
    candidate.status, candidate.reason = "supported", classification.reason
    return candidate


def judge_safely(
    hub: Hub, repo_id: str, config: BotConfig, bot_namespace: str, info=None
) -> Candidate:
    """`judge` inside an error boundary: any failure of this one repo (bad input, Hub error,
    a bug) is a skipped row naming it. A spent budget and a Hub that keeps rate limiting
    propagate: they end the scan, and the repo is deferred, not failed. `info` is the repo's
    `model_info` when the caller already has it."""
    try:
        return judge(hub, info or model_info(hub, repo_id), config, bot_namespace)
    except (BudgetExhausted, HubRateLimited):
        raise
    except UnetbotError as exc:
        return Candidate(repo_id, "", "skipped", str(exc), refusal=exc.exit_code)
    except Exception as exc:  # a bug must not end the run: logged with its traceback
        log.exception("%s: judging failed", repo_id)
        reason = f"internal error while judging ({type(exc).__name__})"
        return Candidate(repo_id, "", "skipped", reason, refusal=ExitCode.INTERNAL_ERROR)


def model_info(hub: Hub, repo_id: str, revision: str | None = None):
    return hub.call(
        f"model_info {repo_id}",
        hub.api.model_info,
        repo_id,
        revision=revision,
        files_metadata=True,
    )


def list_repo_ids(hub: Hub, config: BotConfig) -> list[str]:
    """Repo ids of the configured listings (bot/discover/listing.py), in listing order."""
    return [r.repo_id for r in list_repos(hub, config.scan).repos]


def scan(hub: Hub, config: BotConfig, bot_namespace: str) -> list[Candidate]:
    """Every listed repo judged from scratch, without the ledger (`bot scan --no-ledger`); a
    spent call/time budget ends the scan early, it is not an error."""
    out: list[Candidate] = []
    try:
        for repo_id in list_repo_ids(hub, config):
            out.append(judge_safely(hub, repo_id, config, bot_namespace))
            log.info("%s: %s (%s)", repo_id, out[-1].status, out[-1].reason)
    except (BudgetExhausted, HubRateLimited) as exc:
        log.warning("scan stopped early after %d repos: %s", len(out), exc)
    return out
