"""What running a variant costs: load time, peak memory and seconds per UNet step, as data.

Users of a repo with a dozen files ask which one their machine can run and how fast; the cards
gave size and error metrics only. A cost is measured in the consumer that loads the variant,
the way its users load it on a CPU: diffusers `from_single_file` for original safetensors,
`from_single_file` + `GGUFQuantizationConfig` for UNet GGUFs, `from_pretrained` for TorchAO and
Quanto folders (plus `torch.compile` for TorchAO, the backend diffusers recommends for compiled
inference). Files stable-diffusion.cpp reads (full checkpoints, full GGUFs, UNet GGUFs) are
also measured in stable-diffusion.cpp itself when the `sdcpp` extra is installed (`Mode.SDCPP`:
its load, its peak RSS, its seconds per sampling step of a 512 px image; engine.validation.
sdcpp_run). Variants no consumer unetbot runs reads (ComfyUI-GGUF only) are "not measured", with
that reason, never given another consumer's figure.

Measurement itself (engine/cost/probe.py) runs in a fresh process per variant and mode, driven
by engine/cost/run.py; the reference figures shipped with unetbot live in
engine/cost/cost_table.json (engine/cost/table.py). This module holds the shared vocabulary and
imports no torch.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from engine.run.variants import Variant

LATENT = 64  # 64x64 latent = 512x512 pixels, SD1.5's native size
BATCH = 1
COMPUTE_DTYPE = "float32"  # CPU: fp16/bf16 convolutions are orders of magnitude slower here
WARMUP_STEPS = 1  # excluded from the figures (first-call allocations; compilation when compiled)
DEFAULT_STEPS = 3  # timed steps per measurement; the median is reported
TIMESTEP = 500
LCM_GUIDANCE = 8.0


class Mode(StrEnum):
    EAGER = "eager"
    COMPILED = "compiled"  # torch.compile (inductor); the warm-up step includes compilation
    # stable-diffusion.cpp (the `sdcpp` extra): its own load and sampler, text-to-image at
    # LATENT * 8 px, CFG 1; the first sampling step is the warm-up
    SDCPP = "stable-diffusion.cpp"


SDCPP_CONSUMER = "stable-diffusion.cpp"


class Status(StrEnum):
    MEASURED = "measured"
    FAILED = "failed"  # the consumer could not load or run it: the reason says why
    NOT_MEASURED = "not measured"


def diffusers_consumer(variant: Variant) -> str | None:
    """The registry consumer a cost is measured with: the diffusers loader among the variant's
    own consumers (the only consumer unetbot runs), or None."""
    return next((c for c in variant.consumers if c.startswith("diffusers")), None)


def not_measured_reason(variant: Variant) -> str:
    """Why a variant has no cost figure, or "" when it can be measured."""
    if diffusers_consumer(variant) is None:
        names = list(variant.consumers)
        readers = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        if sdcpp_applies(variant):
            return f"read by {readers}: no diffusers figure; see its stable-diffusion.cpp one"
        return f"read by {readers}, which unetbot does not run"
    return ""


def sdcpp_applies(variant: Variant) -> bool:
    """Whether stable-diffusion.cpp reads the variant (and so measures it, with the extra)."""
    return SDCPP_CONSUMER in variant.consumers


def compile_applies(variant: Variant) -> bool:
    """Whether a compiled measurement is made: TorchAO folders, whose quantized tensors are
    built for `torch.compile` (diffusers' quantization docs recommend compiling TorchAO)."""
    return variant.quant_scheme is not None and variant.quant_scheme.method == "torchao"


@dataclass
class Measurement:
    """One fresh process: import, load, one warm-up step, `steps` timed steps.

    Memory is the process's peak resident set (`getrusage` ru_maxrss): after imports
    (`baseline_rss_bytes`), after loading (`load_rss_bytes`) and at the end (`peak_rss_bytes`,
    what a machine must have free). `step_s` is the median of `steps_s`."""

    variant: str
    mode: str
    status: str
    reason: str = ""
    consumer: str = ""
    import_s: float | None = None
    load_s: float | None = None
    warmup_s: float | None = None
    step_s: float | None = None
    steps_s: list[float] = field(default_factory=list)
    baseline_rss_bytes: int | None = None
    load_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    torch_threads: int | None = None
    load_average: float | None = None  # 1-minute load average when the process started

    @property
    def measured(self) -> bool:
        return self.status == Status.MEASURED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Measurement:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def failed(cls, variant: str, mode: str, reason: str, consumer: str = "") -> Measurement:
        return cls(variant, mode, Status.FAILED, reason, consumer)


def median_step(steps_s: list[float]) -> float:
    return statistics.median(steps_s)


@dataclass
class VariantCost:
    """Every figure for one variant: eager, compiled when it applies, or why there is none."""

    variant: str
    file_bytes: int = 0
    eager: Measurement | None = None
    compiled: Measurement | None = None
    not_measured: str = ""  # why no diffusers figure exists (non-empty only then)
    sdcpp: Measurement | None = None  # in stable-diffusion.cpp (Mode.SDCPP)

    @property
    def status(self) -> str:
        if self.eager is None:
            return Status.NOT_MEASURED
        return self.eager.status

    def measurements(self) -> list[Measurement]:
        return [m for m in (self.eager, self.compiled, self.sdcpp) if m is not None]

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "file_bytes": self.file_bytes,
            "eager": self.eager.to_dict() if self.eager else None,
            "compiled": self.compiled.to_dict() if self.compiled else None,
            "not_measured": self.not_measured,
            "sdcpp": self.sdcpp.to_dict() if self.sdcpp else None,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> VariantCost:
        def one(key: str) -> Measurement | None:
            return Measurement.from_dict(raw[key]) if raw.get(key) else None

        return cls(
            raw["variant"],
            int(raw.get("file_bytes", 0)),
            one("eager"),
            one("compiled"),
            raw.get("not_measured", ""),
            one("sdcpp"),
        )


def settings(steps: int, latent: int = LATENT) -> dict:
    """The conditions every figure of a run shares (shown beside the figures)."""
    return {
        "device": "cpu",
        "latent": latent,
        "pixels": latent * 8,
        "batch": BATCH,
        "compute_dtype": COMPUTE_DTYPE,
        "warmup_steps": WARMUP_STEPS,
        "steps": steps,
        "statistic": "median",
        "process": "one fresh process per variant and mode",
    }
