"""config.json of a UNet, VAE or CLIP text encoder: every field unetbot uses, type-checked.

A config from the Hub decides how many modules the key map has, which shapes the weights must
have and what diffusers instantiates during validation, so each field is checked (type, list
length, bounds) before anything uses it, and a wrong one is a `BadConfig` naming the file and the
field. A missing field takes the default of the class that reads it (diffusers
`UNet2DConditionModel.__init__`, `AutoencoderKL.__init__`, transformers `CLIPTextConfig.__init__`),
which is how configs written by old diffusers (0.6-era: ~18 keys, no `time_cond_proj_dim`) load.

Bounds on structural numbers (why these): large enough for every SD1.5-family model and for the
SD2/SDXL configs the classifier must still recognise and name (SD1.5: 4 blocks of <= 1280
channels, 2 layers per block, cross-attention 768; SDXL: 2048), small enough that the derived
key map has at most a few thousand modules and every derived tensor size fits in int64 many
times over. They do not bound memory: every config-derived shape must then equal the weight
file's own (engine.source.expected_shapes), so a config can never claim more than the file holds.

| field | bound |
|---|---|
| number of blocks | 1..8 (SD1.5: 4) |
| channels, cross_attention_dim, attention_head_dim, time_cond_proj_dim | 1..8192 (SD1.5 <= 1280) |
| layers_per_block | 1..8 (SD1.5: 2) |
| transformer_layers_per_block | 1..64 (SD1.5: 1, SDXL: 10) |
| in/out/latent channels | 1..64 (SD1.5: 4, inpainting 9) |
| norm_num_groups | 1..1024, dividing every channel count (GroupNorm requires it) |
| CLIP layers / hidden / intermediate / positions / vocab | 1..64 / 8192 / 65536 / 4096 / 10^6 |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import BadConfig

MAX_BLOCKS = 8
MAX_WIDTH = 8192
MAX_LAYERS_PER_BLOCK = 8
MAX_TRANSFORMER_LAYERS = 64
MAX_IO_CHANNELS = 64
MAX_GROUPS = 1024
MAX_SAMPLE_SIZE = 4096
MAX_CLIP_LAYERS = 64
MAX_CLIP_INTERMEDIATE = 65536
MAX_CLIP_POSITIONS = 4096
MAX_CLIP_VOCAB = 1_000_000

_SD15_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
_SD15_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Fields:
    """Typed reads of one config mapping; every failure names the file and the field."""

    def __init__(self, config: Mapping, origin: str) -> None:
        if not isinstance(config, Mapping):
            raise BadConfig(f"{origin}: must be a JSON object")
        self.config, self.origin = config, origin

    def fail(self, key: str, expected: str) -> BadConfig:
        value = self.config.get(key)
        return BadConfig(f"{self.origin}: {key} must be {expected}, not {_show(value)}")

    def raw(self, key: str, default: object) -> object:
        value = self.config.get(key, default)
        return default if value is None and default is not None else value

    def int(self, key: str, default: int | None, low: int, high: int) -> int:
        value = self.raw(key, default)
        if not _is_int(value, low, high):
            raise self.fail(key, f"an integer in [{low}, {high}]")
        return value  # type: ignore[return-value]

    def opt_int(self, key: str, low: int, high: int) -> int | None:
        if self.config.get(key) is None:
            return None
        return self.int(key, None, low, high)

    def ints(self, key: str, default, low: int, high: int, length: int | None = None):
        """An int or a list of ints (per block); lists of the wrong length are refused."""
        value = self.raw(key, default)
        if _is_int(value, low, high):
            return value
        if isinstance(value, list | tuple) and value and all(_is_int(v, low, high) for v in value):
            if length is not None and len(value) != length:
                raise self.fail(key, f"a list of {length} values (one per block)")
            return tuple(value)
        raise self.fail(key, f"an integer in [{low}, {high}] or a non-empty list of them")

    def number(self, key: str, default: float) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "a number")
        return float(value)

    def bool(self, key: str, default: bool):
        """A bool; per-block lists of bools are kept as tuples (diffusers allows them)."""
        value = self.raw(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, list) and all(isinstance(v, bool) for v in value):
            return tuple(value) if any(value) else False
        raise self.fail(key, "true or false")

    def str(self, key: str, default: str | None) -> str | None:
        value = self.config.get(key, default)
        if value is None or (isinstance(value, str) and len(value) <= 200):
            return value
        raise self.fail(key, "a short string")

    def strs(self, key: str, default: tuple[str, ...], length: int | None) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and len(v) <= 200 for v in value
        ):
            raise self.fail(key, "a list of block type names")
        if length is not None and len(value) != length:
            raise self.fail(key, f"a list of {length} block types (one per block_out_channels)")
        return tuple(value)

    def widths(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self.raw(key, default)
        if (
            not isinstance(value, list | tuple)
            or not 1 <= len(value) <= MAX_BLOCKS
            or not all(_is_int(v, 1, MAX_WIDTH) for v in value)
        ):
            raise self.fail(key, f"a list of 1 to {MAX_BLOCKS} integers in [1, {MAX_WIDTH}]")
        return tuple(value)

    def groups(self, widths: tuple[int, ...], default: int) -> int:
        groups = self.int("norm_num_groups", default, 1, MAX_GROUPS)
        if any(w % groups for w in widths):
            raise self.fail("norm_num_groups", f"a divisor of every channel count {widths}")
        return groups


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# ------------------------------------------------------------------ UNet


@dataclass(frozen=True)
class UnetConfig:
    """The fields of a UNet2DConditionModel config that decide its kind, modules and shapes.

    Per-block fields keep the list form SD2/SDXL configs use (tuples) so the classifier can name
    them; the SD1.5 family has plain ints there."""

    class_name: str
    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int | tuple[int, ...]
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    mid_block_type: str | None
    cross_attention_dim: int | tuple[int, ...]
    attention_head_dim: int | tuple[int, ...]
    transformer_layers_per_block: int | tuple[int, ...]
    norm_num_groups: int
    time_cond_proj_dim: int | None
    use_linear_projection: bool
    # Fields whose non-default values change modules or shapes outside the SD1.5 family:
    # name -> the (checked) value, compared with its SD1.5 default by the classifier.
    exotic: tuple[tuple[str, object, object], ...]
    foreign: tuple[tuple[str, object], ...]  # SDXL/other conditioning fields that are set

    @property
    def blocks(self) -> int:
        return len(self.block_out_channels)


# Config fields that add modules the SD1.5 key map has no place for; each names a family.
FOREIGN_FIELDS = {
    "addition_embed_type": "SDXL-style added conditioning (addition_embed_type)",
    "class_embed_type": "class embedding (class_embed_type)",
    "num_class_embeds": "class embedding (num_class_embeds)",
    "encoder_hid_dim": "encoder hidden projection (encoder_hid_dim)",
    "encoder_hid_dim_type": "encoder hidden projection (encoder_hid_dim_type)",
    "addition_time_embed_dim": "SDXL-style added time embedding (addition_time_embed_dim)",
    "projection_class_embeddings_input_dim": "class embedding projection (SDXL-style)",
}


def _foreign_value(fields: _Fields, key: str) -> object:
    value = fields.config.get(key)
    if value is None or isinstance(value, str) or _is_int(value, 0, 2**31):
        return value
    raise fields.fail(key, "null, a string or an integer")


def check_unet_config(config: Mapping, origin: str = "unet/config.json") -> UnetConfig:
    """Type-check a UNet2DConditionModel config (diffusers defaults for missing fields)."""
    f = _Fields(config, origin)
    class_name = f.str("_class_name", "UNet2DConditionModel") or "UNet2DConditionModel"
    widths = f.widths("block_out_channels", (320, 640, 1280, 1280))
    n = len(widths)
    exotic = (
        ("only_cross_attention", f.bool("only_cross_attention", False), False),
        ("dual_cross_attention", f.bool("dual_cross_attention", False), False),
        ("mid_block_only_cross_attention", f.bool("mid_block_only_cross_attention", False), False),
        ("class_embeddings_concat", f.bool("class_embeddings_concat", False), False),
        ("resnet_time_scale_shift", f.str("resnet_time_scale_shift", "default"), "default"),
        ("attention_type", f.str("attention_type", "default"), "default"),
        ("time_embedding_type", f.str("time_embedding_type", "positional"), "positional"),
        ("time_embedding_dim", f.opt_int("time_embedding_dim", 1, MAX_WIDTH * 4), None),
        ("time_embedding_act_fn", f.str("time_embedding_act_fn", None), None),
        ("timestep_post_act", f.str("timestep_post_act", None), None),
        ("cross_attention_norm", f.str("cross_attention_norm", None), None),
        ("conv_in_kernel", f.int("conv_in_kernel", 3, 1, 7), 3),
        ("conv_out_kernel", f.int("conv_out_kernel", 3, 1, 7), 3),
        ("num_attention_heads", f.ints("num_attention_heads", None, 1, MAX_WIDTH, n)
         if config.get("num_attention_heads") is not None else None, None),
        ("reverse_transformer_layers_per_block",
         None if config.get("reverse_transformer_layers_per_block") is None else "set", None),
    )  # fmt: skip
    # Fields with no effect on modules or shapes: checked so diffusers can instantiate them.
    f.bool("center_input_sample", False)
    f.bool("flip_sin_to_cos", True)
    f.bool("upcast_attention", False)
    f.int("freq_shift", 0, 0, 1 << 16)
    f.int("downsample_padding", 1, 0, 8)
    f.number("mid_block_scale_factor", 1.0)
    f.number("norm_eps", 1e-5)
    f.number("dropout", 0.0)
    f.number("resnet_out_scale_factor", 1.0)
    f.bool("resnet_skip_time_act", False)
    f.str("act_fn", "silu")
    sample = config.get("sample_size")
    if sample is not None:
        f.ints("sample_size", None, 1, MAX_SAMPLE_SIZE, None)
    tlpb = config.get("transformer_layers_per_block", 1)
    if isinstance(tlpb, list) and tlpb and all(isinstance(x, list) for x in tlpb):
        # SDXL-refiner style nested per-layer lists: checked element-wise, kept flattened.
        for row in tlpb:
            _Fields({"transformer_layers_per_block": row}, origin).ints(
                "transformer_layers_per_block", 1, 1, MAX_TRANSFORMER_LAYERS
            )
        transformer_layers = tuple(max(row) for row in tlpb)
    else:
        transformer_layers = f.ints("transformer_layers_per_block", 1, 1, MAX_TRANSFORMER_LAYERS, n)
    return UnetConfig(
        class_name=class_name,
        in_channels=f.int("in_channels", 4, 1, MAX_IO_CHANNELS),
        out_channels=f.int("out_channels", 4, 1, MAX_IO_CHANNELS),
        block_out_channels=widths,
        layers_per_block=f.ints("layers_per_block", 2, 1, MAX_LAYERS_PER_BLOCK, n),
        down_block_types=f.strs("down_block_types", _SD15_DOWN, n),
        up_block_types=f.strs("up_block_types", _SD15_UP, n),
        mid_block_type=f.str("mid_block_type", "UNetMidBlock2DCrossAttn"),
        cross_attention_dim=f.ints("cross_attention_dim", 1280, 1, MAX_WIDTH, n),
        attention_head_dim=f.ints("attention_head_dim", 8, 1, MAX_WIDTH, n),
        transformer_layers_per_block=transformer_layers,
        norm_num_groups=f.groups(widths, 32),
        time_cond_proj_dim=f.opt_int("time_cond_proj_dim", 1, MAX_WIDTH),
        use_linear_projection=f.bool("use_linear_projection", False),
        exotic=exotic,
        foreign=tuple((k, v) for k in FOREIGN_FIELDS if (v := _foreign_value(f, k)) is not None),
    )


# ------------------------------------------------------------------ VAE


@dataclass(frozen=True)
class VaeConfig:
    class_name: str
    in_channels: int
    out_channels: int
    latent_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    use_quant_conv: bool
    use_post_quant_conv: bool
    mid_block_add_attention: bool

    @property
    def blocks(self) -> int:
        return len(self.block_out_channels)

    def unsupported_reason(self) -> str:
        """'' for the SD VAE structure (what `first_stage_model.*` holds), else why not."""
        if self.class_name != "AutoencoderKL":
            return f"{self.class_name} is not the SD VAE (AutoencoderKL)"
        if set(self.down_block_types) != {"DownEncoderBlock2D"} or set(self.up_block_types) != {
            "UpDecoderBlock2D"
        }:
            return f"block types {self.down_block_types} / {self.up_block_types} are not SD's"
        if not (self.use_quant_conv and self.use_post_quant_conv and self.mid_block_add_attention):
            return "an AutoencoderKL without quant convs or mid attention is not the SD VAE"
        return ""


def check_vae_config(config: Mapping, origin: str = "vae/config.json") -> VaeConfig:
    """Type-check an AutoencoderKL config (diffusers defaults for missing fields)."""
    f = _Fields(config, origin)
    widths = f.widths("block_out_channels", (64,))
    n = len(widths)
    f.number("scaling_factor", 0.18215)
    f.str("act_fn", "silu")
    f.groups(widths, 32)
    return VaeConfig(
        class_name=f.str("_class_name", "AutoencoderKL") or "AutoencoderKL",
        in_channels=f.int("in_channels", 3, 1, MAX_IO_CHANNELS),
        out_channels=f.int("out_channels", 3, 1, MAX_IO_CHANNELS),
        latent_channels=f.int("latent_channels", 4, 1, MAX_IO_CHANNELS),
        block_out_channels=widths,
        layers_per_block=f.int("layers_per_block", 1, 1, MAX_LAYERS_PER_BLOCK),
        down_block_types=f.strs("down_block_types", ("DownEncoderBlock2D",), n),
        up_block_types=f.strs("up_block_types", ("UpDecoderBlock2D",), n),
        use_quant_conv=f.bool("use_quant_conv", True),
        use_post_quant_conv=f.bool("use_post_quant_conv", True),
        mid_block_add_attention=f.bool("mid_block_add_attention", True),
    )


# ------------------------------------------------------------------ CLIP text encoder

CLIP_ARCHITECTURES = ("CLIPTextModel", "CLIPTextModelWithProjection")


@dataclass(frozen=True)
class ClipConfig:
    architecture: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    max_position_embeddings: int
    vocab_size: int
    projection_dim: int

    @property
    def with_projection(self) -> bool:
        return self.architecture == "CLIPTextModelWithProjection"

    def unsupported_reason(self) -> str:
        if self.architecture not in CLIP_ARCHITECTURES or self.model_type != "clip_text_model":
            return f"{self.architecture} ({self.model_type}) is not a CLIP text encoder"
        return ""


def check_clip_config(config: Mapping, origin: str = "text_encoder/config.json") -> ClipConfig:
    """Type-check a transformers CLIPTextConfig (its defaults for missing fields)."""
    f = _Fields(config, origin)
    architectures = f.raw("architectures", ["CLIPTextModel"])
    if (
        not isinstance(architectures, list)
        or len(architectures) != 1
        or not isinstance(architectures[0], str)
        or len(architectures[0]) > 200
    ):
        raise f.fail("architectures", "a list with one class name")
    architecture = architectures[0]
    hidden = f.int("hidden_size", 512, 1, MAX_WIDTH)
    heads = f.int("num_attention_heads", 8, 1, MAX_WIDTH)
    if hidden % heads:
        raise f.fail("num_attention_heads", f"a divisor of hidden_size {hidden}")
    f.number("layer_norm_eps", 1e-5)
    f.str("hidden_act", "quick_gelu")
    return ClipConfig(
        architecture=architecture,
        model_type=f.str("model_type", "clip_text_model") or "",
        hidden_size=hidden,
        intermediate_size=f.int("intermediate_size", 2048, 1, MAX_CLIP_INTERMEDIATE),
        num_hidden_layers=f.int("num_hidden_layers", 12, 1, MAX_CLIP_LAYERS),
        max_position_embeddings=f.int("max_position_embeddings", 77, 1, MAX_CLIP_POSITIONS),
        vocab_size=f.int("vocab_size", 49408, 1, MAX_CLIP_VOCAB),
        projection_dim=f.int("projection_dim", 512, 1, MAX_WIDTH),
    )
