"""Pickle-only diffusers repos (engine.synthetic.zoo: `save_pretrained(safe_serialization=False)`,
transformers 4's `pytorch_model.bin`, sharded `.bin` with its index) through the one pickle
path: converted exactly (diffusers' own LDM map gives back the tensors torch loads from the
pickle), while the engine's plain source opening still refuses them."""

from __future__ import annotations

import shutil

import pytest
import torch

from bot.client.repo_files import needed_files
from engine.errors import PickleRefused
from engine.run.convert import convert
from engine.source.folder import open_source
from engine.source.layout import Precision, list_local_files, safetensors_twin
from engine.source.pickle_source import materialize, pickle_sets
from engine.synthetic.zoo import build_zoo

PICKLED = ["pickle-only", "pickle-pipeline", "pickle-sharded"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"), seed=5, names=PICKLED)


def _pickled_state(folder, prefix: str) -> dict[str, torch.Tensor]:
    """The state dict in the pickles under `prefix`, loaded here (our own files) with torch."""
    state: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob(f"{prefix}/*.bin")):
        state.update(torch.load(path, weights_only=True))
    return state


def test_plain_source_opening_refuses_pickles(zoo, tmp_path):
    with pytest.raises(PickleRefused, match="only pickle weights"):
        convert(zoo["pickle-pipeline"].folder, tmp_path / "out", "original")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", PICKLED)
def test_pickle_repo_converts_exactly(zoo, name, tmp_path):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from safetensors.torch import load_file

    repo, exp = zoo[name], zoo[name].expected
    assert exp.pickle and exp.decision == "convert"
    record = materialize(repo.folder, tmp_path / "src")
    assert record is not None
    source = open_source(record.root)
    assert source.classification.kind == exp.kind
    assert source.has_full_pipeline == exp.full
    for path, info in record.files.items():
        assert info["as"] == safetensors_twin(path, "model" if "text_encoder" in path
                                              else "diffusion_pytorch_model")  # fmt: skip
        assert info["hub"] == {"verdict": "none (local folder)"}
        assert "torch._utils._rebuild_tensor_v2" in info["scan"]["globals"]
        assert info["load"]["tensors"] > 0
    variants = "original,original-full" if exp.full else "original"
    manifest = convert(record.root, tmp_path / "out", variants, stem=name)
    assert all(a.variant in variants for a in manifest.artifacts)
    checkpoint = load_file(str(tmp_path / "out" / f"{name}.unet.safetensors"))
    config = UNet2DConditionModel.load_config(repo.folder / "unet")
    back = convert_ldm_unet_checkpoint(checkpoint, config)
    original = _pickled_state(repo.folder, "unet")
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    if exp.full:
        full = load_file(str(tmp_path / "out" / f"{name}.safetensors"))
        clip = _pickled_state(repo.folder, "text_encoder")
        prefix = "cond_stage_model.transformer.text_model."
        for key, value in clip.items():
            name_in_full = prefix + key.removeprefix("text_model.")
            assert torch.equal(full[name_in_full], value), key


@pytest.mark.parametrize("name", PICKLED)
def test_bot_downloads_exactly_the_pickles_it_converts(zoo, name, tmp_path):
    repo = zoo[name]
    files = list_local_files(repo.folder)
    wanted = needed_files(files, full=True, precisions=tuple(Precision))
    for path in wanted:
        (tmp_path / "copy" / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo.folder / path, tmp_path / "copy" / path)
    sets = pickle_sets(files)
    assert sets == pickle_sets(list_local_files(tmp_path / "copy"))
    assert {p for _, s in sets for p in s.paths} <= set(wanted)
    assert any(p.endswith(".bin") for p in wanted)
