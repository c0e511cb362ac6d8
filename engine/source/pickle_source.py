"""The one path through which unetbot opens pickle weights: a diffusers folder whose components
hold only `.bin` files becomes a safetensors folder, and everything after is the normal path.

Layers, in order (each its own module and tests):

1. the Hub's verdict on each file (bot.client.security, before any download; a local folder
   has none, and says so in the record);
2. a static scan of the bytes (engine.source.pickle_scan: picklescan's import list against a
   state dict's allow-list, the zip archive's names, storage records and sizes);
3. torch's `weights_only=True` loader with `mmap=True` in a child process without the token,
   under memory, CPU, output-size and wall-clock limits (engine.source.pickle_load), which writes
   a safetensors copy whose header the engine then validates.

`materialize(root, dest)` builds, in `dest`, a folder that mirrors `root` with each needed pickle
weight set replaced by its safetensors twin (engine.source.layout.safetensors_twin; a shard
index rewritten to name the twins) and every other file linked, never copied. Pickle files not
needed (twins beside safetensors weights, other variants) are left out of it. The returned
record goes into the manifest, the cards and the PR description.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import BadInput
from engine.formats.config_json import read_json_object
from engine.source.layout import (
    COMPONENT_STEMS,
    PICKLE_SUFFIXES,
    Precision,
    WeightFiles,
    list_local_files,
    safetensors_twin,
    select_pickle_weights,
)
from engine.source.pickle_load import load_all_in_child
from engine.source.pickle_scan import scan_pickle_file

log = logging.getLogger("unetbot.engine")

_PICKLE_INDEX = re.compile(r"\.bin\.[^/]*json$")
LOADER = "torch.load(weights_only=True, mmap=True) in a child process without the Hub token"


@dataclass
class PickleRecord:
    """How the pickle files of a source were opened: per file, the Hub's verdict, the static
    scan and the load; `root` is the safetensors folder to open instead of the source."""

    root: Path
    files: dict[str, dict] = field(default_factory=dict)  # pickle path -> its record

    def to_dict(self) -> dict:
        return {"loader": LOADER, "files": self.files}

    def summary(self) -> str:
        """One sentence for cards and PR descriptions."""
        names = ", ".join(self.files)
        verdicts = sorted({f["hub"]["verdict"] for f in self.files.values()})
        scanners = sorted({f["scan"]["scanner"] for f in self.files.values()})
        return (
            f"Converted from pickle weights ({names}). The Hub's security scan: "
            f"{', '.join(verdicts)}; unetbot's static scan ({', '.join(scanners)} with a state "
            f"dict's import allow-list, archive names, storage records and sizes): passed; "
            f"loaded with {LOADER}."
        )


def _unet_folder(files: list[str]) -> str:
    return "unet" if "unet/config.json" in files else ""


def pickle_sets(
    files: Iterable[str], precisions: Iterable[Precision] = tuple(Precision)
) -> list[tuple[str, WeightFiles]]:
    """(component, pickle weight set) for every component whose only weights are pickles, for
    each precision asked (deduplicated), by the same rule as safetensors weights."""
    files = list(files)
    unet_folder = _unet_folder(files)
    components = ("unet", "vae", "text_encoder") if unet_folder else ("unet",)
    out: list[tuple[str, WeightFiles]] = []
    for component in components:
        folder = unet_folder if component == "unet" else component
        stem = COMPONENT_STEMS[component]
        for precision in precisions:
            chosen = select_pickle_weights(files, folder, stem, precision)
            if chosen is not None and (component, chosen) not in out:
                out.append((component, chosen))
    return out


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src.resolve(), dst)


def _rewrite_index(root: Path, dest: Path, index: str, stem: str) -> None:
    """The shard index of the twins: the same map, each shard renamed to its twin."""
    raw = read_json_object(root / index)
    weight_map = raw.get("weight_map")
    if not isinstance(weight_map, dict):
        raise BadInput(f"{root / index}: no weight_map")
    folder = index.rpartition("/")[0]
    prefix = f"{folder}/" if folder else ""
    renamed = {
        name: safetensors_twin(prefix + str(shard), stem).rpartition("/")[2]
        for name, shard in weight_map.items()
    }
    out = dest / safetensors_twin(index, stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**raw, "weight_map": renamed}, indent=2))


def materialize(
    root: Path,
    dest: Path,
    precisions: Iterable[Precision] = tuple(Precision),
    hub_verdicts: Mapping[str, dict] | None = None,
) -> PickleRecord | None:
    """Mirror `root` into `dest` with its needed pickle weights converted (see the module
    docstring); None when no component needs a pickle (open `root` itself then).

    `hub_verdicts` maps each pickle path to the Hub's record of it (bot.client.security); for a
    local folder there is none. Every needed file is scanned before any is loaded."""
    root, dest = Path(root), Path(dest)
    files = list_local_files(root)
    sets = pickle_sets(files, precisions)
    if not sets:
        return None
    record = PickleRecord(dest)
    scans = {}
    for _, weight_set in sets:  # layer 2 for every file before layer 3 for any
        for path in weight_set.weights:
            scans[path] = scan_pickle_file(root / path)
    produced: set[str] = set()
    jobs = [
        (component, path, safetensors_twin(path, COMPONENT_STEMS[component]))
        for component, weight_set in sets
        for path in weight_set.weights
    ]
    log.info("loading %d pickle file(s) in a child process (scans passed)", len(jobs))
    loads = load_all_in_child([(root / path, dest / twin) for _, path, twin in jobs])
    for (_, path, twin), loaded in zip(jobs, loads, strict=True):
        verdict = (hub_verdicts or {}).get(path) or {"verdict": "none (local folder)"}
        record.files[path] = {
            "as": twin,
            "hub": verdict,
            "scan": scans[path].to_dict(),
            "load": loaded,
        }
        produced.add(twin)
    for component, weight_set in sets:
        if weight_set.index:
            stem = COMPONENT_STEMS[component]
            _rewrite_index(root, dest, weight_set.index, stem)
            produced.add(safetensors_twin(weight_set.index, stem))
    for path in files:
        if path in produced or path.endswith(PICKLE_SUFFIXES) or _PICKLE_INDEX.search(path):
            continue
        _link(root / path, dest / path)
    return record
