"""One source through the whole cycle: judge -> pending targets -> fetch -> convert + validate
-> publish. `bot convert`, each matrix job of the scheduled workflow (`bot actions convert`),
`bot demo` and the tests all run this one path: a `JobRequest` in, a `JobResult` out.

A local folder is a source like a Hub repo whose fetch returns its own path and whose targets
are never published. Expected failures raise `engine.errors` exceptions (the CLI maps them to
exit codes); a refusal (unsupported model, policy, bad input found from the file list) is a
result with its exit code, so the scheduled run can report it beside the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.cards import CardContext
from bot.choice import VariantChoice, choose_variants
from bot.config import BotConfig, PublishMode
from bot.fetch import FetchRequest, fetch
from bot.hubclient import Hub
from bot.ledger_hooks import JobLedger, job_ledger
from bot.outdir import prepare_output_folder
from bot.progress import stage_bar
from bot.publish import execute, plan_pr, plan_repo
from bot.scan import Candidate, judge, model_info
from bot.state import Target, close_superseded_prs, target_for, target_state
from engine import __version__
from engine.classify import ModelKind
from engine.convert import convert as engine_convert
from engine.convert import source_facts
from engine.errors import BadInput, ExitCode
from engine.manifest import Artifact, Manifest
from engine.original import Provenance
from engine.pipeline import convert_and_validate
from engine.source import LICENSE_NAMES, open_source
from engine.variants import PublishTarget

log = logging.getLogger("unetbot.job")


@dataclass(frozen=True)
class JobRequest:
    """What to do with one source (a local folder or a Hub repo id)."""

    source: str
    out: Path
    # None: `original` when nothing is published, else the config's lists per target;
    # "auto": the config's lists; "all": every variant that applies; else a comma list.
    variants: str | None = None
    publish: PublishMode = PublishMode.NONE
    revision: str | None = None
    dry_run: bool = False
    validate: bool = True
    grid: bool = False  # the validation grid PNG (LCM sources with a VAE)


@dataclass
class JobResult:
    source: str
    out: Path
    manifest: Manifest | None = None
    planned: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # pending publish targets
    published: list[str] = field(default_factory=list)
    published_to: dict[str, str] = field(default_factory=dict)  # target key -> URL
    skipped: str = ""
    notes: list[str] = field(default_factory=list)  # things the user should know (empty targets)
    # target key -> {variant: reason} for variants that failed validation and were left out
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)
    exit_code: ExitCode = ExitCode.OK

    def failed(self) -> list[str]:
        if self.manifest is None:
            return []
        return [a.variant for a in self.manifest.artifacts if not a.passed]

    def to_dict(self) -> dict:
        artifacts = self.manifest.artifacts if self.manifest else []
        return {
            "src": self.source,
            "out": str(self.out),
            "planned": self.planned,
            "targets": self.targets,
            "artifacts": [
                {
                    "variant": a.variant,
                    "path": a.path,
                    "bytes": a.bytes,
                    "validation": a.validation.status if a.validation else None,
                }
                for a in artifacts
            ],
            "failed": self.failed(),
            "published": self.published,
            "skipped": self.skipped,
            "notes": self.notes,
            "left_out": self.left_out,
            "exit_code": int(self.exit_code),
        }

    def summary(self) -> str:
        lines = [f"source: {self.source}"]
        if self.skipped:
            lines.append(f"skipped: {self.skipped}")
        lines += [f"note: {n}" for n in self.notes]
        if self.manifest is None:
            if self.planned:
                lines.append("planned: " + ", ".join(self.planned))
            lines += [f"would publish to {t}" for t in self.targets]
        else:
            for a in self.manifest.artifacts:
                status = a.validation.status if a.validation else "not validated"
                lines.append(f"  {a.variant:18} {a.bytes / 1e6:10.1f} MB  {status:13} {a.path}")
            lines.append(f"manifest: {self.out / 'manifest.json'}")
        lines += [f"published: {p}" for p in self.published]
        return "\n".join(lines)


@dataclass(frozen=True)
class Identity:
    """Who the bot is on this Hub: its user ('' without a token) and its repos' namespace."""

    user: str
    namespace: str


def bot_identity(hub: Hub, config: BotConfig) -> Identity:
    if not hub.settings.token:
        return Identity("", config.publish.namespace)
    me = hub.call("whoami", hub.api.whoami)
    return Identity(me["name"], config.publish.namespace or me["name"])


def run_job(request: JobRequest, config: BotConfig, hub: Hub | None = None) -> JobResult:
    """Run one job; `hub` is needed for a Hub source (a local folder never touches the Hub)."""
    if request.publish is not PublishMode.NONE and not request.validate:
        raise BadInput("--skip-validation cannot be combined with publishing")
    if Path(request.source).is_dir():
        if request.publish is not PublishMode.NONE:
            raise BadInput(f"{request.source}: publishing needs a Hub repo id, not a local folder")
        return _run_local(request, config)
    if hub is None:
        raise BadInput(f"{request.source}: not a local folder, and no Hub to fetch it from")
    return _run_hub(request, config, hub)


