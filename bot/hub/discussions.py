"""Discussions and pull requests of a repo, stored as one JSON record per number.

A pull request is a discussion plus the ref refs/pr/N. Numbers are shared by discussions and
PRs. The record remembers the base commit the PR started from, so a merge can fast-forward
(the PR commit becomes main's new commit) or, when main moved, build a merge commit from the
PR's own changes and refuse when both sides touched the same file.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from bot.hub.errors import BadRequest, Conflict, HttpError, NotFound
from bot.hub.model import DEFAULT_BRANCH, Commit, FileEntry, Operation, now_iso
from bot.hub.repos import RepoStore

PAGE_SIZE = 50


class DiscussionNotFound(NotFound):
    pass


def _event(kind: str, author: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(12),
        "type": kind,
        "createdAt": now_iso(),
        "author": {"name": author, "type": "user"},
        "data": data,
    }


def _comment_event(author: str, text: str) -> dict[str, Any]:
    return _event(
        "comment",
        author,
        {
            "edited": False,
            "hidden": False,
            "numEdits": 0,
            "latest": {
                "raw": text,
                "html": text,
                "updatedAt": now_iso(),
                "author": {"name": author},
            },
        },
    )


def _commit_event(author: str, commit: Commit) -> dict[str, Any]:
    return _event("commit", author, {"subject": commit.title, "oid": commit.id})


def changed_paths(old: dict[str, FileEntry], new: dict[str, FileEntry]) -> set[str]:
    return {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}


class Discussions:
    """Discussion records of all repos; all mutation happens under the repo's lock."""

    def __init__(self, repos: RepoStore):
        self.repos = repos

    def _path(self, repo_type: str, repo_id: str, num: int):
        return self.repos.repo_dir(repo_type, repo_id) / "discussions" / f"{num}.json"

    def _next_num(self, repo_type: str, repo_id: str) -> int:
        d = self.repos.repo_dir(repo_type, repo_id) / "discussions"
        nums = [int(p.stem) for p in d.glob("*.json") if p.stem.isdigit()] if d.exists() else []
        return max([0, *nums, *self.repos.pr_numbers(repo_type, repo_id)]) + 1

    def _save(self, repo_type: str, repo_id: str, rec: dict[str, Any]) -> None:
        self.repos.write_json(self._path(repo_type, repo_id, rec["num"]), rec)

    def get(self, repo_type: str, repo_id: str, num: int) -> dict[str, Any]:
        self.repos.get(repo_type, repo_id)
        try:
            return json.loads(self._path(repo_type, repo_id, num).read_bytes())
        except FileNotFoundError as exc:
            raise DiscussionNotFound(f"Discussion #{num} not found") from exc

    def _new_record(
        self,
        num: int,
        title: str,
        author: str,
        pr: bool,
        base_ref: str,
        base_sha: str | None,
        description: str,
    ) -> dict[str, Any]:
        return {
            "num": num,
            "title": title,
            "status": "open",
            "isPullRequest": pr,
            "author": author,
            "createdAt": now_iso(),
            "base": base_ref,
            "baseSha": base_sha,
            "mergeCommitId": None,
            "events": [_comment_event(author, description)],
        }

    def create(
        self,
        repo_type: str,
        repo_id: str,
        *,
        title: str,
        description: str,
        author: str,
        pull_request: bool,
    ) -> dict[str, Any]:
        """Open a discussion, or an empty PR whose ref starts at main's head."""
        with self.repos.lock(repo_type, repo_id):
            self.repos.get(repo_type, repo_id)
            num = self._next_num(repo_type, repo_id)
            base_ref = f"refs/heads/{DEFAULT_BRANCH}"
            base_sha = None
            if pull_request:
                base_sha = self.repos.resolve(repo_type, repo_id, DEFAULT_BRANCH)
                self.repos.set_ref(repo_type, repo_id, f"refs/pr/{num}", base_sha)
            rec = self._new_record(
                num, title, author, pull_request, base_ref, base_sha, description
            )
            self._save(repo_type, repo_id, rec)
            return rec

    def commit_as_pr(
        self,
        repo_type: str,
        repo_id: str,
        *,
        revision: str,
        ops: list[Operation],
        title: str,
        message: str,
        author: str,
        parent_commit: str | None,
    ) -> tuple[Commit, int]:
        """`commit?create_pr=1`: the commit goes to a new refs/pr/N, never to the branch."""
        with self.repos.lock(repo_type, repo_id):
            num = self._next_num(repo_type, repo_id)
            base_sha = self.repos.resolve(repo_type, repo_id, revision)
            commit = self.repos.commit(
                repo_type,
                repo_id,
                revision=revision,
                ops=ops,
                title=title,
                message=message,
                author=author,
                parent_commit=parent_commit,
                target_ref=f"refs/pr/{num}",
            )
            base_ref = self.repos.ref_name(revision) or f"refs/heads/{DEFAULT_BRANCH}"
            rec = self._new_record(num, title, author, True, base_ref, base_sha, message or title)
            rec["events"].append(_commit_event(author, commit))
            self._save(repo_type, repo_id, rec)
            return commit, num

    def record_commit(
        self, repo_type: str, repo_id: str, num: int, commit: Commit, author: str
    ) -> None:
        """A commit pushed to refs/pr/N shows up as an event of PR N."""
        with self.repos.lock(repo_type, repo_id):
            try:
                rec = self.get(repo_type, repo_id, num)
            except DiscussionNotFound:
                return
            rec["events"].append(_commit_event(author, commit))
            self._save(repo_type, repo_id, rec)

    def listing(
        self,
        repo_type: str,
        repo_id: str,
        *,
        kind: str | None,
        status: str | None,
        author: str | None,
        page: int,
    ) -> tuple[list[dict[str, Any]], int, int]:
        self.repos.get(repo_type, repo_id)
        d = self.repos.repo_dir(repo_type, repo_id) / "discussions"
        recs = [json.loads(p.read_bytes()) for p in d.glob("*.json")] if d.exists() else []
        if kind in ("discussion", "pull_request"):
            recs = [r for r in recs if r["isPullRequest"] == (kind == "pull_request")]
        if status and status != "all":
            recs = [r for r in recs if r["status"] == status]
        if author:
            recs = [r for r in recs if r["author"] == author]
        recs.sort(key=lambda r: -r["num"])
        start = max(page, 0) * PAGE_SIZE
        return recs[start : start + PAGE_SIZE], len(recs), start

    def _mutate(
        self,
        repo_type: str,
        repo_id: str,
        num: int,
        event: dict[str, Any],
        status: str | None = None,
    ) -> dict[str, Any]:
        with self.repos.lock(repo_type, repo_id):
            rec = self.get(repo_type, repo_id, num)
            rec["events"].append(event)
            if status:
                rec["status"] = status
            self._save(repo_type, repo_id, rec)
            return event

    def comment(
        self, repo_type: str, repo_id: str, num: int, author: str, text: str
    ) -> dict[str, Any]:
        return self._mutate(repo_type, repo_id, num, _comment_event(author, text))

    def set_status(
        self, repo_type: str, repo_id: str, num: int, author: str, status: str, comment: str | None
    ) -> dict[str, Any]:
        if status not in ("open", "closed"):
            raise BadRequest(f"invalid status {status!r}")
        with self.repos.lock(repo_type, repo_id):
            rec = self.get(repo_type, repo_id, num)
            if rec["status"] == "merged":
                raise Conflict("This pull request is already merged")
            if comment:
                self._mutate(repo_type, repo_id, num, _comment_event(author, comment))
            return self._mutate(
                repo_type, repo_id, num, _event("status-change", author, {"status": status}), status
            )

    def merge(
        self, repo_type: str, repo_id: str, num: int, author: str, comment: str | None
    ) -> dict[str, Any]:
        """Merge PR N into its base branch (fast-forward when the base has not moved)."""
        repos = self.repos
        with repos.lock(repo_type, repo_id):
            rec = self.get(repo_type, repo_id, num)
            if not rec["isPullRequest"]:
                raise BadRequest("This discussion is not a pull request")
            if rec["status"] != "open":
                raise Conflict(f"This pull request is {rec['status']}")
            pr_sha = repos.resolve(repo_type, repo_id, f"refs/pr/{num}")
            head = repos.resolve(repo_type, repo_id, rec["base"])
            merge_base = rec.get("baseSha") or head
            if head == merge_base:
                repos.set_ref(repo_type, repo_id, rec["base"], pr_sha)
                merged = pr_sha
            else:
                base_files = repos.load_commit(repo_type, repo_id, merge_base).files
                pr_files = repos.load_commit(repo_type, repo_id, pr_sha).files
                head_files = repos.load_commit(repo_type, repo_id, head).files
                ours = changed_paths(base_files, pr_files)
                theirs = changed_paths(base_files, head_files)
                clash = sorted(p for p in ours & theirs if pr_files.get(p) != head_files.get(p))
                if clash:
                    raise Conflict(f"Merge conflict in: {', '.join(clash)}")
                files = dict(head_files)
                for p in ours:
                    if p in pr_files:
                        files[p] = pr_files[p]
                    else:
                        files.pop(p, None)
                commit = repos.write_merge(
                    repo_type,
                    repo_id,
                    files,
                    [head, pr_sha],
                    f"Merge pull request #{num}: {rec['title']}",
                    author,
                )
                repos.set_ref(repo_type, repo_id, rec["base"], commit.id)
                merged = commit.id
            rec = self.get(repo_type, repo_id, num)
            if comment:
                rec["events"].append(_comment_event(author, comment))
            event = _event("status-change", author, {"status": "merged"})
            rec["events"].append(event)
            rec["status"] = "merged"
            rec["mergeCommitId"] = merged
            self._save(repo_type, repo_id, rec)
            return event

    def diff(self, repo_type: str, repo_id: str, rec: dict[str, Any]) -> str:
        """A git-style summary of what the PR changes (file level, no hunks)."""
        if not rec["isPullRequest"]:
            return ""
        try:
            pr_sha = self.repos.resolve(repo_type, repo_id, f"refs/pr/{rec['num']}")
        except HttpError:
            return ""
        base = rec.get("baseSha") or pr_sha
        old = self.repos.load_commit(repo_type, repo_id, base).files
        new = self.repos.load_commit(repo_type, repo_id, pr_sha).files
        out = []
        for p in sorted(changed_paths(old, new)):
            a, b = old.get(p), new.get(p)
            out.append(f"diff --git a/{p} b/{p}\n")
            out.append(f"index {a.oid if a else '0' * 40}..{b.oid if b else '0' * 40}\n")
        return "".join(out)
