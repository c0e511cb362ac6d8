"""A single-file checkpoint as a diffusers folder, so the normal path converts it.

`materialize_single_file(path, dest)` recognises the file from its header
(engine.source.single_file), writes the configs it is read with (SD1.5's, shipped as data, with
the inpainting / LCM fields its shapes call for) and splits the tensors into `unet/`, `vae/` and
`text_encoder/` with engine.writers.original's reverse map (byte copies: names change, and the VAE
attention's 1x1 convolutions become the Linear shapes diffusers has, nothing else). The EMA copy
and buffers are left out with their reasons. Everything after is the normal safetensors path:
every header and shape checked against the configs when the folder is opened, and each output
validated against it.

A `.ckpt` goes through the one pickle path first (engine.source.pickle_source's layers: static
scan, weights_only loader in a child process without the token), which unwraps a Lightning
`state_dict` and writes a safetensors copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.formats.safetensors_io import read_header
from engine.source.checkpoint_match import header_table
from engine.source.pickle_load import load_in_child
from engine.source.pickle_scan import scan_pickle_file
from engine.source.single_file import SingleFile, inspect_single_file
from engine.writers.original import write_diffusers_from_original


@dataclass
class SingleFileRecord:
    """The diffusers folder made from one checkpoint (`root`), and how."""

    root: Path
    info: SingleFile
    pickle: dict = field(default_factory=dict)  # the pickle path's record for a .ckpt

    def to_dict(self) -> dict:
        out = {
            "file": self.info.filename,
            "contents": self.info.contents,
            "kind": self.info.kind.value,
            "configs": "SD1.5's (engine/source/sd15_configs.json)",
            "left_out": self.info.notes(),
        }
        if self.pickle:
            out["pickle"] = self.pickle
        return out


def materialize_single_file(
    path: Path,
    dest: Path,
    configs: dict | None = None,
    filename: str | None = None,
    hub_verdict: dict | None = None,
) -> SingleFileRecord:
    """Split checkpoint `path` into a diffusers folder at `dest` (see the module docstring)."""
    path, dest = Path(path), Path(dest)
    filename = filename or path.name
    pickle: dict = {}
    if path.suffix == ".ckpt":
        scan = scan_pickle_file(path)
        copy = dest.parent / f".{dest.name}.ckpt.safetensors"
        loaded = load_in_child(path, copy)
        pickle = {
            "hub": hub_verdict or {"verdict": "none (local file)"},
            "scan": scan.to_dict(),
            "load": loaded,
        }
        path = copy
    try:
        header = read_header(path)
        info = inspect_single_file(header_table(header), filename, configs)
        dest.mkdir(parents=True, exist_ok=True)
        index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
        (dest / "model_index.json").write_text(json.dumps(index))
        for component, config in info.configs.items():
            (dest / component).mkdir(exist_ok=True)
            (dest / component / "config.json").write_text(json.dumps(config, indent=2))
        write_diffusers_from_original(
            path, dest, info.configs["unet"], info.configs.get("vae"), ignore=info.left_out
        )
    finally:
        if pickle:
            path.unlink(missing_ok=True)
    return SingleFileRecord(dest, info, pickle)
