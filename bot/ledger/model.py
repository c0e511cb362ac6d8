"""The ledger: the bot's memory of every repo it judged and every target it published.

It turns a scheduled run from "judge every listed repo again" into "look at what changed": a
repo whose head sha is the one recorded costs nothing beyond its share of a list page; a new
sha whose input fingerprint (bot/discover/fingerprint.py) is the recorded one costs one
`model_info`.

The ledger is a cache, never the only truth. The Hub's own markers stay authoritative (PR
descriptions carry `<!-- unetbot-source: repo@sha -->`, published cards `unetbot.source_*`):
a lost or corrupt ledger is rebuilt from them (bot/ledger/rebuild.py), a missing record means
"ask the Hub", and the publish step's "already published?" check (bot/publish/commit.py) runs before
every commit whatever the ledger says. The ledger can only ever hold a target back, never
publish one twice.

Format (`ledger.jsonl` in a dataset repo of the bot's namespace, bot/ledger/store.py): one
JSON object per line; the first line is the header
`{"kind": "unetbot-ledger", "schema_version": 1, "updated": ..., "cursor": ...}`, then one
line per source repo, sorted by repo id:

    {"repo": "alice/anything-v5", "sha": "<head judged>", "fp": "<input fingerprint>",
     "verdict": {"status": "supported", "reason": ..., "refusal": 0, "stage": "judged",
                 "kind": "sd15", ...},
     "version": "<engine.__version__ that judged>", "policy": "<policy config digest>",
     "judged": "<UTC time>",
     "targets": {"gguf": [{"status": "published", "revision": ..., "fp": ..., "version": ...,
                           "at": ..., "url": ...}], "pr": [...]}}

Merge rule (two runs writing at once, bot/ledger/store.py): per repo, the judgement with the
later `judged` time wins; target records are a union (one per status, revision, fingerprint
and converter version, the latest kept) trimmed to the newest `history` per target. Both are
commutative and idempotent, so the order in which concurrent writers land does not matter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from engine.errors import BadInput
from engine.run.variants import PublishTarget

SCHEMA_VERSION = 1
KIND = "unetbot-ledger"
FILENAME = "ledger.jsonl"


def now() -> str:
    """A UTC timestamp that sorts as text (the merge rule compares them)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Outcome(StrEnum):
    PUBLISHED = "published"  # the target holds this source (a PR for it exists, or the card)
    FAILED = "failed"  # a variant failed validation: not redone for the same inputs + converter
    PENDING = "pending"  # checked on the Hub: not published yet


class Stage(StrEnum):
    LISTING = "listing"  # decided from the list page (policy, pipeline class): redone each run
    JUDGED = "judged"  # decided by `judge`: reused while the fingerprint holds


@dataclass(frozen=True)
class Verdict:
    """A judgement, as `bot.discover.scan.Candidate` carries it."""

    status: str  # "supported" | "skipped"
    reason: str
    refusal: int  # engine.errors.ExitCode value
    stage: Stage = Stage.JUDGED
    kind: str = ""
    licence: str | None = None
    unet_bytes: int = 0
    has_full_pipeline: bool = False
    unet_folder: str = "unet"
    fp16_twin: bool = False
    pr_skip: str = ""

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    def to_dict(self) -> dict:
        defaults = Verdict("", "", 0)
        out = {"status": self.status, "reason": self.reason, "refusal": self.refusal}
        for name in _VERDICT_KEYS[3:]:  # only what differs from the defaults
            if getattr(self, name) != getattr(defaults, name):
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Verdict:
        data = {k: raw[k] for k in _VERDICT_KEYS if k in raw}
        data["stage"] = Stage(data.get("stage", Stage.JUDGED))
        return cls(**data)


_VERDICT_KEYS = tuple(Verdict.__dataclass_fields__)


