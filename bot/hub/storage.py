"""On-disk storage for the embedded Hub: content-addressed blobs, commits, refs, repo metadata.

Layout under the server root (one server process per root, enforced by `ServerLock`):

    objects/git/ab/cdef...   regular file contents, keyed by git blob sha1
    objects/lfs/ab/cdef...   LFS contents, keyed by sha256
    tmp/                     partial uploads (same filesystem, so os.replace is atomic)
    repos/{models|datasets|spaces}/{namespace}/{name}/
        repo.json            settings and a summary of main (for fast listing)
        commits/{sha}.json   commit objects: parents, message and the whole file tree
        refs/heads/main      40-hex commit id; refs/pr/N likewise
        discussions/N.json   see discussions.py

Every write goes through `atomic_write` (temp file, fsync, os.replace) and a commit updates its
ref last, so a crash at any point leaves the repo at its previous commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from bot.hub import cardmeta

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
REGULAR_MAX = 10 * 1024 * 1024  # the Hub sends bigger files through LFS
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gguf",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lfs.*",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "saved_model/**/*",
        "*.tar.*",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
)


class HubError(Exception):
    """An error with the HTTP status and X-Error-Code the client maps to its typed exceptions."""

    status = 400
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class RepoNotFound(HubError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(HubError):
    status, code = 404, "RevisionNotFound"


class EntryNotFound(HubError):
    status, code = 404, "EntryNotFound"


class Conflict(HubError):
    status = 409


class PreconditionFailed(HubError):
    status = 412


class BadRequest(HubError):
    status = 400


def now_iso() -> str:
    """UTC timestamp in the Hub's format (the client parses it with parse_datetime)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def git_blob_sha1(data: bytes) -> str:
    """Git's blob id: what the client compares with for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return LFS_POINTER.format(oid=oid, size=size).encode()


def check_path(path: str) -> str:
    """Refuse anything that could escape the repo or confuse git: `..`, absolute, `\\`, NUL."""
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise BadRequest(f"invalid path: {path!r}")
    if "\\" in path or "\0" in path or path.startswith("/"):
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


# Bulk seeding (benchmarks) may turn fsync off; the server always runs with it on.
FSYNC = True


def fsync_dir(path: Path) -> None:
    if not FSYNC:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write all-or-nothing: readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if FSYNC:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


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
        body = json.dumps(c.to_json(), sort_keys=True, separators=(",", ":")).encode()
        c.id = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        return c


@dataclass
class RepoMeta:
    """Settings of one repo plus a summary of its main branch, kept in memory for listing."""

    repo_type: str
    repo_id: str
    private: bool = False
    gated: str | bool = False
    created_at: str = ""
    sha: str = ""
    last_modified: str = ""
    card_data: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Operations of a commit, parsed from the NDJSON body by the route.
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


class ObjectStore:
    """Content-addressed file contents shared by all repos (identical bytes stored once)."""

    def __init__(self, root: Path):
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # partial uploads of a crashed server: never adopted
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    def git_path(self, sha1: str) -> Path:
        return self.root / "objects" / "git" / sha1[:2] / sha1[2:]

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "objects" / "lfs" / sha256[:2] / sha256[2:]

    def path_for(self, entry: FileEntry) -> Path:
        return self.lfs_path(entry.sha256) if entry.sha256 else self.git_path(entry.oid)

    def put_regular(self, data: bytes) -> FileEntry:
        oid = git_blob_sha1(data)
        path = self.git_path(oid)
        if not path.exists():
            atomic_write(path, data)
        return FileEntry(oid, len(data))

    def read_regular(self, oid: str) -> bytes:
        return self.git_path(oid).read_bytes()

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None if it was never (fully) uploaded."""
        if not _HEX64.match(sha256):
            return None
        try:
            return self.lfs_path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def new_temp(self) -> tuple[int, Path]:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        return fd, Path(tmp)

    def adopt_lfs(self, tmp: Path, sha256: str) -> None:
        """Move a verified, fsynced upload into place; a concurrent identical upload is fine."""
        dest = self.lfs_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)


