"""Float casts of raw tensor bytes between F16, BF16 and F32, in NumPy.

Apart from engine.formats.safetensors_io (which imports this only when a writer casts), so that
work which only moves bytes never imports NumPy.
"""

from __future__ import annotations

import numpy as np

CASTABLE = ("F16", "BF16", "F32")  # what a cast reads and writes (the float dtypes)

NUMPY_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "BF16": np.uint16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "U16": np.uint16,
    "U32": np.uint32,
    "U64": np.uint64,
}


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even like torch's `.to(torch.bfloat16)`; NaN stays a quiet NaN."""
    bits = values.astype(np.float32, copy=False).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


def cast_bytes(data: bytes, src: str, dst: str) -> bytes:
    """Convert raw tensor bytes between F16, BF16 and F32 (other dtypes are never cast)."""
    if src == dst:
        return data
    if src not in CASTABLE or dst not in CASTABLE:
        raise ValueError(f"cannot cast {src} to {dst}")
    values = np.frombuffer(data, dtype=NUMPY_DTYPES[src])
    f32 = bf16_to_f32(values) if src == "BF16" else values.astype(np.float32)
    if dst == "F32":
        return f32.tobytes()
    if dst == "F16":
        return f32.astype(np.float16).tobytes()
    return f32_to_bf16(f32).tobytes()
