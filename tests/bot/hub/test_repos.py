"""Repo-level contract: create/delete, listing with filters and pages, info, tree, paths-info."""

from __future__ import annotations

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests.bot.hub.conftest import client

CARD = """---
license: mit
library_name: diffusers
pipeline_tag: text-to-image
tags: [lcm, unet]
base_model: runwayml/stable-diffusion-v1-5
---
# A model
"""


def test_whoami_and_create_repo_exist_ok(api: HfApi) -> None:
    assert api.whoami()["name"] == "unetbot-local"
    url = api.create_repo("unetbot-local/m1")
    assert url.repo_id == "unetbot-local/m1"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("unetbot-local/m1")
    assert err.value.response.status_code == 409
    assert api.create_repo("unetbot-local/m1", exist_ok=True).repo_id == "unetbot-local/m1"
    info = api.model_info("unetbot-local/m1")
    assert len(info.sha) == 40 and info.private is False
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]


def test_delete_repo_and_datasets(api: HfApi) -> None:
    api.create_repo("unetbot-local/ds", repo_type="dataset", private=True)
    info = api.dataset_info("unetbot-local/ds")
    assert info.private is True
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n",
        path_in_repo="data.csv",
        repo_id="unetbot-local/ds",
        repo_type="dataset",
    )
    assert "data.csv" in api.list_repo_files("unetbot-local/ds", repo_type="dataset")
    api.delete_repo("unetbot-local/ds", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("unetbot-local/ds")
    api.delete_repo("unetbot-local/ds", repo_type="dataset", missing_ok=True)


def test_model_info_card_data_tags_and_revisions(api: HfApi) -> None:
    repo = "unetbot-local/carded"
    api.create_repo(repo)
    first = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo)
    info = api.model_info(repo)
    assert info.card_data["license"] == "mit"
    assert info.library_name == "diffusers" and info.pipeline_tag == "text-to-image"
    assert {"lcm", "unet", "license:mit", "diffusers"} <= set(info.tags)
    assert "base_model:runwayml/stable-diffusion-v1-5" in info.tags
    assert info.last_modified is not None
    old = api.model_info(repo, revision=first)
    assert old.sha == first and old.card_data is None
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo, revision="nope")


def test_list_models_pages_filters_and_search(team_hub) -> None:
    alice = client(team_hub, "alice")
    for i in range(8):
        repo = f"alice/unet-{i}"
        alice.create_repo(repo)
        if i % 2 == 0:
            alice.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo)
    alice.create_repo("acme/other-thing")
    alice.create_repo("alice/secret-unet", private=True)
    before = team_hub.state.stats.count("GET", "list")
    mine = [m.id for m in alice.list_models(author="alice")]
    assert len(mine) == 9 and "alice/secret-unet" in mine
    assert team_hub.state.stats.count("GET", "list") - before == 3  # page size 3: 3 pages
    public = [m.id for m in client(team_hub, "bob").list_models(author="alice")]
    assert len(public) == 8 and "alice/secret-unet" not in public
    tagged = list(alice.list_models(filter=["lcm", "license:mit"], cardData=True))
    assert sorted(m.id for m in tagged) == [f"alice/unet-{i}" for i in (0, 2, 4, 6)]
    assert all(m.card_data["library_name"] == "diffusers" for m in tagged)
    assert [m.id for m in alice.list_models(filter="diffusers", search="unet-4")] == [
        "alice/unet-4"
    ]
    assert [m.id for m in alice.list_models(search="other")] == ["acme/other-thing"]
    newest = list(alice.list_models(author="alice", sort="last_modified", limit=2))
    assert len(newest) == 2 and newest[0].id == "alice/secret-unet"
    full = next(iter(alice.list_models(search="unet-2", full=True)))
    assert full.sha and {s.rfilename for s in full.siblings} == {".gitattributes", "README.md"}


def test_tree_and_paths_info(api: HfApi) -> None:
    repo = "unetbot-local/tree"
    api.create_repo(repo)
    ops = [
        CommitOperationAdd("unet/config.json", b"{}"),
        CommitOperationAdd("unet/sub/w.safetensors", b"\0" * 2000),
        CommitOperationAdd("top.txt", b"hi"),
    ]
    api.create_commit(repo, operations=ops, commit_message="files")
    top = {e.path for e in api.list_repo_tree(repo)}
    assert top == {".gitattributes", "top.txt", "unet"}
    deep = {e.path: e for e in api.list_repo_tree(repo, path_in_repo="unet", recursive=True)}
    assert set(deep) == {"unet/config.json", "unet/sub", "unet/sub/w.safetensors"}
    lfs = deep["unet/sub/w.safetensors"]
    assert lfs.lfs is not None and lfs.lfs.size == 2000 and lfs.size == 2000
    assert deep["unet/config.json"].blob_id == "9e26dfeeb6e641a33dae4961196235bdb965b21b"
    expanded = list(api.list_repo_tree(repo, path_in_repo="unet", expand=True))
    assert all(e.last_commit is not None for e in expanded)
    infos = api.get_paths_info(repo, ["top.txt", "unet", "missing"])
    assert sorted(i.path for i in infos) == ["top.txt", "unet"]
    with pytest.raises(HfHubHTTPError) as err:
        list(api.list_repo_tree(repo, path_in_repo="nowhere"))
    assert err.value.response.status_code == 404
    refs = api.list_repo_refs(repo)
    assert refs.branches[0].name == "main"
    assert [c.title for c in api.list_repo_commits(repo)] == ["files", "initial commit"]
