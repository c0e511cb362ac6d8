"""ComfyUI-GGUF-only GGUFs (engine.writers.comfy_gguf): read back, ComfyUI-GGUF's rules, every
tensor against the source, then the outputs of the weights ComfyUI-GGUF itself computes with.

- read back with gguf-py (`gguf.GGUFReader`), never with the code that wrote it; the natural
  shape of each reshaped tensor from its `comfy.gguf.orig_shape.<name>` field, refused unless it
  is an INT32 array, as ComfyUI-GGUF's `loader.py` `get_orig_shape` refuses it;
- ComfyUI-GGUF's rules (engine.writers.gguf_rules.check_comfy_gguf) and the manifest's source
revision;
- every tensor against the source in its stored shape (engine.validation.gguf_tensors): bytes
  of the F16 tensors, gguf-py's dequantization (the independent oracle) of the quantized ones
  within each block's derived quantization bound, and the worst tensor's relative L2;
- ComfyUI-GGUF's own dequantization (`dequant.py` `dequantize`: blocks decoded in storage order,
  in float16 when the loader's `dequant_dtype` is left at its default, then reshaped to the
  natural shape) must stay within the float16 rounding bound of gguf-py's values, element by
  element; the block decoders are diffusers' (`quantizers/gguf/utils.py`, ported from
  ComfyUI-GGUF's dequant.py, same arithmetic: `dequantize_blocks_Q8_0` etc.);
- outputs: a float32 model holding those ComfyUI-GGUF weights (what `GGMLOps` computes with on
  CPU: float16 dequantization cast to the float32 compute dtype), the seeded probe and the LCM
  run, against the fp32 source, within its calibrated gate
  (engine.validation.thresholds.COMFY_THRESHOLDS).
diffusers and stable-diffusion.cpp cannot read these files (natural shapes only); nothing here
claims they do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.formats.safetensors_io import output_tensor
from engine.formats.validation_record import ValidationResult
from engine.memory import release_memory
from engine.validation.context import Context
from engine.validation.gguf_tensors import (
    PLAIN,
    DecoderAgreement,
    compare_tensors,
    forget_pages,
    gguf_fields,
    open_reader,
)
from engine.validation.outputs import output_checks
from engine.writers.gguf_rules import COMFY_ORIG_SHAPE, check_comfy_gguf
from engine.writers.original import original_tensors

if TYPE_CHECKING:
    from engine.formats.manifest import Artifact
    from engine.validation.check import Check

CHECK_READ = (
    "GGUFReader + comfy.gguf.orig_shape (INT32): every tensor vs source in its stored shape, "
    "every quantized element within its block's quantization bound (gguf-py's block decoders)"
)
CHECK_RULES = "ComfyUI-GGUF rules (loader.py, dequant.py, tools/convert.py + lcpp.patch)"
CHECK_DEQUANT = (
    "ComfyUI-GGUF's float16 dequantization, reshaped by orig_shape, within the float16 "
    "rounding bound of gguf-py's"
)
CHECK_OUTPUTS = "probe forward of ComfyUI-GGUF's dequantized weights vs fp32 source"


def stored_shapes(reader: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (GGML type, stored shape): GGUF lists dimensions innermost first."""
    return {
        t.name: (t.tensor_type.name, tuple(int(d) for d in reversed(t.shape.tolist())))
        for t in reader.tensors
    }


def orig_shapes(reader: Any) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """name -> natural shape from `comfy.gguf.orig_shape.<name>`, and the fields ComfyUI-GGUF
    would refuse (loader.py get_orig_shape: TypeError unless an ARRAY of INT32)."""
    import gguf

    shapes: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    for key, field in reader.fields.items():
        if not key.startswith(COMFY_ORIG_SHAPE):
            continue
        types = list(field.types)
        if types != [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]:
            problems.append(f"{key}: {types}, ComfyUI-GGUF needs an ARRAY of INT32")
            continue
        shapes[key[len(COMFY_ORIG_SHAPE) :]] = tuple(int(field.parts[i][0]) for i in field.data)
    return shapes, problems


