"""The embedded Hub's data model: repos, commits, file entries, commit operations, and the
rules for the names that reach the filesystem (repo ids, paths in a repo, revisions).

Hashes follow git and the Hub (what huggingface_hub compares against): a regular file's oid is
its git blob sha1, an LFS file is keyed by the sha256 of its content and listed with the sha1
of its pointer file, and a commit id is the sha1 of the commit's canonical JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from bot.hub.errors import BadRequest, InvalidRevision

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PATH = 1000
MAX_REVISION = 256


def now_iso() -> str:
    """UTC timestamp in the Hub's format (the client parses it with parse_datetime)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def git_blob_sha1(data: bytes) -> str:
    """Git's blob id: what the client compares with for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return LFS_POINTER.format(oid=oid, size=size).encode()


def check_path(path: object) -> str:
    """A path inside a repo: no `..`, `.`, empty segment, absolute path, `\\`, control
    character or `.git/`, so it can never escape the repo or confuse git."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise BadRequest(f"invalid path: {path!r}")
    if "\\" in path or _CONTROL.search(path) or path.startswith("/"):
        raise BadRequest(f"invalid path: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise BadRequest(f"invalid path: {path!r}")
    return path


def check_repo_id(repo_id: str) -> tuple[str, str]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts) or ".." in repo_id:
        raise BadRequest(f"invalid repo id: {repo_id!r}")
    return parts[0], parts[1]


def check_revision(revision: str) -> str:
    """Refuse revisions that can never name a ref or commit: empty, `.`/`..` segments,
    control characters, `\\` (they would otherwise reach a path under refs/)."""
    if not revision or len(revision) > MAX_REVISION:
        raise InvalidRevision(f"Invalid rev id: {revision[:MAX_REVISION]!r}")
    if "\\" in revision or _CONTROL.search(revision):
        raise InvalidRevision(f"Invalid rev id: {revision!r}")
    if any(p in ("", ".", "..") for p in revision.split("/")):
        raise InvalidRevision(f"Invalid rev id: {revision!r}")
    return revision


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit's tree: git oid (pointer sha1 for LFS), size, sha256 if LFS."""

    oid: str
    size: int
    sha256: str | None = None

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256 or "", self.size))

    def to_json(self) -> list[Any]:
        return [self.oid, self.size, self.sha256]

    @classmethod
    def from_json(cls, raw: list[Any]) -> FileEntry:
        return cls(raw[0], int(raw[1]), raw[2])


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, FileEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parents": self.parents,
            "title": self.title,
            "message": self.message,
            "author": self.author,
            "date": self.date,
            "files": {p: e.to_json() for p, e in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Commit:
        files = {p: FileEntry.from_json(e) for p, e in raw["files"].items()}
        return cls(
            raw["id"],
            raw["parents"],
            raw["title"],
            raw["message"],
            raw["author"],
            raw["date"],
            files,
        )

    @classmethod
    def create(
        cls, parents: list[str], files: dict[str, FileEntry], title: str, message: str, author: str
    ) -> Commit:
        """Build a commit whose id is the sha1 of its canonical content (40 lowercase hex)."""
        c = cls("", parents, title, message, author, now_iso(), files)
        body = canonical_json(c.to_json())
        c.id = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        return c


@dataclass
class RepoMeta:
    """Settings of one repo plus a summary of its main branch, kept in memory for listing.

    `downloads` and `likes` are set by the hub config or the seeding API (the embedded Hub
    has no users to count them); the rest is derived from main's head commit."""

    repo_type: str
    repo_id: str
    private: bool = False
    gated: str | bool = False
    created_at: str = ""
    sha: str = ""
    last_modified: str = ""
    card_data: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    pipeline_tag: str | None = None
    downloads: int = 0
    likes: int = 0
    summary_version: int = 0  # repotags.RULE_VERSION the summary was derived with

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RepoMeta:
        """Read a stored summary; keys of other versions are ignored (the summary is derived
        data, rebuilt from the head commit when it is stale)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


# Operations of a commit, parsed from the NDJSON body (routes_commit.py) or built by bulk.py.
@dataclass(frozen=True)
class AddRegular:
    path: str
    data: bytes


@dataclass(frozen=True)
class AddLfs:
    path: str
    oid: str
    size: int | None


@dataclass(frozen=True)
class Delete:
    path: str
    folder: bool = False


Operation = AddRegular | AddLfs | Delete