@dataclass(frozen=True)
class TargetRecord:
    """One outcome of one publish target for one source revision."""

    status: Outcome
    revision: str
    fingerprint: str
    version: str  # converter version (engine.__version__) that produced the outcome
    at: str
    url: str = ""
    # The variants that failed validation: all of them (FAILED), or those left out of what
    # was published (PUBLISHED: bot/job/run.py publishes the variants that passed).
    variants: tuple[str, ...] = ()
    reason: str = ""

    def matches(self, sha: str, fingerprint: str) -> bool:
        """Made from the same source: the same revision, or the same inputs."""
        return (bool(sha) and self.revision == sha) or (
            bool(fingerprint) and self.fingerprint == fingerprint
        )

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.status, self.revision, self.fingerprint, self.version)

    def to_dict(self) -> dict:
        out = {
            "status": str(self.status),
            "revision": self.revision,
            "fp": self.fingerprint,
            "version": self.version,
            "at": self.at,
        }
        if self.url:
            out["url"] = self.url
        if self.variants:
            out["variants"] = list(self.variants)
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> TargetRecord:
        return cls(
            Outcome(raw["status"]),
            str(raw["revision"]),
            str(raw.get("fp", "")),
            str(raw.get("version", "")),
            str(raw["at"]),
            str(raw.get("url", "")),
            tuple(str(v) for v in raw.get("variants", ())),
            str(raw.get("reason", "")),
        )


@dataclass
class Entry:
    """What the ledger knows about one source repo."""

    repo_id: str
    sha: str = ""  # the head the verdict was reached for ("" when rebuilt from markers)
    fingerprint: str = ""
    verdict: Verdict | None = None
    version: str = ""  # converter version of the verdict
    policy: str = ""  # digest of the policy config the verdict was reached under
    judged_at: str = ""
    targets: dict[str, list[TargetRecord]] = field(default_factory=dict)

    def target(
        self, kind: PublishTarget, sha: str, fingerprint: str, version: str
    ) -> Outcome | None:
        """What the records say about `kind` for this source: PUBLISHED, FAILED (with this
        converter version), PENDING, or None when they do not settle it (ask the Hub).

        The rules of bot/publish/state.py `target_state`, by input fingerprint as well as revision:
        a PR is done when any PR of the bot was made from the same source (a closed one was
        declined: not asked again). A repo holds one source at a time: done only when its
        latest publish was made from the same source (a force-push back to older weights
        publishes them again) and left nothing out, or left it out with this converter
        version (a newer one tries those variants again)."""
        records = self.targets.get(kind.key, [])
        published = [r for r in records if r.status is Outcome.PUBLISHED]
        if kind.is_pr and any(r.matches(sha, fingerprint) for r in published):
            return Outcome.PUBLISHED
        if published:
            latest = max(published, key=lambda r: r.at)
            if latest.matches(sha, fingerprint):
                complete = not latest.variants or latest.version == version
                return Outcome.PUBLISHED if complete else None
        same = [r for r in records if r.matches(sha, fingerprint)]
        if not same:
            return None
        latest = max(same, key=lambda r: r.at)
        if latest.status is Outcome.FAILED:
            return Outcome.FAILED if latest.version == version else None
        return latest.status if latest.status is Outcome.PENDING else None

    def failure(self, kind: PublishTarget, sha: str, fingerprint: str) -> TargetRecord | None:
        same = [
            r
            for r in self.targets.get(kind.key, [])
            if r.status is Outcome.FAILED and r.matches(sha, fingerprint)
        ]
        return max(same, key=lambda r: r.at) if same else None

    @property
    def has_published(self) -> bool:
        return any(r.status is Outcome.PUBLISHED for rs in self.targets.values() for r in rs)

    def to_dict(self) -> dict:
        out: dict = {"repo": self.repo_id, "sha": self.sha, "fp": self.fingerprint}
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_dict()
        out.update(version=self.version, policy=self.policy, judged=self.judged_at)
        if self.targets:
            out["targets"] = {
                k: [r.to_dict() for r in rs] for k, rs in sorted(self.targets.items())
            }
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Entry:
        verdict = raw.get("verdict")
        return cls(
            str(raw["repo"]),
            str(raw.get("sha", "")),
            str(raw.get("fp", "")),
            Verdict.from_dict(verdict) if isinstance(verdict, dict) else None,
            str(raw.get("version", "")),
            str(raw.get("policy", "")),
            str(raw.get("judged", "")),
            {
                str(k): [TargetRecord.from_dict(r) for r in rs]
                for k, rs in (raw.get("targets") or {}).items()
            },
        )


