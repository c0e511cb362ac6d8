"""GGUF layouts, and the data of the ComfyUI-GGUF-only variants (types, sizes).

Two layouts: the one every consumer loads (engine.writers.gguf_writer: natural shapes, Linear
weights quantized) and ComfyUI-GGUF's own (engine.writers.comfy_gguf: 256-wide rows with
`comfy.gguf.orig_shape`, convolutions quantized too). The second quantizes ~99.7% of SD1.5's
weights instead of ~31%, so its outputs move further from the source than those of the GGUF of
the same type: it has gates of its own (engine.validation.thresholds.COMFY_THRESHOLDS).
"""

from __future__ import annotations

from enum import Enum


class GGUFLayout(Enum):
    """How a GGUF stores its tensors, which decides who can load it."""

    ALL_CONSUMERS = "ComfyUI-GGUF, stable-diffusion.cpp and diffusers"
    COMFYUI_GGUF = "ComfyUI-GGUF only"


COMFY_GGUF_TYPES = ("Q8_0", "Q5_0", "Q4_0")
# Output bytes / fp16 UNet bytes, full-size SD1.5 (measured: benchmarks/calibrate_comfy_gguf.py)
COMFY_GGUF_SIZE = {"Q8_0": 0.53, "Q5_0": 0.35, "Q4_0": 0.28}
