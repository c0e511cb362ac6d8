"""Why a job or a plan row does nothing: one wording table, so the `skipped` field of a job's result
(its summary and `--json`) and of a plan row states the true cause, never only the notes.

Each publish target that needs no work has one cause; `combine` joins them ("pr: ...; gguf: ...")
unless they all say the same thing. "already published" is said only when the Hub's markers (or
the ledger's record of a publication) say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.choice import VariantChoice
    from engine.run.variants import PublishTarget


def already_published(revision: str, by_ledger: bool = False) -> str:
    """The Hub's markers (PR description, card, file metadata) hold this source revision."""
    where = " (the ledger's record of it)" if by_ledger else ""
    return f"already published for revision {revision[:12]}{where}"


def ships_original(filename: str, what: str = "") -> str:
    """The source repo already has an original checkpoint of its UNet: no PR is needed."""
    detail = f": {what}" if what else ""
    return f"the repo already ships an original checkpoint ({filename}{detail})"


def nothing_chosen(target: str) -> str:
    """The chosen variants leave this target empty (the notes say which were left out)."""
    return f"no variant chosen for {target}"


def no_work_chosen(kind: PublishTarget, choice: VariantChoice, pr_skip: str) -> str:
    """Why the choice itself gives target `kind` no work, or "": no variant chosen for it, or a
    pull request the repo does not need (`pr_skip`: bot.discover.scan.Candidate's)."""
    if not choice.per_target.get(kind):
        return nothing_chosen(kind.key)
    return pr_skip if kind.is_pr else ""


def held_back(variants: list[str], version: str) -> str:
    """The ledger holds the target back: it failed validation for these inputs before."""
    return (
        f"not redone: {', '.join(variants)} failed validation for these inputs with unetbot "
        f"{version} (the ledger retries when either changes)"
    )


def combine(per_target: Mapping[str, str]) -> str:
    """One `skipped` text from each target's cause. A target the variants leave empty was not
    asked for (the notes say so): it is a cause only when no target was."""
    asked = {t: cause for t, cause in per_target.items() if cause != nothing_chosen(t)}
    per_target = asked or per_target
    causes = list(dict.fromkeys(per_target.values()))
    if len(causes) == 1:
        return causes[0]
    return "; ".join(f"{target}: {cause}" for target, cause in per_target.items())
