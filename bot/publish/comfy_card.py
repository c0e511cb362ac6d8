"""The GGUF card's lines for the ComfyUI-GGUF-only files (engine.writers.comfy_gguf): what each one
saves against the fp16 UNet, and what it costs in output quality against the GGUF of the same
type that every consumer loads (both measured by this run's validation, on this model)."""

from __future__ import annotations

from collections.abc import Callable

from engine.formats.manifest import Artifact
from engine.formats.safetensors_io import DTYPE_SIZES
from engine.run.variants import VARIANTS
from engine.writers.gguf_layout import GGUFLayout


def _cosine(a: Artifact | None) -> str:
    if a is None or a.validation is None or not a.passed:
        return "not published here"
    value = a.validation.metrics.get("output", {}).get("cosine")
    return "-" if value is None else f"{value:.6f}"


def comfy_rows(artifacts: list[Artifact], source: dict, size: Callable[[int], str]) -> list[dict]:
    """One row per ComfyUI-GGUF-only artifact among `artifacts` (the files a card publishes);
    `source`: the manifest's source summary (its UNet bytes and dtype give the fp16 size);
    `size`: how the card writes a byte count."""
    fp16_bytes = source.get("unet_bytes", 0) * 2 / DTYPE_SIZES.get(source.get("dtype", "F16"), 2)
    rows = []
    for a in artifacts:
        variant = VARIANTS[a.variant]
        if variant.gguf_layout is not GGUFLayout.COMFYUI_GGUF:
            continue
        twin = next(
            (
                b
                for b in artifacts
                if VARIANTS[b.variant].gguf_type == variant.gguf_type
                and VARIANTS[b.variant].gguf_layout is GGUFLayout.ALL_CONSUMERS
                and not VARIANTS[b.variant].full_checkpoint
            ),
            None,
        )
        rows.append(
            {
                "path": a.path,
                "type": variant.gguf_type,
                "size": size(a.bytes),
                "vs_fp16": f"{a.bytes / fp16_bytes:.2f}x" if fp16_bytes else "-",
                "cosine": _cosine(a),
                "twin": twin.path if twin is not None else "",
                "twin_size": f"{twin.bytes / fp16_bytes:.2f}x" if twin and fp16_bytes else "-",
                "twin_cosine": _cosine(twin),
            }
        )
    return rows