def _run_local(request: JobRequest, config: BotConfig) -> JobResult:
    result = JobResult(request.source, Path(request.out))
    source = open_source(Path(request.source))  # judge: configs and headers only
    if not source.classification.supported:
        result.skipped = source.classification.reason
        result.exit_code = ExitCode.UNSUPPORTED
        return result
    choice = choose_variants(request.variants, request.publish, source_facts(source), config)
    result.planned = [v.name for v in choice.variants]
    result.notes += choice.notes
    if request.dry_run:
        return result
    grid = request.grid and source.classification.is_lcm
    _convert(request, result, Path(request.source), choice, Provenance(), None, grid)
    return result


def pending_targets(
    hub: Hub,
    candidate: Candidate,
    choice: VariantChoice,
    mode: PublishMode,
    me: Identity,
    ledger: JobLedger | None = None,
) -> dict[PublishTarget, Target]:
    """Targets that have variants to publish and lack this source revision (or, per the
    ledger, its inputs). Superseded open PRs of the bot are closed here, whenever seen (the
    crash-window repair)."""
    pending: dict[PublishTarget, Target] = {}
    for kind in mode.targets:
        if not choice.per_target.get(kind) or (kind.is_pr and candidate.pr_skip):
            continue
        if ledger is not None and ledger.settled(candidate, kind):
            continue
        target = target_for(kind, candidate.repo_id, me.namespace)
        state = target_state(hub, target, candidate.repo_id, candidate.sha, me.user)
        if state.superseded_prs:
            close_superseded_prs(hub, candidate.repo_id, state.superseded_prs, candidate.sha)
        if not state.done:
            pending[kind] = target
    return pending


def _run_hub(request: JobRequest, config: BotConfig, hub: Hub) -> JobResult:
    result = JobResult(request.source, Path(request.out))
    me = bot_identity(hub, config)
    if request.publish is not PublishMode.NONE and not me.user:
        raise BadInput("publishing needs HF_TOKEN (a write token for the bot's account)")
    candidate = judge(hub, model_info(hub, request.source, request.revision), config, "")
    if not candidate.supported:
        result.skipped, result.exit_code = candidate.reason, candidate.refusal
        return result
    choice = choose_variants(request.variants, request.publish, candidate.facts, config)
    result.notes += choice.notes
    if candidate.pr_skip and PublishTarget.PR in request.publish.targets:
        result.notes.append(f"no pull request: {candidate.pr_skip}")
    ledger = job_ledger(hub, config, me.user, me.namespace, request.publish, request.dry_run)
    pending = pending_targets(hub, candidate, choice, request.publish, me, ledger)
    chosen = choice.for_targets(pending) if request.publish is not PublishMode.NONE else choice
    result.planned = [v.name for v in chosen.variants]
    result.targets = [t.describe() for t in pending.values()]
    if request.publish is not PublishMode.NONE and not pending:
        held = ledger.held_back(candidate, choice, request.publish) if ledger else []
        result.skipped = (
            f"not redone: {', '.join(held)} failed validation for these inputs with unetbot "
            f"{__version__} (the ledger retries when either changes)"
            if held
            else f"already published for revision {candidate.sha[:12]}"
        )
        return result
    if request.dry_run or not chosen.variants:
        return result
    grid = (request.grid or config.publish.grid) and candidate.is_lcm  # see engine.grid
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
    _convert(request, result, snapshot, chosen, provenance, stem, grid)
    assert result.manifest is not None
    ctx = _card_context(candidate, hub.settings.endpoint)
    for kind, target in pending.items():
        artifacts = [a for a in result.manifest.artifacts if a.variant in chosen.names(kind)]
        passed = [a for a in artifacts if a.passed]
        left_out = {a.variant: _why(a) for a in artifacts if not a.passed}
        if left_out:
            result.left_out[kind.key] = left_out
            result.notes.append(
                f"{target.repo_id}: left out {', '.join(left_out)} (failed validation)"
            )
        if not passed:
            log.warning("%s: nothing passed validation, nothing published", target.repo_id)
            continue
        if kind.is_pr:
            plan = plan_pr(ctx, result.out, passed, left_out)
        else:
            plan = plan_repo(
                hub, ctx, target, result.out, result.manifest, passed, snapshot, left_out,
                unet_folder=candidate.unet_folder or ".",
            )  # fmt: skip
        url = execute(hub, plan, me.user)
        result.published.append(url)
        result.published_to[kind.key] = url
        if kind.is_pr:
            state = target_state(hub, target, candidate.repo_id, candidate.sha, me.user)
            close_superseded_prs(hub, candidate.repo_id, state.superseded_prs, candidate.sha, url)
    if ledger is not None:
        ledger.record(hub, candidate, pending, chosen, result)
    return result


def _why(artifact: Artifact) -> str:
    reason = artifact.validation.reason if artifact.validation else "not validated"
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _convert(
    request: JobRequest,
    result: JobResult,
    source_dir: Path,
    choice: VariantChoice,
    provenance: Provenance,
    stem: str | None,
    grid: bool,
) -> None:
    """The convert + validate stage into `request.out` (made ready first: outdir rules)."""
    out = Path(request.out)
    prepare_output_folder(out)
    names = [v.name for v in choice.variants]
    if request.validate:
        with stage_bar("convert + validate") as hook:
            result.manifest = convert_and_validate(
                source_dir, out, names, provenance, stem, hook, grid
            )
    else:
        with stage_bar("convert") as hook:
            result.manifest = engine_convert(source_dir, out, names, provenance, stem, hook)
    if result.failed():
        result.exit_code = ExitCode.VALIDATION_FAILED


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
