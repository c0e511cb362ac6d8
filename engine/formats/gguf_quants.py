"""GGML block quantizers (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1), byte-identical to `gguf.quants`.

Why our own: gguf-py's NumPy reference quantizes 16 rows at a time through `np.concatenate`,
float16 casts and axis reductions that NumPy runs row by row, which makes a full SD1.5 UNet take
seconds per type. Every step that decides a bit is kept equal to gguf-py (gguf/quants.py):

- scales: `d = max / -8` (Q4_0), `max / -16` (Q5_0), `amax / 127` (Q8_0), `(max - min) / 15|31`
  (Q4_1/Q5_1), all float32 divisions; `id = 1 / d`, or 0 when `d == 0`; scales stored as fp16;
- the "max" of Q4_0/Q5_0 is the signed value at the *first* index of the largest magnitude
  (`argmax` semantics), Q8_0 rounds half away from zero (`np_roundf`), the 4/5-bit types truncate
  `x * id + 8.5|16.5` (or `(x - min) * id + 0.5`) to uint8 and clip.

Two implementations, same bytes:

- the C kernel `engine.formats._gguf_kernels` (engine/formats/_gguf_kernels.c, built by `pip install
-e .`):
  each 32-value block is quantized in SSE2 registers in one pass, well under 1 ns per value
  against 3-5 ns for the NumPy passes, which is what lets the GGUF writer beat gguf-py by
  the margin it promises. It does the same IEEE float32 operations in the same order (no FMA,
  no fast-math, a pinned float environment);
- the NumPy quantizer (engine/formats/gguf_numpy_quants.py): the same arithmetic on cache-sized
chunks
  of blocks with preallocated buffers. It is the portable fallback where the extension is not
  built (no compiler, not x86-64) and the second opinion the tests hold the C kernel to.

Both split big tensors across a thread pool (NumPy and the C kernel release the GIL).

Fixup path: a few blocks have bytes that are not decided by IEEE arithmetic but by NumPy itself:
which zero (+0 or -0) `blocks.max()` / `blocks.min()` return when the max or min of a Q4_1/Q5_1
block is a zero (its sign lands in the stored fp16 min, and in d), and what NumPy's float -> int8
/ uint8 cast gives for NaN, inf or out-of-range values (subnormal scales whose 1/d overflows,
`inf * 0`). The C kernel flags such blocks instead of guessing, and `quantize` recomputes exactly
those with `gguf.quants.quantize` itself on their float32 values: blocks are independent in
gguf-py (every reduction is per block), so this gives gguf-py's bytes by construction. Real
weights hit it rarely (all-zero or one-signed blocks with a zero at the edge), so it costs nothing
measurable.

The tests compare both implementations against `gguf.quants.quantize` on random, constant, huge,
tiny and mixed-sign blocks, and on every quantizable tensor of a full-size SD1.5 UNet.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType
from gguf import quants as gguf_py_quants

from engine.errors import NonFiniteWeights
from engine.formats import gguf_numpy_quants as numpy_quants
from engine.formats.gguf_numpy_quants import (
    FP16_LIMIT,
    NO_LIMIT,
    QUANTS,
    NonFiniteBlock,
    Quant,
    quantize_range,
)

try:
    from engine.formats import _gguf_kernels
except ImportError:  # not built here (no compiler, not x86-64): the NumPy quantizer is used
    _gguf_kernels = None

Kernel = Literal["auto", "c", "numpy"]

# Below this many blocks a tensor is quantized on the calling thread (pool hand-off costs more).
_MIN_BLOCKS_PER_TASK = 4 * numpy_quants.CHUNK_BLOCKS
# Blocks handed to gguf-py per call on the fixup path, as one row (gguf-py runs 16 rows per NumPy
# pass, so one block per row would be slow); bounds its temporaries to a few MiB.
_FIXUP_BLOCKS = 65536
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1, thread_name_prefix="unetbot-quant"
            )
        return _pool


def supported_types() -> tuple[GGMLQuantizationType, ...]:
    """The block types this module quantizes."""
    return tuple(QUANTS)


def active_kernel() -> Literal["c", "numpy"]:
    """The implementation `quantize` uses by default here: "c" when the extension is built."""
    return "numpy" if _gguf_kernels is None else "c"


def _resolve(kernel: Kernel) -> Literal["c", "numpy"]:
    """The implementation `kernel` names; asking for "c" where it is not built is an error, so a
    test or benchmark that means the C kernel never measures the NumPy one by accident."""
    if kernel == "auto":
        return active_kernel()
    if kernel == "c":
        if _gguf_kernels is None:
            raise RuntimeError(
                "the C quantizer engine.formats._gguf_kernels is not built (run `make venv`, which "
                "needs a C compiler and x86-64)"
            )
        return "c"
    if kernel == "numpy":
        return "numpy"
    raise ValueError(f"unknown quantizer kernel {kernel!r} (expected auto, c or numpy)")


def _run_c(
    quant: type[Quant],
    src: np.ndarray,
    out: np.ndarray,
    fixup: np.ndarray,
    start: int,
    stop: int,
) -> int:
    """C: quantize blocks [start, stop); returns how many of them need the fixup path."""
    bs = quant.block_size
    assert _gguf_kernels is not None
    flagged = _gguf_kernels.quantize_blocks(
        int(quant.qtype),
        src[start * bs : stop * bs],
        src.dtype == np.float16,
        out[start:stop],
        fixup[start:stop],
    )
    if flagged < 0:
        raise NonFiniteBlock
    return flagged


def _fixup(quant: type[Quant], src: np.ndarray, out: np.ndarray, fixup: np.ndarray) -> None:
    """Recompute the blocks the C kernel flagged with gguf-py itself (see the module docstring).

    gguf-py casts its input to float32 first, as done here, and quantizes each block on its own,
    so these bytes are the ones it writes for those blocks inside the whole tensor.
    """
    flagged = np.flatnonzero(fixup)
    blocks = src.reshape(-1, quant.block_size)
    for i in range(0, flagged.size, _FIXUP_BLOCKS):
        which = flagged[i : i + _FIXUP_BLOCKS]
        row = blocks[which].astype(np.float32).reshape(1, -1)
        # gguf-py warns about its own arithmetic on degenerate scales (the reason for fixup)
        with np.errstate(all="ignore"):
            out[which] = gguf_py_quants.quantize(row, quant.qtype).reshape(-1, quant.type_size)


def _in_tasks(run: Callable[[int, int], int], n_blocks: int) -> int:
    """`run(start, stop)` over [0, n_blocks), split across the pool when big; sums the results."""
    workers = min(os.cpu_count() or 1, n_blocks // _MIN_BLOCKS_PER_TASK)
    if workers <= 1:
        return run(0, n_blocks)
    # whole chunks per task, so chunks never straddle two threads
    chunk = numpy_quants.CHUNK_BLOCKS
    per_task = math.ceil(n_blocks / workers / chunk) * chunk
    futures = [
        _executor().submit(run, b0, min(b0 + per_task, n_blocks))
        for b0 in range(0, n_blocks, per_task)
    ]
    return sum(f.result() for f in futures)


def quantize(
    array: np.ndarray,
    qtype: GGMLQuantizationType,
    name: str | None = None,
    *,
    kernel: Kernel = "auto",
) -> np.ndarray:
    """Quantize `array` (rows along the last axis) to GGML blocks of `qtype`.

    Returns uint8 of shape `(*array.shape[:-1], row_bytes)`, the same bytes as
    `gguf.quants.quantize(array, qtype)`. float16 and float32 are read directly (bf16 arrives as
    float32); other float dtypes are cast to float32 first, as gguf-py does. `kernel` picks the
    implementation: "auto" (the C kernel when built, see `active_kernel`), "c" or "numpy".

    Raises ValueError when the row length is not a multiple of the block size,
    NonFiniteWeights (naming `name`) when the array holds NaN or Inf, and RuntimeError when
    `kernel="c"` but the extension is not built.
    """
    quant = QUANTS.get(GGMLQuantizationType(qtype))
    if quant is None:
        raise ValueError(f"unetbot does not quantize to {GGMLQuantizationType(qtype).name}")
    if array.ndim == 0:
        raise ValueError("cannot quantize a scalar")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"expected a float array, got {array.dtype}")
    width = array.shape[-1]
    if width % quant.block_size:
        raise ValueError(
            f"row length {width} of {name or 'tensor'} {tuple(array.shape)} is not a multiple of "
            f"the {quant.qtype.name} block size {quant.block_size}"
        )
    impl = _resolve(kernel)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    src = np.ascontiguousarray(array).reshape(-1)
    if impl == "c" and src.dtype not in (np.float16, np.float32):
        src = src.astype(np.float32)  # what gguf-py does first
    n_blocks = src.size // quant.block_size
    out = np.empty((n_blocks, quant.type_size), np.uint8)
    try:
        if impl == "c":
            fixup = np.empty(n_blocks, np.uint8)
            if _in_tasks(lambda b0, b1: _run_c(quant, src, out, fixup, b0, b1), n_blocks):
                _fixup(quant, src, out, fixup)
        else:
            limit = FP16_LIMIT if src.dtype == np.float16 else NO_LIMIT
            _in_tasks(lambda b0, b1: quantize_range(quant, src, out, limit, b0, b1), n_blocks)
    except NonFiniteBlock:
        raise NonFiniteWeights(
            f"{name or 'tensor'} holds NaN or Inf values; it cannot be quantized to "
            f"{quant.qtype.name} (check the source checkpoint)"
        ) from None
    row_bytes = width // quant.block_size * quant.type_size
    return out.reshape(*array.shape[:-1], row_bytes)
