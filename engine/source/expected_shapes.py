"""Every tensor name and shape a checked config implies, without torch.

`engine.source.folder` compares a component's weight headers with this, tensor by tensor, before any
output exists: an unknown name, a missing one or a shape the config does not give is an error
naming the tensor, so the key map never meets a surprise and diffusers never meets a shape
mismatch during validation. The arithmetic follows the classes that build these models
(diffusers `UNet2DConditionModel.__init__` with `get_down_block` / `get_up_block`, `ResnetBlock2D`,
`Transformer2DModel` + `BasicTransformerBlock` with non-linear projection and GEGLU,
`AutoencoderKL` + `Encoder`/`Decoder`, transformers `CLIPTextModel`), for the SD1.5 block
structure only (the classifier refuses everything else first); tests compare it with those
classes instantiated on the meta device for several configs.
"""

from __future__ import annotations

from engine.source.config_schema import ClipConfig, UnetConfig, VaeConfig

Shapes = dict[str, tuple[int, ...]]


def _param(out: Shapes, name: str, weight: tuple[int, ...], bias: bool = True) -> None:
    out[f"{name}.weight"] = weight
    if bias:
        out[f"{name}.bias"] = weight[:1]


def _norm(out: Shapes, name: str, channels: int) -> None:
    out[f"{name}.weight"] = (channels,)
    out[f"{name}.bias"] = (channels,)


def _conv(out: Shapes, name: str, c_out: int, c_in: int, k: int = 3) -> None:
    _param(out, name, (c_out, c_in, k, k))


def _unet_resnet(out: Shapes, name: str, c_in: int, c_out: int, temb: int) -> None:
    _norm(out, f"{name}.norm1", c_in)
    _conv(out, f"{name}.conv1", c_out, c_in)
    _param(out, f"{name}.time_emb_proj", (c_out, temb))
    _norm(out, f"{name}.norm2", c_out)
    _conv(out, f"{name}.conv2", c_out, c_out)
    if c_in != c_out:  # ResnetBlock2D: use_in_shortcut defaults to in != out
        _conv(out, f"{name}.conv_shortcut", c_out, c_in, 1)


def _transformer(out: Shapes, name: str, c: int, cross: int) -> None:
    """Transformer2DModel, one BasicTransformerBlock, conv projections, GEGLU feed-forward."""
    _norm(out, f"{name}.norm", c)
    _conv(out, f"{name}.proj_in", c, c, 1)
    block = f"{name}.transformer_blocks.0"
    for i, context in ((1, c), (2, cross)):
        _norm(out, f"{block}.norm{i}", c)
        attn = f"{block}.attn{i}"
        _param(out, f"{attn}.to_q", (c, c), bias=False)
        _param(out, f"{attn}.to_k", (c, context), bias=False)
        _param(out, f"{attn}.to_v", (c, context), bias=False)
        _param(out, f"{attn}.to_out.0", (c, c))
    _norm(out, f"{block}.norm3", c)
    _param(out, f"{block}.ff.net.0.proj", (8 * c, c))  # GEGLU: 2 x (4c)
    _param(out, f"{block}.ff.net.2", (c, 4 * c))
    _conv(out, f"{name}.proj_out", c, c, 1)


def unet_shapes(cfg: UnetConfig) -> Shapes:
    """Names and shapes of an SD1.5-family UNet2DConditionModel (diffusers names)."""
    assert isinstance(cfg.layers_per_block, int) and isinstance(cfg.cross_attention_dim, int)
    widths, layers, cross = cfg.block_out_channels, cfg.layers_per_block, cfg.cross_attention_dim
    c0, n = widths[0], len(widths)
    temb = 4 * c0
    out: Shapes = {}
    _conv(out, "conv_in", c0, cfg.in_channels)
    _param(out, "time_embedding.linear_1", (temb, c0))
    _param(out, "time_embedding.linear_2", (temb, temb))
    if cfg.time_cond_proj_dim is not None:
        _param(out, "time_embedding.cond_proj", (c0, cfg.time_cond_proj_dim), bias=False)
    c_prev = c0
    for i, block_type in enumerate(cfg.down_block_types):
        c = widths[i]
        for j in range(layers):
            _unet_resnet(out, f"down_blocks.{i}.resnets.{j}", c_prev if j == 0 else c, c, temb)
            if block_type.startswith("CrossAttn"):
                _transformer(out, f"down_blocks.{i}.attentions.{j}", c, cross)
        if i < n - 1:
            _conv(out, f"down_blocks.{i}.downsamplers.0.conv", c, c)
        c_prev = c
    c_mid = widths[-1]
    _unet_resnet(out, "mid_block.resnets.0", c_mid, c_mid, temb)
    _transformer(out, "mid_block.attentions.0", c_mid, cross)
    _unet_resnet(out, "mid_block.resnets.1", c_mid, c_mid, temb)
    reversed_widths = widths[::-1]
    prev_out = reversed_widths[0]
    for i, block_type in enumerate(cfg.up_block_types):
        c = reversed_widths[i]
        skip_from = reversed_widths[min(i + 1, n - 1)]
        for j in range(layers + 1):
            skip = skip_from if j == layers else c
            c_in = (prev_out if j == 0 else c) + skip
            _unet_resnet(out, f"up_blocks.{i}.resnets.{j}", c_in, c, temb)
            if block_type.startswith("CrossAttn"):
                _transformer(out, f"up_blocks.{i}.attentions.{j}", c, cross)
        if i < n - 1:
            _conv(out, f"up_blocks.{i}.upsamplers.0.conv", c, c)
        prev_out = c
    _norm(out, "conv_norm_out", c0)
    _conv(out, "conv_out", cfg.out_channels, c0)
    return out


