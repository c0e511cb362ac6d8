"""GGUF layouts, and the data of the ComfyUI-GGUF-only variants (types, sizes, gates).

Two layouts: the one every consumer loads (engine.writers.gguf_writer: natural shapes, Linear
weights quantized) and ComfyUI-GGUF's own (engine.writers.comfy_gguf: 256-wide rows with
`comfy.gguf.orig_shape`, convolutions quantized too). The second quantizes ~99.7% of SD1.5's
weights instead of ~31%, so its outputs move further from the source than those of the GGUF of
the same type: it has gates of its own, calibrated like engine/validation/thresholds.py's (below).
"""

from __future__ import annotations

from enum import Enum

from engine.validation.thresholds import Threshold


class GGUFLayout(Enum):
    """How a GGUF stores its tensors, which decides who can load it."""

    ALL_CONSUMERS = "ComfyUI-GGUF, stable-diffusion.cpp and diffusers"
    COMFYUI_GGUF = "ComfyUI-GGUF only"


COMFY_GGUF_TYPES = ("Q8_0", "Q5_0", "Q4_0")
# Output bytes / fp16 UNet bytes, full-size SD1.5 (measured: benchmarks/calibrate_comfy_gguf.py)
COMFY_GGUF_SIZE = {"Q8_0": 0.53, "Q5_0": 0.35, "Q4_0": 0.28}

# Worst values measured by benchmarks/calibrate_comfy_gguf.py (2026-11-30), the fixtures and
# method of engine/validation/thresholds.py: tiny sd15, sd15-lcm and sd15-inpaint UNets, seeds 0-1,
# float16 sources with init-like and trained-like values, plus bfloat16 and float32 LCM sources (16
# models); the same run reproduced the universal GGUFs' worst values recorded there exactly.
# Margin 2x, rounded outward to two significant digits. Worst case: tiny, trained-like.
# measured worst:        cosine     rel L2   tensor rel L2   (universal GGUF of the same type)
#   comfy Q8_0           0.998464   0.0555   0.0109          (0.999568, 0.0295, 0.0117)
#   comfy Q5_0           0.936789   0.3539   0.0859          (0.975741, 0.2217, 0.0911)
#   comfy Q4_0           0.830759   0.5742   0.1575          (0.921551, 0.4060, 0.1802)
# The tensor bounds match the universal files' (the same quantizer on the same rows); outputs
# drift further because the convolutions are quantized too.
COMFY_THRESHOLDS: dict[str, Threshold] = {
    "Q8_0": Threshold(0.9969, 0.12, 0.022),
    "Q5_0": Threshold(0.87, 0.71, 0.18),
    "Q4_0": Threshold(0.66, 1.2, 0.32),
}
