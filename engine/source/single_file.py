"""Single-file SD1.5 checkpoints (Civitai-style uploads: one original-format `*.safetensors` or
`*.ckpt` at a repo root, no `model_index.json`), recognised from the key set and shapes alone.

The header (names, dtypes, shapes; a range read on the Hub, never the weights) decides:

* UNet tensors `model.diffusion_model.*` must be exactly SD1.5's (engine.source.checkpoint_match
  against SD1.5's UNet config, shipped as data in `sd15_configs.json`), with two shape-derived
  variants: an inpainting UNet (9 input channels) and an LCM UNet, recognised when the guidance
  embedding `time_embedding.cond_proj.weight` is present (its width is `time_cond_proj_dim`);
* `first_stage_model.*` (VAE) and `cond_stage_model.transformer.*` (CLIP) together make it a full
  checkpoint; their shapes are checked against SD1.5's VAE and text encoder configs when the
  diffusers folder is opened (engine.source.folder);
* left out, each with its reason: the EMA copy (`model_ema.*`), CLIP's `position_ids` buffer and
  anything under no component prefix (noise-schedule buffers such as `alphas_cumprod`).

Anything else (an SD2/SDXL file, a LoRA, a UNet of other shapes) is UnsupportedArchitecture
(exit 3) naming the first mismatch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from engine.errors import UnsupportedArchitecture
from engine.source.checkpoint_match import match_original_checkpoint
from engine.source.classify import ModelKind, classify_unet
from engine.source.keymap import CLIP_PREFIX, LCM_COND_PROJ_ORIGINAL, UNET_PREFIX, VAE_PREFIX

TensorTable = Mapping[str, tuple[str, Sequence[int]]]
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
_EMA_PREFIX = "model_ema."
_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"


@cache
def _sd15() -> dict:
    return json.loads(Path(__file__).with_name("sd15_configs.json").read_text())


def sd15_configs() -> dict[str, dict]:
    """SD1.5's unet / vae / text_encoder configs (a fresh copy)."""
    data = _sd15()
    return {k: copy.deepcopy(data[k]) for k in ("unet", "vae", "text_encoder")}


@dataclass(frozen=True)
class SingleFile:
    """What a single-file checkpoint holds, from its header."""

    filename: str
    contents: str  # "full" (UNet + VAE + CLIP) or "unet"
    kind: ModelKind
    configs: dict[str, dict]  # unet (+ vae, text_encoder when full) configs it is read with
    left_out: dict[str, str] = field(default_factory=dict)  # tensor name -> why

    @property
    def stem(self) -> str:
        name = Path(self.filename).name
        for suffix in CHECKPOINT_SUFFIXES:
            name = name.removesuffix(suffix)
        return name

    def notes(self) -> list[str]:
        """The left-out tensors, grouped by reason (for the manifest and the cards)."""
        counts: dict[str, int] = {}
        for why in self.left_out.values():
            counts[why] = counts.get(why, 0) + 1
        return [f"{self.filename}: left out {n} tensor(s): {why}" for why, n in counts.items()]


def _left_out(names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        if name.startswith(_EMA_PREFIX):
            out[name] = "the EMA copy (model_ema.*), not the weights consumers load"
        elif name.startswith(CLIP_PREFIX) and name.endswith("position_ids"):
            out[name] = "CLIP's position_ids buffer (0..76, rebuilt by every loader)"
        elif not name.startswith((UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX)):
            out[name] = "a buffer of no component (noise schedule or training state)"
    return out


def inspect_single_file(
    table: TensorTable, filename: str, configs: Mapping[str, dict] | None = None
) -> SingleFile:
    """Recognise an original-format checkpoint from its header table (see the module docstring);
    `configs` defaults to SD1.5's (tests pass a tiny model's)."""
    base = {k: copy.deepcopy(v) for k, v in (configs or sd15_configs()).items()}
    names = list(table)
    left_out = _left_out(names)
    kept = {n: table[n] for n in names if n not in left_out}
    if not any(n.startswith(UNET_PREFIX) for n in kept):
        raise UnsupportedArchitecture(f"{filename}: no original-format UNet tensors "
                                      f"({UNET_PREFIX}*); not an SD1.5 checkpoint")  # fmt: skip
    unet = base["unet"]
    conv_in = kept.get(_CONV_IN)
    if conv_in is not None and len(conv_in[1]) == 4:
        unet["in_channels"] = int(conv_in[1][1])
    cond_proj = kept.get(LCM_COND_PROJ_ORIGINAL)
    if cond_proj is not None and len(cond_proj[1]) == 2:
        unet["time_cond_proj_dim"] = int(cond_proj[1][1])
    unet_table = {n: e for n, e in kept.items() if n.startswith(UNET_PREFIX)}
    match = match_original_checkpoint(unet_table, unet, filename)
    if not match.matches:
        raise UnsupportedArchitecture(f"{match.reason}; not an SD1.5-family checkpoint")
    classification = classify_unet(unet)
    full = any(n.startswith(VAE_PREFIX) for n in kept) and any(
        n.startswith(CLIP_PREFIX) for n in kept
    )
    if not full:  # a lone VAE or CLIP part is left out too
        for n in kept:
            if n.startswith((VAE_PREFIX, CLIP_PREFIX)):
                left_out[n] = "a VAE or text encoder part without the other (no full checkpoint)"
    chosen = {"unet": unet}
    if full:
        chosen |= {"vae": base["vae"], "text_encoder": base["text_encoder"]}
    return SingleFile(filename, "full" if full else "unet", classification.kind, chosen, left_out)
