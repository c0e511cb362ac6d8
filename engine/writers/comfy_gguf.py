"""ComfyUI-GGUF-only SD1.5 GGUFs: convolutions quantized too, in ComfyUI-GGUF's own row layout.

The GGUFs every consumer loads (engine.writers.gguf_writer) keep convolutions in F16, because
diffusers and stable-diffusion.cpp only read quantized Linear weights in natural shapes; on SD1.5,
where convolutions hold ~69% of the weights, that saves only 15-22%. ComfyUI-GGUF can do more, and
this module writes exactly the layout its own tools produce (city96/ComfyUI-GGUF at 795e451):

- rows: `tools/convert.py` `handle_tensors`, for `ModelSD1` (`shape_fix = True`), reshapes every
  tensor with more than one dimension, at least `REARRANGE_THRESHOLD` (512) values, a value
  count divisible by 256 and a last dimension that is not, to `(n // 256, 256)`, and records
  the natural shape as the INT32 array `comfy.gguf.orig_shape.<tensor name>`
  (`writer.add_array`); all other tensors keep their natural shape;
- what is quantized: its quantizer (`tools/lcpp.patch`, llama.cpp's `llama-quantize`) for the
  image architectures quantizes only 2-D tensors (`ggml_n_dims(tensor) == 2`) whose names end in
  `weight`, and for `sd1` never `time_embed.`, `time_embedding.`, `label_emb.`,
  `add_embedding.`, `class_embedding.`, `conv_in.`, `conv_out.`, `input_blocks.0.0.weight` nor
  `out.2.weight`; `tools/convert.py` keeps F32/BF16 tensors of <= 1024 values (and 1-D ones) in
  F32 (`QUANTIZATION_THRESHOLD`). After the reshape, conv weights are 2-D, so they are quantized:
  that is the whole gain;
- reading: `loader.py` `gguf_sd_loader` takes the shape from `get_orig_shape` (raising
  TypeError unless the field is an INT32 array) and `dequant.py` `dequantize` decodes the blocks
  in storage order and reshapes them to it; `ops.py` `GGMLOps.Conv2d` / `Linear` dequantize on
  the fly. diffusers and stable-diffusion.cpp read natural shapes only: these files are for
  ComfyUI-GGUF alone, and the registry says so (engine.run.variants, consumers).

Blocks are unetbot's quantizer (engine.formats.gguf_quants, byte-identical to gguf-py per block); a
reshaped tensor's blocks are its values in storage order, 32 at a time, as gguf-py quantizes the
reshaped array. Deliberately not copied: llama-quantize's LLM heuristic that stores
`.ff.net.2.weight` as Q4_1/Q5_1 in Q4_0/Q5_0 files (`img_tensor_get_type`, "ffn_down"); every
quantized tensor of a file here has the file's type, as its name says.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from gguf import GGML_QUANT_SIZES

from engine import __version__
from engine.source.folder import Source
from engine.source.keymap import UNET_PREFIX
from engine.writers.gguf_artifact import GGUFArtifact, gguf_source
from engine.writers.gguf_writer import (
    REASON_EMBEDDING,
    REASON_OTHER,
    REASON_ROW,
    REASON_SMALL,
    REASON_TIME,
    SMALL_TENSOR_THRESHOLD,
    SOURCE_DTYPES,
    TARGETS,
    TensorChoice,
    kept_type,
    write_gguf,
)
from engine.writers.original import LCM_CONVENTION, Provenance, original_tensors

COMFY_TYPES = ("Q8_0", "Q5_0", "Q4_0")
ROW = 256  # tools/convert.py: the reshaped row length
REARRANGE_THRESHOLD = 512  # tools/convert.py: smaller tensors keep their shape
ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."  # loader.py get_orig_shape
LAYOUT = "comfyui-gguf"
# lcpp.patch, `model.arch == LLM_ARCH_SD1`: substrings of names never quantized
_TIME_EMBEDDINGS = ("time_embed.", "time_embedding.")
_OTHER_EMBEDDINGS = ("label_emb.", "add_embedding.", "class_embedding.")
_CONV_IN_OUT_PARTS = ("conv_in.", "conv_out.")
_CONV_IN_OUT = ("input_blocks.0.0.weight", "out.2.weight")  # compared with the whole name

REASON_CONV_IN_OUT = "conv_in/conv_out (ComfyUI-GGUF never quantizes them)"
REASON_NOT_2D = "not 2-D after ComfyUI-GGUF's reshape"


def stored_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ComfyUI-GGUF's converter stores a tensor in (tools/convert.py, shape_fix)."""
    n = math.prod(shape)
    if len(shape) > 1 and n >= REARRANGE_THRESHOLD and n % ROW == 0 and shape[-1] % ROW:
        return (n // ROW, ROW)
    return tuple(shape)


def keep_reason(name: str, shape: tuple[int, ...], block_size: int) -> str | None:
    """Why ComfyUI-GGUF's tools would not quantize a tensor, or None (`shape`: natural)."""
    if not name.startswith(UNET_PREFIX):
        return REASON_OTHER
    bare = name[len(UNET_PREFIX) :]
    if len(shape) <= 1 or not name.endswith("weight") or math.prod(shape) <= SMALL_TENSOR_THRESHOLD:
        return REASON_SMALL
    if any(part in bare for part in _TIME_EMBEDDINGS):
        return REASON_TIME
    if any(part in bare for part in _OTHER_EMBEDDINGS):
        return REASON_EMBEDDING
    if bare in _CONV_IN_OUT or any(part in bare for part in _CONV_IN_OUT_PARTS):
        return REASON_CONV_IN_OUT
    stored = stored_shape(shape)
    if len(stored) != 2:
        return REASON_NOT_2D
    if stored[-1] % block_size:
        return REASON_ROW
    return None


def choose_comfy_type(
    name: str, shape: tuple[int, ...], source_dtype: str, target: str
) -> TensorChoice:
    """The stored type and shape of one tensor in a ComfyUI-GGUF-only `target` file (an
    engine.writers.gguf_writer policy)."""
    if target not in COMFY_TYPES:
        raise ValueError(f"unknown ComfyUI-GGUF target {target!r}; expected one of {COMFY_TYPES}")
    if source_dtype not in SOURCE_DTYPES:
        raise ValueError(f"{name}: unknown source dtype {source_dtype!r}")
    shape = tuple(shape)
    stored = stored_shape(shape)
    block_size = GGML_QUANT_SIZES[TARGETS[target][0]][0]
    reason = keep_reason(name, shape, block_size)
    reshaped = stored if stored != shape else None
    if reason is not None:
        return TensorChoice(name, kept_type(shape, source_dtype), reason, reshaped)
    kind = "conv weight" if len(shape) == 4 else "linear weight"
    return TensorChoice(name, target, f"{kind} -> {target}", reshaped)


def orig_shape_metadata(choices: list[TensorChoice], shapes: dict[str, tuple[int, ...]]) -> dict:
    """`comfy.gguf.orig_shape.<name>` -> natural shape, for every reshaped tensor."""
    return {f"{ORIG_SHAPE_KEY}{c.name}": tuple(shapes[c.name]) for c in choices if c.shape}


def write_comfy_gguf(
    source: Source, path: Path, qtype: str, provenance: Provenance
) -> GGUFArtifact:
    """Write the source UNet as a ComfyUI-GGUF-only `qtype` GGUF; manifest details + sha256."""
    if qtype not in COMFY_TYPES:
        raise ValueError(f"unknown ComfyUI-GGUF type {qtype!r}; expected one of {COMFY_TYPES}")
    tensors = original_tensors(source, False)
    sources = [gguf_source(t) for t in tensors]
    choices = [choose_comfy_type(s.name, tuple(s.shape), s.dtype, qtype) for s in sources]
    lcm = source.classification.is_lcm
    metadata: dict = {
        "general.name": Path(path).stem,
        "unetbot.version": __version__,
        "unetbot.kind": source.classification.kind,
        "unetbot.contents": "unet",
        "unetbot.layout": LAYOUT,
        "unetbot.source_repo": provenance.source_repo,
        "unetbot.source_revision": provenance.source_revision,
        "unetbot.lcm_cond_proj": LCM_CONVENTION if lcm else "none",
    }
    metadata.update(orig_shape_metadata(choices, {t.name: t.shape for t in tensors}))
    report = write_gguf(Path(path), sources, qtype, metadata, choose_comfy_type)
    kept = {"F16": report.kept.get("F16", 0), "F32": report.kept.get("F32", 0)}
    details = {
        "gguf_type": qtype,
        "layout": LAYOUT,
        "tensor_count": report.tensor_count,
        "quantized": report.quantized,
        "quantized_convs": sum(
            1 for c in report.choices if c.reason.startswith("conv weight") and c.ggml_type == qtype
        ),
        "reshaped": sum(1 for c in report.choices if c.shape),
        "kept": kept,
        "kept_reasons": dict(
            Counter(c.reason for c in report.choices if c.ggml_type in ("F16", "F32"))
        ),
        "full_checkpoint": False,
    }
    return GGUFArtifact(details, report.sha256)
