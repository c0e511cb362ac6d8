"""Validation grid: the source's and each variant's LCM sample, decoded by the source's VAE.

Why: the metrics prove a variant matches its source, but a reader of a model card trusts a
picture: the same seeded 4-step LCM run, decoded by the source's own VAE, once for the fp32
source and once per validated variant, side by side in one PNG.

What it costs and when it runs: validation already runs that sampling loop for every LCM variant
(`engine.validation.probe.lcm_sample`), so the grid adds only one VAE decode per column (a 32x32
latent, 256x256 pixels). It is opt-in (`bot convert --grid`, or `publish.grid` in the config)
because those decodes take seconds each on a CPU. Plain SD1.5 sources get no grid: a meaningful
picture would need a ~20-step sampler per variant, which is not part of validation. The probe
conditions on a seeded random text embedding, not a prompt, so the pictures are abstract: what
matters is that each column shows the same picture as the source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.formats.safetensors_io import atomic_output

log = logging.getLogger("unetbot.validate")

GRID_NAME = "validation-grid.png"
SOURCE_LABEL = "source (fp32)"
_COLUMNS = 5  # images per row
_LABEL_HEIGHT = 18
_MIN_TILE = 128  # small models' pictures are enlarged (nearest neighbour) so labels fit


@dataclass(frozen=True)
class GridColumn:
    label: str
    latents: Any  # torch.Tensor (1, 4, h, w): final LCM latents in the scaled latent space


def decode(vae_folder: Path, latents: list[Any], variant: str | None = None) -> list[Any]:
    """Decode latents (scaled latent space) with the VAE in `vae_folder` to uint8 HWC arrays."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(
        str(vae_folder), torch_dtype=torch.float32, variant=variant, use_safetensors=True
    ).eval()
    images = []
    with torch.no_grad():
        for latent in latents:  # one at a time: a batch would hold every activation at once
            pixels = vae.decode(latent.float() / vae.config.scaling_factor).sample[0]
            pixels = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            images.append(pixels.permute(1, 2, 0).numpy())
    del vae
    return images


def write_grid(
    vae_folder: Path, columns: list[GridColumn], path: Path, variant: str | None = None
) -> Path:
    """Decode every column and save them as one labelled PNG at `path` (atomic write)."""
    from PIL import Image, ImageDraw

    if not columns:
        raise ValueError("a validation grid needs at least one column")
    latents = [c.latents for c in columns]
    images = [Image.fromarray(a) for a in decode(vae_folder, latents, variant)]
    scale = -(-_MIN_TILE // images[0].width)
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    width, height = images[0].size
    per_row = min(_COLUMNS, len(images))
    rows = -(-len(images) // per_row)
    cell = height + _LABEL_HEIGHT
    canvas = Image.new("RGB", (per_row * width, rows * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (column, image) in enumerate(zip(columns, images, strict=True)):
        x, y = (i % per_row) * width, (i // per_row) * cell
        draw.text((x + 4, y + 3), column.label, fill="black")
        canvas.paste(image, (x, y + _LABEL_HEIGHT))
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG")
    log.info("wrote %s (%d columns)", path, len(columns))
    return path
