"""A GGUF's tensors read back independently (gguf-py) and compared with the source, one at a time.

F16/F32 tensors stored in the source's own dtype must hold the source's bytes (compared on disk,
no copies); a float cast (F32 or BF16 source) must give exactly the cast of the source values;
quantized tensors are dequantized with gguf-py (`gguf.quants.dequantize`, float32) and measured
by relative L2 error against the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.formats.safetensors_io import OutputTensor
from engine.formats.tensor_values import read_tensor_array
from engine.source.keymap import UNET_PREFIX
from engine.validation.exact import same_bytes, same_bytes_on_disk
from engine.validation.thresholds import quantization_tolerance

PLAIN = ("F16", "F32")


@dataclass
class TensorComparison:
    problems: list[str] = field(default_factory=list)
    worst: tuple[float, str] = (0.0, "")  # worst quantized-tensor rel L2, and its name
    # worst |dequantized - source| / its derived bound over every quantized element (<= 1)
    worst_bound_ratio: float = 0.0
    # UNet values (torch float32, natural shapes) for the forward passes, when asked for
    unet: dict[str, Any] = field(default_factory=dict)


def open_reader(path: Path) -> tuple[Any, str]:
    """(gguf.GGUFReader over `path`, "") or (None, the reason it cannot be read): a truncated
    or malformed file is a failed validation, never a crash."""
    import gguf

    try:
        return gguf.GGUFReader(str(path)), ""
    except (ValueError, OSError, KeyError, IndexError) as exc:  # gguf-py's reshape/mmap errors
        return None, f"{path.name}: gguf.GGUFReader cannot read it (truncated or malformed: {exc})"


def gguf_fields(reader: Any) -> dict[str, object]:
    fields = {}
    for name, fld in reader.fields.items():
        try:
            fields[name] = fld.contents()
        except Exception:  # an unreadable field counts as absent for the consumer rules
            continue
    return fields


def natural_shapes(reader: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (GGML type name, natural shape): GGUF stores dimensions innermost first."""
    return {
        t.name: (t.tensor_type.name, tuple(int(d) for d in reversed(t.shape.tolist())))
        for t in reader.tensors
    }


def rel_l2(a: Any, b: Any) -> float:
    """Relative L2 error of torch tensor `a` against `b`.

    float32 norms: ~7x faster than widening 268M values to float64 per GGUF, and the metric
    moves by ~1e-4 of itself, far inside the thresholds' margins."""
    import torch

    diff = torch.linalg.vector_norm(a - b).item()
    return diff / max(torch.linalg.vector_norm(b).item(), 1e-30)