def _vae_resnet(out: Shapes, name: str, c_in: int, c_out: int) -> None:
    _norm(out, f"{name}.norm1", c_in)
    _conv(out, f"{name}.conv1", c_out, c_in)
    _norm(out, f"{name}.norm2", c_out)
    _conv(out, f"{name}.conv2", c_out, c_out)
    if c_in != c_out:
        _conv(out, f"{name}.conv_shortcut", c_out, c_in, 1)


def _vae_mid(out: Shapes, side: str, c: int) -> None:
    _vae_resnet(out, f"{side}.mid_block.resnets.0", c, c)
    attn = f"{side}.mid_block.attentions.0"
    _norm(out, f"{attn}.group_norm", c)
    for leaf in ("to_q", "to_k", "to_v", "to_out.0"):
        _param(out, f"{attn}.{leaf}", (c, c))
    _vae_resnet(out, f"{side}.mid_block.resnets.1", c, c)


def vae_shapes(cfg: VaeConfig) -> Shapes:
    """Names and shapes of the SD AutoencoderKL (current diffusers attention names)."""
    widths, layers, latent = cfg.block_out_channels, cfg.layers_per_block, cfg.latent_channels
    n = len(widths)
    out: Shapes = {}
    _conv(out, "encoder.conv_in", widths[0], cfg.in_channels)
    c_prev = widths[0]
    for i, c in enumerate(widths):
        for j in range(layers):
            _vae_resnet(out, f"encoder.down_blocks.{i}.resnets.{j}", c_prev if j == 0 else c, c)
        if i < n - 1:
            _conv(out, f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c)
        c_prev = c
    _vae_mid(out, "encoder", widths[-1])
    _norm(out, "encoder.conv_norm_out", widths[-1])
    _conv(out, "encoder.conv_out", 2 * latent, widths[-1])  # double_z: mean and log-variance
    _conv(out, "quant_conv", 2 * latent, 2 * latent, 1)
    _conv(out, "post_quant_conv", latent, latent, 1)
    _conv(out, "decoder.conv_in", widths[-1], latent)
    _vae_mid(out, "decoder", widths[-1])
    reversed_widths = widths[::-1]
    c_prev = reversed_widths[0]
    for i, c in enumerate(reversed_widths):
        for j in range(layers + 1):
            _vae_resnet(out, f"decoder.up_blocks.{i}.resnets.{j}", c_prev if j == 0 else c, c)
        if i < n - 1:
            _conv(out, f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c)
        c_prev = c
    _norm(out, "decoder.conv_norm_out", widths[0])
    _conv(out, "decoder.conv_out", cfg.out_channels, widths[0])
    return out


# transformers <= 4.30 saved this constant buffer (0..positions-1); later versions do not.
CLIP_POSITION_IDS = "text_model.embeddings.position_ids"


def clip_shapes(cfg: ClipConfig) -> Shapes:
    """Names (with the `text_model.` level transformers 4.x files have) and shapes of a CLIP
    text encoder; `text_projection.weight` for CLIPTextModelWithProjection."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    out: Shapes = {
        "text_model.embeddings.token_embedding.weight": (cfg.vocab_size, h),
        "text_model.embeddings.position_embedding.weight": (cfg.max_position_embeddings, h),
    }
    for i in range(cfg.num_hidden_layers):
        layer = f"text_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _param(out, f"{layer}.self_attn.{proj}", (h, h))
        _norm(out, f"{layer}.layer_norm1", h)
        _param(out, f"{layer}.mlp.fc1", (inter, h))
        _param(out, f"{layer}.mlp.fc2", (h, inter))
        _norm(out, f"{layer}.layer_norm2", h)
    _norm(out, "text_model.final_layer_norm", h)
    if cfg.with_projection:
        out["text_projection.weight"] = (cfg.projection_dim, h)
    return out
