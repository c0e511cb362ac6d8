"""What a repo (or local folder) is, from its file list and its small JSON files alone.

One pure function for both local folders (`engine.source.folder`) and Hub repos (the bot passes the
`model_info` siblings and the downloaded `model_index.json` / `config.json`), so both refuse the
same repos for the same reason before any weights are read:

| kind | recognised by | outcome |
|---|---|---|
| diffusers pipeline | `unet/config.json` | UNet converted (+ `vae/`, `text_encoder/`) |
| bare UNet repo | root `config.json`, `_class_name` UNet2DConditionModel | converted like `unet/` |
| LoRA / adapter | `pytorch_lora_weights.*`, `adapter_config.json`, `adapter_model.*` | refused |
| ControlNet | root `config.json`, `_class_name` ControlNetModel (or T2I/XS adapters) | refused |
| other model | any other root `config.json` or a pipeline without `unet/` | refused |
| single files only | root `*.safetensors` / `*.ckpt` and nothing else | each file a source (*) |
| nothing | none of the above | missing file |

"Refused" is `UnsupportedArchitecture` (exit 3) with a reason naming what the repo is. (*) A
repo of single-file checkpoints is judged file by file (bot/discover/single_files.py,
engine.source.single_file); as a folder it is refused, naming `bot convert FILE`.
Whether the UNet itself is SD1.5-family is `engine.source.classify`'s question, asked next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from engine.errors import MissingFile, UnetbotError, UnsupportedArchitecture

MODEL_INDEX = "model_index.json"
ROOT_CONFIG = "config.json"
UNET_CONFIG = "unet/config.json"
# Adapter files as diffusers (`LORA_WEIGHT_NAME_SAFE` in loaders/lora_base.py) and peft
# (`ADAPTER_CONFIG_NAME`, `ADAPTER_SAFE_WEIGHTS_NAME`) name them.
ADAPTER_FILES = (
    "pytorch_lora_weights.safetensors",
    "pytorch_lora_weights.bin",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
_CONTROL_CLASSES = {
    "ControlNetModel": "a ControlNet (ControlNetModel)",
    "SparseControlNetModel": "a sparse ControlNet (SparseControlNetModel)",
    "ControlNetXSAdapter": "a ControlNet-XS adapter",
    "MultiControlNetModel": "a multi-ControlNet",
    "T2IAdapter": "a T2I-Adapter",
    "MultiAdapter": "a T2I multi-adapter",
}
_WHAT = {
    "AutoencoderKL": "a VAE (AutoencoderKL)",
    "AutoencoderTiny": "a tiny VAE (AutoencoderTiny)",
    "UNet2DModel": "an unconditional UNet (UNet2DModel)",
    "UNetSpatioTemporalConditionModel": "a video UNet",
    "UNetMotionModel": "an AnimateDiff motion UNet",
    "MotionAdapter": "an AnimateDiff motion adapter",
    "PriorTransformer": "a prior transformer",
}
# Root files that are component weights of a bare repo, not stand-alone checkpoints.
_COMPONENT_WEIGHTS = re.compile(
    r"(diffusion_pytorch_model|model|pytorch_lora_weights|adapter_model)"
    r"([.-].*)?\.safetensors"
)


class RepoKind(StrEnum):
    PIPELINE = "diffusers-pipeline"
    BARE_UNET = "bare-unet"
    ADAPTER = "adapter"
    CONTROLNET = "controlnet"
    OTHER_MODEL = "other-model"
    SINGLE_FILES = "single-files-only"
    NO_MODEL = "no-model"


@dataclass(frozen=True)
class RepoLayout:
    """Where a repo's UNet and components are, or why it has none unetbot converts."""

    kind: RepoKind
    reason: str
    unet_folder: str | None = None  # "unet", "" (repo root), None when not convertible
    components: tuple[str, ...] = ()  # "vae", "text_encoder" present with a config.json
    # Root *.safetensors that may be original-format checkpoints (engine.source.checkpoint_match
    # decides from each header).
    root_checkpoints: tuple[str, ...] = ()
    # Root *.ckpt (pickle) checkpoints of a repo of single files: opened only through the
    # pickle path, recognised after it.
    root_pickles: tuple[str, ...] = ()

    @property
    def convertible(self) -> bool:
        return self.kind in (RepoKind.PIPELINE, RepoKind.BARE_UNET)

    def refusal(self, where: str) -> UnetbotError:
        """The typed error a non-convertible layout is refused with (exit 3, or 2 if empty)."""
        if self.kind is RepoKind.NO_MODEL:
            return MissingFile(f"{where}: {self.reason}")
        if self.kind is RepoKind.SINGLE_FILES:
            return UnsupportedArchitecture(
                f"{where}: {self.reason}; convert each file as a source of its own "
                "(`bot convert FILE`)"
            )
        return UnsupportedArchitecture(
            f"{where}: {self.reason}; unetbot converts SD1.5-family UNets only"
        )


