"""Tags, library and pipeline tag derived as the real Hub derives them (bot/hub/repotags.py),
seen through the real client: model_info, list_models filters, revisions, bad config files."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.numpy import save

from bot.hub import start_hub
from bot.hub.diffusers_tasks import TASK_OF_PIPELINE
from engine.synthetic.models import unet_config

CARD = "---\nlicense: mit\n---\n# A model\n"
WEIGHTS = save({"conv_in.weight": np.zeros((4, 4, 3, 3), dtype=np.float16)})


def pipeline_index(class_name: str) -> bytes:
    """model_index.json as diffusers' save_pretrained writes it (the keys the rule reads)."""
    index = {
        "_class_name": class_name,
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "LCMScheduler"],
    }
    return json.dumps(index, indent=2).encode()


def pipeline_files(class_name: str, card: str = CARD) -> list[CommitOperationAdd]:
    return [
        CommitOperationAdd("model_index.json", pipeline_index(class_name)),
        CommitOperationAdd("unet/config.json", json.dumps(unet_config("sd15-lcm")).encode()),
        CommitOperationAdd("unet/diffusion_pytorch_model.safetensors", WEIGHTS),
        CommitOperationAdd("README.md", card.encode()),
    ]


def _auto_pipeline_tasks() -> dict[str, str]:
    """diffusers' AutoPipeline mappings, read from its source (importing diffusers takes
    ~20 s), in the order diffusers_tasks.py documents."""
    spec = importlib.util.find_spec("diffusers")
    assert spec is not None and spec.submodule_search_locations
    source = Path(spec.submodule_search_locations[0]) / "pipelines" / "auto_pipeline.py"
    mappings: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id.endswith("PIPELINES_MAPPING"):
            pairs = node.value.args[0].elts  # OrderedDict([("name", Class), ...])
            mappings[target.id] = [pair.elts[1].id for pair in pairs]
        elif isinstance(target, ast.Subscript) and target.value.id.endswith("PIPELINES_MAPPING"):
            mappings[target.value.id].append(node.value.id)  # e.g. the Kolors additions
    order = [
        ("text-to-image", ["AUTO_TEXT2IMAGE", "_AUTO_TEXT2IMAGE_DECODER"]),
        (
            "image-to-image",
            [
                "AUTO_IMAGE2IMAGE",
                "_AUTO_IMAGE2IMAGE_DECODER",
                "AUTO_INPAINT",
                "_AUTO_INPAINT_DECODER",
            ],
        ),
        ("text-to-video", ["AUTO_TEXT2VIDEO"]),
        ("image-to-video", ["AUTO_IMAGE2VIDEO"]),
        ("video-to-video", ["AUTO_VIDEO2VIDEO"]),
        ("text-to-audio", ["AUTO_TEXT2AUDIO"]),
    ]
    tasks: dict[str, str] = {}
    for task, names in order:
        for name in names:
            for cls in mappings[f"{name}_PIPELINES_MAPPING"]:
                tasks.setdefault(cls, task)
    return tasks


def test_pipeline_task_table_is_diffusers_own() -> None:
    """The table follows the pinned diffusers; an upgrade that changes the mappings fails."""
    assert _auto_pipeline_tasks() == TASK_OF_PIPELINE
    assert TASK_OF_PIPELINE["StableDiffusionPipeline"] == "text-to-image"
    assert TASK_OF_PIPELINE["LatentConsistencyModelPipeline"] == "text-to-image"


def test_lcm_pipeline_repo_gets_the_hubs_tags(api: HfApi) -> None:
    repo = "unetbot-local/tiny-lcm"
    api.create_repo(repo)
    api.create_commit(
        repo, operations=pipeline_files("LatentConsistencyModelPipeline"), commit_message="up"
    )
    info = api.model_info(repo)
    assert info.library_name == "diffusers" and info.pipeline_tag == "text-to-image"
    assert info.tags == [
        "diffusers",
        "safetensors",
        "text-to-image",
        "license:mit",
        "diffusers:LatentConsistencyModelPipeline",
        "region:us",
    ]
    assert [m.id for m in api.list_models(filter="diffusers:LatentConsistencyModelPipeline")] == [
        repo
    ]
    assert [m.id for m in api.list_models(pipeline_tag="text-to-image", filter="diffusers")] == [
        repo
    ]
    assert list(api.list_models(filter="diffusers:StableDiffusionPipeline")) == []


