"""GGUF files: an independent read, the consumers' rules, every tensor against the source, then
the outputs (lossy files) or the consumer's load in the source precision (exact files).

- read back with gguf-py (`gguf.GGUFReader`), never with the code that wrote it;
- consumer rules of ComfyUI-GGUF / stable-diffusion.cpp / diffusers (`engine.writers.gguf_rules`)
and
  the manifest's source revision;
- every tensor against the source (engine.validation.gguf_tensors): bytes for tensors in the
  source's own dtype, exact casts, and per-tensor error of quantized ones (gguf-py dequantizes);
- an exact file (an F16 GGUF of an F16 source: the source's bytes, `exact_copy`) needs no
  forward pass: diffusers' GGUF load in the source dtype must give every parameter with the
  source's bytes;
- a lossy file: output metrics of a float32 model of the dequantized weights against the fp32
  reference, then diffusers' own GGUF path (engine.validation.diffusers_gguf);
- a full GGUF whose UNet bytes equal a UNet-only GGUF of the same type that passed in this run
  shares its results; its VAE and CLIP tensors are still compared with the source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.formats.validation_record import ValidationResult
from engine.memory import release_memory, return_kept_memory
from engine.source.keymap import UNET_PREFIX
from engine.validation.context import Context, PassedGGUF, exact_copy
from engine.validation.exact import loaded_differences
from engine.validation.gguf_tensors import (
    compare_tensors,
    gguf_fields,
    model_from_values,
    natural_shapes,
    open_reader,
    same_unet,
)
from engine.validation.original import EXACT
from engine.validation.outputs import output_checks
from engine.writers.gguf_rules import check_gguf
from engine.writers.original import original_tensors

if TYPE_CHECKING:
    from pathlib import Path

    from engine.formats.manifest import Artifact
    from engine.validation.check import Check

CHECK_READ = (
    "GGUFReader + gguf-py's block decoders: every tensor vs source, every quantized element "
    "within its block's quantization bound"
)
CHECK_RULES = "consumer rules: ComfyUI-GGUF, stable-diffusion.cpp, diffusers"


def validate_gguf(check: Check, artifact: Artifact, ctx: Context) -> ValidationResult:
    qtype, full, threshold = check.gguf_type, check.full_checkpoint, check.threshold
    assert qtype is not None and threshold is not None
    path = ctx.out_dir / artifact.path
    exact = exact_copy(check, ctx.source)
    reader, unreadable = open_reader(path)
    if reader is None:
        return ValidationResult.from_problems([unreadable], {}, [CHECK_READ])
    fields = gguf_fields(reader)
    expected = original_tensors(ctx.source, full)
    problems = check_gguf(fields, natural_shapes(reader), {t.name: t.shape for t in expected}, full)
    if fields.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    checks = [CHECK_READ, CHECK_RULES]
    earlier = ctx.gguf_passed.get(qtype) if full else None
    shared = earlier if earlier is not None and same_unet(reader, earlier.path) else None
    if shared is not None:  # only the other tensors (VAE, CLIP) still need comparing
        expected = [t for t in expected if not t.name.startswith(UNET_PREFIX)]
    compared = compare_tensors(reader, path, expected, keep_unet_values=not (exact or shared))
    problems += compared.problems
    del reader  # pages of the map touched so far count as this process's RSS
    release_memory()
    worst, bound_ratio = compared.worst, compared.worst_bound_ratio
    if shared is not None:
        worst, bound_ratio = max(worst, shared.worst), max(bound_ratio, shared.worst_bound_ratio)
    if worst[0] > threshold.max_tensor_rel_l2:
        problems.append(f"{worst[1]}: tensor rel L2 {worst[0]:.5f} > {threshold.max_tensor_rel_l2}")
    metrics: dict = {
        "worst_tensor_rel_l2": worst[0],
        "worst_tensor": worst[1],
        "worst_quant_bound_ratio": bound_ratio,
    }
    if problems:
        return ValidationResult.from_problems(problems, metrics, checks)
    if shared is not None:
        # Same UNet bytes as a GGUF already validated in this run: identical weights give
        # identical outputs, so its output metrics are this file's.
        metrics.update(shared.metrics)
        checks.append(f"UNet tensors byte-identical to {shared.variant}: output metrics shared")
        return ValidationResult.from_problems(problems, metrics, checks)
    if exact:
        metrics.update({"output": dict(EXACT), "byte_equal": True})
        checks.append("every tensor byte-equal to the source: outputs equal, no forward pass")
        if not full:
            problems += _exact_load_problems(path, ctx)
            checks.append(
                "diffusers from_single_file + GGUFQuantizationConfig in the source dtype: every "
                "parameter byte-equal to the source, none on meta"
            )
    else:
        problems += _lossy_checks(check, ctx, path, compared.unet, metrics, checks)
    if not problems and not full:
        outputs = {k: metrics[k] for k in ("output", "lcm_4step") if k in metrics}
        ctx.gguf_passed[qtype] = PassedGGUF(check.name, path, outputs, worst, bound_ratio)
    return ValidationResult.from_problems(problems, metrics, checks)


def _lossy_checks(
    check: Check, ctx: Context, path: Path, unet: dict, metrics: dict, checks: list[str]
) -> list[str]:
    """Outputs of the dequantized weights vs the fp32 source, then diffusers' own GGUF path
    (UNet-only files: stable-diffusion.cpp, the full files' consumer, has no Python loader)."""
    from engine.validation.diffusers_gguf import (
        diffusers_load_problems,
        swap_in_diffusers_weights,
    )
    from engine.validation.probe import forward

    assert check.threshold is not None
    problems: list[str] = []
    model = model_from_values(ctx.source.unet.config, unet)
    unet.clear()  # the model holds the values now; `del model` must free them (3.4 GB)
    metrics.update(output_checks(model, ctx, check.name, check.threshold, problems))
    checks.append("probe forward of dequantized weights vs fp32 source")
    if check.full_checkpoint:
        del model
        release_memory()
        return problems
    swap_problems, dequant = swap_in_diffusers_weights(model, path, ctx.source.unet.config)
    problems += swap_problems
    probe = ctx.small_probe()
    expected = forward(model, probe)
    del model
    release_memory()
    config, subfolder = ctx.config_args
    load_problems, agreement = diffusers_load_problems(path, config, subfolder, probe, expected)
    problems += load_problems
    metrics["diffusers_dequant"] = dequant
    metrics["diffusers_load"] = agreement
    checks += [
        "diffusers' float16 dequantization within the float16 rounding bound of gguf-py's",
        "diffusers from_single_file + GGUFQuantizationConfig forward = same weights in fp32",
    ]
    return problems


def _exact_load_problems(path: Path, ctx: Context) -> list[str]:
    """An exact GGUF through diffusers' GGUF loader, in the source's own dtype (no float32
    copy): every parameter must hold the source's bytes."""
    from diffusers import GGUFQuantizationConfig

    from engine.validation.loaders import load_unet

    config, subfolder = ctx.config_args
    return_kept_memory()  # diffusers' GGUF reader maps the whole file: see engine.memory
    model = load_unet(
        path,
        config,
        subfolder,
        torch_dtype=ctx.torch_dtype,
        quantization_config=GGUFQuantizationConfig(compute_dtype=ctx.torch_dtype),
    )
    problems = [
        f"UNet via diffusers GGUF load: {p}"
        for p in loaded_differences(model.state_dict(), ctx.source.unet)
    ]
    del model
    release_memory()
    return problems