def layout_json_files(files: Iterable[str]) -> list[str]:
    """The small JSON files `classify_repo` reads, among `files` (fetch these, size-capped)."""
    files = set(files)
    return [p for p in (MODEL_INDEX, ROOT_CONFIG) if p in files]


def _class_of(config: Mapping | None) -> str:
    value = config.get("_class_name") if isinstance(config, Mapping) else None
    return value if isinstance(value, str) else ""


def _transformers_model(config: Mapping) -> str:
    arch = config.get("architectures")
    if isinstance(arch, list) and arch and isinstance(arch[0], str):
        return arch[0]
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else ""


def _root_checkpoints(files: set[str]) -> tuple[str, ...]:
    return tuple(
        sorted(
            p
            for p in files
            if "/" not in p and p.endswith(".safetensors") and not _COMPONENT_WEIGHTS.fullmatch(p)
        )
    )


def _pipeline_components(model_index: Mapping | None) -> list[str]:
    if not isinstance(model_index, Mapping):
        return []
    return sorted(
        k
        for k, v in model_index.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None
    )


def classify_repo(
    files: Iterable[str], model_index: Mapping | None = None, root_config: Mapping | None = None
) -> RepoLayout:
    """The layout of a repo from its file list (repo-relative POSIX paths) and its parsed
    `model_index.json` / root `config.json` (None when absent)."""
    files = set(files)
    checkpoints = _root_checkpoints(files)
    if UNET_CONFIG in files:
        components = tuple(c for c in ("vae", "text_encoder") if f"{c}/config.json" in files)
        return RepoLayout(
            RepoKind.PIPELINE, "diffusers pipeline (unet/)", "unet", components, checkpoints
        )
    adapters = [f for f in ADAPTER_FILES if f in files]
    if adapters:
        return RepoLayout(
            RepoKind.ADAPTER,
            f"LoRA/adapter weights only ({', '.join(adapters)}): an adapter applied to a base "
            "model, not a UNet",
            root_checkpoints=checkpoints,
        )
    if MODEL_INDEX in files:
        pipeline = _class_of(model_index) or "a pipeline"
        if isinstance(model_index, Mapping) and "unet" in _pipeline_components(model_index):
            return RepoLayout(
                RepoKind.NO_MODEL, f"{pipeline} lists a unet but {UNET_CONFIG} is missing"
            )
        parts = ", ".join(_pipeline_components(model_index)) or "none"
        return RepoLayout(
            RepoKind.OTHER_MODEL,
            f"{pipeline} has no unet/ (components: {parts})",
            root_checkpoints=checkpoints,
        )
    if ROOT_CONFIG in files:
        return _classify_root_config(root_config or {}, checkpoints)
    ckpts = tuple(sorted(p for p in files if "/" not in p and p.endswith(".ckpt")))
    if checkpoints or ckpts:
        return RepoLayout(
            RepoKind.SINGLE_FILES,
            f"single-file checkpoints only ({', '.join((checkpoints + ckpts)[:3])}), no "
            "diffusers folders",
            root_checkpoints=checkpoints,
            root_pickles=ckpts,
        )
    return RepoLayout(
        RepoKind.NO_MODEL, f"neither {MODEL_INDEX}, {UNET_CONFIG} nor {ROOT_CONFIG} found"
    )


def _classify_root_config(config: Mapping, checkpoints: tuple[str, ...]) -> RepoLayout:
    cls = _class_of(config)
    if cls == "UNet2DConditionModel":
        return RepoLayout(
            RepoKind.BARE_UNET, "bare UNet repo (config.json at the root)", "", (), checkpoints
        )
    if cls in _CONTROL_CLASSES:
        return RepoLayout(
            RepoKind.CONTROLNET,
            f"{_CONTROL_CLASSES[cls]}: a conditioning model for a UNet, not a UNet",
            root_checkpoints=checkpoints,
        )
    if cls:
        what = _WHAT.get(cls, f"diffusers {cls}")
        return RepoLayout(
            RepoKind.OTHER_MODEL,
            f"{what}, not a UNet2DConditionModel",
            root_checkpoints=checkpoints,
        )
    model = _transformers_model(config)
    if model:
        return RepoLayout(
            RepoKind.OTHER_MODEL,
            f"a transformers model ({model}), not a diffusers UNet",
            root_checkpoints=checkpoints,
        )
    return RepoLayout(
        RepoKind.OTHER_MODEL,
        f"{ROOT_CONFIG} names no model class (_class_name)",
        root_checkpoints=checkpoints,
    )
