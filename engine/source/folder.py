"""Open and check a diffusers source: a pipeline folder or a bare UNet folder.

Only small JSON files and safetensors headers are read (plus the 77 integers of a CLIP
`position_ids` buffer, see `engine.source.component_check`). Everything is checked here, before any
output exists: the repo layout (engine.source.repo_kind), every config field
(engine.source.config_schema), which files hold the weights (engine.source.layout), every header
(engine.formats.safetensors_io) and every tensor name and shape against the config
(engine.source.component_check). Pickle weights (`.bin`, `.ckpt`, `.pt`) are refused, never opened:
unpickling a Hub file can run arbitrary code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInput, MissingFile, PickleRefused
from engine.formats.config_json import read_json_object
from engine.formats.safetensors_io import (
    SafetensorsHeader,
    TensorSpec,
    read_header,
    read_weight_map,
)
from engine.source.classify import Classification, classify_unet
from engine.source.component_check import check_clip, check_unet, check_vae
from engine.source.config_schema import check_clip_config, check_vae_config
from engine.source.layout import (
    COMPONENT_STEMS,
    FP16,
    LICENSE_NAMES,
    PICKLE_SUFFIXES,
    Precision,
    WeightFiles,
    list_local_files,
    pickle_files,
    select_weights,
    weight_sets,
)
from engine.source.repo_kind import (
    MODEL_INDEX,
    ROOT_CONFIG,
    RepoLayout,
    classify_repo,
)

__all__ = [
    "LICENSE_NAMES",
    "PICKLE_SUFFIXES",
    "Component",
    "Precision",
    "Source",
    "open_component",
    "open_source",
]


@dataclass(frozen=True)
class Component:
    """One model folder (unet, vae or text_encoder): its config and validated weight headers."""

    name: str
    folder: Path
    config: dict
    headers: tuple[SafetensorsHeader, ...]
    variant: str | None = None  # None: the main weights; "fp16": the fp16 variant files
    files: tuple[Path, ...] = ()  # every file read: config.json, shard index, weights
    # Tensors present in the files but deliberately left out of every output, with the reason
    # (only a CLIP `position_ids` buffer verified to be 0..n-1; see engine.source.component_check).
    ignored: tuple[tuple[str, str], ...] = ()

    def tensors(self) -> list[tuple[SafetensorsHeader, TensorSpec]]:
        """Every tensor with the header it lives in, in file then data-offset order."""
        skip = {name for name, _ in self.ignored}
        return [(h, t) for h in self.headers for t in h.tensors if t.name not in skip]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for _, t in self.tensors()}

    @property
    def weight_files(self) -> tuple[Path, ...]:
        return tuple(h.path for h in self.headers)

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
    precision: Precision = Precision.MAIN
    layout: RepoLayout | None = None
    # Component folders present but not used, with why (e.g. a pickle-only vae/).
    notes: tuple[str, ...] = ()
    # The weight sets the UNet folder holds: None (main weights) and/or "fp16".
    unet_variants: tuple[str | None, ...] = (None,)

    @property
    def has_full_pipeline(self) -> bool:
        return self.vae is not None and self.text_encoder is not None

    @property
    def fp16_twin_available(self) -> bool:
        """Read from the main weights while an fp16 variant exists too: the PR mirrors both,
        the second from `open_source(root, Precision.HALF)`."""
        return self.unet.variant is None and FP16 in self.unet_variants


def _relative(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return "" if rel == "." else rel


def _open_weights(
    root: Path, folder: Path, files: list[str], stem: str, precision: Precision
) -> tuple[WeightFiles, tuple[SafetensorsHeader, ...]]:
    """Select, read and cross-check one component's weight files (all headers validated)."""
    rel = _relative(root, folder)
    chosen = select_weights(files, rel, stem, precision)
    if chosen is None:
        pickles = pickle_files(files, rel)
        if pickles:
            names = ", ".join(p.rsplit("/", 1)[-1] for p in pickles)
            raise PickleRefused(
                f"{folder}: only pickle weights ({names}); they are opened only through "
                "the pickle path (engine.source.pickle_source: scan, then a child process)"
            )
        raise MissingFile(f"{folder}: no {stem}.safetensors (or sharded index) found")
    if chosen.problem:
        raise MissingFile(f"{root}: {chosen.problem}")
    headers = tuple(read_header(root / p) for p in chosen.weights)
    if chosen.index is not None:
        _check_index(root / chosen.index, headers)
    seen: set[str] = set()
    for h in headers:
        for t in h.tensors:
            if t.name in seen:
                raise BadInput(f"{h.path}: tensor {t.name!r} appears in two shards")
            seen.add(t.name)
    return chosen, headers


def _check_index(index: Path, headers: tuple[SafetensorsHeader, ...]) -> None:
    """The index must describe the shards exactly: the same files, each tensor where it says."""
    weight_map = read_weight_map(index)
    by_shard = {h.path.name: {t.name for t in h.tensors} for h in headers}
    listed = set(weight_map.values())
    if listed != set(by_shard):
        raise BadInput(
            f"{index}: names shards {sorted(listed)}, but the folder's shard series is "
            f"{sorted(by_shard)}"
        )
    for shard, names in by_shard.items():
        claimed = {n for n, s in weight_map.items() if s == shard}
        if claimed != names:
            odd = sorted(claimed ^ names)[:3]
            raise BadInput(f"{index}: disagrees with {shard} about tensors {odd}")


def _component_files(root: Path, folder: Path, chosen: WeightFiles) -> tuple[Path, ...]:
    return (folder / "config.json", *(root / p for p in chosen.paths))


def open_component(
    folder: Path,
    name: str,
    precision: Precision = Precision.MAIN,
    root: Path | None = None,
    files: list[str] | None = None,
) -> Component:
    """One component folder, checked: config fields, weight headers, every tensor name and shape
    against the config (UNet only when it is a supported kind: others are refused later)."""
    folder = Path(folder)
    root = Path(root) if root is not None else folder
    files = files if files is not None else list_local_files(root)
    if name == "unet":
        return _open_unet(root, folder, files, precision)[0]
    config = read_json_object(folder / "config.json")
    chosen, headers = _open_weights(root, folder, files, COMPONENT_STEMS[name], precision)
    ignored: tuple[tuple[str, str], ...] = ()
    if name == "vae":
        check_vae(check_vae_config(config, str(folder / "config.json")), headers)
    elif name == "text_encoder":
        ignored = check_clip(check_clip_config(config, str(folder / "config.json")), headers)
    files_read = _component_files(root, folder, chosen)
    return Component(name, folder, config, headers, chosen.variant, files_read, ignored)


def _open_unet(root: Path, folder: Path, files: list[str], precision: Precision):
    config_path = folder / "config.json"
    config = read_json_object(config_path)
    classify_unet(config, None, str(config_path))  # BadConfig before any weights are read
    chosen, headers = _open_weights(root, folder, files, COMPONENT_STEMS["unet"], precision)
    unet = Component(
        "unet", folder, config, headers, chosen.variant, _component_files(root, folder, chosen)
    )
    classification = classify_unet(config, unet.shapes(), str(config_path))
    if classification.supported:
        check_unet(config, headers, str(config_path))
    return unet, classification


def _optional_component(
    root: Path, name: str, files: list[str], precision: Precision, notes: list[str]
) -> Component | None:
    """vae/ or text_encoder/ of a pipeline: checked like the UNet when usable; a folder that is
    not the SD component (another class) or has no safetensors weights is noted and left out
    (only the full checkpoint needs it). A malformed file is still an error."""
    folder = root / name
    if not (folder / "config.json").is_file():
        return None
    config = read_json_object(folder / "config.json")
    origin = str(folder / "config.json")
    checked = (
        check_vae_config(config, origin) if name == "vae" else check_clip_config(config, origin)
    )
    reason = checked.unsupported_reason()
    if reason:
        notes.append(f"{name}/: {reason}; full checkpoints not offered")
        return None
    stem = COMPONENT_STEMS[name]
    if not weight_sets(files, name, stem):
        what = "only pickle weights" if pickle_files(files, name) else "no safetensors weights"
        notes.append(f"{name}/: {what}; full checkpoints not offered")
        return None
    return open_component(folder, name, precision, root, files)


def _read_small_json(root: Path, files: list[str], name: str) -> dict | None:
    return read_json_object(root / name) if name in files else None


def open_source(path: Path, precision: Precision = Precision.MAIN) -> Source:
    """Open a pipeline folder (with `unet/`) or a bare UNet folder, check it all and classify it.

    `precision` picks the weight set of each component (engine.source.layout): `MAIN` (the main
    weights, else the fp16 variant) or `HALF` (the fp16 variant, else the main weights)."""
    root = Path(path)
    if not root.is_dir():
        raise MissingFile(f"{root}: source folder not found")
    precision = Precision(precision)
    files = list_local_files(root)
    layout = classify_repo(
        files,
        _read_small_json(root, files, MODEL_INDEX),
        _read_small_json(root, files, ROOT_CONFIG),
    )
    if not layout.convertible:
        raise layout.refusal(str(root))
    assert layout.unet_folder is not None
    unet_dir = root / layout.unet_folder if layout.unet_folder else root
    unet, classification = _open_unet(root, unet_dir, files, precision)
    notes: list[str] = []
    vae = te = None
    if layout.unet_folder:
        vae = _optional_component(root, "vae", files, precision, notes)
        te = _optional_component(root, "text_encoder", files, precision, notes)
    licenses = tuple(root / n for n in LICENSE_NAMES if n in files)
    variants = tuple(weight_sets(files, layout.unet_folder, COMPONENT_STEMS["unet"]))
    return Source(
        root, unet, vae, te, classification, licenses, precision, layout, tuple(notes), variants
    )
