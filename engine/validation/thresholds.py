"""Pass/fail bounds of validation: calibrated gates with a stated margin, and derived bounds.

Two kinds, and which is which matters:
- derived bounds (below THRESHOLDS): what a correct file cannot exceed, computed from the
  arithmetic of the path that produced or reads it (the GGUF block quantizer; diffusers' float16
  dequantization; the same weights in float32). They need no margin and hold for any weights;
  they are the tight, element-by-element proof that a GGUF is its source, quantized;
- calibrated gates (THRESHOLDS): output cosine / relative L2 against the fp32 source and the
  worst single-tensor relative L2. How far outputs move depends on the weights, so these are
  the worst values measured on seeded models with init-like AND trained-like values (heavy
  tails, row scales over orders of magnitude: engine.synthetic.models `statistics`), with a 2x
  margin. Gates calibrated on init-like weights alone rejected accurate GGUFs of real repos.
Original-format files and F16 GGUFs of F16 sources have no gate: their bytes must equal the
source's, tensor by tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Threshold:
    min_cosine: float  # forward output (and LCM 4-step latents) vs fp32 source
    max_rel_l2: float
    max_tensor_rel_l2: float  # worst single dequantized tensor vs source (GGUF only)


# Worst values measured by benchmarks/calibrate_thresholds.py (2026-11-30): tiny sd15, sd15-lcm
# and sd15-inpaint UNets, seeds 0-1, float16 sources, init-like and trained-like values, plus
# bfloat16 and float32 LCM sources of both kinds (16 models), and full-size trained-like LCMs
# from float32 and bfloat16 sources. Margin 2x: rel-L2 bounds are twice the worst rel L2,
# cosine bounds allow twice the worst (1 - cosine), both rounded outward to two significant
# digits. For GGUF the worst case is a tiny UNet with trained-like values (init-like ones land
# at 1/2-1/4 of it, full-size trained-like ones at about 1/2); for TorchAO / Quanto int8 it is
# the full-size trained-like UNet, whose outlier channels per-channel int8 scales handle worst.
# measured worst:           cosine      rel L2   tensor rel L2   where
#   F16 (F32/BF16 source)   0.9999990   0.00138  - (exact cast)  tiny trained
#   Q8_0                    0.9995680   0.0295   0.0117          tiny trained
#   Q5_0                    0.9757408   0.2217   0.0911          tiny trained
#   Q5_1                    0.9858739   0.1678   0.0587          tiny trained
#   Q4_0                    0.9215507   0.4060   0.1802          tiny trained
#   Q4_1                    0.9390106   0.3493   0.1238          tiny trained
#   torchao-int8wo          0.9983999   0.0617   -               full-size trained (bf16)
#   quanto-int8             0.9983407   0.0677   -               full-size trained (bf16)
#   quanto-float8           0.9973554   0.0727   -               tiny trained
# These gates only bound how far outputs may drift: a wrong or corrupted tensor fails the
# derived element bounds long before (quantization_tolerance), whatever these allow.
NO_TENSOR_CHECK = 1.0  # diffusers-quantized weights are checked through outputs only
THRESHOLDS: dict[str, Threshold] = {
    "F16": Threshold(0.999998, 0.0028, 1e-3),
    "Q8_0": Threshold(0.99913, 0.059, 0.024),
    "Q5_0": Threshold(0.951, 0.45, 0.19),
    "Q5_1": Threshold(0.971, 0.34, 0.12),
    "Q4_0": Threshold(0.84, 0.82, 0.37),
    "Q4_1": Threshold(0.87, 0.70, 0.25),
    "torchao-int8wo": Threshold(0.9967, 0.13, NO_TENSOR_CHECK),
    "quanto-int8": Threshold(0.9966, 0.14, NO_TENSOR_CHECK),
    "quanto-float8": Threshold(0.9947, 0.15, NO_TENSOR_CHECK),
}


# ---------------------------------------------------------------- diffusers' GGUF path
# diffusers dequantizes GGUF blocks in float16 (engine.validation.diffusers_gguf says where), so
# its weights are gguf-py's float32 values rounded by float16 arithmetic. IEEE binary16 rounding
# to nearest errs by at most half an ulp: FP16_UNIT_ROUNDOFF * |x| for normal results, and
# FP16_SUBNORMAL_ERROR (half the subnormal spacing 2^-24) below 2^-14.
FP16_UNIT_ROUNDOFF = 2.0**-11
FP16_SUBNORMAL_ERROR = 2.0**-25
FP32_UNIT_ROUNDOFF = 2.0**-24
# Block types with an offset (w = d * q + m): diffusers rounds twice, gguf-py's float32 once.
OFFSET_TYPES = ("Q5_1", "Q4_1")
GGUF_BLOCK = 32


def _in(values: Any, dtype: Any) -> Any:
    """`values` as a torch tensor of `dtype` (float64 when None)."""
    import torch

    return values.to(dtype or torch.float64)


def diffusers_dequant_tolerance(values: Any, gguf_type: str, dtype: Any = None) -> Any:
    """Per element, the largest |diffusers' float16 dequantization - gguf-py's| the arithmetic
    allows (a torch tensor in `dtype`, float64 by default, the shape of `values`: gguf-py's
    float32 values, blocks of 32 along the last dimension).

    Derivation (u = FP16_UNIT_ROUNDOFF, s = FP16_SUBNORMAL_ERROR, e = FP32_UNIT_ROUNDOFF):
    d and m are float16 and q an integer of <= 8 bits, so d * q has <= 19 significant bits and
    gguf-py's float32 product is exact; its float32 sum w = d*q + m errs by <= e |w|.
    - scale-only types (Q8_0, Q5_0, Q4_0): diffusers computes fl16(d * q):
      |w' - w| <= u |w| + s + e |w|;
    - offset types (Q5_1, Q4_1): diffusers computes p = fl16(d * q), then fl16(p + m). m is the
      block's minimum, so |m| <= M (the block's largest |w|) and |d * q| = |w - m| <= |w| + M:
      |w' - w| <= u (|w| + M) + u (|w| + u (|w| + M)) + 2 s + e |w| + s.
    No calibration: a correct float16 dequantization cannot exceed this, a wrong block (another
    tensor's, a corrupted scale) exceeds it by orders of magnitude."""
    w = _in(values, dtype).abs()
    u, s, e = FP16_UNIT_ROUNDOFF, FP16_SUBNORMAL_ERROR, FP32_UNIT_ROUNDOFF
    if gguf_type not in OFFSET_TYPES:
        return u * w + s + e * w
    blocks = w.reshape(-1, GGUF_BLOCK)
    block_max = blocks.amax(dim=1, keepdim=True).expand_as(blocks).reshape(w.shape)
    product = w + block_max
    return u * product + u * (w + u * product) + 3 * s + e * w


# ---------------------------------------------------------------- GGUF block quantization
# (qmax, error bound in steps d): the quantizers of ggml / gguf-py (`gguf/quants.py`), which
# engine.formats.gguf_quants reproduces byte for byte. Q8_0: d = amax / 127, q = round(x / d): half
# a step. Q5_0 / Q4_0: d = -max / 16 (8), q = trunc(x / d + 16.5) clipped to 31 (15): half a step,
# but the value opposite to `max` clips one full step. Q5_1 / Q4_1: d = (max - min) / 31 (15),
# q = round((x - min) / d): half a step.
_BLOCK_RULES = {
    "Q8_0": (127, 0.5),
    "Q5_0": (16, 1.0),
    "Q4_0": (8, 1.0),
    "Q5_1": (31, 0.5),
    "Q4_1": (15, 0.5),
}


def quantization_tolerance(source: Any, gguf_type: str, dtype: Any = None) -> Any:
    """Per element, the largest |dequantized - source| a correct block quantization of `source`
    allows (a torch tensor in `dtype`, float64 by default; `source` float32, blocks of 32 along
    the last dimension).

    Derived from the quantizer, not fitted: with d the block's step computed from the source
    block (rule above), the rounding error is at most `steps` * d; the stored float16 scale
    differs from d by u d + s, times up to qmax codes; an offset type also stores its minimum
    in float16 (u |min| + s); float32 arithmetic adds a few e per operation (4 qmax e d + e |x|
    covers them). It holds for any weights, trained or not, so it needs no margin, and a
    corrupted block (another scale, another tensor's codes) breaks it even when the tensor's
    overall error stays small."""
    qmax, steps = _BLOCK_RULES[gguf_type]
    u, s, e = FP16_UNIT_ROUNDOFF, FP16_SUBNORMAL_ERROR, FP32_UNIT_ROUNDOFF
    x = _in(source, dtype).reshape(-1, GGUF_BLOCK)
    if gguf_type in OFFSET_TYPES:
        low = x.amin(dim=1, keepdim=True)
        d = (x.amax(dim=1, keepdim=True) - low) / qmax
        offset = u * low.abs() + s
    else:
        d = x.abs().amax(dim=1, keepdim=True) / qmax
        offset = 0.0
    tol = steps * d + qmax * (u * d + s) + offset + 4 * qmax * e * d + e * x.abs()
    return tol.reshape(source.shape)


# diffusers' GGUF model against a float32 model holding the very weights diffusers dequantized:
# the same operations on the same values, so only float32 summation order may differ (a BLAS
# that blocks a product differently). Measured: 0, bit-identical outputs, on every calibration
# fixture (benchmarks/calibrate_thresholds.py). The bound allows a relative L2 of 1e-5, ~170
# float32 unit roundoffs, for another summation order; a misplaced or wrong tensor, or even the
# float16 rounding of the weights alone, moves outputs by 1e-4 to 1.
SAME_WEIGHTS_MAX_REL_L2 = 1e-5
SAME_WEIGHTS = Threshold(1.0 - SAME_WEIGHTS_MAX_REL_L2**2, SAME_WEIGHTS_MAX_REL_L2, NO_TENSOR_CHECK)


def check(threshold: Threshold, metrics: dict[str, float], what: str) -> list[str]:
    """Human-readable failures of one metrics dict against `threshold`."""
    problems = []
    if not metrics["cosine"] >= threshold.min_cosine:
        problems.append(f"{what}: cosine {metrics['cosine']:.6f} < {threshold.min_cosine}")
    if not metrics["rel_l2"] <= threshold.max_rel_l2:
        problems.append(f"{what}: rel L2 {metrics['rel_l2']:.5f} > {threshold.max_rel_l2}")
    return problems


# ComfyUI-GGUF-only GGUFs (engine.writers.gguf_layout): Linear and conv weights quantized in
# ComfyUI-GGUF's row layout, so their outputs get gates of their own.
# Worst values measured by benchmarks/calibrate_comfy_gguf.py (2026-11-30), the fixtures and
# method above: tiny sd15, sd15-lcm and sd15-inpaint UNets, seeds 0-1,
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
