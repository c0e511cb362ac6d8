"""unetbot's block quantizers must give exactly gguf-py's bytes (which match ggml's C code)."""

from __future__ import annotations

import warnings
from unittest import mock

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import gguf_quants
from engine.errors import NonFiniteWeights
from engine.gguf_quants import quantize

TYPES = [Q.Q8_0, Q.Q5_0, Q.Q5_1, Q.Q4_0, Q.Q4_1]
F32_MAX = float(np.finfo(np.float32).max)
MAGNITUDES = [
    1e-45,  # smallest float32 subnormal (bf16/f32 sources only)
    1e-40,  # float32 subnormal: 1/d overflows, gguf-py yields NaN levels
    1e-30,
    6e-8,  # smallest fp16 subnormal
    1e-5,  # fp16 subnormal range
    1e-2,
    1.0,
    1e4,
    65504.0,  # fp16 max
    1e30,
    3e38,
]
PATTERNS = ["normal", "uniform", "zeros", "constant", "signed_zeros", "ties", "sparse", "one_sign"]


def reference(array: np.ndarray, qtype: Q) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return gguf.quants.quantize(array, qtype)


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bf16 (nearest even) and given back as float32, as sources are."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def build(pattern: str, shape: tuple[int, int], magnitude: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if pattern == "normal":
        values = rng.standard_normal(shape)
    elif pattern == "uniform":
        values = rng.uniform(-1, 1, shape)
    elif pattern == "zeros":
        values = np.zeros(shape)
    elif pattern == "constant":
        values = np.full(shape, rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 1))
    elif pattern == "signed_zeros":
        values = np.where(rng.random(shape) < 0.5, -0.0, 0.0)
        values[rng.random(shape) < 0.1] = rng.choice([-1.0, 1.0])
    elif pattern == "ties":
        # small integers and halves hit exact .5 ties and equal +/- maxima in one block
        values = rng.integers(-16, 17, shape) / rng.choice([1, 2, 4, 8])
    elif pattern == "sparse":
        values = rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    elif seed % 2:  # one_sign
        values = -np.abs(rng.standard_normal(shape))
    else:
        values = rng.uniform(0, 1, shape)
    return np.clip(values * magnitude, -F32_MAX, F32_MAX)


def as_source(values: np.ndarray, source: str) -> np.ndarray:
    if source == "F16":
        with np.errstate(over="ignore"):
            return np.clip(values, -65504, 65504).astype(np.float16)
    if source == "BF16":
        return to_bf16(np.clip(values, -3.3e38, 3.3e38).astype(np.float32))
    return values.astype(np.float32)


def assert_identical(array: np.ndarray, qtype: Q) -> None:
    ours = quantize(array, qtype)
    theirs = reference(array, qtype)
    assert ours.dtype == np.uint8
    assert ours.shape == theirs.shape
    if not np.array_equal(ours, theirs):
        bad = np.argwhere(ours != theirs)[:5].tolist()
        raise AssertionError(f"{qtype.name}: bytes differ at {bad}")


@settings(max_examples=150, deadline=None)
@given(
    pattern=st.sampled_from(PATTERNS),
    rows=st.integers(1, 5),
    blocks=st.integers(1, 6),
    magnitude=st.sampled_from(MAGNITUDES),
    source=st.sampled_from(["F16", "BF16", "F32"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_byte_identical_to_gguf_py(pattern, rows, blocks, magnitude, source, seed):
    array = as_source(build(pattern, (rows, 32 * blocks), magnitude, seed), source)
    for qtype in TYPES:
        assert_identical(array, qtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, width=32) | st.sampled_from([0.0, -0.0, 0.5, -0.5]),
        min_size=32,
        max_size=32 * 4,
    ).filter(lambda v: len(v) % 32 == 0),
    source=st.sampled_from(["F16", "F32"]),
)
def test_byte_identical_on_arbitrary_values(values, source):
    array = as_source(np.array(values, dtype=np.float64).reshape(1, -1), source)
    for qtype in TYPES:
        assert_identical(array, qtype)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    blocks=st.integers(1, 10),
    source=st.sampled_from(["F16", "BF16", "F32"]),
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**32 - 1),
)
def test_chunks_and_threads_do_not_change_bytes(rows, blocks, source, pattern, seed):
    """Tiny chunks and a tiny thread threshold split even small arrays across workers."""
    array = as_source(build(pattern, (rows, 32 * blocks), 1.0, seed), source)
    with (
        mock.patch.object(gguf_quants, "_CHUNK_BLOCKS", 3),
        mock.patch.object(gguf_quants, "_MIN_BLOCKS_PER_TASK", 2),
    ):
        for qtype in TYPES:
            assert_identical(array, qtype)


