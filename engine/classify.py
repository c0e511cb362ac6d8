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


class ModelKind(StrEnum):
    """What a UNet is; the string value is what manifests, cards and metadata record."""

    SD15 = "sd15"
    SD15_INPAINT = "sd15-inpaint"
    SD15_LCM = "sd15-lcm"
    UNSUPPORTED = "unsupported"


SUPPORTED_KINDS = (ModelKind.SD15, ModelKind.SD15_INPAINT, ModelKind.SD15_LCM)
_DOWN_TYPES = {"CrossAttnDownBlock2D", "DownBlock2D"}
_UP_TYPES = {"CrossAttnUpBlock2D", "UpBlock2D"}
# Config fields that add modules the SD1.5 key map has no place for; each names a family.
_FOREIGN_FIELDS = {
    "addition_embed_type": "SDXL-style added conditioning (addition_embed_type)",
    "class_embed_type": "class embedding (class_embed_type)",
    "num_class_embeds": "class embedding (num_class_embeds)",
    "encoder_hid_dim": "encoder hidden projection (encoder_hid_dim)",
    "encoder_hid_dim_type": "encoder hidden projection (encoder_hid_dim_type)",
}


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
    config: Mapping, weight_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> Classification:
    """Classify a diffusers UNet config; `weight_shapes` (diffusers names) cross-checks it."""
    cls = config.get("_class_name", "UNet2DConditionModel")
    if cls != "UNet2DConditionModel":
        return _unsupported(f"class {cls} is not UNet2DConditionModel")
    for key, family in _FOREIGN_FIELDS.items():
        if config.get(key) is not None:
            return _unsupported(f"{family}: not an SD1.5-family UNet (SDXL or other)")
    cross = config.get("cross_attention_dim", 1280)
    if not isinstance(cross, int):
        return _unsupported(f"cross_attention_dim {cross!r} per block is not SD1.5")
    if cross in (1024, 2048, 1280):
        family = {1024: "SD2", 2048: "SDXL", 1280: "SDXL refiner/other"}[cross]
        return _unsupported(f"cross_attention_dim {cross} is {family}, not SD1.5 (768)")
    if config.get("use_linear_projection"):
        return _unsupported("use_linear_projection=True is SD2/SDXL, not SD1.5")
    tlpb = config.get("transformer_layers_per_block", 1)
    if (tlpb if isinstance(tlpb, int) else max(tlpb)) != 1:
        return _unsupported(f"transformer_layers_per_block {tlpb!r} is SDXL-style, not SD1.5")
    if not isinstance(config.get("attention_head_dim", 8), int):
        return _unsupported("attention_head_dim per block is SD2-style, not SD1.5")
    if not isinstance(config.get("layers_per_block", 2), int):
        return _unsupported("per-block layers_per_block is not SD1.5")
    down, up = config.get("down_block_types", []), config.get("up_block_types", [])
    if not down or set(down) - _DOWN_TYPES or set(up) - _UP_TYPES or len(down) != len(up):
        return _unsupported(f"block types {down} / {up} are not the SD1.5 structure")
    mid = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid not in (None, "UNetMidBlock2DCrossAttn"):
        return _unsupported(f"mid_block_type {mid} is not SD1.5")
    if config.get("time_embedding_type", "positional") != "positional":
        return _unsupported("time_embedding_type is not positional")
    if config.get("out_channels", 4) != 4:
        return _unsupported(f"out_channels {config.get('out_channels')} (SD1.5 has 4)")
    in_ch = config.get("in_channels", 4)
    lcm = bool(config.get("time_cond_proj_dim"))
    if in_ch == 9 and lcm:
        return _unsupported("an inpainting LCM UNet is not a supported kind")
    if in_ch not in (4, 9):
        return _unsupported(f"in_channels {in_ch} (SD1.5 has 4, inpainting 9)")
    kind = ModelKind.SD15_INPAINT if in_ch == 9 else ModelKind.SD15_LCM if lcm else ModelKind.SD15
    if weight_shapes is not None:
        mismatch = _check_weights(config, weight_shapes, lcm)
        if mismatch:
            return _unsupported(mismatch)
    cond_dim = config.get("time_cond_proj_dim")
    reasons = {
        ModelKind.SD15: f"SD1.5 UNet (cross_attention_dim {cross})",
        ModelKind.SD15_INPAINT: "SD1.5 inpainting UNet (9 input channels)",
        ModelKind.SD15_LCM: f"SD1.5 LCM UNet (time_cond_proj_dim {cond_dim})",
    }
    return Classification(kind, reasons[kind])


def _check_weights(config: Mapping, shapes: Mapping[str, tuple[int, ...]], lcm: bool) -> str:
    conv_in = shapes.get("conv_in.weight")
    if conv_in is None or len(conv_in) != 4:
        return "weights lack a 4-D conv_in.weight"
    if conv_in[1] != config.get("in_channels", 4):
        expected = config.get("in_channels", 4)
        return f"conv_in.weight has {conv_in[1]} input channels but config says {expected}"
    has_cond = "time_embedding.cond_proj.weight" in shapes
    if has_cond != lcm:
        return "weights and config disagree about the LCM cond_proj embedding"
    return ""
