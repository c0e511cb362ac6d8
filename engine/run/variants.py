"""The variant registry: one entry per artifact kind unetbot can produce.

Each variant is data (name, format, who loads it, expected size, where it is published, its
thresholds) plus the functions that write and validate it, so `bot variants` lists them,
`--variants all` expands them, cards pick their sections from `family`, and adding a variant is
adding one entry (the way gguf-py registers one class per quantization type). No code outside
this module reads meaning out of a variant's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import BadInput
from engine.formats.safetensors_io import write_safetensors
from engine.source.layout import Precision
from engine.validation.check import Check
from engine.validation.thresholds import COMFY_THRESHOLDS, THRESHOLDS, Threshold
from engine.writers.diffusers_quant import SCHEMES, QuantScheme
from engine.writers.gguf_layout import COMFY_GGUF_SIZE, COMFY_GGUF_TYPES, GGUFLayout
from engine.writers.original import Provenance, original_metadata, original_tensors

if TYPE_CHECKING:
    from engine.formats.manifest import Artifact
    from engine.source.folder import Source

GGUF_TYPES = ("F16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1")


class Family(Enum):
    """How an artifact is laid out, which decides its card section and its validator."""

    ORIGINAL = "original single file"
    GGUF = "GGUF"
    DIFFUSERS_QUANT = "diffusers quantized folder"


class PublishTarget(Enum):
    """Where a variant is published: a PR on the source repo, or a repo of the bot's own.

    Each member carries its config key, the suffix of its repo name, the card title and the
    `library_name` its card declares (which picks the Hub's usage snippet)."""

    PR = ("pr", "", "original-format files", "diffusers")
    GGUF = ("gguf", "-GGUF", "GGUF", "gguf")
    TORCHAO = ("torchao", "-torchao-int8", "TorchAO int8", "diffusers")
    QUANTO = ("quanto", "-quanto", "Quanto", "diffusers")

    def __init__(self, key: str, repo_suffix: str, title: str, library: str) -> None:
        self.key = key
        self.repo_suffix = repo_suffix
        self.title = title
        self.library = library

    @property
    def is_pr(self) -> bool:
        return self is PublishTarget.PR

    @classmethod
    def from_key(cls, key: str) -> PublishTarget:
        for target in cls:
            if target.key == key:
                return target
        raise BadInput(f"unknown publish target {key!r}; known: {[t.key for t in cls]}")


REPO_TARGETS = (PublishTarget.GGUF, PublishTarget.TORCHAO, PublishTarget.QUANTO)


@dataclass(frozen=True)
class Written:
    """What a variant writer produced: the main weights file, every file, and details."""

    main: Path
    files: list[Path]
    details: dict = field(default_factory=dict)
    # sha256 of files, computed by the writer from the bytes it wrote (engine.formats.output_hash);
    # files not in it are hashed from disk
    sha256: dict[Path, str] = field(default_factory=dict)


# (variant, source, out_dir, stem, provenance, what earlier variants of this run wrote)
Writer = Callable[["Variant", "Source", Path, str, Provenance, dict[str, Written]], Written]
# (what to expect of the artifact, the artifact, validation context) -> validation result
Validator = Callable[[Check, "Artifact", Any], Any]


@dataclass(frozen=True)
class Variant:
    name: str
    format: str
    consumers: tuple[str, ...]
    description: str
    size_vs_fp16_unet: float  # expected output bytes / fp16 UNet bytes (full: plus VAE + CLIP)
    family: Family
    target: PublishTarget
    writer: Writer = field(repr=False)
    validator: Validator = field(repr=False)
    # UNet + VAE + CLIP in one file: the source needs vae/ and text_encoder/
    full_checkpoint: bool = False
    gguf_type: str | None = None  # GGUF variants: the type of the quantized Linear weights
    quant_scheme: QuantScheme | None = None  # diffusers-quantized variants
    # Output metrics bounds; None: no quantization, every tensor must equal the source's
    threshold: Threshold | None = None
    # The writer holds a whole model in memory (GBs: diffusers quantization). Such writers run
    # before validation starts, never beside it; streaming writers (~100 MB) overlap with it.
    loads_model: bool = False
    # Which weight set it is made from (engine.source.layout): the exact originals mirror the main
    # weights; everything stored in half precision anyway reads the fp16 variant when there is
    # one, so an fp32 file is never downloaded for it.
    precision: Precision = Precision.HALF
    # Only when the source has both main weights and an fp16 variant: the PR's second file,
    # mirroring the fp16 variant as the first mirrors the main weights.
    fp16_twin: bool = False
    # GGUF variants: the tensor layout (ALL_CONSUMERS unless ComfyUI-GGUF alone loads it)
    gguf_layout: GGUFLayout = GGUFLayout.ALL_CONSUMERS

    @property
    def needs_full_pipeline(self) -> bool:
        return self.full_checkpoint

    @cached_property
    def check(self) -> Check:
        """What its validator is told: the facts of this entry that decide how it is proven."""
        return Check(
            self.name, self.full_checkpoint, self.gguf_type, self.quant_scheme, self.threshold
        )

    @property
    def lossless(self) -> bool:
        """No quantization: the file holds the source's tensors (bytes, or a float cast)."""
        return self.check.lossless

    def write(
        self, source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier: dict
    ) -> Written:
        return self.writer(self, source, out_dir, stem, provenance, earlier)

    def validate(self, artifact: Artifact, ctx: Any) -> Any:
        return self.validator(self.check, artifact, ctx)


# ---------------------------------------------------------------- writers


def _write_original(
    variant: Variant, source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier
) -> Written:
    full = variant.full_checkpoint
    suffix = ".fp16" if variant.fp16_twin else ""
    name = f"{stem}{suffix}.safetensors" if full else f"{stem}.unet{suffix}.safetensors"
    path = out_dir / name
    # write_original's body, keeping the sha256 write_safetensors computed while writing
    tensors = original_tensors(source, full)
    sha256 = write_safetensors(path, tensors, original_metadata(source, provenance, full))
    return Written(path, [path], {"lcm_cond_proj": source.classification.is_lcm}, {path: sha256})


def _write_gguf(
    variant: Variant, source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier
) -> Written:
    from engine.writers.gguf_artifact import write_gguf_artifact

    qtype, full = variant.gguf_type, variant.full_checkpoint
    assert qtype is not None
    path = out_dir / f"{stem}-{'full-' if full else ''}{qtype}.gguf"
    # A full GGUF holds the same UNet tensors as this run's UNet-only GGUF of its type.
    unet_gguf = next(
        (
            w
            for name, w in earlier.items()
            if VARIANTS[name].gguf_type == qtype
            and not VARIANTS[name].full_checkpoint
            and VARIANTS[name].gguf_layout is GGUFLayout.ALL_CONSUMERS
        ),
        None,
    )
    reuse = unet_gguf.main if full and unet_gguf is not None else None
    written = write_gguf_artifact(source, path, qtype, full, provenance, reuse)
    return Written(path, [path], written.details, {path: written.sha256})


def _write_comfy_gguf(
    variant: Variant, source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier
) -> Written:
    from engine.writers.comfy_gguf import write_comfy_gguf

    assert variant.gguf_type is not None
    path = out_dir / f"{stem}-comfy-{variant.gguf_type}.gguf"
    written = write_comfy_gguf(source, path, variant.gguf_type, provenance)
    return Written(path, [path], written.details, {path: written.sha256})


def _write_diffusers_quant(
    variant: Variant, source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier
) -> Written:
    from engine.writers.diffusers_quant import quantize_unet

    scheme = variant.quant_scheme
    assert scheme is not None
    result = quantize_unet(source.unet.folder, out_dir / scheme.name, scheme)
    main = max(result.files, key=lambda p: p.stat().st_size)
    return Written(
        main,
        list(result.files),
        {
            "load_dtype": result.load_dtype,
            "quantized_linear": result.quantized_linear,
            "kept_linear": result.kept_linear,
            "folder": scheme.name,
        },
    )


# ---------------------------------------------------------------- validators (lazy: torch)


def _validate_original(check: Check, artifact: Artifact, ctx: Any) -> Any:
    from engine.validation.original import validate_original

    return validate_original(check, artifact, ctx)


def _validate_gguf(check: Check, artifact: Artifact, ctx: Any) -> Any:
    from engine.validation.gguf_file import validate_gguf

    return validate_gguf(check, artifact, ctx)


def _validate_comfy_gguf(check: Check, artifact: Artifact, ctx: Any) -> Any:
    from engine.validation.comfy_gguf import validate_comfy_gguf

    return validate_comfy_gguf(check, artifact, ctx)


def _validate_diffusers_quant(check: Check, artifact: Artifact, ctx: Any) -> Any:
    from engine.validation.diffusers_quant import validate_diffusers_quant

    return validate_diffusers_quant(check, artifact, ctx)


# ---------------------------------------------------------------- the registry

_GGUF_CONSUMERS = ("ComfyUI-GGUF", "stable-diffusion.cpp", "diffusers (GGUFQuantizationConfig)")
# Linear weights are ~31% of SD1.5's parameters; only they are quantized (bits per weight:
# Q8_0 8.5, Q5_1 6, Q5_0 5.5, Q4_1 5, Q4_0 4.5), the rest stays F16.
_GGUF_SIZE = {"F16": 1.0, "Q8_0": 0.85, "Q5_0": 0.79, "Q5_1": 0.8, "Q4_0": 0.77, "Q4_1": 0.78}
_VAE_CLIP_SIZE = 0.24  # VAE + CLIP text encoder, relative to the fp16 UNet
_DIFFUSERS_QUANT = {
    "torchao-int8wo": ("TorchAO int8 weight-only", "int8 (TorchAO)", PublishTarget.TORCHAO),
    "quanto-int8": ("Quanto qint8", "int8 (Quanto)", PublishTarget.QUANTO),
    "quanto-float8": ("Quanto qfloat8", "float8 (Quanto)", PublishTarget.QUANTO),
}


def _registry() -> dict[str, Variant]:
    originals = [
        Variant(
            "original",
            "safetensors (original LDM keys)",
            ("diffusers from_single_file", "ComfyUI", "A1111/Forge"),
            "UNet alone in original (LDM) key names",
            1.0,
            Family.ORIGINAL,
            PublishTarget.PR,
            _write_original,
            _validate_original,
            precision=Precision.MAIN,
        ),
        Variant(
            "original-full",
            "safetensors (original LDM checkpoint)",
            ("diffusers from_single_file", "ComfyUI", "A1111/Forge", "stable-diffusion.cpp"),
            "UNet + VAE + CLIP text encoder in one original checkpoint",
            1.0 + _VAE_CLIP_SIZE,
            Family.ORIGINAL,
            PublishTarget.PR,
            _write_original,
            _validate_original,
            full_checkpoint=True,
            precision=Precision.MAIN,
        ),
    ]
    originals += [
        Variant(
            f"{v.name}-fp16",
            v.format,
            v.consumers,
            f"{v.description}, from the fp16 variant (when the repo also has main weights)",
            v.size_vs_fp16_unet,
            Family.ORIGINAL,
            PublishTarget.PR,
            _write_original,
            _validate_original,
            full_checkpoint=v.full_checkpoint,
            precision=Precision.HALF,
            fp16_twin=True,
        )
        for v in list(originals)
    ]
    ggufs = []
    for qtype in GGUF_TYPES:
        for full in (False, True):
            ggufs.append(
                Variant(
                    f"gguf-{'full-' if full else ''}{qtype.lower()}",
                    f"GGUF {qtype}{' (full checkpoint)' if full else ''}",
                    ("stable-diffusion.cpp", _GGUF_CONSUMERS[0]) if full else _GGUF_CONSUMERS,
                    f"UNet {qtype} + VAE + CLIP (F16) in one GGUF, what stable-diffusion.cpp needs"
                    if full
                    else f"UNet GGUF, Linear weights {qtype}, the rest F16",
                    _GGUF_SIZE[qtype] + (_VAE_CLIP_SIZE if full else 0.0),
                    Family.GGUF,
                    PublishTarget.GGUF,
                    _write_gguf,
                    _validate_gguf,
                    full_checkpoint=full,
                    gguf_type=qtype,
                    threshold=THRESHOLDS[qtype],
                )
            )
    comfy = [
        Variant(
            f"comfy-gguf-{qtype.lower()}",
            f"GGUF {qtype} (ComfyUI-GGUF layout)",
            ("ComfyUI-GGUF",),
            f"UNet GGUF for ComfyUI-GGUF only: Linear and conv weights {qtype} in ComfyUI-GGUF's "
            "own row layout, the rest F16",
            COMFY_GGUF_SIZE[qtype],
            Family.GGUF,
            PublishTarget.GGUF,
            _write_comfy_gguf,
            _validate_comfy_gguf,
            gguf_type=qtype,
            threshold=COMFY_THRESHOLDS[qtype],
            gguf_layout=GGUFLayout.COMFYUI_GGUF,
        )
        for qtype in COMFY_GGUF_TYPES
    ]
    quants = [
        Variant(
            name,
            f"diffusers folder ({label})",
            (f"diffusers {'TorchAoConfig' if scheme.method == 'torchao' else 'QuantoConfig'}",),
            f"Linear weights {weights}, the rest half precision",
            0.85,
            Family.DIFFUSERS_QUANT,
            target,
            _write_diffusers_quant,
            _validate_diffusers_quant,
            quant_scheme=scheme,
            threshold=THRESHOLDS[name],
            loads_model=True,
        )
        for name, scheme in SCHEMES.items()
        for label, weights, target in [_DIFFUSERS_QUANT[name]]
    ]
    # Order: originals, UNet-only GGUFs, full GGUFs (a full GGUF reuses the UNet-only GGUF of its
    # type when both run), ComfyUI-GGUF-only GGUFs, diffusers folders.
    ordered = originals + [v for v in ggufs if not v.full_checkpoint]
    ordered += [v for v in ggufs if v.full_checkpoint] + comfy + quants
    return {v.name: v for v in ordered}


VARIANTS: dict[str, Variant] = _registry()


def variant(name: str) -> Variant:
    """The registry entry named `name`; BadInput naming the known ones otherwise."""
    if name not in VARIANTS:
        raise BadInput(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]