def test_thread_buffers_grow_after_smaller_chunks():
    """Per-thread scratch made for tiny chunks must not be reused for bigger ones."""
    rng = np.random.default_rng(11)
    small = rng.standard_normal((8, 320)).astype(np.float16)
    with (
        mock.patch.object(gguf_quants, "_CHUNK_BLOCKS", 3),
        mock.patch.object(gguf_quants, "_MIN_BLOCKS_PER_TASK", 2),
    ):
        assert_identical(small, Q.Q8_0)
    assert_identical(rng.standard_normal((320, 1280)).astype(np.float16), Q.Q8_0)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_large_tensor_uses_pool_and_matches(qtype, dtype):
    rng = np.random.default_rng(7)
    array = (rng.standard_normal((320, 1280)) * 0.03).astype(dtype)  # 12800 blocks: 2 tasks
    assert_identical(array, qtype)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("shape", [(64,), (2, 3, 96), (0, 32)])
def test_shapes_follow_gguf(qtype, shape):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = quantize(array, qtype)
    assert ours.shape == gguf.quant_shape_to_byte_shape(shape, qtype)
    if array.size:
        assert_identical(array, qtype)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises_and_names_tensor(qtype, dtype, bad):
    array = np.ones((4, 64), dtype=dtype)
    array[3, 17] = bad
    with pytest.raises(NonFiniteWeights, match=r"input_blocks\.1\.1\.proj"):
        quantize(array, qtype, name="model.diffusion_model.input_blocks.1.1.proj.weight")


def test_non_finite_found_in_any_chunk():
    array = np.zeros((64, 4096), dtype=np.float16)  # 8192 blocks, several chunks and tasks
    array[-1, -1] = np.inf
    with pytest.raises(NonFiniteWeights):
        quantize(array, Q.Q8_0, name="x")


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("width", [1, 16, 33, 320 + 16])
def test_bad_row_length_raises(qtype, width):
    with pytest.raises(ValueError, match="block size"):
        quantize(np.zeros((2, width), np.float32), qtype, name="w")


def test_rejects_scalars_integers_and_unknown_types():
    with pytest.raises(ValueError):
        quantize(np.float32(1.0).reshape(()), Q.Q8_0)
    with pytest.raises(TypeError):
        quantize(np.zeros((1, 32), np.int32), Q.Q8_0)
    with pytest.raises(ValueError):
        quantize(np.zeros((1, 256), np.float32), Q.Q4_K)


def test_non_native_and_non_contiguous_inputs():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((64, 128)).astype(np.float32)
    for array in (base.astype(">f4"), base[:, ::2].copy(order="F"), base.astype(np.float64)):
        for qtype in TYPES:
            ours = quantize(array, qtype)
            assert np.array_equal(ours, reference(np.ascontiguousarray(array), qtype))


def test_every_registered_type_is_listed():
    assert set(gguf_quants.supported_types()) == set(TYPES)


def _quantizable_sd15_shapes() -> dict[str, tuple[int, ...]]:
    from engine.synthetic import unet_config, unet_shapes

    shapes = unet_shapes(unet_config("sd15-lcm", "full"))
    return {
        name: shape
        for name, shape in shapes.items()
        if len(shape) == 2
        and name.endswith(".weight")
        and not name.startswith("time_embedding.")
        and shape[-1] % 32 == 0
    }


@pytest.mark.slow
def test_full_size_sd15_unet_linear_weights_identical():
    """Every quantizable tensor of a full-size random SD1.5 UNet, fp16, every type."""
    shapes = _quantizable_sd15_shapes()
    assert len(shapes) >= 180
    rng = np.random.default_rng(1234)
    for name, shape in shapes.items():
        values = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])).astype(
            np.float16
        )
        for qtype in TYPES:
            ours = quantize(values, qtype, name=name)
            if not np.array_equal(ours, reference(values, qtype)):
                raise AssertionError(f"{name} {shape} {qtype.name}: bytes differ")
