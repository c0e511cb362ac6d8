"""Does diffusers' own GGUF path compute what the file holds?

Why this is two checks and not one output comparison: diffusers dequantizes GGUF blocks in
float16 (diffusers 0.42.1 `quantizers/gguf/utils.py`: `dequantize_gguf_tensor` calls the
`dequantize_blocks_*` functions without a dtype, so `d.view(torch.float16).to(None)` stays
float16 and `d * q + m` is computed and rounded in float16; the result is cast to the compute
dtype only afterwards), while gguf-py (`gguf/quants.py`) computes the same blocks in float32. The
two sets of weights differ by float16 rounding, and a trained network can amplify that weight
difference in its outputs far more than an init-like one does (an accurate Q5_1 of a real LCM
failed a fixed output-cosine gate this way). So:

1. weights: for every quantized tensor, diffusers' own dequantization of the file's blocks must
   stay within the float16 rounding bound of gguf-py's values, element by element
   (`engine.validation.thresholds.diffusers_dequant_tolerance`, derived, not fitted);
2. load: the model diffusers builds from the file (`from_single_file` + GGUFQuantizationConfig,
   compute float32) must compute, on a small probe, what a float32 model holding those very
   float16-dequantized weights computes: the same arithmetic, so only float32 summation order
   may differ (`engine.validation.thresholds.SAME_WEIGHTS`).
A swapped, misplaced or corrupted tensor fails step 1 or 2 by orders of magnitude.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.memory import return_kept_memory
from engine.source.keymap import unet_keymap
from engine.validation.gguf_tensors import PLAIN, DecoderAgreement, forget_pages
from engine.validation.thresholds import SAME_WEIGHTS, check


def diffusers_dequantized(tensor: Any) -> Any:
    """diffusers' own dequantization of one gguf-py reader tensor (its float16 result)."""
    import torch
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    blocks = torch.from_numpy(tensor.data.copy())
    return dequantize_gguf_tensor(GGUFParameter(blocks, quant_type=tensor.tensor_type))


def swap_in_diffusers_weights(model: Any, gguf_path: Path, unet_config: dict) -> tuple[list, dict]:
    """Replace each quantized weight of the float32 `model` (gguf-py values) by diffusers'
    float16 dequantization of the same blocks, after checking it against the float16 bound.

    Returns (problems, metrics): the worst ratio of an element's difference to its bound
    (<= 1 by derivation) and the worst tensor rel L2 between the two dequantizations."""
    import gguf

    keymap = unet_keymap(unet_config)
    params = dict(model.named_parameters())
    agreement = DecoderAgreement("diffusers'")
    reader = gguf.GGUFReader(str(gguf_path))
    for tensor in reader.tensors:
        if tensor.tensor_type.name in PLAIN:
            continue
        natural = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        ours = params.get(keymap.to_diffusers(tensor.name, natural)[0])
        if ours is None:
            agreement.problems.append(f"{tensor.name}: no such parameter")
            continue
        theirs = diffusers_dequantized(tensor).reshape(ours.shape)
        forget_pages(reader, tensor)
        agreement.swap_in(tensor.name, tensor.tensor_type.name, theirs, ours)
    return agreement.problems, agreement.metrics()


def diffusers_load_problems(
    gguf_path: Path, config: Path, subfolder: str | None, probe: Any, expected: Any
) -> tuple[list[str], dict]:
    """Load the GGUF as a diffusers user does and compare its small-probe output with
    `expected` (the float32 model holding diffusers' dequantized weights)."""
    import torch
    from diffusers import GGUFQuantizationConfig

    from engine.validation.loaders import load_unet
    from engine.validation.probe import compare, forward

    return_kept_memory()  # diffusers' GGUF reader maps the whole file: see engine.memory
    model = load_unet(
        gguf_path,
        config,
        subfolder,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
    )
    metrics = compare(expected, forward(model, probe, torch.float32))
    del model
    return check(SAME_WEIGHTS, metrics, "diffusers GGUF load vs the same weights in float32"), (
        metrics
    )
