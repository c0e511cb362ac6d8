"""The Hub side of a job: judging the repo, which targets still lack this
revision (and the ledger's word on them), fetching only the needed files, converting, and
publishing what passed. Imported only for a Hub source, so converting a local folder never pays
for the Hub client's imports (about half a second of a whole `bot convert`, issue #16)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bot import reasons
from bot.choice import SourceSize, VariantChoice, choose_variants, trim_to_budget
from bot.client.hub import Hub
from bot.client.identity import Identity, bot_identity
from bot.config import BotConfig, PublishMode
from bot.discover.scan import Candidate, judge, model_info
from bot.job.convert_stage import convert_stage
from bot.job.fetch import FetchRequest, fetch
from bot.job.ledger_hooks import JobLedger, job_ledger
from bot.job.pickles import opened_pickles, record_opening
from bot.job.types import JobRequest, JobResult
from bot.progress import describe_bytes, display, stage_bar
from bot.publish.cards import CardContext
from bot.publish.commit import execute, plan_pr, plan_repo
from bot.publish.state import Target, close_superseded_prs, target_for, target_state
from engine import __version__
from engine.errors import BadInput
from engine.formats.manifest import Artifact
from engine.run.variants import PublishTarget
from engine.source.classify import ModelKind
from engine.source.folder import LICENSE_NAMES
from engine.writers.original import Provenance

log = logging.getLogger("unetbot.job")


def pending_targets(
    hub: Hub,
    candidate: Candidate,
    choice: VariantChoice,
    mode: PublishMode,
    me: Identity,
    ledger: JobLedger | None = None,
) -> tuple[dict[PublishTarget, Target], dict[str, str]]:
    """Targets that have variants to publish and lack this source revision (or, per the
    ledger, its inputs), and why each other target of `mode` needs no work (bot/reasons.py).
    Superseded open PRs of the bot are closed here, whenever seen (the crash-window repair)."""
    pending: dict[PublishTarget, Target] = {}
    why: dict[str, str] = {}
    for kind in mode.targets:
        cause = reasons.no_work_chosen(kind, choice, candidate.pr_skip)
        if cause:
            why[kind.key] = cause
            continue
        if ledger is not None and ledger.settled(candidate, kind):
            failed = kind.key in ledger.held_back(candidate, choice, mode)
            why[kind.key] = (
                reasons.held_back([kind.key], __version__)
                if failed
                else reasons.already_published(candidate.sha, by_ledger=True)
            )
            continue
        target = target_for(kind, candidate.repo_id, me.namespace)
        state = target_state(hub, target, candidate.repo_id, candidate.sha, me.user)
        if state.superseded_prs:
            close_superseded_prs(hub, candidate.repo_id, state.superseded_prs, candidate.sha)
        if state.done:
            why[kind.key] = reasons.already_published(candidate.sha)
        else:
            pending[kind] = target
    return pending, why


def run_hub(request: JobRequest, config: BotConfig, hub: Hub) -> JobResult:
    result = JobResult(request.source, Path(request.out))
    me = bot_identity(hub, config)
    if request.publish is not PublishMode.NONE and not me.user:
        raise BadInput("publishing needs HF_TOKEN (a write token for the bot's account)")
    info = model_info(hub, request.source, request.revision)
    candidate = judge(hub, info, config, "")
    if not candidate.supported:
        result.skipped, result.exit_code = candidate.reason, candidate.refusal
        return result
    size = SourceSize.of(candidate.unet_bytes, candidate.fp16_twin, int(info.downloads or 0))
    choice = choose_variants(request.variants, request.publish, candidate.facts, config, size)
    result.notes += choice.notes
    if candidate.pr_skip and PublishTarget.PR in request.publish.targets:
        result.notes.append(f"no pull request: {candidate.pr_skip}")
    ledger = job_ledger(hub, config, me.user, me.namespace, request.publish, request.dry_run)
    pending, why = pending_targets(hub, candidate, choice, request.publish, me, ledger)
    chosen = choice.for_targets(pending) if request.publish is not PublishMode.NONE else choice
    result.planned = [v.name for v in chosen.variants]
    result.targets = [t.describe() for t in pending.values()]
    if request.publish is not PublishMode.NONE and not pending:
        result.skipped = reasons.combine(why)
        return result
    if request.dry_run or not chosen.variants:
        return result
    with ExitStack() as stack:  # the opened sources live until everything is published
        source_root, unet_folder, note = _convert(
            hub, request, result, candidate, chosen, config, stack
        )
        assert result.manifest is not None
        ctx = _card_context(candidate, hub.settings.endpoint)
        if note:
            ctx = replace(ctx, source_note=note)
        over_budget = dict(chosen.over_budget)
        if request.variants in (None, "auto") and size.capped(config.budget):  # exact bytes
            exact = {
                a.variant: a.bytes
                for kind in pending
                if not kind.is_pr
                for a in result.manifest.artifacts
                if a.passed and a.variant in chosen.names(kind)
            }
            trimmed = trim_to_budget(exact, config.budget, estimated=False)
            if trimmed:
                over_budget.update(trimmed)
                result.notes.append(f"byte budget: not published {', '.join(trimmed)}")
        for kind, target in pending.items():
            artifacts = [a for a in result.manifest.artifacts if a.variant in chosen.names(kind)]
            passed = [a for a in artifacts if a.passed and a.variant not in over_budget]
            left_out = {a.variant: _why(a) for a in artifacts if not a.passed}
            if left_out:
                result.left_out[kind.key] = left_out
                result.notes.append(
                    f"{target.repo_id}: left out {', '.join(left_out)} (failed validation)"
                )
            if not passed:
                log.warning("%s: nothing to publish (validation, byte budget)", target.repo_id)
                continue
            if kind.is_pr:
                plan = plan_pr(ctx, result.out, passed, left_out)
            else:
                plan = plan_repo(
                    hub, ctx, target, result.out, result.manifest, passed, source_root, left_out,
                    unet_folder=unet_folder, over_budget=over_budget,
                )  # fmt: skip
            what = "pull request on" if kind.is_pr else "commit to"
            sent = describe_bytes(len(plan.uploads), sum(u.size for u in plan.uploads))
            with stage_bar(f"publish: {what} {target.repo_id}", sent):
                url = execute(hub, plan, me.user)
            display().event(f"published: {url}")
            result.published.append(url)
            result.published_to[kind.key] = url
            if kind.is_pr:
                state = target_state(hub, target, candidate.repo_id, candidate.sha, me.user)
                close_superseded_prs(
                    hub, candidate.repo_id, state.superseded_prs, candidate.sha, url
                )
    if ledger is not None:
        ledger.record(hub, candidate, pending, chosen, result)
    return result


def _convert(
    hub: Hub,
    request: JobRequest,
    result: JobResult,
    candidate: Candidate,
    chosen: VariantChoice,
    config: BotConfig,
    stack: ExitStack,
) -> tuple[Path, str, str]:
    """Fetch and convert + validate; (the folder the repos' config and licence files come from,
    its UNet folder, what the cards say about how the source was opened)."""
    if candidate.single_files:
        from bot.job.single_files import convert_single_files

        return convert_single_files(hub, request, result, candidate, chosen, config, stack)
    grid = (request.grid or config.publish.grid) and candidate.is_lcm  # see engine.validation.grid
    fetched = FetchRequest(
        candidate.repo_id,
        candidate.sha,
        candidate.files,
        full_pipeline=any(v.full_checkpoint for v in chosen.variants),
        vae=grid,
        precisions=tuple(dict.fromkeys(v.precision for v in chosen.variants)),
        unet_folder=candidate.unet_folder,
    )
    snapshot = fetch(hub, fetched, config.budget.max_download_bytes)
    stem = candidate.repo_id.split("/")[-1]
    provenance = Provenance(candidate.repo_id, candidate.sha)
    source_dir, opened = stack.enter_context(
        opened_pickles(snapshot, result.out, fetched.precisions, candidate.pickles)
    )
    convert_stage(request, result, source_dir, chosen, provenance, stem, grid)
    record_opening(result, opened, str(snapshot))
    return snapshot, candidate.unet_folder or ".", opened.summary() if opened else ""


def _why(artifact: Artifact) -> str:
    reason = artifact.validation.reason if artifact.validation else "not validated"
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _card_context(candidate: Candidate, endpoint: str) -> CardContext:
    extra = {
        k: candidate.card_data[k]
        for k in ("license_name", "license_link")
        if k in candidate.card_data
    }
    return CardContext(
        source_repo=candidate.repo_id,
        source_revision=candidate.sha,
        kind=candidate.kind or ModelKind.SD15,
        licence=candidate.licence,
        licence_extra=extra,
        licence_files=[n for n in LICENSE_NAMES if n in candidate.files],
        endpoint=endpoint,
    )
