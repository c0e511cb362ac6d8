"""Diffusers-quantized folders (TorchAO, Quanto): reloaded as users load them, then the probe.

The folder is the one holding the artifact's main weights file; its scheme comes from its
`Check` (the registry entry's), so a folder written for another scheme fails to load
(`engine.writers.diffusers_quant.load_quantized_unet` checks the folder's quantization_config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.formats.validation_record import ValidationResult
from engine.memory import return_kept_memory
from engine.validation.context import Context
from engine.validation.outputs import output_checks

if TYPE_CHECKING:
    from engine.formats.manifest import Artifact
    from engine.validation.check import Check


def validate_diffusers_quant(check: Check, artifact: Artifact, ctx: Context) -> ValidationResult:
    from engine.writers.diffusers_quant import load_quantized_unet

    assert check.quant_scheme is not None and check.threshold is not None
    folder = (ctx.out_dir / artifact.path).parent
    return_kept_memory()  # from_pretrained maps the folder's safetensors: see engine.memory
    model = load_quantized_unet(folder, check.quant_scheme)
    problems: list[str] = []
    metrics = output_checks(model, ctx, check.name, check.threshold, problems)
    del model
    checks = ["diffusers from_pretrained reload", "probe forward vs fp32 source"]
    return ValidationResult.from_problems(problems, metrics, checks)
