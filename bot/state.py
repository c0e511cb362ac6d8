"""What the bot already did, read back from the Hub itself (no local database).

- A PR target is done for a source revision when a PR by the bot on the source repo carries the
  marker `<!-- unetbot-source: repo@sha -->` (open, merged or closed: a closed PR means the owner
  declined that revision, and the bot does not ask again).
- A repo target is done when its model card's `unetbot.source_revision` equals the revision.

Because the commit that publishes is atomic and carries the marker, a run killed at any point
either left nothing (the rerun publishes) or left the marker (the rerun skips): exactly one PR /
one commit per (source revision, target).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from huggingface_hub.errors import RepositoryNotFoundError

from bot.cards import pr_marker
from bot.hubclient import Hub

log = logging.getLogger("unetbot.state")
PR_TITLE_PREFIX = "Add original-format single-file checkpoint"


@dataclass(frozen=True)
class Target:
    kind: str  # "pr" | "gguf" | "torchao" | "quanto"
    repo_id: str  # the source repo for "pr", else the repo to publish into


REPO_SUFFIX = {"gguf": "-GGUF", "torchao": "-torchao-int8", "quanto": "-quanto"}


def target_repo(kind: str, source_repo: str, namespace: str) -> str:
    return f"{namespace}/{source_repo.split('/')[-1]}{REPO_SUFFIX[kind]}"


@dataclass(frozen=True)
class BotPR:
    num: int
    status: str
    revision: str  # the source revision named in its marker ("" when not ours)


def bot_prs(hub: Hub, source_repo: str, bot_user: str) -> list[BotPR]:
    """The bot's PRs on `source_repo`, with the source revision each one was made for."""
    discussions = hub.call(
        f"list PRs of {source_repo}",
        lambda: list(
            hub.api.get_repo_discussions(
                source_repo, author=bot_user, discussion_type="pull_request"
            )
        ),
    )
    prs = []
    for d in discussions:
        if not d.title.startswith(PR_TITLE_PREFIX):
            continue
        details = hub.call(
            f"PR #{d.num} of {source_repo}",
            hub.api.get_discussion_details,
            source_repo,
            d.num,
        )
        text = details.events[0].content if details.events else ""
        prs.append(BotPR(d.num, d.status, _marked_revision(text or "", source_repo)))
    return prs


def _marked_revision(text: str, source_repo: str) -> str:
    head, _, tail = pr_marker(source_repo, "\0").partition("\0")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(head) and line.endswith(tail):
            return line[len(head) : len(line) - len(tail)]
    return ""


def pr_done(hub: Hub, source_repo: str, revision: str, bot_user: str) -> BotPR | None:
    return next((p for p in bot_prs(hub, source_repo, bot_user) if p.revision == revision), None)


def published_revision(hub: Hub, repo_id: str) -> tuple[str, str] | None:
    """(source revision in the card, repo head sha) of a published repo, or None if absent."""
    try:
        info = hub.call(f"model_info {repo_id}", hub.api.model_info, repo_id)
    except RepositoryNotFoundError:
        return None
    card = info.card_data.to_dict() if info.card_data is not None else {}
    meta = card.get("unetbot") or {}
    return (str(meta.get("source_revision", "")), info.sha or "")


def target_done(hub: Hub, target: Target, source_repo: str, revision: str, bot_user: str) -> bool:
    if target.kind == "pr":
        return pr_done(hub, source_repo, revision, bot_user) is not None
    published = published_revision(hub, target.repo_id)
    return published is not None and published[0] == revision