def float32_tensor(array: np.ndarray, shape: tuple[int, ...]) -> Any:
    """A new float32 torch tensor of `array` (file data: memory-mapped and read-only).

    torch converts float16 with F16C in one pass; NumPy's own float16 cast is ~4x slower, and
    copying the read-only map first would add a pass. The map is only read here."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": never written
        view = torch.from_numpy(np.asarray(array).reshape(shape))
    return view.to(torch.float32, copy=True)


def compare_tensors(
    reader: Any, gguf_path: Path, expected: list[OutputTensor], keep_unet_values: bool
) -> TensorComparison:
    """Check every `expected` tensor present in the file against the source (missing ones are
    the consumer rules' to report). `keep_unet_values`: also return the UNet's values for a
    float32 model (lossy files only; an exact file needs no forward pass)."""
    import gguf
    import torch

    by_name = {t.name: t for t in reader.tensors}
    result = TensorComparison()
    for t in expected:
        tensor = by_name.get(t.name)
        if tensor is None:
            continue
        ggml_type = tensor.tensor_type.name
        n_values = math.prod(t.shape)
        values = None
        if ggml_type in PLAIN:
            if tensor.data.size != n_values:
                result.problems.append(f"{t.name}: {tensor.data.size} values, expected {n_values}")
                continue
            if ggml_type == t.spec.dtype:
                start = t.source_offset
                at = int(tensor.data_offset)
                if not same_bytes_on_disk(gguf_path, at, t.source.path, start, t.spec.nbytes):
                    result.problems.append(f"{t.name}: {ggml_type} values differ from the source")
            if ggml_type != t.spec.dtype or (keep_unet_values and t.name.startswith(UNET_PREFIX)):
                values = float32_tensor(tensor.data, t.shape)
            if ggml_type != t.spec.dtype:
                source = float32_tensor(read_tensor_array(t.source, t.spec), t.shape)
                cast = source.to(torch.float16).float() if ggml_type == "F16" else source
                if not same_bytes(values.numpy(), cast.numpy()):
                    result.problems.append(f"{t.name}: {ggml_type} values differ from the source")
        else:
            deq = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32)
            if deq.size != n_values:
                result.problems.append(f"{t.name}: {deq.size} values, expected {n_values}")
                continue
            values = torch.from_numpy(deq.reshape(t.shape))
            source = float32_tensor(read_tensor_array(t.source, t.spec), t.shape)
            err = rel_l2(values, source)
            if err > result.worst[0]:
                result.worst = (err, t.name)
            ratio = bound_ratio(values, source, ggml_type)
            result.worst_bound_ratio = max(result.worst_bound_ratio, ratio)
            if not ratio <= 1.0:
                result.problems.append(
                    f"{t.name}: {ggml_type} values off the source by {ratio:.3g}x the block "
                    "quantization bound"
                )
        if keep_unet_values and values is not None and t.name.startswith(UNET_PREFIX):
            result.unet[t.name] = values
    return result


_CHUNK_VALUES = 1 << 20  # float64 temporaries of a bound check: ~8 MB each, not a tensor's


def row_chunks(tensor: Any) -> list[Any]:
    """`tensor` as views of whole rows, ~_CHUNK_VALUES values each (blocks of 32 run along the
    last dimension, so a chunk of whole rows holds whole blocks)."""
    rows = tensor.reshape(-1, tensor.shape[-1]) if tensor.dim() > 1 else tensor.reshape(1, -1)
    step = max(1, _CHUNK_VALUES // max(1, rows.shape[1]))
    return list(rows.split(step))


def bound_ratio(values: Any, source: Any, gguf_type: str) -> float:
    """max |values - source| / quantization_tolerance(source) over the tensor (<= 1 when
    `values` is a correct block quantization of `source`), evaluated chunk by chunk."""
    worst = 0.0
    for got, want in zip(row_chunks(values), row_chunks(source), strict=True):
        error = (got.double() - want.double()).abs()
        worst = max(worst, (error / quantization_tolerance(want, gguf_type)).max().item())
    return worst


def unet_tensors(reader: Any) -> dict[str, Any]:
    return {t.name: t for t in reader.tensors if t.name.startswith(UNET_PREFIX)}


def same_unet(reader: Any, other_path: Path) -> bool:
    """Whether this GGUF's UNet tensors equal, name by name and byte for byte, those of
    `other_path` (a GGUF that passed validation in this run)."""
    import gguf

    mine = unet_tensors(reader)
    theirs = unet_tensors(gguf.GGUFReader(str(other_path)))
    if mine.keys() != theirs.keys():
        return False
    return all(
        t.tensor_type == theirs[name].tensor_type
        and list(t.shape) == list(theirs[name].shape)
        and same_bytes(t.data, theirs[name].data)
        for name, t in mine.items()
    )


def model_from_values(unet_config: dict, values: dict[str, Any]) -> Any:
    """An fp32 diffusers UNet holding these original-format values (no second copy: assigned)."""
    import torch
    from diffusers import UNet2DConditionModel

    from engine.validation.loaders import to_diffusers_state_dict

    state = to_diffusers_state_dict(values, unet_config)
    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(unet_config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()
