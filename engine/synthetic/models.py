"""Seeded random-weight SD1.5-family models in diffusers layout.

No weights can be downloaded where unetbot is developed and tested, so tests, benchmarks and the
demo build models from configs: the tensor names and shapes come from the real diffusers /
transformers classes (instantiated on the `meta` device, so nothing is allocated), the values from a
seeded NumPy generator scaled by 1/sqrt(fan_in) so forward passes stay finite and meaningful.

Two value statistics (`statistics=`):

- "init": what a freshly initialised network holds: Gaussian weights at 1/sqrt(fan_in), norm
  scales near 1, small biases. Benign for quantizers and half-precision arithmetic alike.
- "trained": the shape of trained weights, which is where validation bounds calibrated on init
  weights broke (an accurate Q5_1 failing a load check on a real LCM repo). Trained weights are
  heavy-tailed (kurtosis well above a Gaussian's 3), their output rows carry scales spread over
  orders of magnitude (the reason per-channel quantization exists), a few input channels carry
  outliers (LLM.int8(), Dettmers et al. 2022; SmoothQuant, Xiao et al. 2022), and norm scales
  range over an order of magnitude. Here: values are a Gaussian scale mixture z * exp(0.6 g)
  (kurtosis ~13), each output row is scaled by exp(N(0, 1)) (extreme rows ~400x apart in a
  320-row tensor), 1% of input columns are scaled by 6, and each tensor is then renormalised to
  the init RMS so forward passes keep their scale. In float16 the smallest rows then fall into
  the subnormal range (< 6.1e-5), as in real half-precision checkpoints; that, the outlier
  blocks and the tails are what stress block quantizers and half-precision dequantization.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np

Size = Literal["tiny", "full"]
Kind = Literal["sd15", "sd15-lcm", "sd15-inpaint", "sd2", "sdxl"]
Statistics = Literal["init", "trained"]
# Source dtypes a synthetic model can be written in (bfloat16 goes through torch: NumPy has none).
DTYPES = ("float16", "bfloat16", "float32")

_SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.42.1",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

_TINY_UNET = {
    **_SD15_UNET,
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "sample_size": 8,
}

_SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.42.1",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

_TINY_VAE = {
    **_SD15_VAE,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "layers_per_block": 1,
    "sample_size": 32,
}

_SD15_CLIP = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "torch_dtype": "float16",
}

_TINY_CLIP = {
    **_SD15_CLIP,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "projection_dim": 32,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}


def unet_config(kind: Kind = "sd15", size: Size = "tiny", layers_per_block: int = 2) -> dict:
    """A UNet2DConditionModel config of the given family (SD2/SDXL only for refusal tests)."""
    config = json.loads(json.dumps(_SD15_UNET if size == "full" else _TINY_UNET))
    config["layers_per_block"] = layers_per_block
    if kind == "sd15-lcm":
        config["time_cond_proj_dim"] = 256 if size == "full" else 16
    elif kind == "sd15-inpaint":
        config["in_channels"] = 9
    elif kind == "sd2":
        config["cross_attention_dim"] = 1024 if size == "full" else 48
        config["attention_head_dim"] = [5, 10, 20, 20] if size == "full" else [2, 4]
        config["use_linear_projection"] = True
    elif kind == "sdxl":
        config["cross_attention_dim"] = 2048 if size == "full" else 64
        config["addition_embed_type"] = "text_time"
        config["addition_time_embed_dim"] = 256 if size == "full" else 8
        config["projection_class_embeddings_input_dim"] = 2816 if size == "full" else 80
        config["transformer_layers_per_block"] = [1, 2, 10] if size == "full" else [1, 2]
        config["use_linear_projection"] = True
    return config


def vae_config(size: Size = "tiny") -> dict:
    """An AutoencoderKL config.json of SD1.5's VAE, or of its tiny stand-in (a fresh copy)."""
    return json.loads(json.dumps(_SD15_VAE if size == "full" else _TINY_VAE))


def clip_config(size: Size = "tiny") -> dict:
    """A CLIPTextModel config.json of SD1.5's text encoder, or of its tiny stand-in (a copy)."""
    return json.loads(json.dumps(_SD15_CLIP if size == "full" else _TINY_CLIP))


def clip_text_config(config: dict):
    """transformers' CLIPTextConfig for a text encoder's config.json (the keys that describe
    the file, not the model, left out)."""
    from transformers import CLIPTextConfig

    fields = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}
    return CLIPTextConfig(**fields)


def _is_norm(name: str) -> bool:
    return "norm" in name or "ln_" in name or "layer_norm" in name


def _init_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Norms near 1, biases small, weights 1/sqrt(fan_in): a freshly initialised network."""
    values = rng.standard_normal(shape, dtype=np.float32)
    if len(shape) == 1 and _is_norm(name):
        if name.endswith("weight"):
            values = 1.0 + 0.05 * values
        else:
            values *= 0.02
    elif len(shape) == 1 or "embedding" in name:
        values *= 0.02
    else:
        values *= 1.0 / math.sqrt(max(1, math.prod(shape[1:])))
    return values


def _heavy_tailed(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Gaussian scale mixture z * exp(0.6 g): kurtosis 3 * exp(4 * 0.36) ~ 13."""
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.exp(0.6 * rng.standard_normal(shape, dtype=np.float32))
    return values


