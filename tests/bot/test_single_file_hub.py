"""Repos of single-file checkpoints on the embedded Hub: judged from the file list and header
range reads, each checkpoint converted as a source of its own (outputs named after the file),
published to the quantized repos only (never a PR), the card saying which file each output came
from.

The checkpoints are tiny (so the test runs in seconds): SD1.5's shipped configs are replaced by
the tiny model's for the test process (`engine.source.single_file._sd15`), the same shape checks
then run against them. `bot convert` with SD1.5's own configs is in tests/engine/source/
test_single_file.py and, at full size, in benchmarks/pickle_path.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi

from bot.client.hub import Hub
from bot.config import PublishMode, load_config
from bot.job.run import JobRequest, run_job
from bot.settings import load_settings
from engine.errors import ExitCode
from engine.source import single_file
from engine.source.folder import open_source
from engine.synthetic.models import clip_config, unet_config, vae_config, write_pipeline_folder
from engine.writers.original import write_original

CARD = {"license": "creativeml-openrail-m", "tags": ["stable-diffusion", "text-to-image"]}


@pytest.fixture
def tiny_sd15(monkeypatch):
    tiny = {"unet": unet_config("sd15", "tiny"), "vae": vae_config("tiny"),
            "text_encoder": clip_config("tiny")}  # fmt: skip
    monkeypatch.setattr(single_file, "_sd15", lambda: tiny)


def _repo(tmp_path: Path) -> Path:
    """Two checkpoints, as Civitai-style repos hold them: a full one and an LCM UNet-only one."""
    repo = tmp_path / "repo"
    repo.mkdir()
    full = write_pipeline_folder(tmp_path / "a", "sd15", "tiny", seed=1)
    write_original(open_source(full), repo / "dreamy-v1.safetensors", full=True)
    lcm = write_pipeline_folder(tmp_path / "b", "sd15-lcm", "tiny", seed=2,
                                with_vae_and_text_encoder=False)  # fmt: skip
    write_original(open_source(lcm), repo / "dreamy-lcm-unet.safetensors")
    (repo / "README.md").write_text(f"---\n{yaml.safe_dump(CARD)}---\n\n# Dreamy\n")
    (repo / "LICENSE").write_text("licence text\n")
    return repo


def _job(seeded_hub, repo_id: str, out: Path, **kwargs):
    request = JobRequest(repo_id, out, **kwargs)
    return run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))


def test_a_repo_of_two_checkpoints_is_planned_converted_and_published(
    seeded_hub, tiny_sd15, tmp_path
):
    api = seeded_hub.owner_api()
    api.create_repo("alice/dreamy")
    api.upload_folder(repo_id="alice/dreamy", folder_path=str(_repo(tmp_path)))
    plan = _job(seeded_hub, "alice/dreamy", tmp_path / "p", publish=PublishMode.ALL, dry_run=True)
    assert plan.exit_code == ExitCode.OK, plan.summary()
    assert not any(t.startswith("pr") for t in plan.targets)
    assert any("already in the original format" in n for n in plan.notes)
    result = _job(
        seeded_hub, "alice/dreamy", tmp_path / "out", publish=PublishMode.ALL,
        variants="gguf-q8_0,gguf-full-q8_0",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.summary()
    paths = {a.path for a in result.manifest.artifacts}
    assert paths == {
        "dreamy-v1/dreamy-v1-Q8_0.gguf",
        "dreamy-v1/dreamy-v1-full-Q8_0.gguf",
        "dreamy-lcm-unet/dreamy-lcm-unet-Q8_0.gguf",
    }
    records = result.manifest.source["single_files"]
    assert records["dreamy-v1.safetensors"]["contents"] == "full"
    assert records["dreamy-lcm-unet.safetensors"]["kind"] == "sd15-lcm"
    hub = HfApi(endpoint=seeded_hub.endpoint)
    assert not list(hub.get_repo_discussions("alice/dreamy", author="unetbot"))
    files = set(hub.list_repo_files("unetbot/alice__dreamy-GGUF"))
    assert paths | {"README.md", "unet/config.json", "LICENSE"} <= files
    card = Path(hub.hf_hub_download("unetbot/alice__dreamy-GGUF", "README.md")).read_text()
    # which file each output came from (rendered as escaped Markdown)
    assert "dreamy-v1.safetensors -&gt; dreamy-v1/dreamy-v1-Q8\\_0.gguf" in card
    assert "dreamy-lcm-unet.safetensors -&gt; dreamy-lcm-unet/dreamy-lcm-unet-Q8\\_0.gguf" in card
    assert "base_model: alice/dreamy" in card
    again = _job(seeded_hub, "alice/dreamy", tmp_path / "o2", publish=PublishMode.ALL,
                 variants="gguf-q8_0,gguf-full-q8_0")  # fmt: skip
    assert again.skipped.startswith("already published"), again.summary()


def test_checkpoints_of_other_shapes_are_refused(seeded_hub, tmp_path):
    """With SD1.5's real configs the tiny checkpoints match nothing: exit 3, nothing fetched."""
    api = seeded_hub.owner_api()
    api.create_repo("alice/other")
    api.upload_folder(repo_id="alice/other", folder_path=str(_repo(tmp_path)))
    result = _job(seeded_hub, "alice/other", tmp_path / "o", publish=PublishMode.ALL)
    assert result.exit_code == ExitCode.UNSUPPORTED
    assert "no SD1.5-family single-file checkpoint" in result.skipped


def test_a_ckpt_goes_through_the_hub_verdict_and_the_pickle_path(seeded_hub, tiny_sd15, tmp_path):
    """`.ckpt` files: the Hub's scan clears the state dict and flags the hostile one (left out
    with its reason, never downloaded); the safe one is loaded by the pickle path, then split
    and converted like a `.safetensors` checkpoint."""
    import torch
    from safetensors.torch import load_file

    from tests.engine.source.hostile_pickles import build

    repo = tmp_path / "ckpts"
    repo.mkdir()
    full = write_pipeline_folder(tmp_path / "a", "sd15", "tiny", seed=4)
    original = write_original(open_source(full), tmp_path / "x.safetensors", full=True)
    torch.save({"state_dict": load_file(str(original)), "global_step": 1}, repo / "old-v1.ckpt")
    marker = tmp_path / "marker"
    build("reduce-os-system", repo / "evil.ckpt", marker)
    (repo / "README.md").write_text(f"---\n{yaml.safe_dump(CARD)}---\n\n# Old\n")
    api = seeded_hub.owner_api()
    api.create_repo("alice/old-ckpts")
    api.upload_folder(repo_id="alice/old-ckpts", folder_path=str(repo))
    result = _job(
        seeded_hub, "alice/old-ckpts", tmp_path / "out", publish=PublishMode.REPO,
        variants="gguf-q8_0,gguf-full-q8_0",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.summary()
    assert {a.path for a in result.manifest.artifacts} == {
        "old-v1/old-v1-Q8_0.gguf", "old-v1/old-v1-full-Q8_0.gguf"
    }  # fmt: skip
    record = result.manifest.source["single_files"]["old-v1.ckpt"]
    assert record["contents"] == "full" and record["pickle"]["hub"]["verdict"] == "safe"
    assert record["pickle"]["scan"]["scanner"].startswith("picklescan")
    cache = Path(load_settings().cache_dir or "")
    assert not list(cache.rglob("evil.ckpt"))
    assert not marker.exists()