def test_card_values_take_precedence(api: HfApi) -> None:
    repo = "unetbot-local/carded"
    api.create_repo(repo)
    card = "---\nlibrary_name: my-lib\npipeline_tag: image-to-image\ntags: [sd15]\n---\n"
    api.create_commit(
        repo, operations=pipeline_files("StableDiffusionPipeline", card), commit_message="up"
    )
    info = api.model_info(repo)
    assert info.library_name == "my-lib" and info.pipeline_tag == "image-to-image"
    assert info.tags[:4] == ["my-lib", "safetensors", "sd15", "image-to-image"]
    assert "diffusers:StableDiffusionPipeline" in info.tags  # the class is still what it is


def test_bare_unet_repo_is_a_diffusers_repo_without_pipeline_tag(api: HfApi) -> None:
    repo = "unetbot-local/bare-unet"
    api.create_repo(repo)
    config = unet_config("sd15")
    assert "_diffusers_version" in config  # what diffusers' save_config writes
    api.create_commit(
        repo,
        operations=[
            CommitOperationAdd("config.json", json.dumps(config).encode()),
            CommitOperationAdd("diffusion_pytorch_model.safetensors", WEIGHTS),
        ],
        commit_message="up",
    )
    info = api.model_info(repo)
    assert info.library_name == "diffusers" and info.pipeline_tag is None
    assert info.tags == ["diffusers", "safetensors", "region:us"]


def test_config_json_without_diffusers_version_is_transformers(api: HfApi) -> None:
    repo = "unetbot-local/bert"
    api.create_repo(repo)
    config = {"architectures": ["BertModel"], "model_type": "bert"}
    api.upload_file(
        path_or_fileobj=json.dumps(config).encode(), path_in_repo="config.json", repo_id=repo
    )
    assert api.model_info(repo).library_name == "transformers"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "malformed"),
        (b"\xff\xfe\x00", "not UTF-8 (sent through LFS)"),
        (json.dumps({"_class_name": ["StableDiffusionPipeline"]}).encode(), "not a string"),
        (json.dumps({"_class_name": "Bad Name; rm -rf"}).encode(), "not a class name"),
        (json.dumps([1, 2]).encode(), "not an object"),
        (b'{"_class_name": "StableDiffusionPipeline", "pad": "' + b"x" * 70_000 + b'"}', "large"),
    ],
)
def test_bad_model_index_never_fails_a_commit(api: HfApi, content: bytes, why: str) -> None:
    """The repo is still a diffusers repo (the file is there), just without a class tag."""
    repo = "unetbot-local/odd-index"
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=content, path_in_repo="model_index.json", repo_id=repo)
    info = api.model_info(repo)
    assert info.library_name == "diffusers", why
    assert not [t for t in info.tags if t.startswith("diffusers:")], why
    assert info.pipeline_tag is None, why


def test_tags_of_an_older_revision(api: HfApi) -> None:
    repo = "unetbot-local/evolving"
    api.create_repo(repo)
    first = api.create_commit(
        repo, operations=pipeline_files("StableDiffusionPipeline"), commit_message="sd"
    ).oid
    api.upload_file(
        path_or_fileobj=pipeline_index("StableDiffusionImg2ImgPipeline"),
        path_in_repo="model_index.json",
        repo_id=repo,
    )
    assert api.model_info(repo).pipeline_tag == "image-to-image"
    old = api.model_info(repo, revision=first)
    assert old.pipeline_tag == "text-to-image"
    assert "diffusers:StableDiffusionPipeline" in old.tags


def test_stale_summaries_are_derived_again_at_startup(tmp_path: Path) -> None:
    """A summary written by an older tag rule (or lost between ref and summary) is rebuilt."""
    root = tmp_path / "root"
    with start_hub(root) as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("unetbot-local/m")
        api.create_commit(
            "unetbot-local/m",
            operations=pipeline_files("StableDiffusionPipeline"),
            commit_message="up",
        )
    summary = root / "repos" / "models" / "unetbot-local" / "m" / "repo.json"
    raw = json.loads(summary.read_text())
    raw.update(tags=[], library_name=None, pipeline_tag=None, summary_version=1)
    summary.write_text(json.dumps(raw))
    with start_hub(root) as hub:
        info = HfApi(endpoint=hub.endpoint, token=hub.token).model_info("unetbot-local/m")
        assert info.pipeline_tag == "text-to-image"
        assert "diffusers:StableDiffusionPipeline" in info.tags
