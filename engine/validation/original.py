"""Original-format files (`original`, `original-full`): the source's bytes under LDM names.

Proof, cheapest first: the header's metadata names this format and the manifest's source
revision; every tensor's bytes equal the source tensor's bytes (streamed, engine.validation.
exact); then the consumer's load: diffusers `from_single_file` (through `engine.validation.loaders.
load_unet`, which restores the LCM cond_proj) in the source's own precision must give every
parameter with the source's bytes and none on `meta`, and for a full checkpoint diffusers'
AutoencoderKL loader must do the same for the VAE. No fp32 copy, no forward pass: equal bytes
compute equal outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.formats.safetensors_io import SafetensorsHeader, read_header
from engine.formats.validation_record import ValidationResult
from engine.source.keymap import UNET_PREFIX, VAE_PREFIX, unet_keymap
from engine.validation.context import Context
from engine.validation.exact import Stored, byte_differences, expected_from, loaded_differences
from engine.writers.original import FORMAT_ORIGINAL, original_tensors

if TYPE_CHECKING:
    from pathlib import Path

    from engine.formats.manifest import Artifact
    from engine.validation.check import Check

EXACT = {"cosine": 1.0, "rel_l2": 0.0, "max_abs": 0.0}  # the output metrics of equal bytes


def validate_original(check: Check, artifact: Artifact, ctx: Context) -> ValidationResult:
    path = ctx.out_dir / artifact.path
    header = read_header(path)
    problems = []
    if header.metadata.get("unetbot.format") != FORMAT_ORIGINAL:
        problems.append("metadata lacks unetbot.format")
    if header.metadata.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    stored = {
        t.name: Stored(t.dtype, t.shape, header.data_start + t.start, t.nbytes)
        for t in header.tensors
    }
    expected = expected_from(original_tensors(ctx.source, check.full_checkpoint))
    problems += byte_differences(path, stored, expected)
    checks = ["every tensor byte-equal to the source (streamed, no copies)"]
    if not problems:
        problems += _consumer_load_problems(check, ctx, path, header)
        checks.append(
            "diffusers from_single_file (+ cond_proj restore) in the source dtype: every UNet "
            "parameter byte-equal to the source, none on meta"
        )
        if check.full_checkpoint:
            checks.append("VAE via AutoencoderKL.from_single_file: byte-equal, none on meta")
    return ValidationResult.from_problems(
        problems, {"output": dict(EXACT), "byte_equal": not problems}, checks
    )


def _consumer_load_problems(
    check: Check, ctx: Context, path: Path, header: SafetensorsHeader
) -> list[str]:
    from engine.memory import release_memory
    from engine.validation.loaders import load_unet

    config, subfolder = ctx.config_args
    model = load_unet(path, config, subfolder, torch_dtype=ctx.torch_dtype)
    keymap = unet_keymap(ctx.source.unet.config)
    offsets = {
        keymap.to_diffusers(t.name, t.shape)[0]: header.data_start + t.start
        for t in header.tensors
        if t.name.startswith(UNET_PREFIX)
    }
    problems = [
        f"UNet via diffusers from_single_file: {p}"
        for p in loaded_differences(model.state_dict(), ctx.source.unet, (path, offsets))
    ]
    del model
    release_memory()
    if check.full_checkpoint and ctx.source.vae is not None:
        problems += [f"VAE via diffusers from_single_file: {p}" for p in _vae_problems(ctx, path)]
    return problems


def _vae_problems(ctx: Context, path: Path) -> list[str]:
    """The full checkpoint's VAE through diffusers' own single-file loader, handed only the
    VAE's tensors (the loader would otherwise read the whole checkpoint into memory)."""
    from diffusers import AutoencoderKL
    from safetensors import safe_open

    assert ctx.source.vae is not None
    with safe_open(str(path), "pt") as f:
        vae_tensors = {
            k: f.get_tensor(k)
            for k in f.keys()  # noqa: SIM118 (safe_open is not iterable)
            if k.startswith(VAE_PREFIX)
        }
    vae = AutoencoderKL.from_single_file(
        vae_tensors,
        config=str(ctx.source.root),
        subfolder="vae",
        torch_dtype=ctx.torch_dtype,
    )
    del vae_tensors
    return list(loaded_differences(vae.state_dict(), ctx.source.vae))
