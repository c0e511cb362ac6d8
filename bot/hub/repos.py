"""Repos, refs and commits of the embedded Hub, on top of the object store.

    repos/{models|datasets|spaces}/{namespace}/{name}/
        repo.json            settings and a summary of main (for fast listing)
        commits/{sha}.json   commit objects: parents, message and the whole file tree
        refs/heads/main      40-hex commit id; refs/pr/N likewise
        discussions/N.json   see discussions.py

A commit writes its blobs, then its commit object, then moves its ref last (every file through
`engine.formats.fsio`), so a crash at any point leaves the repo at its previous commit; a summary
found stale at startup (a crash between ref and summary, or an older tag rule) is derived again.
Commits to one repo are serialised by a per-repo lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.hub import lfs_policy, repotags
from bot.hub.commitfacts import CommitFacts, Lru
from bot.hub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    PreconditionFailed,
    RepoNotFound,
    RevisionNotFound,
)
from bot.hub.model import (
    DEFAULT_BRANCH,
    HEX40,
    AddLfs,
    AddRegular,
    Commit,
    Delete,
    FileEntry,
    Operation,
    RepoMeta,
    canonical_json,
    check_path,
    check_repo_id,
    check_revision,
    now_iso,
)
from bot.hub.objects import ObjectStore, lfs_entry
from engine.formats.fsio import atomic_write_bytes

MAIN_REF = f"refs/heads/{DEFAULT_BRANCH}"
_REF = re.compile(r"^refs/(heads/(?!\.\.?$)[A-Za-z0-9._-]+|pr/[0-9]+)$")


class RepoStore:
    def __init__(
        self,
        root: Path,
        objects: ObjectStore,
        max_file_size: int,
        repo_counts: dict[str, dict[str, int]] | None = None,
    ):
        self.root = root
        self.objects = objects
        self.max_file_size = max_file_size
        self.repo_counts = dict(repo_counts or {})  # repo id -> {downloads, likes} (config)
        self._index: dict[tuple[str, str], RepoMeta] = {}
        self._dirs: dict[tuple[str, str], Path] = {}
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._commits = Lru(4096)
        self.facts = CommitFacts(objects)
        self._load_index()

    # -- layout ---------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        key = (repo_type, repo_id)
        path = self._dirs.get(key)
        if path is None:
            ns, name = check_repo_id(repo_id)
            path = self.root / "repos" / f"{repo_type}s" / ns / name
            if key in self._index:  # kept for existing repos: joins add up over 10,000s of calls
                self._dirs[key] = path
        return path

    def write_json(self, path: Path, obj: Any) -> None:
        atomic_write_bytes(path, canonical_json(obj), fsync=self.objects.durable)

    def _load_index(self) -> None:
        for meta_path in sorted((self.root / "repos").glob("*/*/*/repo.json")):
            meta = RepoMeta.from_json(json.loads(meta_path.read_text()))
            self._index[(meta.repo_type, meta.repo_id)] = meta
            self._apply_counts(meta)
            head = self.read_ref(meta.repo_type, meta.repo_id, MAIN_REF)
            if head and (head != meta.sha or meta.summary_version != repotags.RULE_VERSION):
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
        downloads: int = 0,
        likes: int = 0,
    ) -> RepoMeta:
        meta, _ = self._create(
            repo_type, repo_id, None, "", author, private, gated, downloads, likes
        )
        return meta

    def create_with_commit(
        self,
        repo_type: str,
        repo_id: str,
        ops: list[Operation],
        *,
        title: str,
        author: str,
        private: bool = False,
        gated: str | bool = False,
        downloads: int = 0,
        likes: int = 0,
    ) -> Commit:
        """`create` followed by `commit` of `ops` on main, with main's ref and the summary
        written once, for the second commit only (bulk seeding: the same two commits)."""
        _, new = self._create(
            repo_type, repo_id, ops, title, author, private, gated, downloads, likes
        )
        return new

    def _create(
        self,
        repo_type: str,
        repo_id: str,
        ops: list[Operation] | None,
        title: str,
        author: str,
        private: bool,
        gated: str | bool,
        downloads: int,
        likes: int,
    ) -> tuple[RepoMeta, Commit]:
        """(meta, main's head) of a new repo: the initial commit (default .gitattributes), then
        with `ops` (even empty) a commit `title` of them; ref and summary written once, for it."""
        check_repo_id(repo_id)
        with self.lock(repo_type, repo_id):
            if (repo_type, repo_id) in self._index:
                raise Conflict(f"You already created this {repo_type} repo: {repo_id}")
            meta = RepoMeta(repo_type, repo_id, private=private, gated=gated, created_at=now_iso())
            meta.downloads, meta.likes = downloads, likes
            self._apply_counts(meta)
            entry = self.objects.put_regular(lfs_policy.DEFAULT_GITATTRIBUTES.encode())
            head = Commit.create([], {".gitattributes": entry}, "initial commit", "", author)
            self._write_commit(repo_type, repo_id, head)
            if ops is not None:
                head = Commit.create([head.id], self._apply(head.files, ops), title, "", author)
                self._write_commit(repo_type, repo_id, head)
            self._write_ref(repo_type, repo_id, MAIN_REF, head.id)
            self._index[(repo_type, repo_id)] = meta
            self._refresh_summary(meta, head.id)
            return meta, head

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock(repo_type, repo_id):
            self.get(repo_type, repo_id)
            d = self.repo_dir(repo_type, repo_id)
            trash = self.objects.tmp / f"deleted-{os.getpid()}-{time.time_ns()}"
            os.replace(d, trash)  # atomic disappearance, then slow cleanup
            del self._index[(repo_type, repo_id)]
            self._dirs.pop((repo_type, repo_id), None)
            shutil.rmtree(trash, ignore_errors=True)

    def update_settings(
        self,
        repo_type: str,
        repo_id: str,
        *,
        private: bool | None = None,
        gated: str | bool | None = None,
        downloads: int | None = None,
        likes: int | None = None,
    ) -> RepoMeta:
        with self.lock(repo_type, repo_id):
            meta = self.get(repo_type, repo_id)
            if private is not None:
                meta.private = private
            if gated is not None:
                meta.gated = gated
            if downloads is not None:
                meta.downloads = downloads
            if likes is not None:
                meta.likes = likes
            self._save_meta(meta)
            return meta

    def _apply_counts(self, meta: RepoMeta) -> None:
        counts = self.repo_counts.get(meta.repo_id) or {}
        meta.downloads = int(counts.get("downloads", meta.downloads))
        meta.likes = int(counts.get("likes", meta.likes))

    def _save_meta(self, meta: RepoMeta) -> None:
        self.write_json(self.repo_dir(meta.repo_type, meta.repo_id) / "repo.json", meta.to_json())

    def _refresh_summary(self, meta: RepoMeta, head: str) -> None:
        commit = self.load_commit(meta.repo_type, meta.repo_id, head)
        card, facts = self.describe(meta.repo_type, meta.repo_id, commit)
        meta.sha = head
        meta.last_modified = commit.date
        meta.card_data = card
        meta.tags = facts.tags
        meta.library_name = facts.library_name
        meta.pipeline_tag = facts.pipeline_tag
        meta.summary_version = repotags.RULE_VERSION
        self._save_meta(meta)

    # -- what a commit says about itself ---------------------------------------------------
    def card_data(self, commit: Commit) -> dict[str, Any] | None:
        return self.facts.card_data(commit)

    def describe(
        self, repo_type: str, repo_id: str, commit: Commit
    ) -> tuple[dict[str, Any] | None, repotags.RepoFacts]:
        """Card data and derived tags of a commit (cached: commits never change)."""
        return self.facts.describe((repo_type, repo_id, commit.id), commit)

    # -- refs -----------------------------------------------------------------------------
    def _ref_path(self, repo_type: str, repo_id: str, ref: str) -> Path:
        if not _REF.match(ref):
            raise RevisionNotFound(f"Invalid rev id: {ref}")
        return self.repo_dir(repo_type, repo_id) / ref

    def read_ref(self, repo_type: str, repo_id: str, ref: str) -> str | None:
        try:
            return self._ref_path(repo_type, repo_id, ref).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, RevisionNotFound):
            return None

    def _write_ref(self, repo_type: str, repo_id: str, ref: str, sha: str) -> None:
        """The single point where a commit becomes visible (tests inject crashes before it)."""
        atomic_write_bytes(
            self._ref_path(repo_type, repo_id, ref), sha.encode() + b"\n", self.objects.durable
        )

    def pr_numbers(self, repo_type: str, repo_id: str) -> list[int]:
        d = self.repo_dir(repo_type, repo_id) / "refs" / "pr"
        if not d.exists():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())

    @staticmethod
    def ref_name(revision: str) -> str | None:
        """Map a user revision to a ref path ("main" -> refs/heads/main), None for a sha."""
        check_revision(revision)
        if revision.startswith("refs/"):
            return revision
        if HEX40.match(revision):
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
        cached = self._commits.get(key)
        if cached is not None:
            return cached
        if not HEX40.match(sha):
            raise RevisionNotFound(f"Invalid rev id: {sha}")
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        try:
            commit = Commit.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError as exc:
            raise RevisionNotFound(f"Invalid rev id: {sha}") from exc
        self._commits.put(key, commit)
        return commit

    def _write_commit(self, repo_type: str, repo_id: str, commit: Commit) -> None:
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{commit.id}.json"
        self.write_json(path, commit.to_json())
        self._commits.put((repo_type, repo_id, commit.id), commit)

    def _apply(self, files: dict[str, FileEntry], ops: list[Operation]) -> dict[str, FileEntry]:
        files = dict(files)
        for op in ops:
            check_path(op.path.rstrip("/") if isinstance(op, Delete) and op.folder else op.path)
            if isinstance(op, AddRegular):
                if len(op.data) > min(lfs_policy.REGULAR_MAX, self.max_file_size):
                    raise BadRequest(f"{op.path}: regular files must be at most 10 MiB; use LFS")
                files[op.path] = self.objects.put_regular(op.data)
            elif isinstance(op, AddLfs):
                size = self.objects.lfs_size(op.oid)
                if size is None or (op.size is not None and size != op.size):
                    raise BadRequest(f"{op.path}: LFS object {op.oid} was not uploaded")
                files[op.path] = lfs_entry(op.oid, size)
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

        Order: blobs, commit object, then the ref, so a crash never exposes half a commit.
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
            if ref == MAIN_REF:
                self._refresh_summary(meta, new.id)
            return new

    def set_ref(self, repo_type: str, repo_id: str, ref: str, sha: str) -> None:
        """Point a ref at an existing commit (PR creation, fast-forward merges)."""
        with self.lock(repo_type, repo_id):
            meta = self.get(repo_type, repo_id)
            self.load_commit(repo_type, repo_id, sha)
            self._write_ref(repo_type, repo_id, ref, sha)
            if ref == MAIN_REF:
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

    def upload_mode(
        self, repo_type: str, repo_id: str, revision: str, path: str, size: int, sample: bytes
    ) -> str:
        """ "regular" or "lfs" for a file about to be committed on `revision`."""
        head = self.load_commit(repo_type, repo_id, self.resolve(repo_type, repo_id, revision))
        return lfs_policy.upload_mode(path, size, sample, self.facts.gitattributes(head))

    def gitattributes(self, commit: Commit) -> str:
        return self.facts.gitattributes(commit)
