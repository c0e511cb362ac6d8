"""The variant registry: one entry per artifact kind unetbot can produce.

Each variant is data (name, format, who loads it, expected size) plus the function that writes it,
so `bot variants` lists them, `--variants all` expands them, and adding a variant is adding one
entry (the way gguf-py registers one class per quantization type).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import BadInput
from engine.original import Provenance, write_original
from engine.source import Source

GGUF_TYPES = ("F16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1")


@dataclass(frozen=True)
class Written:
    """What a variant writer produced: the main weights file, every file, and details."""

    main: Path
    files: list[Path]
    details: dict = field(default_factory=dict)


# (source, out_dir, stem, provenance, what earlier variants of this run wrote) -> Written
Writer = Callable[[Source, Path, str, Provenance, dict[str, "Written"]], Written]


@dataclass(frozen=True)
class Variant:
    name: str
    format: str
    consumers: tuple[str, ...]
    description: str
    size_vs_fp16_unet: float  # expected output bytes / fp16 UNet bytes (full: plus VAE + CLIP)
    needs_full_pipeline: bool
    target: str  # which repo it is published to: "pr" (source repo), "gguf", "torchao", "quanto"
    writer: Writer
    # The writer holds a whole model in memory (GBs: diffusers quantization). Such writers run
    # before validation starts, never beside it; streaming writers (~100 MB) overlap with it.
    loads_model: bool = False


def _original(full: bool) -> Writer:
    def write(
        source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier: dict
    ) -> Written:
        name = f"{stem}.safetensors" if full else f"{stem}.unet.safetensors"
        path = write_original(source, out_dir / name, full=full, provenance=provenance)
        return Written(path, [path], {"lcm_cond_proj": source.classification.kind == "sd15-lcm"})

    return write


def _gguf(qtype: str, full: bool) -> Writer:
    def write(
        source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier: dict
    ) -> Written:
        from engine.gguf_artifact import write_gguf_artifact

        suffix = f"full-{qtype}" if full else qtype
        path = out_dir / f"{stem}-{suffix}.gguf"
        # A full GGUF holds the same UNet tensors as this run's UNet-only GGUF of its type.
        unet_gguf = earlier.get(f"gguf-{qtype.lower()}") if full else None
        reuse = unet_gguf.main if unet_gguf is not None else None
        report = write_gguf_artifact(source, path, qtype, full, provenance, reuse)
        return Written(path, [path], report)

    return write


def _diffusers_quant(variant: str) -> Writer:
    def write(
        source: Source, out_dir: Path, stem: str, provenance: Provenance, earlier: dict
    ) -> Written:
        from engine.diffusers_quant import quantize_unet

        result = quantize_unet(source.unet.folder, out_dir / variant, variant)
        main = max(result.files, key=lambda p: p.stat().st_size)
        return Written(
            main,
            list(result.files),
            {
                "load_dtype": result.load_dtype,
                "quantized_linear": result.quantized_linear,
                "kept_linear": result.kept_linear,
                "folder": variant,
            },
        )

    return write


_GGUF_CONSUMERS = ("ComfyUI-GGUF", "stable-diffusion.cpp", "diffusers (GGUFQuantizationConfig)")
# Linear weights are ~31% of SD1.5's parameters; only they are quantized (bits per weight:
# Q8_0 8.5, Q5_1 6, Q5_0 5.5, Q4_1 5, Q4_0 4.5), the rest stays F16.
_GGUF_SIZE = {"F16": 1.0, "Q8_0": 0.85, "Q5_0": 0.79, "Q5_1": 0.8, "Q4_0": 0.77, "Q4_1": 0.78}


def _registry() -> dict[str, Variant]:
    variants = [
        Variant(
            "original",
            "safetensors (original LDM keys)",
            ("diffusers from_single_file", "ComfyUI", "A1111/Forge"),
            "UNet alone in original (LDM) key names",
            1.0,
            False,
            "pr",
            _original(False),
        ),
        Variant(
            "original-full",
            "safetensors (original LDM checkpoint)",
            ("diffusers from_single_file", "ComfyUI", "A1111/Forge", "stable-diffusion.cpp"),
            "UNet + VAE + CLIP text encoder in one original checkpoint",
            1.24,
            True,
            "pr",
            _original(True),
        ),
    ]
    for qtype in GGUF_TYPES:
        variants.append(
            Variant(
                f"gguf-{qtype.lower()}",
                f"GGUF {qtype}",
                _GGUF_CONSUMERS,
                f"UNet GGUF, Linear weights {qtype}, the rest F16",
                _GGUF_SIZE[qtype],
                False,
                "gguf",
                _gguf(qtype, False),
            )
        )
        variants.append(
            Variant(
                f"gguf-full-{qtype.lower()}",
                f"GGUF {qtype} (full checkpoint)",
                ("stable-diffusion.cpp", *_GGUF_CONSUMERS[:1]),
                f"UNet {qtype} + VAE + CLIP (F16) in one GGUF, what stable-diffusion.cpp needs",
                _GGUF_SIZE[qtype] + 0.24,
                True,
                "gguf",
                _gguf(qtype, True),
            )
        )
    variants += [
        Variant(
            "torchao-int8wo",
            "diffusers folder (TorchAO int8 weight-only)",
            ("diffusers TorchAoConfig",),
            "Linear weights int8 (TorchAO), the rest half precision",
            0.85,
            False,
            "torchao",
            _diffusers_quant("torchao-int8wo"),
            loads_model=True,
        ),
        Variant(
            "quanto-int8",
            "diffusers folder (Quanto qint8)",
            ("diffusers QuantoConfig",),
            "Linear weights int8 (Quanto), the rest half precision",
            0.85,
            False,
            "quanto",
            _diffusers_quant("quanto-int8"),
            loads_model=True,
        ),
        Variant(
            "quanto-float8",
            "diffusers folder (Quanto qfloat8)",
            ("diffusers QuantoConfig",),
            "Linear weights float8 (Quanto), the rest half precision",
            0.85,
            False,
            "quanto",
            _diffusers_quant("quanto-float8"),
            loads_model=True,
        ),
    ]
    return {v.name: v for v in variants}


VARIANTS: dict[str, Variant] = _registry()


def resolve_variants(spec: str | list[str], source: Source | None = None) -> list[Variant]:
    """Expand a comma list (or `all`) into variants; `all` keeps only those that apply."""
    names = spec if isinstance(spec, list) else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise BadInput("no variants given; see `bot variants`")
    if "all" in names:
        return [
            v
            for v in VARIANTS.values()
            if source is None or not v.needs_full_pipeline or source.has_full_pipeline
        ]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise BadInput(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in dict.fromkeys(names)]
