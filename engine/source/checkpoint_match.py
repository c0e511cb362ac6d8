"""Is a repo's root single file already an original-format checkpoint of its own UNet?

Some repos ship one next to their diffusers folders (SD1.5's own repo, LCM_Dreamshaper_v7). A
pull request adding another would be noise, so the bot skips that target with the reason this
module gives. The decision needs only the file's header (names, dtypes, shapes), which the bot
reads with a range request (`huggingface_hub`'s safetensors metadata helpers), and the UNet's
config.json: the expected original names and shapes come from the config through the same
key map and shape rules the converter uses, so "matches" means "unetbot's own original file of
this UNet would have these tensors".

Accepted spellings: `model.diffusion_model.*` (what every original checkpoint has), or the bare
LDM names ComfyUI saves UNet-only files with. A full checkpoint also has `first_stage_model.*`
and `cond_stage_model.*`; other entries of old checkpoints (`model_ema.*`, noise-schedule
buffers) are allowed. The LCM guidance embedding may be absent (the diffusers conversion script
and most tools drop it): still a checkpoint of this UNet, and the reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.formats.safetensors_io import FLOAT_DTYPES, MAX_DIMS, MAX_NAME_CHARS, SafetensorsHeader
from engine.source.classify import classify_unet
from engine.source.config_schema import check_unet_config
from engine.source.expected_shapes import unet_shapes
from engine.source.keymap import (
    CLIP_PREFIX,
    LCM_COND_PROJ_ORIGINAL,
    UNET_PREFIX,
    VAE_PREFIX,
    unet_keymap,
)

TensorTable = Mapping[str, tuple[str, Sequence[int]]]  # name -> (dtype, shape)


@dataclass(frozen=True)
class CheckpointMatch:
    """`contents` is "unet" or "full" when the file is an original checkpoint of this UNet."""

    contents: str
    reason: str

    @property
    def matches(self) -> bool:
        return bool(self.contents)


def header_table(header: SafetensorsHeader) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The (dtype, shape) table of a local file's validated header."""
    return {t.name: (t.dtype, t.shape) for t in header.tensors}


def _valid_entry(name: object, entry: object) -> bool:
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return False
    if not isinstance(entry, tuple | list) or len(entry) != 2:
        return False
    dtype, shape = entry
    return (
        isinstance(dtype, str)
        and isinstance(shape, Sequence)
        and len(shape) <= MAX_DIMS
        and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape)
    )


def expected_original_unet(unet_config: Mapping) -> dict[str, tuple[int, ...]]:
    """Original-format names (prefixed) and shapes of this UNet's tensors."""
    keymap = unet_keymap(unet_config)
    shapes = unet_shapes(check_unet_config(unet_config))
    return dict(keymap.to_original(name, shape) for name, shape in shapes.items())


def match_original_checkpoint(
    tensors: TensorTable, unet_config: Mapping, filename: str = "the file"
) -> CheckpointMatch:
    """Whether `tensors` (a safetensors header: name -> (dtype, shape)) is an original-format
    checkpoint (UNet-only or full) of the UNet `unet_config` describes."""
    classification = classify_unet(unet_config)
    if not classification.supported:
        return CheckpointMatch("", f"the repo's UNet is not supported ({classification.reason})")
    bad = next((n for n, e in tensors.items() if not _valid_entry(n, e)), None)
    if bad is not None:
        return CheckpointMatch("", f"{filename}: malformed header entry {str(bad)[:80]!r}")
    expected = expected_original_unet(unet_config)
    names = set(tensors)
    prefixed = any(n.startswith(UNET_PREFIX) for n in names)
    if not prefixed:
        # ComfyUI saves UNet-only files without the prefix.
        bare = {n: tensors[n] for n in names if f"{UNET_PREFIX}{n}" in expected}
        tensors = {f"{UNET_PREFIX}{n}": e for n, e in bare.items()}
        if not tensors:
            return CheckpointMatch("", f"{filename}: no original-format UNet tensors")
    found = {n: e for n, e in tensors.items() if n.startswith(UNET_PREFIX)}
    extra = sorted(set(found) - set(expected))
    if extra:
        return CheckpointMatch("", f"{filename}: has UNet tensors this UNet lacks ({extra[0]})")
    optional = {LCM_COND_PROJ_ORIGINAL}
    missing = sorted(set(expected) - set(found) - optional)
    if missing:
        return CheckpointMatch(
            "", f"{filename}: lacks {len(missing)} of this UNet's tensors ({missing[0]})"
        )
    for name, (dtype, shape) in found.items():
        if tuple(shape) != expected[name]:
            return CheckpointMatch(
                "", f"{filename}: {name} is {list(shape)}, this UNet's is {list(expected[name])}"
            )
        if dtype not in FLOAT_DTYPES:
            return CheckpointMatch("", f"{filename}: {name} is {dtype}, not a float weight")
    full = prefixed and any(n.startswith(VAE_PREFIX) for n in names)
    full = full and any(n.startswith(CLIP_PREFIX) for n in names)
    contents = "full" if full else "unet"
    what = "a full original checkpoint (UNet + VAE + CLIP)" if full else "an original-format UNet"
    note = ""
    if LCM_COND_PROJ_ORIGINAL in expected and LCM_COND_PROJ_ORIGINAL not in found:
        note = " (without the LCM guidance embedding cond_proj)"
    return CheckpointMatch(contents, f"{filename} is already {what} of this UNet{note}")
