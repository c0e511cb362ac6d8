"""Tensor values as NumPy arrays (the casts between F16, BF16 and F32: engine.formats.float_casts).

Apart from engine.formats.safetensors_io (bytes, headers, copies) so that work which only moves
bytes (an `original` copy, a dry run) never imports NumPy: ~0.15 s of every command's start-up.
"""

from __future__ import annotations

import numpy as np

from engine.formats.float_casts import NUMPY_DTYPES, bf16_to_f32
from engine.formats.safetensors_io import SafetensorsHeader, TensorSpec, read_tensor_bytes


def read_tensor_array(header: SafetensorsHeader, spec: TensorSpec) -> np.ndarray:
    """The tensor's values as float16/float32 NumPy (BF16 widened exactly to float32)."""
    raw = np.frombuffer(read_tensor_bytes(header, spec), dtype=NUMPY_DTYPES[spec.dtype])
    if spec.dtype == "BF16":
        raw = bf16_to_f32(raw)
    return raw.reshape(spec.shape)
