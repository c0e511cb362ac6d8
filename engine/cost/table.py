"""The reference costs shipped with unetbot (engine/cost/cost_table.json), and how they are kept.

Speed and memory depend on the architecture and the file format, not on the weights' values, so
each variant is measured once per converter version, on a reference full-size model (seeded
random weights with SD1.5 LCM shapes, fp16, VAE + CLIP), by `benchmarks/cost.py`, and every card
shows those figures with the machine they were measured on. A figure belongs to the converter
version that wrote the measured file: a card made by another version shows "not measured" until
the benchmark is run for it.

Schema (`schema_version` 1):

    {"schema_version": 1,
     "runs": [{"unetbot_version": "0.1.0",
               "reference": "<what the reference model is>",
               "machine": {<engine.cost.run.machine_info()>},
               "settings": {<engine.cost.model.settings()>},
               "costs": [{<engine.cost.model.VariantCost.to_dict()>}, ...]}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from engine import __version__
from engine.cost.model import VariantCost
from engine.errors import BadInput
from engine.formats.fsio import atomic_write_bytes

SCHEMA_VERSION = 1
TABLE_NAME = "cost_table.json"
REFERENCE_MODEL = (
    "unetbot's reference model: seeded random weights with SD1.5 LCM shapes "
    "(UNet 860M parameters), float16, with VAE and CLIP text encoder"
)


# The config keys that set the UNet's layer shapes (and so its cost); the LCM guidance embedding
# (time_cond_proj_dim) and inpainting's 4 extra input channels change it negligibly.
SHAPE_KEYS = (
    "block_out_channels",
    "layers_per_block",
    "cross_attention_dim",
    "attention_head_dim",
    "down_block_types",
    "up_block_types",
    "transformer_layers_per_block",
    "use_linear_projection",
)


# diffusers' UNet2DConditionModel defaults for the keys older configs leave out
_SHAPE_DEFAULTS = {"transformer_layers_per_block": 1, "use_linear_projection": False}


def _shape_value(config: dict, key: str) -> object:
    """A config value with diffusers' default filled in and a per-block list of one repeated
    value read as that value (diffusers accepts both spellings)."""
    value = config.get(key, _SHAPE_DEFAULTS.get(key))
    per_block = key in ("attention_head_dim", "transformer_layers_per_block")
    if per_block and isinstance(value, list) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def same_shapes_as_reference(unet_config: dict) -> bool | None:
    """Whether a UNet config has the reference model's shapes (None: no config to tell)."""
    if not unet_config:
        return None
    from engine.synthetic.models import unet_config as reference_config

    reference = reference_config("sd15-lcm", "full")
    return all(_shape_value(unet_config, k) == _shape_value(reference, k) for k in SHAPE_KEYS)


@dataclass
class ReferenceRun:
    """All figures of one benchmark run, for one converter version, on one machine."""

    unetbot_version: str
    machine: dict
    settings: dict
    costs: dict[str, VariantCost] = field(default_factory=dict)
    reference: str = REFERENCE_MODEL

    def to_dict(self) -> dict:
        return {
            "unetbot_version": self.unetbot_version,
            "reference": self.reference,
            "machine": self.machine,
            "settings": self.settings,
            "costs": [c.to_dict() for c in self.costs.values()],
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ReferenceRun:
        costs = [VariantCost.from_dict(c) for c in raw.get("costs", [])]
        return cls(
            raw["unetbot_version"],
            raw.get("machine", {}),
            raw.get("settings", {}),
            {c.variant: c for c in costs},
            raw.get("reference", REFERENCE_MODEL),
        )


def _shipped() -> Path:
    return Path(str(resources.files("engine.cost") / TABLE_NAME))


def load_runs(path: Path | None = None) -> list[ReferenceRun]:
    """Every run in the table (the shipped one by default); a missing or malformed table is an
    error (it is package data: losing it is a packaging bug, not a reason to show nothing)."""
    path = path or _shipped()
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read the cost table ({exc})") from None
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(f"{path}: schema_version {raw.get('schema_version')} is not 1")
    return [ReferenceRun.from_dict(r) for r in raw.get("runs", [])]


def reference_run(version: str = __version__, path: Path | None = None) -> ReferenceRun | None:
    """The figures measured for files of converter `version`, or None (then: not measured)."""
    return next((r for r in load_runs(path) if r.unetbot_version == version), None)


def save_run(run: ReferenceRun, path: Path | None = None) -> Path:
    """Store `run`, replacing the run of the same converter version (others are kept)."""
    path = Path(path or _shipped())
    runs = load_runs(path) if path.exists() else []
    versions = [r.unetbot_version for r in runs]
    if run.unetbot_version in versions:
        runs[versions.index(run.unetbot_version)] = run
    else:
        runs.append(run)
    text = json.dumps(
        {"schema_version": SCHEMA_VERSION, "runs": [r.to_dict() for r in runs]}, indent=1
    )
    return atomic_write_bytes(path, (text + "\n").encode())
