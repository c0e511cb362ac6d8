"""Load unetbot's single-file artifacts into diffusers with the LCM `cond_proj` restored.

diffusers' `from_single_file` maps original keys it knows and silently drops the rest, so an
LCM UNet's guidance embedding (kept by unetbot as `model.diffusion_model.time_embedding.
cond_proj.weight`) is never filled: the parameter stays on `meta` and loading fails with "Cannot
copy out of meta tensor" (or, after `to_empty()`, gives noise; diffusers issue 11033). Since
v0.35, `from_single_file` loads a state dict whose keys equal the model's diffusers keys without
conversion. So for files that carry cond_proj, `load_unet` does exactly what the model cards tell
users who do not have unetbot: diffusers' own converter (`convert_ldm_unet_checkpoint`) for every
key, one line that puts cond_proj under its diffusers name, and `from_single_file` on that state
dict. Validation loads through here, so it proves the cards' recipe. Files without cond_proj go
through diffusers' own loader untouched. Works for original safetensors and for GGUF (quantized
tensors stay `GGUFParameter`s and are dequantized on the fly by diffusers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import MissingKey
from engine.source.keymap import (
    LCM_COND_PROJ_DIFFUSERS,
    LCM_COND_PROJ_ORIGINAL,
    UNET_PREFIX,
    unet_keymap,
)

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors of a safetensors or GGUF single file, as diffusers' own readers return them."""
    path = Path(path)
    if path.suffix == ".gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return load_gguf_checkpoint(str(path), return_tensors=True)
    from safetensors.torch import load_file

    return load_file(str(path))


def _unet_config(config: str | Path, subfolder: str | None) -> dict:
    folder = Path(config) / subfolder if subfolder else Path(config)
    return json.loads((folder / "config.json").read_text())


def to_diffusers_state_dict(checkpoint: dict[str, Any], unet_config: dict) -> dict[str, Any]:
    """Rename the UNet tensors of an original-format checkpoint to diffusers keys (exact map)."""
    keymap = unet_keymap(unet_config)
    out: dict[str, Any] = {}
    for key, tensor in checkpoint.items():
        if not key.startswith(UNET_PREFIX):
            continue  # VAE / text encoder of a full checkpoint
        name, shape = keymap.to_diffusers(key, tuple(tensor.shape))
        out[name] = tensor if tuple(tensor.shape) == shape else tensor.reshape(shape)
    keymap.check_complete(set(out))
    return out


def with_cond_proj(checkpoint: dict[str, Any], unet_config: dict) -> dict[str, Any]:
    """The cards' recipe: diffusers' own key conversion, then the one cond_proj line."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    state = convert_ldm_unet_checkpoint(checkpoint, unet_config)
    state[LCM_COND_PROJ_DIFFUSERS] = checkpoint[LCM_COND_PROJ_ORIGINAL]
    return state


def load_unet(
    path: str | Path,
    config: str | Path,
    subfolder: str | None = None,
    torch_dtype: Any = None,
    quantization_config: Any = None,
) -> UNet2DConditionModel:
    """Load an original-format UNet (safetensors or GGUF) into diffusers, cond_proj included.

    `config` is a local diffusers folder (the source repo's snapshot) holding the UNet's
    `config.json` (under `subfolder` if given). Raises if any parameter is left on `meta`.
    """
    from diffusers import UNet2DConditionModel

    checkpoint = read_checkpoint(Path(path))
    kwargs: dict[str, Any] = {"config": str(config)}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    unet_config = _unet_config(config, subfolder)
    if unet_config.get("time_cond_proj_dim") and LCM_COND_PROJ_ORIGINAL not in checkpoint:
        raise MissingKey(
            f"{path}: the config is an LCM UNet (time_cond_proj_dim) but the file has no "
            f"{LCM_COND_PROJ_ORIGINAL}: the guidance embedding was dropped"
        )
    if LCM_COND_PROJ_ORIGINAL in checkpoint:
        checkpoint = with_cond_proj(checkpoint, unet_config)
    model = UNet2DConditionModel.from_single_file(checkpoint, **kwargs)
    on_meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if on_meta:
        raise RuntimeError(f"{path}: parameters left on meta after loading: {on_meta[:5]}")
    return model.eval()