@dataclass(frozen=True)
class Cursor:
    """Where the last run stopped in the backlog (most downloaded first)."""

    downloads: int
    repo_id: str

    def passed(self, downloads: int, repo_id: str) -> bool:
        """Whether a repo comes at or before the cursor in the backlog order."""
        return (-downloads, repo_id) <= (-self.downloads, self.repo_id)


@dataclass
class Ledger:
    entries: dict[str, Entry] = field(default_factory=dict)
    cursor: Cursor | None = None
    updated: str = ""

    def to_jsonl(self) -> bytes:
        cursor = (
            {"downloads": self.cursor.downloads, "repo": self.cursor.repo_id}
            if self.cursor
            else None
        )
        header = {
            "kind": KIND,
            "schema_version": SCHEMA_VERSION,
            "updated": self.updated,
            "cursor": cursor,
        }
        lines = [json.dumps(header, separators=(",", ":"))]
        lines += [
            json.dumps(self.entries[k].to_dict(), separators=(",", ":"), ensure_ascii=False)
            for k in sorted(self.entries)
        ]
        return ("\n".join(lines) + "\n").encode()


def schema_of(data: bytes) -> int:
    """The schema version a ledger file declares on its first line (0 when unreadable)."""
    try:
        header = json.loads(data.split(b"\n", 1)[0])
        return int(header.get("schema_version", 0)) if isinstance(header, dict) else 0
    except (ValueError, TypeError, RecursionError):
        return 0


def parse_ledger(data: bytes, where: str) -> Ledger:
    """A ledger from its file; any malformed line makes the whole file corrupt (BadInput)."""
    try:
        lines = data.decode("utf-8").splitlines()
        header = json.loads(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get("kind") != KIND:
            raise ValueError("the first line is not a unetbot ledger header")
        if header.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {header.get('schema_version')!r} is not supported")
        raw_cursor = header.get("cursor")
        cursor = (
            Cursor(int(raw_cursor["downloads"]), str(raw_cursor["repo"])) if raw_cursor else None
        )
        ledger = Ledger(cursor=cursor, updated=str(header.get("updated", "")))
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                entry = Entry.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"line {number}: {type(exc).__name__}: {exc}") from None
            ledger.entries[entry.repo_id] = entry
        return ledger
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BadInput(f"{where}: corrupt ledger ({exc})") from None


# --- merge --------------------------------------------------------------------------------------


def merge_records(a: list[TargetRecord], b: list[TargetRecord], keep: int) -> list[TargetRecord]:
    """Union by (status, revision, fingerprint, version), the latest of each, newest `keep`."""
    best: dict[tuple[str, str, str, str], TargetRecord] = {}
    for record in [*a, *b]:
        seen = best.get(record.key)
        if seen is None or (record.at, record.url) > (seen.at, seen.url):
            best[record.key] = record
    return sorted(best.values(), key=lambda r: r.at)[-keep:]


def merge_entries(a: Entry | None, b: Entry | None, keep: int) -> Entry | None:
    """The join of two views of one repo (see the module docstring)."""
    if a is None or b is None:
        return a or b
    judged = b if (b.judged_at, b.sha) >= (a.judged_at, a.sha) else a
    merged = Entry(
        judged.repo_id,
        judged.sha,
        judged.fingerprint,
        judged.verdict,
        judged.version,
        judged.policy,
        judged.judged_at,
    )
    for key in sorted(set(a.targets) | set(b.targets)):
        merged.targets[key] = merge_records(a.targets.get(key, []), b.targets.get(key, []), keep)
    return merged
