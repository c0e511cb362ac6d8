"""Upload, download, commits, pull requests and durability through the real client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from huggingface_hub.utils import get_session

REPO = "unetbot-local/files"


def _download(hub, filename: str, cache: Path, revision: str | None = None) -> Path:
    """`hf_hub_download` of one file of REPO with the Hub's own token."""
    where = {"endpoint": hub.endpoint, "cache_dir": cache, "token": hub.token}
    return Path(hf_hub_download(REPO, filename, revision=revision, **where))


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "unet").mkdir(parents=True)
    (src / "README.md").write_text("---\nlicense: mit\n---\nhello\n")
    (src / "unet" / "config.json").write_text('{"sample_size": 64}')
    (src / "unet" / "model.safetensors").write_bytes(os.urandom(300_000))
    (src / "notes.bin").write_bytes(b"")  # empty files are always regular
    return src


def test_upload_folder_regular_and_lfs_then_download(api: HfApi, hub, tmp_path: Path) -> None:
    src = _folder(tmp_path)
    api.create_repo(REPO)
    info = api.upload_folder(folder_path=src, repo_id=REPO, commit_message="add model")
    files = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    assert files["unet/model.safetensors"].lfs is not None
    assert files["unet/config.json"].lfs is None and files["notes.bin"].lfs is None
    assert hub.state.stats.count("PUT", "lfs-upload") == 1

    cache = tmp_path / "cache"
    path = _download(hub, "unet/model.safetensors", cache)
    assert path.read_bytes() == (src / "unet" / "model.safetensors").read_bytes()
    assert info.oid in str(path)  # stored under the commit the server reported

    snap = Path(snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=hub.token))
    assert (snap / "unet" / "config.json").read_text() == '{"sample_size": 64}'
    assert (snap / "notes.bin").read_bytes() == b""
    gets = hub.state.stats.count("GET", "resolve")
    snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=cache, token=hub.token)
    _download(hub, "unet/config.json", cache, revision=info.oid)
    assert hub.state.stats.count("GET", "resolve") == gets  # cache hits: no file GET

    # an unchanged re-upload is a no-op on the client side (preupload returned the oids)
    uploads = hub.state.stats.count("PUT", "lfs-upload")
    api.upload_folder(folder_path=src, repo_id=REPO)
    assert hub.state.stats.count("PUT", "lfs-upload") == uploads


def test_resolve_headers_and_range(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    data = bytes(range(256)) * 40
    info = api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"text file\n", path_in_repo="a b.txt", repo_id=REPO)
    url = f"{hub.endpoint}/{REPO}/resolve/main/w.bin"
    meta = api.get_hf_file_metadata(url=url)
    assert meta.size == len(data) and meta.etag == hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 206 and resp.read() == data[10:20]
        assert resp.headers["X-Linked-Size"] == str(len(data))
        assert resp.headers["X-Repo-Commit"] != info.oid  # a later commit added "a b.txt"
    pr = api.create_commit(
        REPO, operations=[CommitOperationAdd("p.txt", b"pr!")], commit_message="pr", create_pr=True
    )
    cache = Path(hub.root).parent / "c"
    assert _download(hub, "p.txt", cache, revision=pr.pr_revision).read_bytes() == b"pr!"
    with pytest.raises(EntryNotFoundError):
        _download(hub, "missing.txt", cache)
    assert _download(hub, "a b.txt", cache).read_bytes() == b"text file\n"


def test_pull_request_flow_and_stale_parent(api: HfApi) -> None:
    api.create_repo(REPO)
    base = api.model_info(REPO).sha
    pr = api.create_commit(
        REPO,
        operations=[CommitOperationAdd("x.txt", b"x")],
        commit_message="Add x",
        commit_description="please",
        create_pr=True,
        parent_commit=base,
    )
    assert pr.pr_num == 1 and pr.pr_revision == "refs/pr/1"
    assert api.model_info(REPO).sha == base  # main untouched
    api.upload_file(
        path_or_fileobj=b"y",
        path_in_repo="y.txt",
        repo_id=REPO,
        revision="refs/pr/1",
        commit_message="Add y",
    )
    api.create_discussion(REPO, title="A question", description="why?")
    listed = list(api.get_repo_discussions(REPO))
    assert [(d.num, d.is_pull_request) for d in listed] == [(2, False), (1, True)]
    assert [d.num for d in api.get_repo_discussions(REPO, discussion_type="pull_request")] == [1]
    api.comment_discussion(REPO, 1, "looks good")
    details = api.get_discussion_details(REPO, 1)
    assert details.target_branch == "refs/heads/main" and details.status == "open"
    kinds = [e.type for e in details.events]
    assert kinds == ["comment", "commit", "commit", "comment"]
    assert "x.txt" in details.diff and "y.txt" in details.diff
    api.merge_pull_request(REPO, 1)
    merged = api.get_discussion_details(REPO, 1)
    head = api.model_info(REPO).sha
    assert merged.status == "merged" and merged.merge_commit_oid == head
    assert (
        head == api.list_repo_refs(REPO, include_pull_requests=True).pull_requests[0].target_commit
    )
    assert set(api.list_repo_files(REPO)) == {".gitattributes", "x.txt", "y.txt"}
    api.change_discussion_status(REPO, 2, "closed", comment="done")
    assert [d.num for d in api.get_repo_discussions(REPO, discussion_status="closed")] == [2]

    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            REPO,
            operations=[CommitOperationAdd("z.txt", b"z")],
            commit_message="stale",
            parent_commit=base,
        )
    assert err.value.response.status_code == 412
    assert "z.txt" not in api.list_repo_files(REPO)


