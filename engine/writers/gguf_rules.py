"""Consumer rules a GGUF must meet to load in ComfyUI-GGUF, stable-diffusion.cpp and diffusers
(and, at the end, the rules of the ComfyUI-GGUF-only files, which only ComfyUI-GGUF loads).

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

import math
from collections.abc import Mapping

from engine.source.keymap import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

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


def _header_problems(
    fields: Mapping[str, object],
    tensors: Mapping[str, object],
    expected: Mapping[str, tuple[int, ...]],
    why_missing: str,
) -> list[str]:
    """The rules both layouts share: architecture, type fields, exactly the expected names."""
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
        problems.append(f"missing tensors ({why_missing}): {missing[:5]}")
    if extra:
        problems.append(f"unexpected tensors: {extra[:5]}")
    return problems


def check_gguf(
    fields: Mapping[str, object],
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    expected: Mapping[str, tuple[int, ...]],
    full: bool,
) -> list[str]:
    """Every rule violation of a GGUF (`tensors`: name -> (type name, natural shape)).

    `expected` is the original-format name -> shape set the file must hold exactly.
    """
    problems = _header_problems(fields, tensors, expected, "stable-diffusion.cpp errors on these")
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


# ---------------------------------------------------------------- ComfyUI-GGUF-only files
# Checked independently of engine.writers.comfy_gguf (which writes them), from ComfyUI-GGUF 795e451:
# - loader.py `gguf_sd_loader`: with the prefix on any tensor, tensors lacking it are dropped;
#   `get_orig_shape` raises TypeError unless `comfy.gguf.orig_shape.<name>` is an INT32 array,
#   and the tensor is then used in that shape (F16/F32 by `view`, quantized ones by dequant.py
#   `dequantize`, which decodes blocks in storage order and reshapes);
# - dequant.py `dequantize_functions`: the block types it decodes (among those unetbot writes);
# - tools/lcpp.patch (`sd1`): only 2-D tensors named `*weight` are quantized, never the time
#   embedding, other embeddings, conv_in/conv_out (`input_blocks.0.0.weight`, `out.2.weight`);
#   tools/convert.py keeps tensors of <= 1024 values unquantized.
COMFY_ORIG_SHAPE = "comfy.gguf.orig_shape."
COMFY_READ_TYPES = PLAIN_TYPES | QUANT_TYPES
COMFY_SMALL = 1024
_COMFY_NEVER = ("time_embed.", "time_embedding.", "label_emb.", "add_embedding.")
_COMFY_NEVER += ("class_embedding.", "conv_in.", "conv_out.")
_COMFY_NEVER_NAMES = ("input_blocks.0.0.weight", "out.2.weight")


def may_quantize_comfy(name: str, natural: tuple[int, ...], stored: tuple[int, ...]) -> bool:
    """True for the UNet tensors ComfyUI-GGUF's own tools would quantize for `sd1`."""
    if not name.startswith(UNET_PREFIX) or not name.endswith("weight") or len(natural) < 2:
        return False
    bare = name[len(UNET_PREFIX) :]
    if bare in _COMFY_NEVER_NAMES or any(part in bare for part in _COMFY_NEVER):
        return False
    return math.prod(natural) > COMFY_SMALL and len(stored) == 2


def check_comfy_gguf(
    fields: Mapping[str, object],
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    orig_shapes: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
) -> list[str]:
    """Every rule violation of a ComfyUI-GGUF-only UNet GGUF (`tensors`: name -> (type, stored
    shape); `orig_shapes`: name -> natural shape from the INT32 `comfy.gguf.orig_shape.*`
    fields, already checked for their type; `expected`: name -> natural shape of the source)."""
    problems = _header_problems(fields, tensors, expected, "ComfyUI-GGUF's loader needs them")
    stray = sorted(set(orig_shapes) - set(tensors))
    if stray:
        problems.append(f"{COMFY_ORIG_SHAPE}* for tensors not in the file: {stray[:5]}")
    for name, (ggml_type, stored) in tensors.items():
        if not name.startswith(UNET_PREFIX):
            problems.append(f"{name}: no {UNET_PREFIX} prefix (ComfyUI-GGUF drops it)")
        if len(name) > MAX_NAME:
            problems.append(f"{name}: {len(name)} characters > {MAX_NAME}")
        natural = tuple(orig_shapes.get(name, stored))
        if name in expected and natural != tuple(expected[name]):
            problems.append(f"{name}: shape {natural} != natural shape {tuple(expected[name])}")
        if math.prod(natural) != math.prod(stored):
            problems.append(f"{name}: {COMFY_ORIG_SHAPE} {natural} does not hold {stored}")
        if ggml_type in QUANT_TYPES:
            if not may_quantize_comfy(name, natural, stored):
                problems.append(f"{name}: {ggml_type} where ComfyUI-GGUF's tools keep F16/F32")
            elif stored[-1] % BLOCK:
                problems.append(f"{name}: stored row {stored[-1]} not a multiple of {BLOCK}")
        elif ggml_type not in COMFY_READ_TYPES:
            problems.append(f"{name}: type {ggml_type} is not one ComfyUI-GGUF reads here")
    return problems
