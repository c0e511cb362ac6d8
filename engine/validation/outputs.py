"""Output checks of a lossy artifact's model against the fp32 source's reference outputs."""

from __future__ import annotations

from typing import Any

from engine.validation.context import Context
from engine.validation.thresholds import Threshold, check


def output_checks(
    model: Any, ctx: Context, variant_name: str, threshold: Threshold, problems: list[str]
) -> dict:
    """Forward (and, for LCM, 4-step sampling) metrics of `model` against the reference;
    failures against `threshold` are appended to `problems`. With `ctx.grid`, the LCM sample is
    kept for the validation grid."""
    from engine.validation.probe import output_metrics

    metrics, sampled = output_metrics(model, ctx.reference())
    for what, values in metrics.items():
        problems += check(threshold, values, what)
    if ctx.grid and sampled is not None:
        ctx.samples[variant_name] = sampled
    return metrics
