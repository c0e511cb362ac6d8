"""Bidirectional diffusers <-> original (LDM) tensor-name maps, derived from config.json.

The map is data: a table of modules (diffusers prefix, original prefix, kind) built from the
config's block structure, plus per-kind leaf renames. This replaces diffusers' ordered string
replacements hard-coded to 4 blocks x 2 layers: it is right for SD1.5 and for any
UNet2DConditionModel / AutoencoderKL with the same block types, whatever `layers_per_block` or
the number of blocks. Every key must map; an unknown key or a missing module is an error naming
it, never a silent drop. Facts: ../shared/reference/formats.md section 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.errors import MissingKey, UnknownKey
from engine.source.config_schema import check_unet_config, check_vae_config

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

# LCM guidance embedding: no consumer has a name for it (formats.md section 3). unetbot keeps it
# under this original-side name, which stable-diffusion.cpp already lists as ignored
# (model.cpp), so it costs other runtimes nothing; `engine.lcm` restores it for diffusers.
LCM_COND_PROJ_DIFFUSERS = "time_embedding.cond_proj.weight"
LCM_COND_PROJ_ORIGINAL = UNET_PREFIX + "time_embedding.cond_proj.weight"

_UNET_RESNET_LEAVES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET_LEAVES = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}
# VAE mid-block attention: diffusers Linear (C, C) <-> original 1x1 conv (C, C, 1, 1).
_VAE_ATTN_LEAVES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_VAE_ATTN_LEGACY = {"query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_VAE_ATTN_CONV_LEAVES = {"q", "k", "v", "proj_out"}

_PARAMS = ("weight", "bias")


@dataclass(frozen=True)
class Module:
    """One module's place on both sides and the leaves it must have."""

    diffusers: str
    original: str
    kind: str  # "plain" | "unet_resnet" | "vae_resnet" | "vae_attention" | "attention"
    required: tuple[str, ...] = _PARAMS


