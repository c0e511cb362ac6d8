"""What every validator shares: the source, the fp32 reference outputs, and what the run knows.

Nothing big is kept: the fp32 source model lives only while the reference outputs are computed
(once per run, and only when some artifact is lossy), and source tensors are read one at a time,
so the peak stays one model at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.memory import release_memory
from engine.source.folder import Source

if TYPE_CHECKING:
    from engine.validation.check import Check
    from engine.validation.probe import Probe, Reference


@dataclass(frozen=True)
class PassedGGUF:
    """A UNet-only GGUF that passed: a full GGUF with the same UNet bytes shares its results."""

    variant: str
    path: Path
    metrics: dict  # its output metrics ("output", "lcm_4step")
    worst: tuple[float, str]  # its worst tensor rel L2 and that tensor's name
    worst_bound_ratio: float  # its worst quantized element against its derived bound


@dataclass
class Context:
    source: Source
    out_dir: Path
    revision: str  # the source revision every artifact's metadata must name
    grid: bool = False  # keep each variant's LCM sample for the validation grid
    _reference: Reference | None = None
    # GGUF type -> the UNet-only GGUF of that type that passed in this run
    gguf_passed: dict[str, PassedGGUF] = field(default_factory=dict)
    # variant name -> final LCM latents (only with `grid`)
    samples: dict[str, Any] = field(default_factory=dict)
    # stable-diffusion.cpp's temporary files and exact image (engine.validation.sdcpp.SdcppState)
    sdcpp: Any = None

    @property
    def config_args(self) -> tuple[Path, str | None]:
        """(folder, subfolder) of the source UNet's config.json, as diffusers' loaders take it."""
        unet = self.source.unet.folder
        return (self.source.root, "unet") if unet != self.source.root else (unet, None)

    @property
    def torch_dtype(self):
        """The source UNet's dtype: exact copies are loaded in it (no float32 copy)."""
        import torch

        return {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[
            self.source.unet.dtype
        ]

    def reference(self) -> Reference:
        """The fp32 source model's outputs on the probe, computed on first use and kept."""
        if self._reference is None:
            import torch
            from diffusers import UNet2DConditionModel

            from engine.validation.probe import reference_outputs

            model = UNet2DConditionModel.from_pretrained(
                str(self.source.unet.folder),
                torch_dtype=torch.float32,
                variant=self.source.unet.variant,  # the weight set this source reads
                use_safetensors=True,
            ).eval()
            self._reference = reference_outputs(model, self.source.unet.config)
            del model
            release_memory()
        return self._reference

    def small_probe(self) -> Probe:
        """One batch row at an 8x8 latent: enough to compare two loads of the same weights."""
        from engine.validation.probe import make_probe

        probe = make_probe(dict(self.source.unet.config, sample_size=8), seed=7)
        probe.sample, probe.timesteps = probe.sample[:1], probe.timesteps[:1]
        probe.encoder_hidden_states = probe.encoder_hidden_states[:1]
        if probe.timestep_cond is not None:
            probe.timestep_cond = probe.timestep_cond[:1]
        return probe


def exact_copy(check: Check, source: Source) -> bool:
    """Whether the artifact of `check`, written from `source`, holds the source's bytes, tensor
    by tensor.

    Originals copy every tensor's bytes; a GGUF of a float type stores each tensor in that type,
    which is the source's own encoding when every tensor of the components it holds already has
    that dtype (an F16 GGUF of an F16 source). Anything else (quantized, or a float cast from
    F32/BF16) changes values and needs output checks. The validators prove this expectation
    tensor by tensor: an artifact expected exact whose bytes differ fails."""
    if not check.lossless:
        return False
    if check.gguf_type is None:
        return True
    components = [source.unet]
    if check.full_checkpoint:
        components += [c for c in (source.vae, source.text_encoder) if c is not None]
    return all(spec.dtype == check.gguf_type for c in components for _, spec in c.tensors())


def needs_reference(checks: list[Check], source: Source) -> bool:
    """Whether any of these artifacts is checked against the fp32 reference outputs."""
    return any(not exact_copy(c, source) for c in checks)
