"""Parts of the repo zoo (engine.synthetic.zoo): tiny models from the real classes, saved the way
their libraries save them, and the few old layouts no installed library writes any more (each says
why it is hand-written).
"""

from __future__ import annotations

import json
from pathlib import Path

# The zoo's tokenizer (`tiny_tokenizer`) ends a text with id 1.
EOS_TOKEN_ID = 1
LICENCE = "CreativeML Open RAIL-M (zoo copy)\n"


# ------------------------------------------------------------------ model builders


def tiny_unet(seed: int, kind: str = "sd15", **overrides):
    import torch
    from diffusers import UNet2DConditionModel

    from engine.synthetic.models import unet_config

    config = {**unet_config(kind, "tiny", layers_per_block=1), **overrides}  # type: ignore[arg-type]
    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(config)


def tiny_vae(seed: int):
    """A VAE of engine.synthetic.models's tiny size."""
    import torch
    from diffusers import AutoencoderKL

    from engine.synthetic.models import vae_config

    torch.manual_seed(seed + 1)
    return AutoencoderKL.from_config(vae_config("tiny"))


def tiny_text_encoder(seed: int, with_projection: bool = False):
    """A text encoder of engine.synthetic.models's tiny size, ending texts as the zoo's
    tokenizer."""
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from engine.synthetic.models import clip_config, clip_text_config

    torch.manual_seed(seed + 2)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(clip_text_config({**clip_config("tiny"), "eos_token_id": EOS_TOKEN_ID}))


def tiny_tokenizer():
    """A tiny CLIP BPE tokenizer (the real class, a 54-entry vocabulary)."""
    import tempfile

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for i, c in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[c], vocab[f"{c}</w>"] = 2 + i, 28 + i
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "vocab.json").write_text(json.dumps(vocab))
        (Path(scratch) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(f"{scratch}/vocab.json", f"{scratch}/merges.txt")


def tiny_pipeline(seed: int, kind: str = "sd15", with_projection: bool = False):
    """A StableDiffusionPipeline of tiny components (LCMScheduler for an LCM UNet)."""
    from diffusers import LCMScheduler, PNDMScheduler, StableDiffusionPipeline

    scheduler = LCMScheduler() if kind == "sd15-lcm" else PNDMScheduler()
    return StableDiffusionPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed, with_projection),
        tokenizer=tiny_tokenizer(),
        unet=tiny_unet(seed, kind),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def write_card(folder: Path, title: str, licence: str = "creativeml-openrail-m") -> None:
    """README.md with licence front matter and a LICENSE file, as model repos have."""
    (folder / "README.md").write_text(
        f"---\nlicense: {licence}\nlibrary_name: diffusers\ntags:\n- text-to-image\n---\n\n"
        f"# {title}\n\nA tiny generated model of unetbot's test zoo.\n"
    )
    (folder / "LICENSE").write_text(LICENCE)


def save_pipeline(pipe, folder: Path, dtype: str, **kwargs) -> None:
    pipe.to(torch_dtype(dtype)).save_pretrained(folder, safe_serialization=True, **kwargs)


# ------------------------------------------------------------------ hand-written old layouts


def as_transformers4(text_encoder_dir: Path) -> None:
    """Rewrite a transformers 5 CLIP text encoder as transformers 4.30 saved it: every key under
    `text_model.`, plus the persistent `position_ids` buffer (int64 [1, 77]) it registered
    (transformers 4.30 models/clip/modeling_clip.py CLIPTextEmbeddings), and a 4.x config
    (`torch_dtype`, `transformers_version`). transformers 4 cannot be installed beside the
    pinned 5.x, so this one layout is written by hand."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in sorted(text_encoder_dir.glob("*.safetensors")):
        tensors = load_file(str(path))
        renamed = {
            k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in tensors.items()
        }
        if any(k.startswith("text_model.embeddings.position_embedding") for k in renamed):
            renamed["text_model.embeddings.position_ids"] = torch.arange(77).expand((1, -1))
        save_file(renamed, str(path), metadata={"format": "pt"})
    index = sorted(text_encoder_dir.glob("*.index*.json"))
    for path in index:
        data = json.loads(path.read_text())
        data["weight_map"] = {
            (k if k.startswith("text_model.") else f"text_model.{k}"): v
            for k, v in data["weight_map"].items()
        }
        path.write_text(json.dumps(data, indent=2))
    config_path = text_encoder_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["torch_dtype"] = config.pop("dtype", "float32")
    config["transformers_version"] = "4.25.1"
    config_path.write_text(json.dumps(config, indent=2))


_LEGACY_VAE = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def as_old_vae(vae_dir: Path) -> None:
    """Rename the VAE mid-block attention as diffusers < 0.14 saved it (query/key/value/
    proj_attn: the names `ModelMixin._fix_state_dict_keys_on_load` still converts on load)."""
    from safetensors.torch import load_file, save_file

    for path in sorted(vae_dir.glob("*.safetensors")):
        out = {}
        for key, value in load_file(str(path)).items():
            for new, old in _LEGACY_VAE.items():
                marker = f"mid_block.attentions.0.{new}."
                if marker in key:
                    key = key.replace(marker, f"mid_block.attentions.0.{old}.")
            out[key] = value
        save_file(out, str(path), metadata={"format": "pt"})


def as_old_configs(folder: Path) -> None:
    """Configs as diffusers 0.6 wrote them: ~18 keys, none of the later ones."""
    common = ("act_fn", "block_out_channels", "down_block_types", "in_channels", "layers_per_block")
    common += ("norm_num_groups", "out_channels", "sample_size", "up_block_types")
    unet_keys = (*common, "attention_head_dim", "center_input_sample", "cross_attention_dim")
    unet_keys += ("downsample_padding", "flip_sin_to_cos", "freq_shift", "mid_block_scale_factor")
    unet_keys += ("norm_eps",)
    vae_keys = (*common, "latent_channels")
    for component, keys, cls in (
        ("unet", unet_keys, "UNet2DConditionModel"),
        ("vae", vae_keys, "AutoencoderKL"),
    ):
        path = folder / component / "config.json"
        current = json.loads(path.read_text())
        old = {"_class_name": cls, "_diffusers_version": "0.6.0"}
        old.update({k: current[k] for k in keys})
        path.write_text(json.dumps(old, indent=2))


def as_pickle_text_encoder(folder: Path, model) -> None:
    """The text encoder as transformers 4 saved it by default: `torch.save(state_dict)` to
    `pytorch_model.bin`, no safetensors file."""
    import torch

    for stale in folder.glob("model*.safetensors*"):
        stale.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


def add_pickle_twins(folder: Path, names: list[str]) -> None:
    """`.bin` files beside the safetensors (old repos have them); never opened by unetbot."""
    import torch

    for name in names:
        torch.save({"unused": torch.zeros(1)}, folder / name)


def add_root_checkpoint(folder: Path, name: str, extra_schedule: bool = False) -> str:
    """A full original checkpoint at the root, written by unetbot's own converter (as the
    repos that ship one did with the diffusers script); `extra_schedule` adds what old
    LDM checkpoints also carry (noise-schedule buffers, CLIP position_ids)."""
    from engine.source.folder import open_source
    from engine.writers.original import write_original

    path = write_original(open_source(folder), folder / name, full=True)
    if extra_schedule:
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        tensors["alphas_cumprod"] = torch.linspace(0.999, 0.005, 1000)
        tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(
            77
        ).expand((1, -1))
        save_file(tensors, str(path), metadata={"format": "pt"})
    return name
