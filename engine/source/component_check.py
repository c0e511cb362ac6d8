"""Every tensor of a component against what its config implies: names, shapes, dtypes.

Run by `engine.source.folder` before any output exists. Source names are first brought to one
spelling, the layouts real repos have (formats.md section 9):

* VAE mid-block attention saved by old diffusers as `query/key/value/proj_attn` is renamed
  `to_q/to_k/to_v/to_out.0`, as diffusers itself does on load
  (`ModelMixin._fix_state_dict_keys_on_load` in diffusers/models/modeling_utils.py);
* CLIP text encoders saved by transformers 5 (`embeddings.*`, `encoder.*`, no `text_model.`
  level) get the `text_model.` level transformers 4 files have; both spellings of one tensor in
  the same component is an error.

Then the set must equal `engine.source.expected_shapes` exactly: an unknown name is `UnknownKey`, a
missing one `MissingKey`, a shape the config does not give `BadConfig` (config and weights
disagree), a non-float weight `BadSafetensorsHeader`; each names the file and the tensor.

One tensor is left out on purpose: `text_model.embeddings.position_ids`, the constant buffer
0..n-1 that transformers <= 4.30 saved (SD1.5's own text encoder has it) and later versions
neither save nor read. It is kept out of every output so a full checkpoint is the same whichever
transformers wrote the source; its values are checked first, so nothing but a constant is
dropped (ComfyUI's SD15 loader special-cases the same buffer, `supported_models.SD15.
process_clip_state_dict`; stable-diffusion.cpp lists it as unused). Any other value is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from engine.errors import BadConfig, BadInput, BadSafetensorsHeader, MissingKey, UnknownKey
from engine.formats.safetensors_io import FLOAT_DTYPES, SafetensorsHeader
from engine.source.config_schema import ClipConfig, VaeConfig, check_unet_config
from engine.source.expected_shapes import CLIP_POSITION_IDS, clip_shapes, unet_shapes, vae_shapes

_VAE_LEGACY = re.compile(
    r"((?:en|de)coder\.mid_block\.attentions\.0)\.(query|key|value|proj_attn)\."
)
_VAE_LEGACY_LEAVES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
POSITION_IDS_REASON = (
    "constant buffer 0..n-1 saved by transformers <= 4.30; later versions neither save nor need "
    "it (checked equal to 0..n-1 before leaving it out)"
)


def vae_canonical(name: str) -> str:
    m = _VAE_LEGACY.match(name)
    if not m:
        return name
    return f"{m.group(1)}.{_VAE_LEGACY_LEAVES[m.group(2)]}.{name[m.end() :]}"


def clip_canonical(name: str) -> str:
    if name.startswith("text_model.") or name == "text_projection.weight":
        return name
    return f"text_model.{name}"


def canonical_name(component: str, name: str) -> str:
    """The one spelling of a source tensor name unetbot uses: current diffusers VAE attention
    names, the `text_model.` level for CLIP; UNet names are unchanged. Validation compares a
    loaded VAE state dict with `canonical_name("vae", spec.name)`."""
    if component == "vae":
        return vae_canonical(name)
    if component == "text_encoder":
        return clip_canonical(name)
    return name


def _check(
    component: str,
    expected: Mapping[str, tuple[int, ...]],
    headers: tuple[SafetensorsHeader, ...],
    canonical: Callable[[str], str],
    config_origin: str,
    optional: Callable[[SafetensorsHeader, str, str], str | None] | None = None,
) -> tuple[tuple[str, str], ...]:
    """Compare every tensor with `expected`; returns (name, reason) of tensors left out."""
    seen: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    for header in headers:
        for t in header.tensors:
            name = canonical(t.name)
            if name in seen:
                raise BadInput(
                    f"{header.path}: tensors {seen[name]!r} and {t.name!r} are the same "
                    f"{component} tensor under two spellings"
                )
            seen[name] = t.name
            if name not in expected:
                reason = optional(header, name, t.name) if optional else None
                if reason is None:
                    raise UnknownKey(
                        f"{header.path}: tensor {t.name!r} has no place in the {component} key map"
                    )
                ignored.append((t.name, reason))
                continue
            if t.shape != expected[name]:
                raise BadConfig(
                    f"{header.path}: tensor {t.name!r} has shape {list(t.shape)} but "
                    f"{config_origin} implies {list(expected[name])} (config and weights disagree)"
                )
            if t.dtype not in FLOAT_DTYPES:
                raise BadSafetensorsHeader(
                    f"{header.path}: tensor {t.name!r} is {t.dtype}; weights must be one of "
                    f"{', '.join(FLOAT_DTYPES)}"
                )
    missing = [n for n in expected if n not in seen]
    if missing:
        where = headers[0].path.parent if headers else component
        raise MissingKey(f"{where}: {component} weights lack {missing[0]} ({len(missing)} missing)")
    return tuple(ignored)


def check_unet(config: Mapping, headers: tuple[SafetensorsHeader, ...], origin: str) -> None:
    """A supported (SD1.5-family) UNet: exactly the tensors its config implies."""
    _check("unet", unet_shapes(check_unet_config(config, origin)), headers, str, origin)


def check_vae(cfg: VaeConfig, headers: tuple[SafetensorsHeader, ...]) -> None:
    _check("vae", vae_shapes(cfg), headers, vae_canonical, "vae/config.json")


def check_clip(cfg: ClipConfig, headers: tuple[SafetensorsHeader, ...]) -> tuple:
    """The CLIP text encoder; returns the (name, reason) of a verified position_ids buffer."""
    positions = cfg.max_position_embeddings

    def position_ids(header: SafetensorsHeader, name: str, raw_name: str) -> str | None:
        if name != CLIP_POSITION_IDS:
            return None
        spec = header.by_name()[raw_name]
        if spec.shape not in ((1, positions), (positions,)) or spec.dtype not in (
            "I64",
            "I32",
            *FLOAT_DTYPES,
        ):
            raise BadSafetensorsHeader(
                f"{header.path}: {raw_name!r} is {spec.dtype}{list(spec.shape)}, expected "
                f"I64[1, {positions}]"
            )
        import numpy as np  # only for a text encoder's position_ids (start-up, see tensor_values)

        from engine.formats.tensor_values import read_tensor_array

        values = read_tensor_array(header, spec).reshape(-1)
        if not np.array_equal(values.astype(np.float64), np.arange(positions, dtype=np.float64)):
            raise BadInput(
                f"{header.path}: {raw_name!r} is not 0..{positions - 1}; this text encoder's "
                "position ids are corrupted (a known fault of some merged checkpoints)"
            )
        return POSITION_IDS_REASON

    return _check(
        "text_encoder",
        clip_shapes(cfg),
        headers,
        clip_canonical,
        "text_encoder/config.json",
        position_ids,
    )
