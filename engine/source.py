"""Locate and validate a diffusers source: a pipeline folder or a bare `unet/` folder.

Only configs and safetensors headers are read here. Pickle weights (`.bin`, `.ckpt`, `.pt`) are
refused, never opened: unpickling a Hub file can run arbitrary code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.classify import Classification, classify_unet
from engine.errors import BadInput, MissingFile, PickleRefused
from engine.safetensors_io import SafetensorsHeader, TensorSpec, read_header, read_index

# Pickle weight files: refused from their names alone, never opened.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENSE.rtf")


@dataclass(frozen=True)
class Component:
    """One model folder (unet, vae or text_encoder): its config and validated weight headers."""

    name: str
    folder: Path
    config: dict
    headers: tuple[SafetensorsHeader, ...]

    def tensors(self) -> list[tuple[SafetensorsHeader, TensorSpec]]:
        """Every tensor with the header it lives in, in file then data-offset order."""
        return [(h, t) for h in self.headers for t in h.tensors]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for _, t in self.tensors()}

    @property
    def weight_bytes(self) -> int:
        return sum(h.data_bytes for h in self.headers)

    @property
    def dtype(self) -> str:
        """The dominant float dtype (by bytes) of the weights, e.g. "F16"."""
        counts: dict[str, int] = {}
        for _, t in self.tensors():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.nbytes
        return max(counts, key=counts.__getitem__)


@dataclass(frozen=True)
class Source:
    """A validated source model: UNet always, VAE and text encoder when the pipeline has them."""

    root: Path
    unet: Component
    vae: Component | None
    text_encoder: Component | None
    classification: Classification
    license_files: tuple[Path, ...]

    @property
    def has_full_pipeline(self) -> bool:
        return self.vae is not None and self.text_encoder is not None


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise MissingFile(f"{path}: config file not found")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path}: config must be a JSON object")
    return config


def _weight_files(folder: Path, stem: str) -> list[Path]:
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            return read_index(index)
    pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise PickleRefused(
            f"{folder}: only pickle weights ({', '.join(pickles)}); unetbot never unpickles "
            "Hub files. Ask the author for a safetensors upload."
        )
    raise MissingFile(f"{folder}: no {stem}.safetensors (or sharded index) found")


def open_component(folder: Path, name: str) -> Component:
    stem = "model" if name == "text_encoder" else "diffusion_pytorch_model"
    config = _read_config(folder / "config.json")
    headers = tuple(read_header(p) for p in _weight_files(folder, stem))
    seen: set[str] = set()
    for h in headers:
        for t in h.tensors:
            if t.name in seen:
                raise BadInput(f"{h.path}: tensor {t.name!r} appears in two shards")
            seen.add(t.name)
    return Component(name, folder, config, headers)


def open_source(path: Path) -> Source:
    """Open a pipeline folder (with `unet/`) or a bare UNet folder and classify it."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFile(f"{path}: source folder not found")
    if (path / "unet" / "config.json").is_file() or (path / "model_index.json").is_file():
        root, unet_dir = path, path / "unet"
    elif (path / "config.json").is_file():
        root, unet_dir = path, path
    else:
        raise MissingFile(f"{path}: neither model_index.json, unet/config.json nor config.json")
    unet = open_component(unet_dir, "unet")
    classification = classify_unet(unet.config, unet.shapes())
    vae = te = None
    if unet_dir != root:
        if (root / "vae" / "config.json").is_file():
            vae = open_component(root / "vae", "vae")
        if (root / "text_encoder" / "config.json").is_file():
            te = open_component(root / "text_encoder", "text_encoder")
    licenses = tuple(root / n for n in LICENSE_NAMES if (root / n).is_file())
    return Source(root, unet, vae, te, classification, licenses)
