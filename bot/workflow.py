"""One source repo through the whole cycle: judge, skip what is done, fetch, convert, validate,
publish. Used by `bot convert REPO_ID`, by each matrix job of the scheduled workflow, and by
`bot demo`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from huggingface_hub import snapshot_download

from bot import exit_codes
from bot.cards import CardContext
from bot.config import BotConfig, load_config
from bot.convert_cmd import ConvertResult
from bot.hubclient import Hub, HubError
from bot.progress import stage_bar
from bot.publish import PublishPlan, execute, plan_pr, plan_repo
from bot.repo_files import bytes_matching, needed_files
from bot.scan import Candidate, judge, model_info
from bot.settings import load_settings
from bot.state import Target, bot_prs, target_done, target_repo
from engine.convert import convert as engine_convert
from engine.errors import BadInput
from engine.original import Provenance
from engine.pipeline import convert_and_validate
from engine.source import LICENSE_NAMES
from engine.variants import VARIANTS

log = logging.getLogger("unetbot.workflow")
MODES = {
    "pr": ("pr",),
    "repo": ("gguf", "torchao", "quanto"),
    "all": ("pr", "gguf", "torchao", "quanto"),
}


def bot_identity(hub: Hub, config: BotConfig) -> tuple[str, str]:
    """(bot user, namespace for new repos); the user is '' without a token."""
    if not hub.settings.token:
        return "", config.publish.namespace
    me = hub.call("whoami", hub.api.whoami)
    return me["name"], config.publish.namespace or me["name"]


def configured_variants(config: BotConfig, kind: str) -> list[str]:
    return list(getattr(config.publish, f"{kind}_variants"))


def choose_variants(
    spec: str, kinds: tuple[str, ...], candidate: Candidate, config: BotConfig
) -> dict[str, list[str]]:
    """Variants per target kind: `auto` takes the configured lists, else the explicit list."""
    if spec == "auto":
        wanted = [v for k in kinds for v in configured_variants(config, k)]
    elif spec == "all":
        wanted = list(VARIANTS)
    else:
        wanted = [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise BadInput(f"unknown variant(s) {unknown}; see `bot variants`")
    usable = [
        v
        for v in dict.fromkeys(wanted)
        if candidate.has_full_pipeline or not VARIANTS[v].needs_full_pipeline
    ]
    return {k: [v for v in usable if VARIANTS[v].target.key == k] for k in kinds}


def pending_targets(
    hub: Hub,
    candidate: Candidate,
    kinds: tuple[str, ...],
    per_kind: dict[str, list[str]],
    bot_user: str,
    namespace: str,
) -> dict[str, Target]:
    """Targets (kind -> repo) that have variants to publish and lack this source revision."""
    src = candidate.repo_id
    targets = {
        k: Target(k, src if k == "pr" else target_repo(k, src, namespace))
        for k in kinds
        if per_kind.get(k)
    }
    return {
        k: t for k, t in targets.items() if not target_done(hub, t, src, candidate.sha, bot_user)
    }


def _card_context(candidate: Candidate, endpoint: str) -> CardContext:
    extra = {
        k: candidate.card_data[k]
        for k in ("license_name", "license_link")
        if k in candidate.card_data
    }
    return CardContext(
        source_repo=candidate.repo_id,
        source_revision=candidate.sha,
        kind=candidate.kind,
        licence=candidate.licence,
        licence_extra=extra,
        licence_files=[n for n in LICENSE_NAMES if n in candidate.files],
        endpoint=endpoint,
    )


def _download(
    hub: Hub, candidate: Candidate, full: bool, budget_bytes: int, vae: bool = False
) -> Path:
    patterns = needed_files(candidate.files, full, vae)
    size = bytes_matching(candidate.files, patterns)
    if size > budget_bytes:
        raise HubError(f"{candidate.repo_id}: {size / 1e9:.2f} GB exceeds the download budget")
    path = hub.call(
        f"download {candidate.repo_id}",
        snapshot_download,
        candidate.repo_id,
        revision=candidate.sha,
        allow_patterns=patterns,
        endpoint=hub.settings.endpoint,
        token=hub.settings.token,
        cache_dir=hub.settings.cache_dir,
    )
    return Path(path)


def run_hub_convert(
    src: str,
    variants: str,
    out: Path,
    revision: str | None,
    publish: str,
    dry_run: bool,
    config_path: Path | None,
    validate: bool,
    grid: bool = False,
) -> ConvertResult:
    settings = load_settings()
    config = load_config(config_path or settings.config_path)
    if Path(src).is_dir():
        raise BadInput(f"{src}: publishing needs a Hub repo id, not a local folder")
    if publish != "none" and not validate:
        raise BadInput("--skip-validation cannot be combined with publishing")
    hub = Hub(settings, max_calls=config.scan.max_calls)
    result = ConvertResult(src, Path(out))
    bot_user, namespace = bot_identity(hub, config)
    if publish != "none" and not bot_user:
        raise BadInput("publishing needs HF_TOKEN (a write token for the bot's account)")
    candidate = judge(hub, model_info(hub, src, revision), config, bot_namespace="")
    if not candidate.supported:
        result.skipped = candidate.reason
        result.exit_code = {
            "unsupported": exit_codes.UNSUPPORTED,
            "bad_input": exit_codes.BAD_INPUT,
        }.get(candidate.refusal, exit_codes.POLICY_SKIPPED)
        return result
    kinds = MODES.get(publish, ())
    per_kind = choose_variants(
        variants, kinds or ("pr", "gguf", "torchao", "quanto"), candidate, config
    )
    pending = pending_targets(hub, candidate, kinds, per_kind, bot_user, namespace)
    chosen = [v for k in (pending if kinds else per_kind) for v in per_kind[k]]
    result.planned = chosen
    result.targets = [f"{t.kind}: {t.repo_id}" for t in pending.values()]
    if kinds and not pending:
        result.skipped = f"already published for revision {candidate.sha[:12]}"
        return result
    if dry_run or not chosen:
        return result
    full = any(VARIANTS[v].needs_full_pipeline for v in chosen)
    grid = (grid or config.publish.grid) and candidate.kind == "sd15-lcm"  # see engine.grid
    snapshot = _download(hub, candidate, full, config.budget.max_download_bytes, vae=grid)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # a rerun starts clean: no stale artifact can slip into a publish
    stem = src.split("/")[-1]
    provenance = Provenance(src, candidate.sha)
    if validate:
        with stage_bar("convert + validate") as hook:
            result.manifest = convert_and_validate(
                snapshot, out, chosen, provenance, stem, hook, grid
            )
    else:
        with stage_bar("convert") as hook:
            result.manifest = engine_convert(snapshot, out, chosen, provenance, stem, hook)
    if result.failed():
        result.exit_code = exit_codes.VALIDATION_FAILED
    ctx = _card_context(candidate, settings.endpoint)
    for kind, target in pending.items():
        artifacts = [a for a in result.manifest.artifacts if a.variant in per_kind[kind]]
        if not artifacts or any(not a.passed for a in artifacts):
            log.warning("%s: not published (an artifact failed validation)", target.repo_id)
            continue
        plan: PublishPlan
        if kind == "pr":
            has_full = any(a.variant == "original-full" for a in artifacts)
            plan = plan_pr(ctx, out, artifacts, has_full)
        else:
            plan = plan_repo(hub, ctx, target, out, result.manifest, artifacts, snapshot)
        result.published.append(execute(hub, plan, bot_user))
        if kind == "pr":
            close_superseded_prs(hub, src, candidate.sha, bot_user, result.published[-1])
    return result


def close_superseded_prs(hub: Hub, repo: str, revision: str, bot_user: str, new_url: str) -> None:
    """Close the bot's still-open PRs made for older revisions, pointing at the new one."""
    for pr in bot_prs(hub, repo, bot_user):
        if pr.status == "open" and pr.revision and pr.revision != revision:
            hub.call(
                f"close superseded PR #{pr.num}",
                hub.api.change_discussion_status,
                repo,
                pr.num,
                "closed",
                comment=f"Superseded by {new_url} (source revision {revision[:12]}).",
            )
