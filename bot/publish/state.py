"""What the bot already did, read back from the Hub itself (no local database).

- A PR target is done for a source revision when a PR by the bot on the source repo carries the
  marker `<!-- unetbot-source: repo@sha -->` (open, merged or closed: a closed PR means the owner
  declined that revision, and the bot does not ask again).
- A repo target is done when its model card's `unetbot.source_revision` equals the revision.

Because the commit that publishes is atomic and carries the marker, a run killed at any point
either left nothing (the rerun publishes) or left the marker (the rerun skips): exactly one PR /
one commit per (source revision, target).

Repo names (the naming rule, README "Publishing"): `{namespace}/{owner}__{name}{suffix}`, so
`alice/foo` and `bob/foo` never share a repo. Names longer than the Hub's 96 characters keep a
prefix of the name plus 8 hex digits of the source id's sha256. As a second guard, the bot never
publishes into a repo whose card records another source repo.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from bot.client.hub import Hub
from bot.publish.cards import pr_marker
from engine import __version__
from engine.errors import HubNotFound, PolicySkipped
from engine.run.variants import PublishTarget

log = logging.getLogger("unetbot.state")
PR_TITLE_PREFIX = "Add original-format single-file checkpoint"
MAX_REPO_NAME = 96  # huggingface_hub validate_repo_id: 1..96 characters


@dataclass(frozen=True)
class Target:
    """One place to publish: the source repo (a PR) or a repo of the bot's namespace."""

    kind: PublishTarget
    repo_id: str

    def describe(self) -> str:
        return f"{self.kind.key}: {self.repo_id}"


def target_repo(kind: PublishTarget, source_repo: str, namespace: str) -> str:
    """The bot's repo for `kind` files of `source_repo` (the naming rule of the module doc)."""
    if kind.is_pr:
        return source_repo
    owner, _, name = source_repo.partition("/")
    base = f"{owner}__{name}"
    if len(base) + len(kind.repo_suffix) > MAX_REPO_NAME:
        digest = hashlib.sha256(source_repo.encode()).hexdigest()[:8]
        keep = MAX_REPO_NAME - len(kind.repo_suffix) - len(digest) - 1
        base = f"{base[:keep].rstrip('-._')}-{digest}"
    return f"{namespace}/{base}{kind.repo_suffix}"


def target_for(kind: PublishTarget, source_repo: str, namespace: str) -> Target:
    return Target(kind, target_repo(kind, source_repo, namespace))


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


@dataclass(frozen=True)
class Published:
    """What a bot repo's card says it holds, and the repo's head commit."""

    source_repo: str
    source_revision: str
    head: str
    version: str = ""  # the unetbot version that published it
    left_out: tuple[str, ...] = ()  # variants that failed validation and were not published

    def done_for(self, revision: str) -> bool:
        """This revision is published, and nothing left out is worth retrying: a variant left
        out by this same converter version would fail the same way again."""
        return self.source_revision == revision and (
            not self.left_out or self.version == __version__
        )


def published_state(hub: Hub, repo_id: str) -> Published | None:
    """The card's record of a published repo, or None when the repo does not exist."""
    try:
        info = hub.call(f"model_info {repo_id}", hub.api.model_info, repo_id)
    except HubNotFound:
        return None
    return published_from(info)


def published_from(info) -> Published:
    """What a repo's card records, from a `model_info` answer or a list page entry with
    `cardData` (bot/ledger/target_check.py): one reading, so both sources judge a repo alike."""
    card = info.card_data.to_dict() if info.card_data is not None else {}
    meta = card.get("unetbot") if isinstance(card.get("unetbot"), dict) else {}
    left_out = meta.get("left_out")
    return Published(
        str(meta.get("source_repo", "")),
        str(meta.get("source_revision", "")),
        info.sha or "",
        str(meta.get("version", "")),
        tuple(left_out) if isinstance(left_out, dict) else (),
    )


def check_owned(published: Published | None, target: Target, source_repo: str) -> None:
    """Refuse to publish into a repo whose card records another source. A repo without a
    record is the bot's own (only the bot writes in its namespace) left empty by a run that
    stopped between creating it and committing: it is filled."""
    if published is not None and published.source_repo not in ("", source_repo):
        raise PolicySkipped(
            f"{target.repo_id} exists and records {published.source_repo!r}, not "
            f"{source_repo!r}: refusing to publish into it"
        )


@dataclass(frozen=True)
class TargetState:
    """Whether a target already has this source revision, and the bot's open PRs to close."""

    done: bool
    superseded_prs: tuple[int, ...] = ()


def target_state(
    hub: Hub, target: Target, source_repo: str, revision: str, bot_user: str
) -> TargetState:
    if target.kind.is_pr:
        prs = bot_prs(hub, source_repo, bot_user)
        done = any(p.revision == revision for p in prs)
        stale = tuple(p.num for p in prs if p.status == "open" and p.revision != revision)
        # Only superseded once a PR for this revision exists (it may be the one about to open).
        return TargetState(done, stale if done else ())
    published = published_state(hub, target.repo_id)
    check_owned(published, target, source_repo)
    return TargetState(published is not None and published.done_for(revision))


def close_superseded_prs(
    hub: Hub, repo: str, numbers: tuple[int, ...], revision: str, by_url: str = ""
) -> None:
    """Close the bot's still-open PRs made for older revisions (idempotent: a closed PR is not
    in the list the next time). Runs whenever the bot sees them, so a run killed between
    opening the new PR and closing the old one is repaired by the next run."""
    for num in numbers:
        hub.call(
            f"close superseded PR #{num}",
            hub.api.change_discussion_status,
            repo,
            num,
            "closed",
            comment=f"Superseded{f' by {by_url}' if by_url else ''} (source revision "
            f"{revision[:12]}).",
        )