def test_merge_when_main_moved(api: HfApi) -> None:
    api.create_repo(REPO)
    pr = api.create_commit(
        REPO, operations=[CommitOperationAdd("a.txt", b"a")], commit_message="a", create_pr=True
    )
    api.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id=REPO)
    api.merge_pull_request(REPO, pr.pr_num)
    assert set(api.list_repo_files(REPO)) == {".gitattributes", "a.txt", "b.txt"}
    # conflicting PR is refused
    pr2 = api.create_commit(
        REPO, operations=[CommitOperationAdd("b.txt", b"B1")], commit_message="b1", create_pr=True
    )
    api.upload_file(path_or_fileobj=b"B2", path_in_repo="b.txt", repo_id=REPO)
    with pytest.raises(HfHubHTTPError) as err:
        api.merge_pull_request(REPO, pr2.pr_num)
    assert err.value.response.status_code == 409


def test_delete_file_and_folder(api: HfApi) -> None:
    api.create_repo(REPO)
    api.create_commit(
        REPO,
        commit_message="add",
        operations=[
            CommitOperationAdd("d/one.txt", b"1"),
            CommitOperationAdd("d/two.txt", b"2"),
            CommitOperationAdd("keep.txt", b"k"),
        ],
    )
    api.delete_file("keep.txt", repo_id=REPO)
    assert "keep.txt" not in api.list_repo_files(REPO)
    api.delete_folder("d", repo_id=REPO)
    assert api.list_repo_files(REPO) == [".gitattributes"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("keep.txt", repo_id=REPO)


def _raw_commit(hub, lines: list[dict]) -> int:
    body = b"".join(
        json.dumps(x).encode() + b"\n"
        for x in [{"key": "header", "value": {"summary": "raw"}}, *lines]
    )
    r = get_session().post(
        f"{hub.endpoint}/api/models/{REPO}/commit/main",
        content=body,
        headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"},
    )
    return r.status_code


@pytest.mark.parametrize("bad", ["../evil", "/abs", "a/../../b", "a\\b", "a\0b", ".git/x", "a//b"])
def test_path_traversal_refused(api: HfApi, hub, bad: str) -> None:
    api.create_repo(REPO, exist_ok=True)
    content = base64.b64encode(b"x").decode()
    assert (
        _raw_commit(
            hub, [{"key": "file", "value": {"path": bad, "content": content, "encoding": "base64"}}]
        )
        == 400
    )
    r = get_session().post(
        f"{hub.endpoint}/api/models/{REPO}/preupload/main",
        json={"files": [{"path": bad, "size": 1, "sample": content}]},
        headers={"Authorization": f"Bearer {hub.token}"},
    )
    assert r.status_code == 400


def test_lfs_upload_with_wrong_bytes_rejected(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {hub.token}"}
    batch = (
        get_session()
        .post(
            f"{hub.endpoint}/{REPO}.git/info/lfs/objects/batch",
            headers=auth,
            json={"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]},
        )
        .json()
    )
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert get_session().put(href, content=b"y" + data[1:]).status_code == 400  # wrong sha
    assert get_session().put(href, content=data + b"!").status_code == 400  # too long
    assert get_session().put(href + "0", content=data).status_code == 403  # bad signature
    lfs_line = {
        "key": "lfsFile",
        "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)},
    }
    assert _raw_commit(hub, [lfs_line]) == 400  # never stored, so not committable
    assert get_session().put(href, content=data).status_code == 200
    assert _raw_commit(hub, [lfs_line]) == 200


def test_crash_mid_commit_leaves_previous_commit(api: HfApi, hub, monkeypatch) -> None:
    api.create_repo(REPO)
    before = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=REPO).oid
    repos = hub.state.repos

    def crash(*args, **kwargs):
        raise OSError("simulated power loss between blob write and ref update")

    monkeypatch.setattr(repos, "_write_ref", crash)
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=os.urandom(50_000), path_in_repo="f.bin", repo_id=REPO)
    assert err.value.response.status_code == 500
    monkeypatch.undo()
    assert api.model_info(REPO).sha == before
    assert api.list_repo_files(REPO) == [".gitattributes", "f.txt"]
    # the server state on disk agrees after a restart-like reload of the index
    repos._load_index()
    assert repos.get("model", REPO).sha == before
    after = api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=REPO)
    assert api.list_repo_commits(REPO)[1].commit_id == before != after.oid
