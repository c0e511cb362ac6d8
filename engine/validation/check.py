"""What a validator is told about the artifact it proves: the facts that decide how.

The variant registry (engine.run.variants) stands above validation: each registry entry hands
its validator a `Check` made from its own fields, so no validator imports the registry and
adding a variant never touches this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.validation.thresholds import Threshold
    from engine.writers.diffusers_quant import QuantScheme


@dataclass(frozen=True)
class Check:
    name: str  # the variant's name: messages, the grid's column, the per-variant samples
    full_checkpoint: bool = False  # UNet + VAE + CLIP: the VAE and text encoder are proven too
    gguf_type: str | None = None  # GGUF files: the type of the quantized Linear weights
    quant_scheme: QuantScheme | None = None  # diffusers-quantized folders: how to load them
    # Output metrics bounds; None: no quantization, every tensor must equal the source's
    threshold: Threshold | None = None

    @property
    def lossless(self) -> bool:
        """No quantization: the file holds the source's tensors (bytes, or a float cast)."""
        return self.threshold is None or self.gguf_type == "F16"
