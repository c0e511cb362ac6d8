"""The real-world zoo (engine/synthetic/zoo.py: repos written by diffusers/transformers
`save_pretrained`, legacy layouts, adapters, ControlNets...) seeded into the embedded Hub: what the
bot decides for each repo from the Hub alone, what it downloads, and what it publishes."""

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
from engine.synthetic.zoo import ZOO, build_zoo

CARD = {"license": "creativeml-openrail-m", "library_name": "diffusers", "tags": ["diffusers"]}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"))


def _seed(seeded_hub, zoo, names: list[str]) -> None:
    api = seeded_hub.owner_api()
    for name in names:
        folder = zoo[name].folder
        readme = folder / "README.md"
        if not readme.exists():
            readme.write_text(f"---\n{yaml.safe_dump(CARD)}---\n\n# {name}\n")
        api.create_repo(f"alice/{name}", exist_ok=True)
        api.upload_folder(repo_id=f"alice/{name}", folder_path=str(folder))


def _job(seeded_hub, name: str, out: Path, **kwargs):
    request = JobRequest(f"alice/{name}", out, **kwargs)
    return run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))


def test_every_zoo_repo_is_judged_from_the_hub_as_expected(seeded_hub, zoo, tmp_path):
    _seed(seeded_hub, zoo, list(ZOO))
    for name, repo in zoo.items():
        expected = repo.expected
        result = _job(seeded_hub, name, tmp_path / name, publish=PublishMode.ALL, dry_run=True)
        assert result.exit_code == expected.exit_code, (name, result.summary())
        if expected.decision == "refuse":
            assert expected.reason.lower() in result.skipped.lower(), (name, result.skipped)
            assert not result.targets
            continue
        targets = {t.split(":")[0] for t in result.targets}
        assert ("pr" in targets) == expected.pr_target, (name, result.targets, result.notes)
        assert {"gguf", "quanto"} <= targets, (name, result.targets)
        if expected.root_checkpoint:
            assert any(expected.root_checkpoint in n for n in result.notes), result.notes
        assert ("original-full" in result.planned) == (expected.full and expected.pr_target)
    assert not list(HfApi(endpoint=seeded_hub.endpoint).list_models(author="unetbot"))


def test_quantized_outputs_never_download_the_fp32_weights(seeded_hub, zoo, tmp_path):
    _seed(seeded_hub, zoo, ["lcm-fp32-fp16"])
    result = _job(
        seeded_hub, "lcm-fp32-fp16", tmp_path / "out", publish=PublishMode.REPO,
        variants="gguf-q8_0",
    )  # fmt: skip
    assert result.exit_code == 0, result.summary()
    cache = Path(load_settings().cache_dir or "")
    fetched = {p.name for p in cache.rglob("*.safetensors")}
    assert "diffusion_pytorch_model.fp16.safetensors" in fetched
    assert "diffusion_pytorch_model.safetensors" not in fetched  # the fp32 main weights
    unet_files = result.manifest.source["files"]["unet"]
    assert unet_files and all("fp16" in f for f in unet_files if f.endswith(".safetensors"))
    assert result.published


@pytest.mark.parametrize("name", ["bare-unet", "lcm-root-checkpoint"])
def test_convertible_layouts_publish(seeded_hub, zoo, tmp_path, name):
    _seed(seeded_hub, zoo, [name])
    result = _job(
        seeded_hub, name, tmp_path / "out", publish=PublishMode.ALL,
        variants="original,gguf-q8_0",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.summary()
    api = HfApi(endpoint=seeded_hub.endpoint)
    assert api.repo_exists(f"unetbot/alice__{name}-GGUF")
    prs = list(api.get_repo_discussions(f"alice/{name}", author="unetbot"))
    assert bool(prs) == zoo[name].expected.pr_target


def test_the_pr_mirrors_both_precisions_and_the_quantized_files_read_the_fp16_variant(
    seeded_hub, zoo, tmp_path
):
    _seed(seeded_hub, zoo, ["lcm-fp32-fp16"])
    result = _job(
        seeded_hub, "lcm-fp32-fp16", tmp_path / "out", publish=PublishMode.ALL,
        variants="original,original-fp16,gguf-q8_0",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.summary()
    details = {a.variant: a.details for a in result.manifest.artifacts}
    assert details["original"]["source_precision"] == "main"
    assert not any(".fp16." in f for f in details["original"]["source_files"])
    for name in ("original-fp16", "gguf-q8_0"):
        assert any(".fp16." in f for f in details[name]["source_files"]), name
    api = HfApi(endpoint=seeded_hub.endpoint)
    (pr,) = api.get_repo_discussions("alice/lcm-fp32-fp16", author="unetbot")
    files = set(api.list_repo_files("alice/lcm-fp32-fp16", revision=f"refs/pr/{pr.num}"))
    assert {"lcm-fp32-fp16.unet.safetensors", "lcm-fp32-fp16.unet.fp16.safetensors"} <= files
