"""unetbot's block quantizers must give exactly gguf-py's bytes (which match ggml's C code).

Both implementations are held to gguf-py: the C kernel (`engine.formats._gguf_kernels`, the default
when built) and the NumPy fallback.
"""

from __future__ import annotations

import warnings
from unittest import mock

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import NonFiniteWeights
from engine.formats import gguf_numpy_quants, gguf_quants
from engine.formats.gguf_quants import quantize

TYPES = [Q.Q8_0, Q.Q5_0, Q.Q5_1, Q.Q4_0, Q.Q4_1]
KERNELS = ["c", "numpy"]
AFFINE = [Q.Q4_1, Q.Q5_1]
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


def assert_identical(array: np.ndarray, qtype: Q, kernel: str = "c") -> None:
    ours = quantize(array, qtype, kernel=kernel)
    theirs = reference(array, qtype)
    assert ours.dtype == np.uint8
    assert ours.shape == theirs.shape
    if not np.array_equal(ours, theirs):
        bad = np.argwhere(ours != theirs)[:5].tolist()
        raise AssertionError(f"{qtype.name} ({kernel}): bytes differ at {bad}")


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=150, deadline=None)
@given(
    pattern=st.sampled_from(PATTERNS),
    rows=st.integers(1, 5),
    blocks=st.integers(1, 6),
    magnitude=st.sampled_from(MAGNITUDES),
    source=st.sampled_from(["F16", "BF16", "F32"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_byte_identical_to_gguf_py(kernel, pattern, rows, blocks, magnitude, source, seed):
    array = as_source(build(pattern, (rows, 32 * blocks), magnitude, seed), source)
    for qtype in TYPES:
        assert_identical(array, qtype, kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, width=32) | st.sampled_from([0.0, -0.0, 0.5, -0.5]),
        min_size=32,
        max_size=32 * 4,
    ).filter(lambda v: len(v) % 32 == 0),
    source=st.sampled_from(["F16", "F32"]),
)
def test_byte_identical_on_arbitrary_values(kernel, values, source):
    array = as_source(np.array(values, dtype=np.float64).reshape(1, -1), source)
    for qtype in TYPES:
        assert_identical(array, qtype, kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    blocks=st.integers(1, 10),
    source=st.sampled_from(["F16", "BF16", "F32"]),
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**32 - 1),
)
def test_chunks_and_threads_do_not_change_bytes(kernel, rows, blocks, source, pattern, seed):
    """Tiny chunks and a tiny thread threshold split even small arrays across workers."""
    array = as_source(build(pattern, (rows, 32 * blocks), 1.0, seed), source)
    with (
        mock.patch.object(gguf_numpy_quants, "CHUNK_BLOCKS", 3),
        mock.patch.object(gguf_quants, "_MIN_BLOCKS_PER_TASK", 2),
    ):
        for qtype in TYPES:
            assert_identical(array, qtype, kernel)


