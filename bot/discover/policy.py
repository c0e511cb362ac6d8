"""Policy: which Hub repos the bot may convert, each refusal with its reason.

Pure functions over repo metadata (no Hub calls), so every rule is testable on its own and the
scan can explain each skip.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.config import PolicyConfig

BOT_TAG = "unetbot"


@dataclass(frozen=True)
class RepoFacts:
    """What the policy looks at, read from `model_info` (nothing downloaded)."""

    repo_id: str
    sha: str
    private: bool
    gated: bool
    tags: tuple[str, ...]
    licence: str | None
    files: dict[str, int]  # path -> size in bytes (0 if unknown)


def licence_of(card_data: dict | None, tags: Iterable[str]) -> str | None:
    if card_data and isinstance(card_data.get("license"), str):
        return card_data["license"].lower()
    for tag in tags:
        if tag.startswith("license:"):
            return tag.split(":", 1)[1].lower()
    return None


def policy_skip(facts: RepoFacts, policy: PolicyConfig, bot_namespace: str) -> str | None:
    """The reason to skip this repo, or None when policy allows converting it."""
    namespace = facts.repo_id.split("/")[0]
    if BOT_TAG in facts.tags or (bot_namespace and namespace == bot_namespace):
        return "published by unetbot itself"
    if facts.private and policy.skip_private:
        return "private repo"
    if facts.gated and policy.skip_gated:
        return "gated repo (access conditions must be accepted per user)"
    opted_tag = sorted(set(policy.opt_out_tags) & set(facts.tags))
    if opted_tag:
        return f"owner opted out (tag {opted_tag[0]})"
    opted_file = sorted(set(policy.opt_out_files) & set(facts.files))
    if opted_file:
        return f"owner opted out (file {opted_file[0]})"
    if facts.licence is None:
        return "no licence declared"
    if facts.licence in policy.licence_deny:
        return f"licence {facts.licence} is on the deny list"
    if policy.licence_allow and facts.licence not in policy.licence_allow:
        return f"licence {facts.licence} is not on the allow list"
    return None


def size_skip(unet_bytes: int, total_bytes: int, policy: PolicyConfig) -> str | None:
    if unet_bytes > policy.max_unet_bytes:
        return f"UNet weights {unet_bytes / 1e9:.2f} GB exceed max_unet_bytes"
    if total_bytes > policy.max_total_bytes:
        return f"weights to download {total_bytes / 1e9:.2f} GB exceed max_total_bytes"
    return None
