"""Pickle-only repos on the embedded Hub: the Hub's per-file security records (the same scanner
the Hub runs), the bot's policy skip on the Hub's verdict before any download, the static scan's
refusal of what the Hub calls safe, and a pickle pipeline converted and published with the
source's pickle origin said in the manifest, the PR and the card."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi

from bot.client.hub import Hub
from bot.client.security import hub_verdicts
from bot.config import PublishMode, load_config
from bot.job.run import JobRequest, run_job
from bot.settings import load_settings
from engine.errors import ExitCode, PickleRefused, PolicySkipped
from engine.synthetic.zoo import build_zoo
from tests.engine.source.hostile_pickles import build

CARD = {"license": "creativeml-openrail-m", "library_name": "diffusers", "tags": ["diffusers"]}
BIN = "unet/diffusion_pytorch_model.bin"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"), seed=7, names=["pickle-pipeline"])


def _upload(seeded_hub, repo_id: str, folder: Path) -> None:
    readme = folder / "README.md"
    if not readme.exists():
        readme.write_text(f"---\n{yaml.safe_dump(CARD)}---\n\n# {repo_id}\n")
    api = seeded_hub.owner_api()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder))


def _hostile_repo(seeded_hub, tmp_path: Path, name: str) -> tuple[str, Path]:
    from engine.synthetic.zoo_parts import tiny_unet

    folder, marker = tmp_path / name, tmp_path / f"marker-{name}"
    tiny_unet(0).save_config(folder / "unet")
    build(name, folder / BIN, marker)
    repo_id = f"alice/hostile-{name}"
    _upload(seeded_hub, repo_id, folder)
    return repo_id, marker


def _job(seeded_hub, repo_id: str, out: Path, **kwargs):
    request = JobRequest(repo_id, out, **kwargs)
    return run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))


def _downloads(seeded_hub) -> list[str]:
    return [p for _, p, _ in seeded_hub.running.state.stats.recent if "/resolve/" in p]


def test_embedded_hub_reports_security_records(seeded_hub, zoo, tmp_path):
    _upload(seeded_hub, "alice/pickle-pipeline", zoo["pickle-pipeline"].folder)
    hostile, _ = _hostile_repo(seeded_hub, tmp_path, "reduce-os-system")
    api = HfApi(endpoint=seeded_hub.endpoint, token=seeded_hub.bot_token)
    tree = {f.path: f for f in api.list_repo_tree("alice/pickle-pipeline", "unet", expand=True)}
    safe = tree[BIN].security
    assert safe["safe"] and safe["status"] == "safe"
    assert safe["pickle_import_scan"]["highestSafetyLevel"] == "innocuous"
    imports = {(i["module"], i["name"]) for i in safe["pickle_import_scan"]["imports"]}
    assert ("torch._utils", "_rebuild_tensor_v2") in imports
    config = tree["unet/config.json"].security
    assert config["safe"] and config["pickle_import_scan"] is None
    (bad,) = api.get_paths_info(hostile, [BIN], expand=True)
    assert bad.security["status"] == "unsafe" and not bad.security["safe"]
    flagged = bad.security["pickle_import_scan"]["imports"]
    assert {"module": "posix", "name": "system", "safety": "dangerous"} in flagged
    seeded_hub.running.state.security_pending.add("alice/pickle-pipeline/unet/*.bin")
    try:
        (pending,) = api.get_paths_info("alice/pickle-pipeline", [BIN], expand=True)
        assert pending.security is None
        with pytest.raises(PolicySkipped, match="has no security scan"):
            hub_verdicts(Hub(load_settings()), "alice/pickle-pipeline", "main", [BIN])
    finally:
        seeded_hub.running.state.security_pending.clear()


def test_a_pickle_pipeline_is_converted_and_published(seeded_hub, zoo, tmp_path):
    repo_id = "alice/pickle-pipeline"
    _upload(seeded_hub, repo_id, zoo["pickle-pipeline"].folder)
    result = _job(
        seeded_hub, repo_id, tmp_path / "out", publish=PublishMode.ALL,
        variants="original,original-full,gguf-q8_0",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.summary()
    assert all(a.passed for a in result.manifest.artifacts)
    record = result.manifest.source["pickle"]
    assert set(record["files"]) == {
        BIN,
        "vae/diffusion_pytorch_model.bin",
        "text_encoder/pytorch_model.bin",
    }
    for info in record["files"].values():
        assert info["hub"]["verdict"] == "safe" and info["scan"]["scanner"].startswith("picklescan")
    api = HfApi(endpoint=seeded_hub.endpoint)
    (pr,) = api.get_repo_discussions(repo_id, author="unetbot")
    files = set(api.list_repo_files(repo_id, revision=f"refs/pr/{pr.num}"))
    assert {"pickle-pipeline.unet.safetensors", "pickle-pipeline.safetensors"} <= files
    description = api.get_discussion_details(repo_id, pr.num).events[0].content
    assert "Converted from pickle weights" in description and "picklescan" in description
    card = Path(api.hf_hub_download("unetbot/alice__pickle-pipeline-GGUF", "README.md"))
    assert "Converted from pickle weights" in card.read_text()
    assert not list(tmp_path.glob(".out.pickle-*"))  # the safetensors copies are gone


@pytest.mark.parametrize(
    ("name", "why"),
    [("reduce-os-system", "posix.system (dangerous)"), ("truncated", "flags suspicious imports")],
)
def test_what_the_hub_marks_unsafe_is_skipped_before_any_download(seeded_hub, tmp_path, name, why):
    repo_id, marker = _hostile_repo(seeded_hub, tmp_path, name)
    before = len(_downloads(seeded_hub))
    result = _job(seeded_hub, repo_id, tmp_path / "out", publish=PublishMode.ALL)
    assert result.exit_code == ExitCode.POLICY_SKIPPED
    assert BIN in result.skipped and why in result.skipped, result.skipped
    assert not any(p.endswith(".bin") for p in _downloads(seeded_hub)[before:])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["terabyte-storage", "path-traversal"])
def test_what_the_hub_calls_safe_still_meets_the_static_scan(seeded_hub, tmp_path, name):
    """These carry no import the Hub's scan flags; the static scan refuses them, exit 2,
    nothing published, and the Hub's other repos are judged as before."""
    repo_id, marker = _hostile_repo(seeded_hub, tmp_path, name)
    with pytest.raises(PickleRefused) as info:
        _job(seeded_hub, repo_id, tmp_path / "out", publish=PublishMode.ALL)
    assert info.value.exit_code == ExitCode.BAD_INPUT and BIN in str(info.value)
    api = HfApi(endpoint=seeded_hub.endpoint)
    assert not list(api.get_repo_discussions(repo_id, author="unetbot"))
    assert not api.repo_exists(f"unetbot/alice__hostile-{name}-GGUF")
    assert not marker.exists()
    other = _job(seeded_hub, "alice/tiny-sd15", tmp_path / "o2", publish=PublishMode.NONE,
                 dry_run=True)  # fmt: skip
    assert other.exit_code == ExitCode.OK and other.planned
