"""A GGUF's tensors read back independently (gguf-py) and compared with the source, one at a time.

F16/F32 tensors stored in the source's own dtype must hold the source's bytes (compared on disk,
no copies); a float cast (F32 or BF16 source) must give exactly the cast of the source values;
quantized tensors are dequantized with gguf-py's block decoders (float32) and measured
by relative L2 error against the source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.formats.safetensors_io import OutputTensor
from engine.formats.tensor_values import read_tensor_array
from engine.source.keymap import UNET_PREFIX
from engine.validation.exact import same_bytes, same_bytes_on_disk
from engine.validation.thresholds import diffusers_dequant_tolerance, quantization_tolerance

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


def forget_pages(reader: Any, tensor: Any) -> None:
    """Drop the pages of `tensor`'s bytes from this process's view of the file (the kernel's
    page cache keeps them: reading them again is a minor fault, never a disk read).

    Why: gguf-py maps the whole file (`np.memmap`), and every page a check touches stays in the
    process's resident set until the reader is gone. Two readers of a 1.7 GB UNet (a full GGUF
    against the UNet-only GGUF it shares bytes with) were 3.4 GB of resident file pages on top
    of the models. Each tensor is read once per pass, so its pages are dropped once it has been
    read. The mapping is read-only and file-backed, so MADV_DONTNEED loses nothing. Where the
    reader's map is not an mmap (another gguf-py), nothing is dropped."""
    import mmap

    mapping = getattr(reader.data, "_mmap", None)  # numpy.memmap keeps its mmap.mmap here
    if not isinstance(mapping, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = int(tensor.data_offset) // mmap.PAGESIZE * mmap.PAGESIZE
    end = min(int(tensor.data_offset) + int(tensor.n_bytes), len(mapping))
    if end > start:
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


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


_DECODE_BLOCKS = 1 << 15  # blocks per gguf-py decoder call: 1M values, ~4 MB temporaries each


def gguf_py_dequantize(tensor: Any) -> np.ndarray:
    """One quantized reader tensor decoded by gguf-py's own block decoder (float32, flat).

    The arithmetic is gguf-py's (`gguf.quants.<TYPE>.dequantize_blocks`, the class
    `gguf.quants.dequantize` dispatches to), called on 32,768 blocks at a time. Why not
    `gguf.quants.dequantize` itself: it calls the decoder once per 16 rows, ~65,000 Python calls
    per UNet, and that overhead was 1.5 s of 2.0 s for a full-size Q8_0 UNet and 5.7 s of 7.4 s
    for a ComfyUI-GGUF one (its convolutions' 256-wide rows make many more calls)."""
    import gguf

    decoder = getattr(gguf.quants, tensor.tensor_type.name)
    type_size = gguf.GGML_QUANT_SIZES[tensor.tensor_type][1]
    blocks = np.asarray(tensor.data).view(np.uint8).reshape(-1, type_size)
    out = np.empty(blocks.shape[0] * decoder.block_size, np.float32)
    for start in range(0, blocks.shape[0], _DECODE_BLOCKS):
        part = decoder.dequantize_blocks(blocks[start : start + _DECODE_BLOCKS])
        out[start * decoder.block_size : start * decoder.block_size + part.size] = part.ravel()
    return out


def compare_tensors(
    reader: Any, gguf_path: Path, expected: list[OutputTensor], keep_unet_values: bool
) -> TensorComparison:
    """Check every `expected` tensor present in the file against the source (missing ones are
    the consumer rules' to report). `keep_unet_values`: also return the UNet's values for a
    float32 model (lossy files only; an exact file needs no forward pass)."""
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
            deq = gguf_py_dequantize(tensor)
            if deq.size != n_values:
                result.problems.append(f"{t.name}: {deq.size} values, expected {n_values}")
                continue
            values = torch.from_numpy(deq.reshape(t.shape))
            source = float32_tensor(read_tensor_array(t.source, t.spec), t.shape)
            bound = bound_check(values, source, ggml_type, quantization_tolerance)
            if bound.rel_l2 > result.worst[0]:
                result.worst = (bound.rel_l2, t.name)
            result.worst_bound_ratio = max(result.worst_bound_ratio, bound.ratio)
            if not bound.ratio <= 1.0:
                result.problems.append(
                    f"{t.name}: {ggml_type} values off the source by {bound.ratio:.3g}x the "
                    "block quantization bound"
                )
        if keep_unet_values and values is not None and t.name.startswith(UNET_PREFIX):
            result.unet[t.name] = values
        forget_pages(reader, tensor)
    return result


_CHUNK_VALUES = 1 << 20  # temporaries of a bound check: 4-8 MB each, not a tensor's


def row_chunks(tensor: Any) -> list[Any]:
    """`tensor` as views of whole rows, ~_CHUNK_VALUES values each (blocks of 32 run along the
    last dimension, so a chunk of whole rows holds whole blocks)."""
    rows = tensor.reshape(-1, tensor.shape[-1]) if tensor.dim() > 1 else tensor.reshape(1, -1)
    step = max(1, _CHUNK_VALUES // max(1, rows.shape[1]))
    return list(rows.split(step))


# A chunk whose float32 ratio comes this close to its bound is evaluated again in float64.
_RECHECK_ABOVE = 1.0 - 1e-3


@dataclass(frozen=True)
class BoundCheck:
    """How far one tensor's values are from what they are checked against, element by element."""

    ratio: float  # max |values - reference| / derived tolerance (<= 1: within the bound)
    rel_l2: float  # ||values - reference|| / ||reference||


def bound_check(
    values: Any, reference: Any, gguf_type: str, tolerance: Callable[..., Any]
) -> BoundCheck:
    """`values` against `reference` under `tolerance(reference, gguf_type, dtype)` (one of the
    derived bounds of engine.validation.thresholds), chunk by chunk of whole rows.

    Evaluated in float32: half the memory traffic of float64 and no widened copies (2.6x faster:
    3.0 s instead of 7.7 s over three full-size GGUFs). float32 rounding moves a ratio by a few
    units of 2^-24 of itself, so a chunk whose float32 ratio comes within 1e-3 of the bound is
    evaluated again in float64, as the bounds are defined: the verdict is float64's, whatever
    float32 rounds. A NaN anywhere is a ratio of infinity (Python's `max` would drop it)."""
    import torch

    worst, diff_sq, norm_sq = 0.0, 0.0, 0.0
    for got, want in zip(row_chunks(values), row_chunks(reference), strict=True):
        got, want = got.float(), want.float()
        error = (got - want).abs_()
        diff_sq += torch.linalg.vector_norm(error).item() ** 2
        norm_sq += torch.linalg.vector_norm(want).item() ** 2
        ratio = error.div_(tolerance(want, gguf_type, torch.float32)).max().item()
        if not ratio <= _RECHECK_ABOVE:  # NaN included
            error = (got.double() - want.double()).abs_()
            ratio = error.div_(tolerance(want, gguf_type)).max().item()
        worst = max(worst, ratio if ratio == ratio else math.inf)  # a NaN value never passes
    return BoundCheck(worst, (diff_sq / max(norm_sq, 1e-60)) ** 0.5)


@dataclass
class DecoderAgreement:
    """A consumer's float16 decoding of a GGUF (diffusers', ComfyUI-GGUF's) against gguf-py's
    float32 values, tensor by tensor, under the derived float16 rounding bound
    (engine.validation.thresholds.diffusers_dequant_tolerance)."""

    decoder: str  # whose decoding, as the messages name it: "diffusers'", "ComfyUI-GGUF's"
    problems: list[str] = field(default_factory=list)
    worst_ratio: float = 0.0  # worst |theirs - ours| / bound over every element (<= 1)
    worst_rel: float = 0.0  # worst tensor rel L2 between the two decodings

    def swap_in(self, name: str, ggml_type: str, theirs: Any, ours: Any) -> None:
        """Check `theirs` against `ours` element by element, then copy it into `ours` (float16
        to float32 in the copy: exact, and no float32 temporary)."""
        import torch

        with torch.no_grad():
            bound = bound_check(theirs, ours.detach(), ggml_type, diffusers_dequant_tolerance)
            ours.copy_(theirs)
        self.worst_ratio = max(self.worst_ratio, bound.ratio)
        self.worst_rel = max(self.worst_rel, bound.rel_l2)
        if not bound.ratio <= 1.0:
            self.problems.append(
                f"{name}: {self.decoder} dequantization differs from gguf-py's by "
                f"{bound.ratio:.3g}x the float16 rounding bound"
            )

    def metrics(self) -> dict[str, float]:
        return {"worst_bound_ratio": self.worst_ratio, "worst_rel_l2": self.worst_rel}


def unet_tensors(reader: Any) -> dict[str, Any]:
    return {t.name: t for t in reader.tensors if t.name.startswith(UNET_PREFIX)}


def same_unet(reader: Any, other_path: Path) -> bool:
    """Whether this GGUF's UNet tensors equal, name by name and byte for byte, those of
    `other_path` (a GGUF that passed validation in this run)."""
    import gguf

    other = gguf.GGUFReader(str(other_path))
    mine, theirs = unet_tensors(reader), unet_tensors(other)
    if mine.keys() != theirs.keys():
        return False
    for name, t in mine.items():
        same = (
            t.tensor_type == theirs[name].tensor_type
            and list(t.shape) == list(theirs[name].shape)
            and same_bytes(t.data, theirs[name].data)
        )
        forget_pages(reader, t)
        forget_pages(other, theirs[name])
        if not same:
            return False
    return True


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
