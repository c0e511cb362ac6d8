"""Decide from config.json (+ the weights header) whether a UNet is one unetbot supports.

Supported kinds share SD1.5's block structure: `sd15`, `sd15-inpaint` (9 input channels) and
`sd15-lcm` (a `time_cond_proj_dim` guidance embedding). Everything else (SD2, SDXL, other
architectures) is `unsupported` with a reason a maintainer can act on. Classification reads only
small files, so the bot can run it on Hub repos before downloading any weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from engine.source.config_schema import FOREIGN_FIELDS, UnetConfig, check_unet_config


class ModelKind(StrEnum):
    """What a UNet is; the string value is what manifests, cards and metadata record."""

    SD15 = "sd15"
    SD15_INPAINT = "sd15-inpaint"
    SD15_LCM = "sd15-lcm"
    UNSUPPORTED = "unsupported"


SUPPORTED_KINDS = (ModelKind.SD15, ModelKind.SD15_INPAINT, ModelKind.SD15_LCM)
_DOWN_TYPES = {"CrossAttnDownBlock2D", "DownBlock2D"}
_UP_TYPES = {"CrossAttnUpBlock2D", "UpBlock2D"}
_FAMILIES = {1024: "SD2", 2048: "SDXL", 1280: "SDXL refiner/other"}


@dataclass(frozen=True)
class Classification:
    kind: ModelKind
    reason: str

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED_KINDS

    @property
    def is_lcm(self) -> bool:
        """An LCM-distilled UNet: carries the guidance embedding `cond_proj`."""
        return self.kind is ModelKind.SD15_LCM


def _unsupported(reason: str) -> Classification:
    return Classification(ModelKind.UNSUPPORTED, reason)


def classify_unet(
    config: Mapping,
    weight_shapes: Mapping[str, tuple[int, ...]] | None = None,
    origin: str = "unet/config.json",
) -> Classification:
    """Classify a diffusers UNet config; `weight_shapes` (diffusers names) cross-checks it.

    A config whose fields have the wrong type, length or an absurd value raises `BadConfig`
    (engine.source.config_schema): that is malformed input, not another architecture."""
    cfg = check_unet_config(config, origin)
    reason = _unsupported_reason(cfg)
    if reason:
        return _unsupported(reason)
    lcm = cfg.time_cond_proj_dim is not None
    kind = (
        ModelKind.SD15_INPAINT
        if cfg.in_channels == 9
        else ModelKind.SD15_LCM
        if lcm
        else ModelKind.SD15
    )
    if weight_shapes is not None:
        mismatch = _check_weights(cfg, weight_shapes, lcm)
        if mismatch:
            return _unsupported(mismatch)
    reasons = {
        ModelKind.SD15: f"SD1.5 UNet (cross_attention_dim {cfg.cross_attention_dim})",
        ModelKind.SD15_INPAINT: "SD1.5 inpainting UNet (9 input channels)",
        ModelKind.SD15_LCM: f"SD1.5 LCM UNet (time_cond_proj_dim {cfg.time_cond_proj_dim})",
    }
    return Classification(kind, reasons[kind])


def _unsupported_reason(cfg: UnetConfig) -> str:
    """'' for the SD1.5 block structure, else what the model is instead."""
    if cfg.class_name != "UNet2DConditionModel":
        return f"class {cfg.class_name} is not UNet2DConditionModel"
    for key, _value in cfg.foreign:
        return f"{FOREIGN_FIELDS[key]}: not an SD1.5-family UNet (SDXL or other)"
    cross = cfg.cross_attention_dim
    if not isinstance(cross, int):
        return f"cross_attention_dim {list(cross)} per block is not SD1.5"
    if cross in _FAMILIES:
        return f"cross_attention_dim {cross} is {_FAMILIES[cross]}, not SD1.5 (768)"
    if cfg.use_linear_projection:
        return "use_linear_projection=True is SD2/SDXL, not SD1.5"
    tlpb = cfg.transformer_layers_per_block
    if (tlpb if isinstance(tlpb, int) else max(tlpb)) != 1:
        return f"transformer_layers_per_block {tlpb!r} is SDXL-style, not SD1.5"
    if not isinstance(cfg.attention_head_dim, int):
        return "attention_head_dim per block is SD2-style, not SD1.5"
    if not isinstance(cfg.layers_per_block, int):
        return "per-block layers_per_block is not SD1.5"
    down, up = cfg.down_block_types, cfg.up_block_types
    if set(down) - _DOWN_TYPES or set(up) - _UP_TYPES:
        return f"block types {list(down)} / {list(up)} are not the SD1.5 structure"
    if cfg.mid_block_type not in (None, "UNetMidBlock2DCrossAttn"):
        return f"mid_block_type {cfg.mid_block_type} is not SD1.5"
    for key, value, sd15 in cfg.exotic:
        if value != sd15:
            return f"{key} {value!r} is not SD1.5 (which has {sd15!r})"
    if cfg.out_channels != 4:
        return f"out_channels {cfg.out_channels} (SD1.5 has 4)"
    if cfg.in_channels == 9 and cfg.time_cond_proj_dim is not None:
        return "an inpainting LCM UNet is not a supported kind"
    if cfg.in_channels not in (4, 9):
        return f"in_channels {cfg.in_channels} (SD1.5 has 4, inpainting 9)"
    return ""


def _check_weights(cfg: UnetConfig, shapes: Mapping[str, tuple[int, ...]], lcm: bool) -> str:
    conv_in = shapes.get("conv_in.weight")
    if conv_in is None or len(conv_in) != 4:
        return "weights lack a 4-D conv_in.weight"
    if conv_in[1] != cfg.in_channels:
        return f"conv_in.weight has {conv_in[1]} input channels but config says {cfg.in_channels}"
    has_cond = "time_embedding.cond_proj.weight" in shapes
    if has_cond != lcm:
        return "weights and config disagree about the LCM cond_proj embedding"
    return ""
