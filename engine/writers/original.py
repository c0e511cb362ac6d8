"""Streaming conversion diffusers <-> original (LDM) single-file safetensors.

Only headers are rewritten; tensor bytes are copied range by range (one `copy_file_range` per
contiguous run), so a 1.7 GB UNet converts at `cp` speed in a few MB of RAM. This module never
imports torch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine import __version__
from engine.errors import UnknownKey, UnsupportedArchitecture
from engine.formats.safetensors_io import (
    OutputTensor,
    output_tensor,
    read_header,
    write_safetensors,
)
from engine.source.config_schema import check_clip_config
from engine.source.folder import Component, Source
from engine.source.keymap import (
    CLIP_PREFIX,
    LCM_COND_PROJ_ORIGINAL,
    UNET_PREFIX,
    VAE_PREFIX,
    KeyMap,
    clip_keymap,
    clip_layers_in,
    unet_keymap,
    vae_keymap,
)

FORMAT_ORIGINAL = "original-ldm"
LCM_CONVENTION = (
    f"LCM guidance embedding stored as {LCM_COND_PROJ_ORIGINAL}; "
    "restore with engine.lcm.load_unet (stable-diffusion.cpp and ComfyUI ignore it)"
)


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from; written into every artifact's metadata."""

    source_repo: str = ""
    source_revision: str = ""


def component_keymap(component: Component) -> KeyMap:
    """The key map of one opened component (its config is already checked)."""
    if component.name == "unet":
        return unet_keymap(component.config)
    if component.name == "vae":
        return vae_keymap(component.config)
    clip = check_clip_config(component.config)
    return clip_keymap(clip.num_hidden_layers, clip.with_projection)


def original_names(component: Component) -> dict[str, str]:
    """source tensor name -> its name in the original-format file, for every tensor written
    (a component's `ignored` tensors are not written; see engine.source.component_check)."""
    keymap = component_keymap(component)
    return {
        spec.name: keymap.to_original(spec.name, spec.shape)[0] for _, spec in component.tensors()
    }


def _map_component(component: Component, dtype: str | None) -> list[OutputTensor]:
    keymap = component_keymap(component)
    keymap.check_complete(set(component.shapes()))
    out = []
    for header, spec in component.tensors():
        name, shape = keymap.to_original(spec.name, spec.shape)
        out.append(output_tensor(header, spec, name, dtype=dtype, shape=shape))
    return out


def original_metadata(source: Source, provenance: Provenance, full: bool) -> dict[str, str]:
    lcm = source.classification.is_lcm
    return {
        "format": "pt",
        "unetbot.format": FORMAT_ORIGINAL,
        "unetbot.contents": "unet+vae+text_encoder" if full else "unet",
        "unetbot.kind": source.classification.kind,
        "unetbot.source_repo": provenance.source_repo,
        "unetbot.source_revision": provenance.source_revision,
        "unetbot.version": __version__,
        "unetbot.lcm_cond_proj": LCM_CONVENTION if lcm else "none",
    }


def _require_supported(source: Source) -> None:
    if not source.classification.supported:
        raise UnsupportedArchitecture(
            f"{source.unet.folder}: {source.classification.reason}; refusing to convert"
        )


def original_tensors(source: Source, full: bool, dtype: str | None = None) -> list[OutputTensor]:
    """Every output tensor of the original file, in source order (UNet, then VAE, then CLIP)."""
    _require_supported(source)
    tensors = _map_component(source.unet, dtype)
    if full:
        if not source.has_full_pipeline:
            raise UnsupportedArchitecture(
                f"{source.root}: original-full needs vae/ and text_encoder/ safetensors"
            )
        assert source.vae is not None and source.text_encoder is not None
        tensors += _map_component(source.vae, dtype)
        tensors += _map_component(source.text_encoder, dtype)
    return tensors


def write_original(
    source: Source,
    out_path: Path,
    full: bool = False,
    dtype: str | None = None,
    provenance: Provenance = Provenance(),
) -> Path:
    """Write the UNet (or full checkpoint) as one original-format safetensors file."""
    tensors = original_tensors(source, full, dtype)
    write_safetensors(out_path, tensors, original_metadata(source, provenance, full))
    return Path(out_path)


def write_diffusers_from_original(
    original_path: Path,
    out_dir: Path,
    unet_config: Mapping,
    vae_config: Mapping | None = None,
    ignore: Collection[str] = (),
) -> dict[str, Path]:
    """Reverse: split an original file back into diffusers `unet/` (+ `vae/`, `text_encoder/`).

    Tensor bytes and order are preserved, so diffusers -> original -> diffusers is byte-exact
    in every tensor. `ignore`: tensor names left out (a single-file checkpoint's EMA copy and
    buffers, engine.source.single_file). Returns the weight file written per component.
    """
    header = read_header(original_path)
    ignore = set(ignore)
    names = [t.name for t in header.tensors if t.name not in ignore]
    projection = f"{CLIP_PREFIX}text_projection.weight" in names
    maps: dict[str, tuple[str, KeyMap, str]] = {
        UNET_PREFIX: ("unet", unet_keymap(dict(unet_config)), "diffusion_pytorch_model"),
        CLIP_PREFIX: ("text_encoder", clip_keymap(clip_layers_in(names), projection), "model"),
    }
    if vae_config is not None:
        maps[VAE_PREFIX] = ("vae", vae_keymap(dict(vae_config)), "diffusion_pytorch_model")
    per_component: dict[str, list[OutputTensor]] = {}
    for spec in header.tensors:
        if spec.name in ignore:
            continue
        prefix = next((p for p in maps if spec.name.startswith(p)), None)
        if prefix is None:
            raise UnknownKey(f"{original_path}: tensor {spec.name!r} belongs to no known component")
        component, keymap, _ = maps[prefix]
        name, shape = keymap.to_diffusers(spec.name, spec.shape)
        per_component.setdefault(component, []).append(
            output_tensor(header, spec, name, shape=shape)
        )
    written: dict[str, Path] = {}
    for component, keymap, stem in maps.values():
        tensors = per_component.get(component)
        if not tensors:
            continue
        keymap.check_complete({t.name for t in tensors})
        path = Path(out_dir) / component / f"{stem}.safetensors"
        write_safetensors(path, tensors, {"format": "pt"})
        written[component] = path
    return written
