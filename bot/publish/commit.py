"""Publishing as data: a plan per target (files, deletions, message), then one atomic commit.

`--dry-run` prints the plans; the publish step executes them. Only artifacts whose validation
passed can enter a plan: `plan_*` refuses anything else, so a failed artifact cannot be published
by any path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete

from bot.client.hub import Hub
from bot.publish.cards import CardContext, render_pr_description, render_repo_card
from bot.publish.state import PR_TITLE_PREFIX, Target, bot_prs, check_owned, published_state
from engine.errors import ValidationFailed
from engine.formats.manifest import Artifact, Manifest
from engine.run.variants import VARIANTS, PublishTarget

log = logging.getLogger("unetbot.publish")


@dataclass(frozen=True)
class Upload:
    path_in_repo: str
    local: Path | None = None
    content: bytes | None = None

    @property
    def size(self) -> int:
        return self.local.stat().st_size if self.local else len(self.content or b"")


@dataclass
class PublishPlan:
    target: Target
    create_pr: bool
    title: str
    description: str
    uploads: list[Upload] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    parent_commit: str | None = None
    variants: list[str] = field(default_factory=list)
    source_revision: str = ""

    def to_dict(self) -> dict:
        return {
            "target": self.target.kind.key,
            "repo_id": self.target.repo_id,
            "create_pr": self.create_pr,
            "title": self.title,
            "files": [{"path": u.path_in_repo, "bytes": u.size} for u in self.uploads],
            "deletes": self.deletes,
            "variants": self.variants,
        }


def _require_passed(artifacts: list[Artifact]) -> None:
    failed = [a.variant for a in artifacts if not a.passed]
    if failed:
        raise ValidationFailed(f"refusing to publish artifacts that did not pass: {failed}")


def plan_pr(
    ctx: CardContext,
    out_dir: Path,
    artifacts: list[Artifact],
    left_out: dict[str, str] | None = None,
) -> PublishPlan:
    """A PR on the source repo adding the original-format file(s) at the repo root."""
    _require_passed(artifacts)
    uploads = [Upload(Path(a.path).name, out_dir / a.path) for a in artifacts]
    has_full = any(VARIANTS[a.variant].full_checkpoint for a in artifacts)
    return PublishPlan(
        target=Target(PublishTarget.PR, ctx.source_repo),
        create_pr=True,
        title=f"{PR_TITLE_PREFIX} (unetbot, revision {ctx.source_revision[:12]})",
        description=render_pr_description(ctx, artifacts, has_full, left_out),
        uploads=uploads,
        parent_commit=ctx.source_revision or None,
        variants=[a.variant for a in artifacts],
        source_revision=ctx.source_revision,
    )


def plan_repo(
    hub: Hub | None,
    ctx: CardContext,
    target: Target,
    out_dir: Path,
    manifest: Manifest,
    artifacts: list[Artifact],
    source_root: Path,
    left_out: dict[str, str] | None = None,
    unet_folder: str = "unet",
    over_budget: dict[str, str] | None = None,
) -> PublishPlan:
    """One atomic commit to the target repo: weights, card, config, licence, manifest subset."""
    _require_passed(artifacts)
    uploads: list[Upload] = []
    for a in artifacts:
        for f in a.files:
            uploads.append(Upload(f.path, out_dir / f.path))
    if target.kind is PublishTarget.GGUF:  # diffusers' GGUF loader needs the UNet config
        uploads.append(Upload("unet/config.json", source_root / unet_folder / "config.json"))
    if manifest.grid:
        uploads.append(Upload(manifest.grid, out_dir / manifest.grid))
    for licence in ctx.licence_files:
        uploads.append(Upload(licence, source_root / licence))
    subset = Manifest(source=manifest.source, artifacts=artifacts)
    uploads.append(Upload("unetbot-manifest.json", content=subset.to_json().encode()))
    card = render_repo_card(
        ctx, target.kind, target.repo_id, manifest, artifacts, left_out, over_budget=over_budget
    )
    uploads.append(Upload("README.md", content=card.encode()))
    deletes: list[str] = []
    parent = None
    if hub is not None:
        published = published_state(hub, target.repo_id)
        check_owned(published, target, ctx.source_repo)
        if published is not None:
            parent = published.head or None
            existing = hub.call(
                f"list files of {target.repo_id}", hub.api.list_repo_files, target.repo_id
            )
            keep = {u.path_in_repo for u in uploads} | {".gitattributes"}
            deletes = sorted(set(existing) - keep)
    return PublishPlan(
        target=target,
        create_pr=False,
        title=f"unetbot: {target.kind.key} files for {ctx.source_repo}@{ctx.source_revision[:12]}",
        description=f"Source: {ctx.source_repo} at {ctx.source_revision}",
        uploads=uploads,
        deletes=deletes,
        parent_commit=parent,
        variants=[a.variant for a in artifacts],
        source_revision=ctx.source_revision,
    )


def _already_published(hub: Hub, plan: PublishPlan, bot_user: str) -> str | None:
    """URL of what an earlier attempt (or a killed run) already published for this revision."""
    if plan.create_pr:
        prs = bot_prs(hub, plan.target.repo_id, bot_user)
        pr = next((p for p in prs if p.revision == plan.source_revision), None)
        if pr is None:
            return None
        return f"{hub.settings.endpoint}/{plan.target.repo_id}/discussions/{pr.num}"
    published = published_state(hub, plan.target.repo_id)
    if published is None or not published.done_for(plan.source_revision):
        return None
    return f"{hub.settings.endpoint}/{plan.target.repo_id}/commit/{published.head}"


def execute(hub: Hub, plan: PublishPlan, bot_user: str) -> str:
    """Run the plan as one commit (a PR when `create_pr`); returns the commit or PR URL.

    Each attempt (the first and every retry after a 429/5xx) first checks whether this revision
    is already published, so a commit the server applied before a dropped answer is never
    repeated: one PR / one commit per (source revision, target).
    """
    operations: list = [
        CommitOperationAdd(u.path_in_repo, str(u.local) if u.local else u.content)
        for u in plan.uploads
    ]
    operations += [CommitOperationDelete(p) for p in plan.deletes]
    if not plan.create_pr:
        hub.call(
            f"create repo {plan.target.repo_id}",
            hub.api.create_repo,
            plan.target.repo_id,
            exist_ok=True,
        )

    def attempt() -> str:
        existing = _already_published(hub, plan, bot_user)
        if existing:
            log.info(
                "%s already has revision %s: %s",
                plan.target.repo_id,
                plan.source_revision,
                existing,
            )
            return existing
        info = hub.api.create_commit(
            plan.target.repo_id,
            operations,
            commit_message=plan.title,
            commit_description=plan.description,
            create_pr=plan.create_pr,
            parent_commit=plan.parent_commit,
        )
        return str(info.pr_url if plan.create_pr else info.commit_url)

    url = hub.call(f"commit to {plan.target.repo_id}", attempt)
    log.info("published %s: %s", plan.target.repo_id, url)
    return url


def plans_json(plans: list[PublishPlan]) -> str:
    return json.dumps([p.to_dict() for p in plans], indent=2)
