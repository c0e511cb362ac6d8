"""Which files of a Hub repo the engine needs, chosen from the file list alone.

No rule of its own: the weight selection is `engine.source.layout` (the same function
`engine.source.folder` applies to the downloaded folder), so the bot downloads exactly the files the
engine will read, never a pickle, a `non_ema` set or an fp32 file a half-precision output does not
need.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from engine.source.layout import (
    COMPONENT_STEMS,
    LICENSE_NAMES,
    Precision,
    pickle_files,
    select_for,
    select_pickle_weights,
    select_weights,
)

_SMALL_FILES = ("model_index.json",)
Precisions = Precision | Iterable[Precision]


def _folder(component: str, unet_folder: str) -> str:
    return unet_folder if component == "unet" else component


def _precisions(precisions: Precisions) -> tuple[Precision, ...]:
    if isinstance(precisions, str):
        return (Precision(precisions),)
    return tuple(Precision(p) for p in precisions)


def weight_files(
    files: Mapping[str, int] | Iterable[str],
    component: str,
    precision: Precision = Precision.MAIN,
    unet_folder: str = "unet",
) -> list[str] | None:
    """Paths of the weight set `component` is read from at `precision` (index first when
    sharded): its safetensors weights, else its pickle weights (opened only through
    engine.source.pickle_source); None if it has neither. `unet_folder` is "" for a bare UNet
    repo."""
    files = list(files)
    args = (files, _folder(component, unet_folder), COMPONENT_STEMS[component], precision)
    chosen = select_weights(*args) or select_pickle_weights(*args)
    return list(chosen.paths) if chosen is not None else None


def has_pickle_only(
    files: Mapping[str, int] | Iterable[str], component: str, unet_folder: str = "unet"
) -> bool:
    """The component's weights are pickles only (no safetensors set)."""
    files = list(files)
    folder = _folder(component, unet_folder)
    stem = COMPONENT_STEMS[component]
    return select_weights(files, folder, stem, Precision.MAIN) is None and bool(
        pickle_files(files, folder)
    )


def has_component(files: Mapping[str, int] | Iterable[str], component: str) -> bool:
    files = list(files)
    return f"{component}/config.json" in files and weight_files(files, component) is not None


def needed_files(
    files: Mapping[str, int] | Iterable[str],
    full: bool = False,
    vae: bool = False,
    *,
    precisions: Precisions = Precision.MAIN,
    components: Iterable[str] | None = None,
    unet_folder: str = "unet",
) -> list[str]:
    """Exact paths to download: the small files (model_index.json, licences, each component's
    config.json) and, per component, the weight set of each precision asked for (deduplicated):
    `Precision.HALF` for quantized outputs, `(Precision.MAIN, Precision.HALF)` for a PR that
    mirrors the main weights and, when the repo has one, the fp16 variant.

    `components` defaults to the UNet, plus the VAE when `vae` (the validation grid decodes
    with it) and the VAE + text encoder when `full`. A component lacking its config or weights
    is left out (the engine then notes it and offers no full checkpoint)."""
    files = list(files)
    present = set(files)
    if components is None:
        components = (
            ("unet", "vae", "text_encoder") if full else ("unet", "vae") if vae else ("unet",)
        )
    chosen_precisions = _precisions(precisions)
    wanted = [p for p in _SMALL_FILES if p in present]
    wanted += [p for p in LICENSE_NAMES if p in present]
    for component in dict.fromkeys(components):
        folder = _folder(component, unet_folder)
        config = f"{folder}/config.json" if folder else "config.json"
        stem = COMPONENT_STEMS[component]
        sets = select_for(files, folder, stem, chosen_precisions) or [
            s
            for s in dict.fromkeys(
                select_pickle_weights(files, folder, stem, p) for p in chosen_precisions
            )
            if s is not None
        ]
        if config not in present or not sets:
            continue
        wanted.append(config)
        for weight_set in sets:
            wanted += [p for p in weight_set.paths if p not in wanted]
    return wanted


def bytes_matching(files: Mapping[str, int], patterns: Iterable[str]) -> int:
    """Total size of the files that download `patterns` (paths or globs) would fetch."""
    patterns = list(patterns)
    return sum(
        size for path, size in files.items() if any(fnmatch.fnmatch(path, p) for p in patterns)
    )
