"""Bulk seeding stores exactly what an HTTP upload stores, and the real client lists and
downloads seeded repos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from safetensors.numpy import save

from bot.hub import start_hub
from bot.hub.bulk import RepoSpec, Seeder, add_commit, seed_many, seed_repo
from bot.hub.errors import BadRequest
from engine.synthetic.models import unet_config

CARD = "---\nlicense: creativeml-openrail-m\ntags: [lcm]\n---\n# tiny\n"


def sd15_files(seed: int) -> dict[str, bytes]:
    """A tiny SD1.5-layout pipeline: model_index.json, unet config and safetensors weights."""
    rng = np.random.default_rng(seed)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
    weights = {"conv_in.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float16)}
    return {
        "model_index.json": json.dumps(index).encode(),
        "unet/config.json": json.dumps(unet_config("sd15")).encode(),
        "unet/diffusion_pytorch_model.safetensors": save(weights),
        "notes.txt": b"",
    }


def _tree(api: HfApi, repo: str) -> dict[str, tuple]:
    return {
        e.path: (e.blob_id, e.size, e.lfs.sha256 if e.lfs else None)
        for e in api.list_repo_tree(repo, recursive=True)
        if hasattr(e, "blob_id")
    }


def test_seeded_repo_equals_an_uploaded_one(api: HfApi, hub, tmp_path: Path) -> None:
    files = sd15_files(0)
    folder = tmp_path / "folder"
    for name, data in {**files, "README.md": CARD.encode()}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    api.create_repo("unetbot-local/uploaded")
    api.upload_folder(repo_id="unetbot-local/uploaded", folder_path=folder)
    seed_repo(hub, "unetbot-local/seeded", files, card=CARD)

    assert _tree(api, "unetbot-local/seeded") == _tree(api, "unetbot-local/uploaded")
    up, seeded = api.model_info("unetbot-local/uploaded"), api.model_info("unetbot-local/seeded")
    assert seeded.tags == up.tags and seeded.card_data == up.card_data
    assert (seeded.library_name, seeded.pipeline_tag) == (up.library_name, up.pipeline_tag)
    titles = [
        [c.title for c in api.list_repo_commits(f"unetbot-local/{r}")]
        for r in ("uploaded", "seeded")
    ]
    assert titles[0] == titles[1] == ["Upload folder using huggingface_hub", "initial commit"]


def test_fifty_seeded_repos_listed_and_downloaded(tmp_path: Path) -> None:
    root = tmp_path / "root"
    specs = [
        RepoSpec(f"alice/sd-{i:02d}", sd15_files(i), card=CARD, downloads=i) for i in range(40)
    ]
    specs += [
        RepoSpec(f"bob/bert-{i}", {"config.json": b'{"model_type": "bert"}'}) for i in range(10)
    ]
    with Seeder(root) as seeder:
        heads = seed_many(seeder, specs)
    with start_hub(root) as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        listed = list(api.list_models(filter="diffusers:StableDiffusionPipeline", sort="downloads"))
        assert [m.id for m in listed] == [f"alice/sd-{i:02d}" for i in reversed(range(40))]
        assert [m.id for m in api.list_models(filter="transformers")] == [
            f"bob/bert-{i}" for i in range(10)
        ]
        assert api.model_info("alice/sd-07").sha == heads["alice/sd-07"]
        weights = hf_hub_download(
            "alice/sd-07",
            "unet/diffusion_pytorch_model.safetensors",
            endpoint=hub.endpoint,
            cache_dir=tmp_path / "cache",
        )
        assert (
            Path(weights).read_bytes() == sd15_files(7)["unet/diffusion_pytorch_model.safetensors"]
        )
        snap = Path(
            snapshot_download("alice/sd-13", endpoint=hub.endpoint, cache_dir=tmp_path / "c")
        )
        assert (snap / "README.md").read_text() == CARD


def test_add_commit_weights_then_card_only(api: HfApi, hub) -> None:
    repo = "unetbot-local/evolving"
    first = seed_repo(hub, repo, sd15_files(1), card=CARD)
    weights = "unet/diffusion_pytorch_model.safetensors"
    old_lfs = api.get_paths_info(repo, [weights])[0].lfs.sha256
    second = add_commit(hub, repo, {weights: sd15_files(2)[weights]}, summary="New weights")
    assert api.get_paths_info(repo, [weights])[0].lfs.sha256 != old_lfs
    card = "---\nlicense: mit\n---\n"
    third = add_commit(hub, repo, {}, card=card, summary="Update card", deletions=["notes.txt"])
    info = api.model_info(repo)
    assert info.sha == third and "license:mit" in info.tags
    assert "notes.txt" not in api.list_repo_files(repo)
    assert [c.commit_id for c in api.list_repo_commits(repo)][:3] == [third, second, first]
    assert api.list_repo_commits(repo)[0].title == "Update card"


def test_seeding_checks_what_a_commit_checks(hub) -> None:
    with pytest.raises(BadRequest, match="alias"):
        seed_repo(hub, "unetbot-local/bad-card", {}, card="---\na: &x 1\nb: *x\n---\n")
    with pytest.raises(BadRequest, match="invalid path"):
        seed_repo(hub, "unetbot-local/bad-path", {"../x": b"1"})


def test_an_offline_seeder_excludes_a_server(tmp_path: Path) -> None:
    with Seeder(tmp_path / "root"), pytest.raises(RuntimeError):
        start_hub(tmp_path / "root")
