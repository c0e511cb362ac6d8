"""Pass/fail thresholds per variant, set from measurements with a stated margin.

Measured on seeded random-weight SD1.5-family UNets (tiny and full size, fp16 source, fp32
reference forward; see README "Validation"). Each bound is the worst value measured across
those models, loosened by the margin named beside it; real trained weights are smoother than
random ones, so they land well inside. Original-format files have no threshold: they must be
byte-equal, tensor by tensor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    min_cosine: float  # forward output (and LCM 4-step latents) vs fp32 source
    max_rel_l2: float
    max_tensor_rel_l2: float  # worst single dequantized tensor vs source (GGUF only)


# Worst values measured by benchmarks/calibrate_thresholds.py (tiny sd15, sd15-lcm and
# sd15-inpaint UNets, seeds 0-1, fp16 source; 2026-11-26), with a 2x margin: rel-L2 bounds are
# twice the worst rel L2, cosine bounds allow twice the worst (1 - cosine). Narrow tiny UNets
# are the worst case measured; the full-size SD1.5 LCM UNet lands well inside (README).
# measured worst:           cosine     rel L2   tensor rel L2
#   Q8_0                    0.999945   0.0105   0.0059
#   Q5_0                    0.99650    0.0839   0.0450
#   Q5_1                    0.99738    0.0726   0.0415
#   Q4_0                    0.98649    0.1640   0.0933
#   Q4_1                    0.98840    0.1525   0.0830
#   torchao-int8wo          0.999934   0.0115   -
#   quanto-int8             0.999946   0.0104   -
#   quanto-float8           0.99895    0.0458   -
# F16 from an F16 source is exact (measured 0); its bound only allows fp32 -> fp16 rounding.
NO_TENSOR_CHECK = 1.0  # diffusers-quantized weights are checked through outputs only
THRESHOLDS: dict[str, Threshold] = {
    "F16": Threshold(0.99999, 0.002, 1e-3),
    "Q8_0": Threshold(0.99989, 0.021, 0.012),
    "Q5_0": Threshold(0.993, 0.17, 0.09),
    "Q5_1": Threshold(0.9947, 0.15, 0.083),
    "Q4_0": Threshold(0.973, 0.33, 0.19),
    "Q4_1": Threshold(0.9768, 0.31, 0.17),
    "torchao-int8wo": Threshold(0.99987, 0.023, NO_TENSOR_CHECK),
    "quanto-int8": Threshold(0.99989, 0.021, NO_TENSOR_CHECK),
    "quanto-float8": Threshold(0.9979, 0.092, NO_TENSOR_CHECK),
}


def check(threshold: Threshold, metrics: dict[str, float], what: str) -> list[str]:
    """Human-readable failures of one metrics dict against `threshold`."""
    problems = []
    if not metrics["cosine"] >= threshold.min_cosine:
        problems.append(f"{what}: cosine {metrics['cosine']:.6f} < {threshold.min_cosine}")
    if not metrics["rel_l2"] <= threshold.max_rel_l2:
        problems.append(f"{what}: rel L2 {metrics['rel_l2']:.5f} > {threshold.max_rel_l2}")
    return problems