@dataclass
class KeyMap:
    """A component's map between diffusers names and original names (prefix included)."""

    component: str
    prefix: str
    modules: list[Module]
    # A diffusers-side level some files omit: transformers 5 saves CLIPTextModel without the
    # `text_model.` level that transformers 4 files have (formats.md section 9); both load.
    optional_level: str = ""
    _by_diffusers: dict[str, Module] = field(init=False, repr=False)
    _by_original: dict[str, Module] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_diffusers = {m.diffusers: m for m in self.modules}
        self._by_original = {m.original: m for m in self.modules}

    def canonical(self, key: str) -> str:
        """`key` with the optional level restored where the module table needs it."""
        if self.optional_level and not key.startswith(self.optional_level):
            try:
                _lookup(key, self._by_diffusers, self.component)
            except UnknownKey:
                return self.optional_level + key
        return key

    def to_original(self, key: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """Original name and shape for diffusers `key`; UnknownKey if it has no place."""
        try:
            module, leaf = _lookup(self.canonical(key), self._by_diffusers, self.component)
        except UnknownKey:
            raise UnknownKey(
                f"{self.component}: tensor {key!r} has no place in the key map"
            ) from None
        new_leaf, new_shape = _leaf_to_original(module.kind, leaf, shape)
        return f"{self.prefix}{module.original}.{new_leaf}", new_shape

    def to_diffusers(self, key: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """Diffusers name and shape for original `key` (prefix included)."""
        if not key.startswith(self.prefix):
            raise UnknownKey(f"{self.component}: {key!r} lacks the prefix {self.prefix!r}")
        bare = key[len(self.prefix) :]
        module, leaf = _lookup(bare, self._by_original, self.component)
        new_leaf, new_shape = _leaf_to_diffusers(module.kind, leaf, shape)
        return f"{module.diffusers}.{new_leaf}", new_shape

    def check_complete(self, diffusers_keys: set[str]) -> None:
        """Raise MissingKey naming the first module leaf the weights lack."""
        diffusers_keys = {self.canonical(k) for k in diffusers_keys}
        for m in self.modules:
            for leaf in m.required:
                if f"{m.diffusers}.{leaf}" not in diffusers_keys:
                    raise MissingKey(f"{self.component}: weights lack {m.diffusers}.{leaf}")


def _lookup(key: str, table: dict[str, Module], component: str) -> tuple[Module, str]:
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = table.get(".".join(parts[:i]))
        if module is not None:
            return module, ".".join(parts[i:])
    raise UnknownKey(f"{component}: tensor {key!r} has no place in the key map")


def _rename_first(leaf: str, table: dict[str, str], kind: str) -> str:
    for src, dst in table.items():
        if leaf.startswith(src + "."):
            return dst + leaf[len(src) :]
    raise UnknownKey(f"{kind}: leaf {leaf!r} is not a known parameter")


def _leaf_to_original(kind: str, leaf: str, shape: tuple[int, ...]):
    if kind == "unet_resnet":
        return _rename_first(leaf, _UNET_RESNET_LEAVES, kind), shape
    if kind == "vae_resnet":
        return _rename_first(leaf, _VAE_RESNET_LEAVES, kind), shape
    if kind == "vae_attention":
        new = _rename_first(leaf, {**_VAE_ATTN_LEAVES, **_VAE_ATTN_LEGACY}, kind)
        if new.split(".")[0] in _VAE_ATTN_CONV_LEAVES and new.endswith("weight"):
            return new, (*shape, 1, 1) if len(shape) == 2 else shape
        return new, shape
    return leaf, shape


def _leaf_to_diffusers(kind: str, leaf: str, shape: tuple[int, ...]):
    if kind == "unet_resnet":
        return _rename_first(leaf, _invert(_UNET_RESNET_LEAVES), kind), shape
    if kind == "vae_resnet":
        return _rename_first(leaf, _invert(_VAE_RESNET_LEAVES), kind), shape
    if kind == "vae_attention":
        new = _rename_first(leaf, _invert(_VAE_ATTN_LEAVES), kind)
        if leaf.split(".")[0] in _VAE_ATTN_CONV_LEAVES and leaf.endswith("weight"):
            return new, shape[:2] if len(shape) == 4 else shape
        return new, shape
    return leaf, shape


def _invert(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


def _resnet_required(leaves: dict[str, str], optional: str) -> tuple[str, ...]:
    return tuple(f"{k}.{p}" for k in leaves if k != optional for p in _PARAMS)


# ------------------------------------------------------------------ UNet


def unet_keymap(config: Mapping) -> KeyMap:
    """The UNet map for a UNet2DConditionModel config of the SD1.5 block structure.

    The config is type-checked first (engine.source.config_schema: BadConfig for wrong types or
    absurd sizes), so the map has a bounded number of modules whatever the file says."""
    cfg = check_unet_config(config)
    layers = cfg.layers_per_block
    if not isinstance(layers, int):
        raise UnknownKey(f"unet: layers_per_block {layers!r} (per-block lists are not supported)")
    per = layers + 1
    down_types = cfg.down_block_types
    up_types = cfg.up_block_types
    resnet_req = _resnet_required(_UNET_RESNET_LEAVES, "conv_shortcut")
    attn_req = ("norm.weight", "norm.bias", "proj_in.weight", "proj_out.weight")
    mods = [
        Module("time_embedding.linear_1", "time_embed.0", "plain"),
        Module("time_embedding.linear_2", "time_embed.2", "plain"),
        Module("conv_in", "input_blocks.0.0", "plain"),
        Module("conv_norm_out", "out.0", "plain"),
        Module("conv_out", "out.2", "plain"),
        Module("mid_block.resnets.0", "middle_block.0", "unet_resnet", resnet_req),
        Module("mid_block.attentions.0", "middle_block.1", "attention", attn_req),
        Module("mid_block.resnets.1", "middle_block.2", "unet_resnet", resnet_req),
    ]
    if cfg.time_cond_proj_dim is not None:
        mods.append(
            Module("time_embedding.cond_proj", "time_embedding.cond_proj", "plain", ("weight",))
        )
    for i, block_type in enumerate(down_types):
        for j in range(layers):
            n = per * i + j + 1
            mods.append(
                Module(
                    f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0", "unet_resnet", resnet_req
                )
            )
            if block_type.startswith("CrossAttn"):
                mods.append(
                    Module(
                        f"down_blocks.{i}.attentions.{j}",
                        f"input_blocks.{n}.1",
                        "attention",
                        attn_req,
                    )
                )
        if i < len(down_types) - 1:
            mods.append(
                Module(
                    f"down_blocks.{i}.downsamplers.0.conv",
                    f"input_blocks.{per * (i + 1)}.0.op",
                    "plain",
                )
            )
    for i, block_type in enumerate(up_types):
        has_attn = block_type.startswith("CrossAttn")
        for j in range(per):
            n = per * i + j
            mods.append(
                Module(
                    f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0", "unet_resnet", resnet_req
                )
            )
            if has_attn:
                mods.append(
                    Module(
                        f"up_blocks.{i}.attentions.{j}",
                        f"output_blocks.{n}.1",
                        "attention",
                        attn_req,
                    )
                )
        if i < len(up_types) - 1:
            slot = 2 if has_attn else 1
            mods.append(
                Module(
                    f"up_blocks.{i}.upsamplers.0",
                    f"output_blocks.{per * i + layers}.{slot}",
                    "plain",
                    ("conv.weight", "conv.bias"),
                )
            )
    return KeyMap("unet", UNET_PREFIX, mods)


# ------------------------------------------------------------------ VAE


def vae_keymap(config: Mapping) -> KeyMap:
    """The AutoencoderKL map (first_stage_model.*) for the SD VAE block structure."""
    cfg = check_vae_config(config)
    layers = cfg.layers_per_block
    n_blocks = cfg.blocks
    resnet_req = _resnet_required(_VAE_RESNET_LEAVES, "conv_shortcut")
    mods = [
        Module("quant_conv", "quant_conv", "plain"),
        Module("post_quant_conv", "post_quant_conv", "plain"),
    ]
    for side in ("encoder", "decoder"):
        mods += [
            Module(f"{side}.conv_in", f"{side}.conv_in", "plain"),
            Module(f"{side}.conv_norm_out", f"{side}.norm_out", "plain"),
            Module(f"{side}.conv_out", f"{side}.conv_out", "plain"),
            Module(f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", "vae_resnet", resnet_req),
            Module(f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", "vae_resnet", resnet_req),
            Module(f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", "vae_attention", ()),
        ]
    for i in range(n_blocks):
        for j in range(layers):
            mods.append(
                Module(
                    f"encoder.down_blocks.{i}.resnets.{j}",
                    f"encoder.down.{i}.block.{j}",
                    "vae_resnet",
                    resnet_req,
                )
            )
        if i < n_blocks - 1:
            mods.append(
                Module(
                    f"encoder.down_blocks.{i}.downsamplers.0.conv",
                    f"encoder.down.{i}.downsample.conv",
                    "plain",
                )
            )
        up = n_blocks - 1 - i
        for j in range(layers + 1):
            mods.append(
                Module(
                    f"decoder.up_blocks.{i}.resnets.{j}",
                    f"decoder.up.{up}.block.{j}",
                    "vae_resnet",
                    resnet_req,
                )
            )
        if i < n_blocks - 1:
            mods.append(
                Module(
                    f"decoder.up_blocks.{i}.upsamplers.0.conv",
                    f"decoder.up.{up}.upsample.conv",
                    "plain",
                )
            )
    return KeyMap("vae", VAE_PREFIX, mods)


# ------------------------------------------------------------------ CLIP text encoder


_CLIP_LAYER_MODULES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "layer_norm1",
    "mlp.fc1",
    "mlp.fc2",
    "layer_norm2",
)


def clip_keymap(num_layers: int, with_projection: bool = False) -> KeyMap:
    """CLIPTextModel(WithProjection) under `cond_stage_model.transformer.`: transformers names
    with the `text_model.` level the original checkpoint always has (SD's FrozenCLIPEmbedder
    holds a transformers CLIPTextModel), whichever transformers version wrote the source.

    `text_projection.weight` (CLIPTextModelWithProjection only) keeps its transformers place,
    `cond_stage_model.transformer.text_projection.weight`, where ComfyUI's CLIP loader reads
    it (comfy/clip_model.py CLIPTextModel.text_projection)."""
    weight = ("weight",)
    mods = [
        Module(f"text_model.embeddings.{e}", f"text_model.embeddings.{e}", "plain", weight)
        for e in ("token_embedding", "position_embedding")
    ]
    for i in range(num_layers):
        for leaf in _CLIP_LAYER_MODULES:
            name = f"text_model.encoder.layers.{i}.{leaf}"
            mods.append(Module(name, name, "plain"))
    mods.append(Module("text_model.final_layer_norm", "text_model.final_layer_norm", "plain"))
    if with_projection:
        mods.append(Module("text_projection", "text_projection", "plain", weight))
    return KeyMap("text_encoder", CLIP_PREFIX, mods, optional_level="text_model.")


def clip_layers_in(names: Iterable[str]) -> int:
    """Number of encoder layers named in original-format CLIP keys (for the reverse path,
    which has no text encoder config)."""
    layers = [
        int(m.group(1))
        for n in names
        if (m := re.match(re.escape(CLIP_PREFIX) + r"text_model\.encoder\.layers\.(\d{1,4})\.", n))
    ]
    return max(layers) + 1 if layers else 0