def test_thread_buffers_grow_after_smaller_chunks():
    """Per-thread scratch made for tiny chunks must not be reused for bigger ones."""
    rng = np.random.default_rng(11)
    small = rng.standard_normal((8, 320)).astype(np.float16)
    with (
        mock.patch.object(gguf_numpy_quants, "CHUNK_BLOCKS", 3),
        mock.patch.object(gguf_quants, "_MIN_BLOCKS_PER_TASK", 2),
    ):
        assert_identical(small, Q.Q8_0, "numpy")
    assert_identical(rng.standard_normal((320, 1280)).astype(np.float16), Q.Q8_0, "numpy")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_large_tensor_uses_pool_and_matches(qtype, dtype, kernel):
    rng = np.random.default_rng(7)
    array = (rng.standard_normal((320, 1280)) * 0.03).astype(dtype)  # 12800 blocks: 2 tasks
    assert_identical(array, qtype, kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("shape", [(64,), (2, 3, 96), (0, 32)])
def test_shapes_follow_gguf(qtype, shape, kernel):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = quantize(array, qtype, kernel=kernel)
    assert ours.shape == gguf.quant_shape_to_byte_shape(shape, qtype)
    if array.size:
        assert_identical(array, qtype, kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises_and_names_tensor(qtype, dtype, bad, kernel):
    array = np.ones((4, 64), dtype=dtype)
    array[3, 17] = bad
    with pytest.raises(NonFiniteWeights, match=r"input_blocks\.1\.1\.proj"):
        quantize(
            array,
            qtype,
            name="model.diffusion_model.input_blocks.1.1.proj.weight",
            kernel=kernel,
        )


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_non_finite_found_in_any_chunk(kernel, dtype):
    array = np.zeros((64, 4096), dtype=dtype)  # 8192 blocks, several chunks and tasks
    array[-1, -1] = np.inf
    with pytest.raises(NonFiniteWeights):
        quantize(array, Q.Q8_0, name="x", kernel=kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("width", [1, 16, 33, 320 + 16])
def test_bad_row_length_raises(qtype, width, kernel):
    with pytest.raises(ValueError, match="block size"):
        quantize(np.zeros((2, width), np.float32), qtype, name="w", kernel=kernel)


def test_rejects_scalars_integers_and_unknown_types():
    with pytest.raises(ValueError):
        quantize(np.float32(1.0).reshape(()), Q.Q8_0)
    with pytest.raises(TypeError):
        quantize(np.zeros((1, 32), np.int32), Q.Q8_0)
    with pytest.raises(ValueError):
        quantize(np.zeros((1, 256), np.float32), Q.Q4_K)
    with pytest.raises(ValueError, match="kernel"):
        quantize(np.zeros((1, 32), np.float32), Q.Q8_0, kernel="fortran")


@pytest.mark.parametrize("kernel", KERNELS)
def test_non_native_and_non_contiguous_inputs(kernel):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((64, 128)).astype(np.float32)
    for array in (base.astype(">f4"), base[:, ::2].copy(order="F"), base.astype(np.float64)):
        for qtype in TYPES:
            ours = quantize(array, qtype, kernel=kernel)
            assert np.array_equal(ours, reference(np.ascontiguousarray(array), qtype))


def test_every_registered_type_is_listed():
    assert set(gguf_quants.supported_types()) == set(TYPES)


# ---- the C kernel: its build, its fixup path and the edges of its arithmetic ------------------


def c_kernel(array: np.ndarray, qtype: Q) -> tuple[np.ndarray, np.ndarray, int]:
    """The raw extension call: (bytes, fixup flags, number flagged or -1)."""
    from engine.formats import _gguf_kernels

    src = np.ascontiguousarray(array).reshape(-1)
    n_blocks = src.size // 32
    out = np.empty((n_blocks, gguf.GGML_QUANT_SIZES[qtype][1]), np.uint8)
    fixup = np.empty(n_blocks, np.uint8)
    flagged = _gguf_kernels.quantize_blocks(int(qtype), src, src.dtype == np.float16, out, fixup)
    return out, fixup, flagged


def test_c_kernel_is_built():
    """`make venv` builds engine.formats._gguf_kernels; a broken build must not fall back
    silently."""
    from engine.formats import _gguf_kernels

    assert gguf_quants.active_kernel() == "c"
    assert callable(_gguf_kernels.quantize_blocks)


def test_without_the_extension_numpy_is_used_and_c_refused():
    array = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float16)
    with mock.patch.object(gguf_quants, "_gguf_kernels", None):
        assert gguf_quants.active_kernel() == "numpy"
        assert_identical(array, Q.Q4_0, "auto")
        with pytest.raises(RuntimeError, match="not built"):
            quantize(array, Q.Q4_0, kernel="c")


def zero_edge_blocks(rng: np.random.Generator) -> np.ndarray:
    """Blocks whose max or min is +0.0 or -0.0 (or both signs), between ordinary blocks."""
    blocks = []
    for zeros in ([0.0], [-0.0], [0.0, -0.0], [-0.0, 0.0]):
        at = rng.choice(32, len(zeros), replace=False)
        below = -np.abs(rng.standard_normal(32)) - 0.1  # max is the zero
        above = np.abs(rng.standard_normal(32)) + 0.1  # min is the zero
        below[at] = above[at] = zeros
        blocks += [below, above, rng.standard_normal(32)]
    blocks.append(np.where(rng.random(32) < 0.5, 0.0, -0.0))  # only zeros, both signs
    blocks.append(np.zeros(32))
    blocks.append(-np.zeros(32))
    return np.array(blocks)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("qtype", AFFINE)
def test_zero_max_or_min_blocks_go_through_fixup(qtype, dtype):
    """NumPy's max/min decide the sign of a zero result; those blocks are redone by gguf-py."""
    blocks = zero_edge_blocks(np.random.default_rng(21)).astype(dtype)
    _, fixup, flagged = c_kernel(blocks, qtype)
    zero_edge = (blocks.max(axis=1) == 0) | (blocks.min(axis=1) == 0)
    assert flagged == zero_edge.sum() > 0
    assert np.array_equal(fixup.astype(bool), zero_edge)
    assert_identical(blocks.reshape(3, -1), qtype)


@pytest.mark.parametrize("qtype", AFFINE)
def test_fixup_in_pieces_and_threads(qtype):
    """All-zero tensors are flagged whole; the fixup goes through gguf-py in several calls."""
    signs = np.random.default_rng(4).random((64, 4096)) < 0.5
    array = np.where(signs, np.float16(0.0), np.float16(-0.0))
    with mock.patch.object(gguf_quants, "_FIXUP_BLOCKS", 1000):
        assert_identical(array, qtype)


def binade_blocks(dtype: type, rng: np.random.Generator) -> np.ndarray:
    """One block per power of two the dtype can hold (subnormals included), mixed signs."""
    exponents = np.arange(-25, 16) if dtype == np.float16 else np.arange(-149, 128)
    scale = np.ldexp(1.0, exponents)[:, None]
    values = rng.uniform(-1.99, 1.99, (exponents.size, 32)) * scale
    values[:, 7] = rng.choice([-1.0, 1.0], exponents.size) * scale[:, 0]  # exact powers of two
    with np.errstate(over="ignore"):
        return np.clip(values, -np.finfo(dtype).max, np.finfo(dtype).max).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("qtype", TYPES)
def test_scales_across_every_binade(qtype, dtype):
    """Subnormal inputs and scales (1/d overflowing or not), fp16 scale overflow and underflow."""
    assert_identical(binade_blocks(dtype, np.random.default_rng(17)), qtype)


@pytest.mark.parametrize("qtype", TYPES)
def test_huge_magnitudes_near_float32_max(qtype):
    """max - min overflows to inf, d overflows fp16, x * id lands next to the clip bounds."""
    top = float(np.finfo(np.float32).max)
    rng = np.random.default_rng(9)
    blocks = np.array(
        [
            np.full(32, top),
            np.full(32, -top),
            np.where(np.arange(32) % 2, top, -top),
            rng.uniform(-1, 1, 32) * top,
            np.r_[top, rng.uniform(-1, 1, 31)],
            np.r_[-top, rng.uniform(0, 1e30, 31)],
            np.r_[rng.uniform(-1, 1, 31) * 1e38, 3e38],
        ]
    ).astype(np.float32)
    assert_identical(blocks, qtype)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
@pytest.mark.parametrize("qtype", TYPES)
def test_every_finite_fp16_value(qtype, order):
    """All 63488 finite halves: subnormal-only blocks, zero blocks, and every value as input."""
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = halves[np.isfinite(halves)]
    if order == "shuffled":
        finite = np.random.default_rng(2).permutation(finite)
    assert_identical(finite.reshape(-1, 32 * 4), qtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("qtype", TYPES)
def test_constant_blocks(qtype, dtype):
    values = [0.0, -0.0, 1.0, -1.0, 0.1, -3.5, 65504.0, -65504.0, 6e-8, -6e-8, 1e-3]
    if dtype == np.float32:
        values += [1e-40, -1e-40, 1e-38, 3e38, -3e38]
    assert_identical(np.repeat(np.array(values), 32).reshape(-1, 32).astype(dtype), qtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("qtype", TYPES)
def test_exact_halves_and_ties(qtype, dtype):
    """Q8_0 levels at k + 0.5 (roundf goes away from zero), equal +/- maxima (first wins)."""
    halves = np.arange(-126.5, 127.0, 1.0)  # with amax 127, id == 1 and x * id is x
    blocks = [np.r_[127.0, halves[i : i + 31]] for i in range(0, halves.size - 31, 31)]
    blocks += [np.r_[-127.0, -halves[i : i + 31]] for i in range(0, halves.size - 31, 31)]
    blocks += [np.r_[2.0, -2.0, np.zeros(30)], np.r_[-2.0, 2.0, np.zeros(30)]]
    blocks += [np.r_[np.zeros(31), -0.25], np.r_[-0.0, np.full(31, 0.0)]]
    assert_identical(np.array(blocks).astype(dtype), qtype)


# The smallest block magnitude per type whose 1/d stays finite (d >= 2.94e-39), so float32
# subnormal inputs get non-trivial levels without sending the block to fixup.
SUBNORMAL_SENSITIVE = {Q.Q8_0: 4e-37, Q.Q4_0: 2.4e-38, Q.Q5_0: 4.8e-38, Q.Q4_1: 2.4e-38}
SUBNORMAL_SENSITIVE[Q.Q5_1] = 4.8e-38


def subnormal_heavy(qtype: Q, source: str, rng: np.random.Generator) -> np.ndarray:
    if source == "F16":
        return (rng.uniform(-1, 1, (8, 128)) * 1e-4).astype(np.float16)  # many subnormal halves
    array = rng.uniform(-1.17e-38, 1.17e-38, (8, 128)).astype(np.float32)  # float32 subnormals
    array[:, ::32] = SUBNORMAL_SENSITIVE[qtype]  # each block's max; and its min for Q4_1/Q5_1:
    array[:, 31::32] = -SUBNORMAL_SENSITIVE[qtype]
    return array


@pytest.mark.parametrize("source", ["F16", "F32"])
def test_c_kernel_ignores_the_callers_flush_to_zero_mode(source):
    """The C kernel pins the float environment: FTZ/DAZ set by a -ffast-math library (here
    torch.set_flush_denormal) must not change bytes that depend on subnormal values."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    arrays = {qtype: subnormal_heavy(qtype, source, rng) for qtype in TYPES}
    expected = {qtype: reference(arrays[qtype], qtype) for qtype in TYPES}
    for qtype in TYPES:  # no fixup, so the bytes below are all the C kernel's
        assert c_kernel(arrays[qtype], qtype)[2] == 0, qtype.name
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:  # small arrays: quantized on this thread, the one whose mode is set
        ours = {qtype: quantize(arrays[qtype], qtype, kernel="c") for qtype in TYPES}
    finally:
        torch.set_flush_denormal(False)
    for qtype in TYPES:
        assert np.array_equal(ours[qtype], expected[qtype]), qtype.name


def test_raw_kernel_checks_its_buffers():
    from engine.formats import _gguf_kernels

    src = np.zeros(64, np.float32)
    out, fixup = np.empty((2, 34), np.uint8), np.empty(2, np.uint8)
    q8 = int(Q.Q8_0)
    assert _gguf_kernels.quantize_blocks(q8, src, False, out, fixup) == 0
    with pytest.raises(ValueError, match="whole"):
        _gguf_kernels.quantize_blocks(q8, src[:40], False, out, fixup)
    with pytest.raises(ValueError, match="match"):
        _gguf_kernels.quantize_blocks(q8, src, False, out[:1], fixup)
    with pytest.raises(ValueError, match="match"):
        _gguf_kernels.quantize_blocks(q8, src, True, out, fixup)  # 64 halves are 4 blocks
    with pytest.raises(ValueError, match="unsupported"):
        _gguf_kernels.quantize_blocks(int(Q.Q4_K), src, False, out, fixup)
    with pytest.raises(TypeError):
        _gguf_kernels.quantize_blocks(q8, src, False, bytes(68), fixup)  # read-only
    src[40] = np.nan
    assert _gguf_kernels.quantize_blocks(q8, src, False, out, fixup) == -1


def _quantizable_sd15_shapes() -> dict[str, tuple[int, ...]]:
    from engine.synthetic.models import unet_config, unet_shapes

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
    """Every quantizable tensor of a full-size random SD1.5 UNet, fp16, every type, both
    kernels (the C kernel first: it is what the bot runs)."""
    assert gguf_quants.active_kernel() == "c"
    shapes = _quantizable_sd15_shapes()
    assert len(shapes) >= 180
    rng = np.random.default_rng(1234)
    for name, shape in shapes.items():
        values = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])).astype(
            np.float16
        )
        for qtype in TYPES:
            expected = reference(values, qtype)
            for kernel in KERNELS:
                if not np.array_equal(quantize(values, qtype, name=name, kernel=kernel), expected):
                    raise AssertionError(f"{name} {shape} {qtype.name} ({kernel}): bytes differ")
