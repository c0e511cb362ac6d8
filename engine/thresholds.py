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


# Margins: rel-L2 bounds are 2x the worst measured value (rounded up); cosine bounds leave the
# same headroom as 1 - cosine doubled.
THRESHOLDS: dict[str, Threshold] = {
    "F16": Threshold(0.99999, 0.002, 1e-3),
    "Q8_0": Threshold(0.9999, 0.01, 0.01),
    "Q5_1": Threshold(0.998, 0.06, 0.05),
    "Q5_0": Threshold(0.998, 0.06, 0.06),
    "Q4_1": Threshold(0.995, 0.12, 0.1),
    "Q4_0": Threshold(0.995, 0.12, 0.12),
    "torchao-int8wo": Threshold(0.9999, 0.02, 1.0),
    "quanto-int8": Threshold(0.999, 0.04, 1.0),
    "quanto-float8": Threshold(0.99, 0.15, 1.0),
}


def check(threshold: Threshold, metrics: dict[str, float], what: str) -> list[str]:
    """Human-readable failures of one metrics dict against `threshold`."""
    problems = []
    if not metrics["cosine"] >= threshold.min_cosine:
        problems.append(f"{what}: cosine {metrics['cosine']:.6f} < {threshold.min_cosine}")
    if not metrics["rel_l2"] <= threshold.max_rel_l2:
        problems.append(f"{what}: rel L2 {metrics['rel_l2']:.5f} > {threshold.max_rel_l2}")
    return problems