def comfy_dequantize(tensor: Any, shape: tuple[int, ...]) -> Any:
    """One quantized reader tensor as ComfyUI-GGUF's `dequant.py` `dequantize` decodes it with
    the default `dequant_dtype` (float16 arithmetic), reshaped to `shape`."""
    import numpy as np
    import torch
    from diffusers.quantizers.gguf.utils import dequantize_functions
    from gguf import GGML_QUANT_SIZES

    block_size, type_size = GGML_QUANT_SIZES[tensor.tensor_type]
    data = torch.from_numpy(np.array(tensor.data))  # the mapped blocks, copied
    rows = data.reshape(-1, data.shape[-1]).view(torch.uint8)
    blocks = rows.reshape(rows.numel() // type_size, type_size)
    decode = dequantize_functions[tensor.tensor_type]
    return decode(blocks, block_size, type_size).reshape(shape)


def swap_in_comfy_weights(
    reader: Any, values: dict[str, Any], natural: dict[str, tuple[int, ...]]
) -> tuple[list[str], dict]:
    """Replace each quantized tensor's gguf-py values (stored shape) by ComfyUI-GGUF's float16
    dequantization cast to float32, after checking it element by element against the float16
    bound; every value ends in its natural shape. Returns (problems, metrics)."""
    agreement = DecoderAgreement("ComfyUI-GGUF's")
    for tensor in reader.tensors:
        name, ggml_type = tensor.name, tensor.tensor_type.name
        ours = values.get(name)
        if ours is None:
            continue
        if ggml_type not in PLAIN:
            theirs = comfy_dequantize(tensor, natural[name]).reshape(ours.shape)
            forget_pages(reader, tensor)
            agreement.swap_in(name, ggml_type, theirs, ours)  # into gguf-py's float32 buffer
        values[name] = ours.reshape(natural[name])
    return agreement.problems, agreement.metrics()


def validate_comfy_gguf(check: Check, artifact: Artifact, ctx: Context) -> ValidationResult:
    from engine.validation.gguf_tensors import model_from_values

    threshold = check.threshold
    assert threshold is not None
    path = ctx.out_dir / artifact.path
    reader, unreadable = open_reader(path)
    if reader is None:
        return ValidationResult.from_problems([unreadable], {}, [CHECK_READ])
    fields = gguf_fields(reader)
    expected = original_tensors(ctx.source, False)
    stored = stored_shapes(reader)
    natural, problems = orig_shapes(reader)
    problems += check_comfy_gguf(fields, stored, natural, {t.name: t.shape for t in expected})
    if fields.get("unetbot.source_revision", "") != ctx.revision:
        problems.append("metadata source revision does not match the manifest")
    checks = [CHECK_READ, CHECK_RULES]
    if problems:  # shapes or names are off: the tensor comparison would not be meaningful
        return ValidationResult.from_problems(problems, {}, checks)
    as_stored = [output_tensor(t.source, t.spec, t.name, shape=stored[t.name][1]) for t in expected]
    compared = compare_tensors(reader, path, as_stored, keep_unet_values=True)
    problems += compared.problems
    worst = compared.worst
    if worst[0] > threshold.max_tensor_rel_l2:
        problems.append(f"{worst[1]}: tensor rel L2 {worst[0]:.5f} > {threshold.max_tensor_rel_l2}")
    metrics: dict = {
        "worst_tensor_rel_l2": worst[0],
        "worst_tensor": worst[1],
        "worst_quant_bound_ratio": compared.worst_bound_ratio,
    }
    if problems:
        return ValidationResult.from_problems(problems, metrics, checks)
    shapes = {t.name: t.shape for t in expected}
    dequant_problems, metrics["comfy_dequant"] = swap_in_comfy_weights(
        reader, compared.unet, shapes
    )
    problems += dequant_problems
    checks.append(CHECK_DEQUANT)
    del reader  # pages of the map touched so far count as this process's RSS
    release_memory()
    model = model_from_values(ctx.source.unet.config, compared.unet)
    compared.unet.clear()  # the model holds the values now; `del model` must free them
    metrics.update(output_checks(model, ctx, check.name, threshold, problems))
    checks.append(CHECK_OUTPUTS)
    del model
    release_memory()
    return ValidationResult.from_problems(problems, metrics, checks)
