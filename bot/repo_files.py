"""Which files of a Hub repo the engine needs, chosen from the file list alone.

Mirrors `engine.source` (same preference: `x.safetensors`, sharded index, `.fp16` variant) so
the bot downloads exactly the files the engine will read, and nothing pickled.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from engine.source import LICENSE_NAMES, PICKLE_SUFFIXES

_STEMS = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}


def weight_files(files: Mapping[str, int], component: str) -> list[str] | None:
    """Download patterns for the safetensors weights of `component` (None if it has none).

    A sharded component gives its index plus a glob for its shards.
    """
    stem = _STEMS[component]
    for variant in ("", ".fp16"):
        path = f"{component}/{stem}{variant}.safetensors"
        if path in files:
            return [path]
        if f"{path}.index.json" in files:
            return [f"{path}.index.json", f"{component}/{stem}{variant}-*-of-*.safetensors"]
    return None


def has_pickle_only(files: Mapping[str, int], component: str) -> bool:
    return weight_files(files, component) is None and any(
        p.startswith(f"{component}/") and p.endswith(PICKLE_SUFFIXES) for p in files
    )


def needed_files(files: Mapping[str, int], full: bool, vae: bool = False) -> list[str]:
    """Small files plus the weights of unet (and vae + text_encoder when `full`, the vae alone
    when `vae`: the validation grid decodes with it)."""
    wanted = [p for p in ("model_index.json", "unet/config.json") if p in files]
    wanted += [p for p in LICENSE_NAMES if p in files]
    wanted += weight_files(files, "unet") or []
    components = ("vae", "text_encoder") if full else ("vae",) if vae else ()
    for component in components:
        weights = weight_files(files, component)
        if weights and f"{component}/config.json" in files:
            wanted += [f"{component}/config.json", *weights]
    return wanted


def has_component(files: Mapping[str, int], component: str) -> bool:
    return f"{component}/config.json" in files and weight_files(files, component) is not None


def bytes_matching(files: Mapping[str, int], patterns: Iterable[str]) -> int:
    """Total size of the files that download `patterns` (paths or globs) would fetch."""
    patterns = list(patterns)
    return sum(
        size for path, size in files.items() if any(fnmatch.fnmatch(path, p) for p in patterns)
    )
