"""Single-file checkpoints (engine.source.single_file, engine.writers.single_file): recognised
from the header, split into a diffusers folder and converted by the normal path; a full
checkpoint and a UNet-only one, an LCM one, EMA copies and buffers left out with a note, `.ckpt`
through the pickle path, and SD1.5's shipped configs checking every shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import UnsupportedArchitecture
from engine.formats.safetensors_io import read_header
from engine.run.convert import convert
from engine.source.checkpoint_match import header_table
from engine.source.classify import ModelKind
from engine.source.folder import open_source
from engine.source.single_file import inspect_single_file, sd15_configs
from engine.synthetic.models import clip_config, unet_config, vae_config, write_pipeline_folder
from engine.writers.original import write_original
from engine.writers.single_file import materialize_single_file

ROOT = Path(__file__).resolve().parents[3]


def _tiny_configs(kind: str) -> dict:
    return {"unet": unet_config("sd15", "tiny"), "vae": vae_config("tiny"),
            "text_encoder": clip_config("tiny")}  # fmt: skip


def _checkpoint(tmp_path: Path, kind: str, full: bool, extras: bool) -> Path:
    """An original checkpoint written by unetbot's converter from a generated pipeline, plus
    what old checkpoints carry (an EMA copy, noise-schedule buffers, CLIP position_ids)."""
    folder = write_pipeline_folder(tmp_path / f"src-{kind}", kind, "tiny", seed=3,
                                   with_vae_and_text_encoder=full)  # fmt: skip
    path = write_original(open_source(folder), tmp_path / f"{kind}-model.safetensors", full=full)
    if extras:
        tensors = load_file(str(path))
        tensors["model_ema.decay"] = torch.tensor(0.9999)
        tensors["model_ema.diffusion_modelinput_blocks00weight"] = torch.zeros(2, 2)
        tensors["alphas_cumprod"] = torch.linspace(0.999, 0.005, 1000)
        if full:
            key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
            tensors[key] = torch.arange(77).expand((1, -1))
        save_file(tensors, str(path), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize(
    ("kind", "full"), [("sd15", True), ("sd15", False), ("sd15-lcm", False)],
    ids=["full", "unet-only", "lcm-unet-only"],
)  # fmt: skip
def test_single_file_is_recognised_split_and_converted(tmp_path, kind, full):
    path = _checkpoint(tmp_path, kind, full, extras=True)
    configs = _tiny_configs(kind)
    info = inspect_single_file(header_table(read_header(path)), path.name, configs)
    assert info.contents == ("full" if full else "unet")
    assert info.kind == (ModelKind.SD15_LCM if kind == "sd15-lcm" else ModelKind.SD15)
    assert "model_ema.decay" in info.left_out and "alphas_cumprod" in info.left_out
    assert any("EMA copy" in n for n in info.notes())
    record = materialize_single_file(path, tmp_path / "split", configs)
    source = open_source(record.root)
    assert source.classification.kind == info.kind and source.has_full_pipeline == full
    variants = "original,gguf-q8_0" + (",original-full,gguf-full-q8_0" if full else "")
    manifest = convert(record.root, tmp_path / "out", variants, stem=info.stem)
    names = {a.variant: a.path for a in manifest.artifacts}
    assert names["gguf-q8_0"] == f"{kind}-model-Q8_0.gguf"
    # the re-exported original holds exactly the checkpoint's kept tensors, byte for byte
    again = load_file(str(tmp_path / "out" / names["original-full" if full else "original"]))
    before = {k: v for k, v in load_file(str(path)).items() if k not in info.left_out}
    assert set(again) == set(before)
    assert all(torch.equal(again[k], before[k]) for k in before)


def test_sd15_configs_check_every_shape(tmp_path):
    """A checkpoint of other shapes (here: the tiny model) is refused against SD1.5's configs."""
    path = _checkpoint(tmp_path, "sd15", True, extras=False)
    with pytest.raises(UnsupportedArchitecture, match="not an SD1.5-family checkpoint"):
        inspect_single_file(header_table(read_header(path)), path.name)
    full = {k: v for k, v in unet_config("sd15", "full").items() if k != "_diffusers_version"}
    assert sd15_configs()["unet"] == full  # the same SD1.5 config the full-size tests build


def test_a_non_checkpoint_is_refused(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UnsupportedArchitecture, match="no original-format UNet tensors"):
        inspect_single_file(header_table(read_header(path)), path.name)


def test_ckpt_goes_through_the_pickle_path(tmp_path):
    path = _checkpoint(tmp_path, "sd15", False, extras=False)
    ckpt = tmp_path / "old-model.ckpt"
    torch.save({"state_dict": load_file(str(path)), "global_step": 1000}, ckpt)
    record = materialize_single_file(ckpt, tmp_path / "split", _tiny_configs("sd15"))
    assert record.pickle["scan"]["scanner"].startswith("picklescan")
    assert record.info.stem == "old-model"
    assert open_source(record.root).classification.kind == ModelKind.SD15


def test_bot_convert_refuses_a_tiny_checkpoint_as_not_sd15(tmp_path):
    """`bot convert FILE` reads a checkpoint with SD1.5's configs: the tiny one is exit 3."""
    path = _checkpoint(tmp_path, "sd15", False, extras=False)
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "convert", str(path), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-1500:]
    assert path.name in proc.stderr and "Traceback" not in proc.stderr