class ServerLock:
    """Exclusive lock on a root so two servers never interleave commits to the same repos."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self._fh = open(root / ".server.lock", "w")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            raise RuntimeError(f"another hub server is using {root}") from exc

    def release(self) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


class RepoStore:
    """Repos, refs and commits. Commits to one repo are serialised by a per-repo lock."""

    def __init__(self, root: Path, objects: ObjectStore, max_file_size: int):
        self.root = root
        self.objects = objects
        self.max_file_size = max_file_size
        self._index: dict[tuple[str, str], RepoMeta] = {}
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._commit_cache: OrderedDict[tuple[str, str, str], Commit] = OrderedDict()
        self._load_index()

    # -- layout -------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / ns / name

    def _load_index(self) -> None:
        for meta_path in sorted((self.root / "repos").glob("*/*/*/repo.json")):
            raw = json.loads(meta_path.read_text())
            meta = RepoMeta(**raw)
            self._index[(meta.repo_type, meta.repo_id)] = meta
            head = self.read_ref(meta.repo_type, meta.repo_id, f"refs/heads/{DEFAULT_BRANCH}")
            if head and head != meta.sha:  # crashed between ref update and summary write
                self._refresh_summary(meta, head)

    @contextmanager
    def lock(self, repo_type: str, repo_id: str) -> Iterator[None]:
        key = (repo_type, repo_id)
        with self._locks_guard:
            lk = self._locks.setdefault(key, threading.RLock())
        with lk:
            yield

    # -- repos ----------------------------------------------------------------------------
    def get(self, repo_type: str, repo_id: str) -> RepoMeta:
        meta = self._index.get((repo_type, repo_id))
        if meta is None:
            raise RepoNotFound(f"Repository {repo_id} not found")
        return meta

    def all_repos(self, repo_type: str) -> list[RepoMeta]:
        return [m for (t, _), m in list(self._index.items()) if t == repo_type]

    def create(
        self,
        repo_type: str,
        repo_id: str,
        *,
        author: str,
        private: bool = False,
        gated: str | bool = False,
    ) -> RepoMeta:
        check_repo_id(repo_id)
        with self.lock(repo_type, repo_id):
            if (repo_type, repo_id) in self._index:
                raise Conflict(f"You already created this {repo_type} repo: {repo_id}")
            meta = RepoMeta(repo_type, repo_id, private=private, gated=gated, created_at=now_iso())
            entry = self.objects.put_regular(DEFAULT_GITATTRIBUTES.encode())
            first = Commit.create([], {".gitattributes": entry}, "initial commit", "", author)
            self._write_commit(repo_type, repo_id, first)
            self._write_ref(repo_type, repo_id, f"refs/heads/{DEFAULT_BRANCH}", first.id)
            self._index[(repo_type, repo_id)] = meta
            self._refresh_summary(meta, first.id)
            return meta

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock(repo_type, repo_id):
            self.get(repo_type, repo_id)
            d = self.repo_dir(repo_type, repo_id)
            trash = self.objects.tmp / f"deleted-{os.getpid()}-{time.time_ns()}"
            os.replace(d, trash)  # atomic disappearance, then slow cleanup
            del self._index[(repo_type, repo_id)]
            shutil.rmtree(trash, ignore_errors=True)

    def update_settings(
        self,
        repo_type: str,
        repo_id: str,
        *,
        private: bool | None = None,
        gated: str | bool | None = None,
    ) -> RepoMeta:
        with self.lock(repo_type, repo_id):
            meta = self.get(repo_type, repo_id)
            if private is not None:
                meta.private = private
            if gated is not None:
                meta.gated = gated
            self._save_meta(meta)
            return meta

    def _save_meta(self, meta: RepoMeta) -> None:
        write_json(self.repo_dir(meta.repo_type, meta.repo_id) / "repo.json", meta.to_json())

    def _refresh_summary(self, meta: RepoMeta, head: str) -> None:
        commit = self.load_commit(meta.repo_type, meta.repo_id, head)
        meta.sha = head
        meta.last_modified = commit.date
        meta.card_data = self.card_data(commit)
        meta.tags = cardmeta.derive_tags(meta.card_data, list(commit.files))
        self._save_meta(meta)

    def card_data(self, commit: Commit) -> dict[str, Any] | None:
        entry = commit.files.get("README.md")
        if entry is None or entry.lfs:
            return None
        try:
            return cardmeta.parse_card_data(self.objects.read_regular(entry.oid).decode())
        except (cardmeta.CardMetaError, UnicodeDecodeError):
            return None

    # -- refs -----------------------------------------------------------------------------
    def _ref_path(self, repo_type: str, repo_id: str, ref: str) -> Path:
        if not re.match(r"^refs/(heads/[A-Za-z0-9._-]+|pr/[0-9]+)$", ref):
            raise RevisionNotFound(f"Invalid rev id: {ref}")
        return self.repo_dir(repo_type, repo_id) / ref

    def read_ref(self, repo_type: str, repo_id: str, ref: str) -> str | None:
        try:
            return self._ref_path(repo_type, repo_id, ref).read_text().strip()
        except (FileNotFoundError, RevisionNotFound):
            return None

    def _write_ref(self, repo_type: str, repo_id: str, ref: str, sha: str) -> None:
        """The single point where a commit becomes visible (tests inject crashes before it)."""
        atomic_write(self._ref_path(repo_type, repo_id, ref), sha.encode() + b"\n")

    def pr_numbers(self, repo_type: str, repo_id: str) -> list[int]:
        d = self.repo_dir(repo_type, repo_id) / "refs" / "pr"
        return sorted(int(p.name) for p in d.iterdir()) if d.exists() else []

    def ref_name(self, revision: str) -> str | None:
        """Map a user revision to a ref path ("main" -> refs/heads/main), None for a sha."""
        if revision.startswith("refs/"):
            return revision
        if _HEX40.match(revision):
            return None
        return f"refs/heads/{revision}"

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Revision (branch, refs/pr/N, full sha) -> commit id, or RevisionNotFound."""
        self.get(repo_type, repo_id)
        ref = self.ref_name(revision)
        if ref is None:
            if (self.repo_dir(repo_type, repo_id) / "commits" / f"{revision}.json").exists():
                return revision
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        sha = self.read_ref(repo_type, repo_id, ref)
        if sha is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        return sha

    # -- commits --------------------------------------------------------------------------
    def load_commit(self, repo_type: str, repo_id: str, sha: str) -> Commit:
        key = (repo_type, repo_id, sha)
        cached = self._commit_cache.get(key)
        if cached is not None:
            self._commit_cache.move_to_end(key)
            return cached
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        try:
            commit = Commit.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError as exc:
            raise RevisionNotFound(f"Invalid rev id: {sha}") from exc
        self._commit_cache[key] = commit
        if len(self._commit_cache) > 2048:
            self._commit_cache.popitem(last=False)
        return commit

    def _write_commit(self, repo_type: str, repo_id: str, commit: Commit) -> None:
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{commit.id}.json"
        write_json(path, commit.to_json())

    def _apply(self, files: dict[str, FileEntry], ops: list[Operation]) -> dict[str, FileEntry]:
        files = dict(files)
        for op in ops:
            check_path(op.path.rstrip("/") if isinstance(op, Delete) and op.folder else op.path)
            if isinstance(op, AddRegular):
                if len(op.data) > min(REGULAR_MAX, self.max_file_size):
                    raise BadRequest(f"{op.path}: regular files must be at most 10 MiB; use LFS")
                files[op.path] = self.objects.put_regular(op.data)
            elif isinstance(op, AddLfs):
                size = self.objects.lfs_size(op.oid)
                if size is None or (op.size is not None and size != op.size):
                    raise BadRequest(f"{op.path}: LFS object {op.oid} was not uploaded")
                pointer = lfs_pointer(op.oid, size)
                files[op.path] = FileEntry(git_blob_sha1(pointer), size, op.oid)
            elif op.folder:
                prefix = op.path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise EntryNotFound(f"folder {op.path} not found")
                for p in doomed:
                    del files[p]
            else:
                if op.path not in files:
                    raise EntryNotFound(f"file {op.path} not found")
                del files[op.path]
        return files

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        *,
        revision: str,
        ops: list[Operation],
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
        target_ref: str | None = None,
        extra_parents: list[str] | None = None,
    ) -> Commit:
        """Apply ops on top of `revision` and move `target_ref` (default: the revision's ref).

        Order: blobs, commit object, then the ref — so a crash never exposes half a commit.
        """
        with self.lock(repo_type, repo_id):
            meta = self.get(repo_type, repo_id)
            base = self.resolve(repo_type, repo_id, revision)
            ref = target_ref or self.ref_name(revision)
            if ref is None:
                raise BadRequest("cannot commit on a commit id; use a branch")
            if parent_commit and parent_commit != base:
                raise PreconditionFailed(
                    f"A commit has happened since. Parent commit {parent_commit} is not the"
                    f" head of {revision} ({base})."
                )
            files = self._apply(self.load_commit(repo_type, repo_id, base).files, ops)
            new = Commit.create([base, *(extra_parents or [])], files, title, message, author)
            self._write_commit(repo_type, repo_id, new)
            self._write_ref(repo_type, repo_id, ref, new.id)
            if ref == f"refs/heads/{DEFAULT_BRANCH}":
                self._refresh_summary(meta, new.id)
            return new

    def set_ref(self, repo_type: str, repo_id: str, ref: str, sha: str) -> None:
        """Point a ref at an existing commit (PR creation, fast-forward merges)."""
        with self.lock(repo_type, repo_id):
            meta = self.get(repo_type, repo_id)
            self.load_commit(repo_type, repo_id, sha)
            self._write_ref(repo_type, repo_id, ref, sha)
            if ref == f"refs/heads/{DEFAULT_BRANCH}":
                self._refresh_summary(meta, sha)

    def write_merge(
        self,
        repo_type: str,
        repo_id: str,
        files: dict[str, FileEntry],
        parents: list[str],
        title: str,
        author: str,
    ) -> Commit:
        """Store a merge commit with a precomputed tree; the caller moves the ref."""
        commit = Commit.create(parents, files, title, "", author)
        self._write_commit(repo_type, repo_id, commit)
        return commit

    def lfs_mode(
        self, repo_type: str, repo_id: str, revision: str, path: str, size: int, sample: bytes
    ) -> str:
        """The Hub's rule: LFS for big, binary or .gitattributes-tracked files, else regular."""
        if size == 0:
            return "regular"
        if size > REGULAR_MAX or b"\0" in sample:
            return "lfs"
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
                return "lfs"
        head = self.load_commit(repo_type, repo_id, self.resolve(repo_type, repo_id, revision))
        attrs = head.files.get(".gitattributes")
        text = (
            self.objects.read_regular(attrs.oid).decode(errors="replace")
            if attrs and not attrs.lfs
            else ""
        )
        name = path.rsplit("/", 1)[-1]
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:]:
                pat = parts[0]
                if fnmatch(path, pat) or ("/" not in pat and fnmatch(name, pat)):
                    return "lfs"
        return "regular"