def _trained_values(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Trained-like values at the init RMS (module docstring: what and why)."""
    if len(shape) == 1 and _is_norm(name):
        if name.endswith("weight"):  # norm scales over an order of magnitude, all positive
            return np.exp(0.5 * rng.standard_normal(shape, dtype=np.float32))
        return 0.05 * _heavy_tailed(rng, shape)
    values = _heavy_tailed(rng, shape)
    if len(shape) == 1:
        return 0.05 * values / float(np.sqrt(np.mean(values * values)))
    rows = np.exp(rng.standard_normal((shape[0],) + (1,) * (len(shape) - 1), dtype=np.float32))
    values *= rows
    if len(shape) >= 2 and shape[1] >= 100:
        outliers = rng.choice(shape[1], size=shape[1] // 100, replace=False)
        values[:, outliers] *= 6.0
    target = 0.02 if "embedding" in name else 1.0 / math.sqrt(max(1, math.prod(shape[1:])))
    values *= target / float(np.sqrt(np.mean(values * values)))
    return values


def _cast(values: np.ndarray, dtype: str):
    """float32 values in `dtype`, rounded to nearest even (a torch tensor for bfloat16)."""
    if dtype == "bfloat16":
        import torch

        return torch.from_numpy(values).to(torch.bfloat16)
    return values.astype(np.dtype(dtype))


def _random_tensors(
    shapes: dict[str, tuple[int, ...]], seed: int, dtype: str, statistics: Statistics = "init"
) -> dict:
    """Seeded values of every tensor in `dtype`, with the given statistics (one float32 tensor
    at a time: a full-size UNet never exists in float32 here)."""
    if statistics not in ("init", "trained"):
        raise ValueError(f"statistics must be 'init' or 'trained', not {statistics!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    values = _trained_values if statistics == "trained" else _init_values
    rng = np.random.default_rng(seed)
    return {name: _cast(values(rng, name, shape), dtype) for name, shape in shapes.items()}


def _meta_shapes(module_factory) -> dict[str, tuple[int, ...]]:
    import torch

    with torch.device("meta"):
        module = module_factory()
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def unet_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a UNet2DConditionModel built from `config` (nothing allocated)."""
    from diffusers import UNet2DConditionModel

    return _meta_shapes(lambda: UNet2DConditionModel.from_config(config))


def vae_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    from diffusers import AutoencoderKL

    return _meta_shapes(lambda: AutoencoderKL.from_config(config))


def clip_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    from transformers import CLIPTextModel

    shapes = _meta_shapes(lambda: CLIPTextModel(clip_text_config(config)))
    shapes.pop("text_model.embeddings.position_ids", None)
    # transformers 5 drops the `text_model.` level, in memory and in the files it saves
    # (`embeddings.*`, `encoder.*`); files saved by transformers 4 carry it, and so do these
    # synthetic ones. engine/synthetic/zoo.py covers both layouts with files saved by transformers.
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in shapes.items()}


def _save(folder: Path, config: dict, config_name: str, weights_name: str, tensors: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config_name).write_text(json.dumps(config, indent=2) + "\n")
    if any(not isinstance(v, np.ndarray) for v in tensors.values()):  # bfloat16: torch tensors
        from safetensors.torch import save_file as save_torch

        save_torch(tensors, str(folder / weights_name), metadata={"format": "pt"})
        return
    from safetensors.numpy import save_file

    save_file(tensors, str(folder / weights_name), metadata={"format": "pt"})


def write_unet_folder(
    folder: Path,
    kind: Kind = "sd15",
    size: Size = "tiny",
    dtype: str = "float16",
    seed: int = 0,
    layers_per_block: int = 2,
    statistics: Statistics = "init",
) -> Path:
    """Write `folder/config.json` + `folder/diffusion_pytorch_model.safetensors` (`dtype` one
    of DTYPES; `statistics`: see the module docstring)."""
    config = unet_config(kind, size, layers_per_block)
    tensors = _random_tensors(unet_shapes(config), seed, dtype, statistics)
    _save(Path(folder), config, "config.json", "diffusion_pytorch_model.safetensors", tensors)
    return Path(folder)


def write_pipeline_folder(
    folder: Path,
    kind: Kind = "sd15",
    size: Size = "tiny",
    dtype: str = "float16",
    seed: int = 0,
    with_vae_and_text_encoder: bool = True,
    layers_per_block: int = 2,
    statistics: Statistics = "init",
) -> Path:
    """A diffusers pipeline folder: model_index.json, unet/, and optionally vae/ + text_encoder/
    (all components with the same dtype and statistics)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_unet_folder(folder / "unet", kind, size, dtype, seed, layers_per_block, statistics)
    index: dict = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "LCMScheduler" if kind == "sd15-lcm" else "PNDMScheduler"],
    }
    scheduler = {
        "_class_name": index["scheduler"][1],
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
    }
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    if with_vae_and_text_encoder:
        vae = vae_config(size)
        _save(
            folder / "vae",
            vae,
            "config.json",
            "diffusion_pytorch_model.safetensors",
            _random_tensors(vae_shapes(vae), seed + 1, dtype, statistics),
        )
        clip = clip_config(size)
        _save(
            folder / "text_encoder",
            clip,
            "config.json",
            "model.safetensors",
            _random_tensors(clip_shapes(clip), seed + 2, dtype, statistics),
        )
        index["vae"] = ["diffusers", "AutoencoderKL"]
        index["text_encoder"] = ["transformers", "CLIPTextModel"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder
