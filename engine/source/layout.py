"""The weight-selection rule: which files of a component folder hold the weights unetbot reads.

One pure function of a file list, used for local folders (`engine.source.folder`,
`engine.writers.diffusers_quant`) and for Hub repos (`bot.client.repo_files`, from `model_info`
siblings), so the bot downloads exactly the files the engine will read.

A component folder (`unet/`, `vae/`, `text_encoder/`, or the repo root of a bare UNet repo) can
hold two weight sets:

* the main weights: `{stem}.safetensors`, or a shard index `{stem}.safetensors.index.json` with
  shards `{stem}-00001-of-0000N.safetensors`;
* the `fp16` variant (diffusers/transformers `variant="fp16"`): `{stem}.fp16.safetensors`, or
  `{stem}.safetensors.index.fp16.json` with shards `{stem}.fp16-00001-of-0000N.safetensors`
  (what both libraries write today), or diffusers' legacy variant sharding
  `{stem}.safetensors.fp16.index.json` with `{stem}-00001-of-0000N.fp16.safetensors` (still read
  by diffusers: `model_loading_utils._fetch_index_file_legacy`).

Everything else is never selected: other variants (`non_ema`, `ema`), pickles (`.bin`, `.ckpt`,
...; refused, never opened), ONNX/Flax files, stray files. When a variant has both a single file
and a shard index, the one its loading library reads wins: diffusers' `ModelMixin.from_pretrained`
looks for the index first, transformers' `PreTrainedModel.from_pretrained` for the single file
(`modeling_utils._get_resolved_checkpoint_files`).

Which set is read depends on the precision asked for:

* `Precision.HALF`: the fp16 variant when present, else the main weights. Quantized outputs are
  made from it (they are stored in half precision anyway), so the bot never downloads an fp32
  file for them.
* `Precision.MAIN`: the main weights when present, else the fp16 variant. The pull request
  mirrors it; when both exist, the fp16 variant is a second file (`(MAIN, HALF)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from engine.errors import BadInput

# Pickle weight files: refused from their names alone, never opened.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENSE.rtf")
FP16 = "fp16"
# Weight-file stems per component (diffusers models vs transformers models).
COMPONENT_STEMS = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}
_TRANSFORMERS_STEMS = {"model", "pytorch_model"}
# The pickle weight stem of each safetensors stem (transformers saved `pytorch_model.bin`).
PICKLE_STEMS = {"diffusion_pytorch_model": "diffusion_pytorch_model", "model": "pytorch_model"}
_SHARD = r"-(\d{5})-of-(\d{5})"


class Precision(StrEnum):
    """Which weight set of a component to read (see the module docstring)."""

    HALF = "half"
    MAIN = "main"


@dataclass(frozen=True)
class WeightFiles:
    """One weight set of one component folder: repo-relative POSIX paths.

    `problem` is non-empty when the set is present but unusable (a shard missing from a
    numbered series); callers raise MissingFile with it rather than fall back silently."""

    folder: str  # "unet", "vae", "text_encoder", or "" for the repo root
    variant: str | None  # None: the main weights; "fp16": the fp16 variant
    weights: tuple[str, ...]  # safetensors files, in shard order
    index: str | None = None  # shard index, when sharded
    problem: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file of the set (index first): what to download, what was read."""
        return ((self.index,) if self.index else ()) + self.weights


def _in_folder(files: Iterable[str], folder: str) -> dict[str, str]:
    """name -> repo path of the files directly inside `folder` ("" = root)."""
    prefix = f"{folder}/" if folder else ""
    out = {}
    for path in files:
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if "/" not in name:
                out[name] = path
    return out


def _shards(
    names: dict[str, str], pattern: str, folder: str, variant: str | None, index: str
) -> WeightFiles:
    regex = re.compile(pattern)
    found: dict[int, tuple[int, str]] = {}
    for name, path in names.items():
        m = regex.fullmatch(name)
        if m:
            found[int(m.group(1))] = (int(m.group(2)), path)
    totals = {total for total, _ in found.values()}
    problem = ""
    if not found:
        problem = f"{index}: no shard files beside the index"
    elif len(totals) != 1:
        problem = f"{index}: shards of different series ({sorted(totals)} in total)"
    else:
        total = totals.pop()
        missing = [i for i in range(1, total + 1) if i not in found]
        extra = [i for i in found if not 1 <= i <= total]
        if missing or extra:
            problem = f"{index}: shard(s) {missing or extra} of {total} missing or out of range"
    weights = tuple(path for _, (_, path) in sorted(found.items()))
    return WeightFiles(folder, variant, weights, index, problem)


def _variant_set(
    names: dict[str, str], folder: str, stem: str, variant: str | None, ext: str = "safetensors"
):
    """The weight set of one variant in one folder, or None (`ext` "bin": its pickle twin)."""
    s, e = re.escape(stem), re.escape(ext)
    if variant is None:
        single = f"{stem}.{ext}"
        indexes = [(f"{stem}.{ext}.index.json", rf"{s}{_SHARD}\.{e}")]
    else:
        v = re.escape(variant)
        single = f"{stem}.{variant}.{ext}"
        indexes = [
            (f"{stem}.{ext}.index.{variant}.json", rf"{s}\.{v}{_SHARD}\.{e}"),
            (f"{stem}.{ext}.{variant}.index.json", rf"{s}{_SHARD}\.{v}\.{e}"),
        ]
    single_set = WeightFiles(folder, variant, (names[single],)) if single in names else None
    present = [(names[idx], pattern) for idx, pattern in indexes if idx in names]
    sharded = _shards(names, present[0][1], folder, variant, present[0][0]) if present else None
    if single_set and sharded:
        return single_set if stem in _TRANSFORMERS_STEMS else sharded
    return single_set or sharded


def weight_sets(files: Iterable[str], folder: str, stem: str) -> dict[str | None, WeightFiles]:
    """Every weight set the rule knows in `folder`: keys None (main) and "fp16" when present."""
    names = _in_folder(files, folder)
    sets = {v: _variant_set(names, folder, stem, v) for v in (None, FP16)}
    return {v: s for v, s in sets.items() if s is not None}


def select_weights(
    files: Iterable[str], folder: str, stem: str, precision: Precision
) -> WeightFiles | None:
    """The weight set read for `precision` (None when the folder has no safetensors weights)."""
    sets = weight_sets(files, folder, stem)
    order = (FP16, None) if Precision(precision) is Precision.HALF else (None, FP16)
    return next((sets[v] for v in order if v in sets), None)


def select_for(
    files: Iterable[str], folder: str, stem: str, precisions: Iterable[Precision]
) -> list[WeightFiles]:
    """The distinct weight sets read for several precisions (e.g. `(MAIN, HALF)` for a PR)."""
    files = list(files)
    out: list[WeightFiles] = []
    for p in precisions:
        chosen = select_weights(files, folder, stem, p)
        if chosen is not None and chosen not in out:
            out.append(chosen)
    return out


def pickle_weight_sets(
    files: Iterable[str], folder: str, stem: str
) -> dict[str | None, WeightFiles]:
    """The pickle (`.bin`) weight sets of `folder`, named as diffusers and transformers saved
    them before safetensors became their default (`{stem}.bin`, `pytorch_model.bin`, the same
    variant and shard names with `.bin`). Only engine.source.pickle_source opens them."""
    names = _in_folder(files, folder)
    pstem = PICKLE_STEMS.get(stem, stem)
    sets = {v: _variant_set(names, folder, pstem, v, "bin") for v in (None, FP16)}
    return {v: s for v, s in sets.items() if s is not None}


def select_pickle_weights(
    files: Iterable[str], folder: str, stem: str, precision: Precision
) -> WeightFiles | None:
    """`select_weights` for a folder whose only weights are pickles (None when it has
    safetensors weights or no pickle set)."""
    files = list(files)
    if weight_sets(files, folder, stem):
        return None
    sets = pickle_weight_sets(files, folder, stem)
    order = (FP16, None) if Precision(precision) is Precision.HALF else (None, FP16)
    return next((sets[v] for v in order if v in sets), None)


def safetensors_twin(path: str, stem: str) -> str:
    """The safetensors name of a pickle weight file or index of `stem` (what the component
    would hold had it been saved with safetensors): `text_encoder/pytorch_model.bin` ->
    `text_encoder/model.safetensors`, `unet/diffusion_pytorch_model.bin.index.json` ->
    `unet/diffusion_pytorch_model.safetensors.index.json`."""
    folder, _, name = path.rpartition("/")
    pstem = PICKLE_STEMS.get(stem, stem)
    if not name.startswith(pstem) or ".bin" not in name[len(pstem) :]:
        raise BadInput(f"{path}: not a pickle weight file of {pstem}")
    twin = stem + name[len(pstem) :].replace(".bin", ".safetensors", 1)
    return f"{folder}/{twin}" if folder else twin


def pickle_files(files: Iterable[str], folder: str) -> list[str]:
    """Pickle weight files directly in `folder` (named only; never opened)."""
    names = _in_folder(files, folder)
    return sorted(path for name, path in names.items() if name.endswith(PICKLE_SUFFIXES))


def license_files(files: Iterable[str]) -> list[str]:
    files = set(files)
    return [n for n in LICENSE_NAMES if n in files]


# Local folders are listed to this depth: the root and one level of component folders.
_LIST_DEPTH = 2
# More entries than any model repo has; a folder with more is not a source (and listing it
# would be unbounded work).
MAX_LISTED_FILES = 10_000


def list_local_files(root: Path) -> list[str]:
    """Repo-relative POSIX paths of the files of a local folder, as a Hub file list would give
    them: the root and its direct subfolders, hidden entries (`.cache`, `.git`) skipped."""
    root = Path(root)
    out: list[str] = []
    stack: list[tuple[Path, str, int]] = [(root, "", 1)]
    while stack:
        folder, prefix, depth = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                if depth < _LIST_DEPTH:
                    stack.append((entry, f"{rel}/", depth + 1))
            elif entry.is_file():
                out.append(rel)
                if len(out) > MAX_LISTED_FILES:
                    raise BadInput(f"{root}: more than {MAX_LISTED_FILES} files; not a model repo")
    return sorted(out)
