"""Consumer rules a GGUF must meet to load in ComfyUI-GGUF, stable-diffusion.cpp and diffusers.

Checked on the file as read back by `gguf.GGUFReader`, independently of how it was written.
Sources of each rule (read in those projects' loaders and checked by running them):
- ComfyUI-GGUF `loader.py`: `general.architecture` must be a known string (`sd1`) or absent;
  names with or without `model.diffusion_model.`; its tools allow names up to 127 characters.
- stable-diffusion.cpp `model.cpp`: natural shapes only; missing tensors and wrong shapes are
  errors; SD1 is detected only from `cond_stage_model.transformer.text_model.*` in the same file
  (full checkpoints); names up to 160 characters; reads F32/F16/Q8_0/Q5_x/Q4_x.
- diffusers `quantizers/gguf/utils.py` (`_replace_with_gguf_linear`): only `nn.Linear` weights
  may be quantized; every other tensor must be F16/F32 (BF16 counts as quantized).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.keymap import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

ARCHITECTURE = "sd1"
MAX_NAME = 127  # the tightest of the three consumers (ComfyUI-GGUF's tools)
PLAIN_TYPES = {"F16", "F32"}
QUANT_TYPES = {"Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"}
BLOCK = 32  # all supported quant types use 32-element blocks
_NEVER_QUANTIZED = ("time_embed.", "time_embedding.", "label_emb", "add_embedding")


def may_quantize(name: str, shape: tuple[int, ...]) -> bool:
    """True for UNet Linear weights outside the time embedding (the only tensors all three
    consumers accept quantized)."""
    if not name.startswith(UNET_PREFIX) or not name.endswith(".weight") or len(shape) != 2:
        return False
    bare = name[len(UNET_PREFIX) :]
    return not bare.startswith(_NEVER_QUANTIZED) and "embedding" not in bare


def check_gguf(
    fields: Mapping[str, object],
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    expected: Mapping[str, tuple[int, ...]],
    full: bool,
) -> list[str]:
    """Every rule violation of a GGUF (`tensors`: name -> (type name, natural shape)).

    `expected` is the original-format name -> shape set the file must hold exactly.
    """
    problems: list[str] = []
    arch = fields.get("general.architecture")
    if arch != ARCHITECTURE:
        problems.append(f"general.architecture is {arch!r}, ComfyUI-GGUF needs {ARCHITECTURE!r}")
    for key in ("general.file_type", "general.quantization_version"):
        if key not in fields:
            problems.append(f"missing {key}")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing tensors (stable-diffusion.cpp errors on these): {missing[:5]}")
    if extra:
        problems.append(f"unexpected tensors: {extra[:5]}")
    prefixes = (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX) if full else (UNET_PREFIX,)
    for name, (ggml_type, shape) in tensors.items():
        if not name.startswith(prefixes):
            problems.append(f"{name}: name outside {prefixes}")
        if len(name) > MAX_NAME:
            problems.append(f"{name}: {len(name)} characters > {MAX_NAME}")
        if name in expected and tuple(expected[name]) != tuple(shape):
            problems.append(f"{name}: shape {shape} != natural shape {expected[name]}")
        if ggml_type in QUANT_TYPES:
            if not may_quantize(name, shape):
                problems.append(f"{name}: {ggml_type} on a tensor diffusers/sd.cpp need in F16/F32")
            elif shape[-1] % BLOCK:
                problems.append(f"{name}: row {shape[-1]} not a multiple of {BLOCK}")
        elif ggml_type not in PLAIN_TYPES:
            problems.append(f"{name}: type {ggml_type} is not read by all three consumers")
    if full and not any(n.startswith(CLIP_PREFIX + "text_model.") for n in tensors):
        problems.append("full checkpoint lacks the CLIP text encoder sd.cpp detects SD1 from")
    return problems
