"""The NumPy GGML block quantizer: the portable path, and the second opinion for the C kernel.

One small class per block type, registered by a class keyword (the way gguf-py's quants.py
does), sharing the steps that decide bits with gguf-py (see engine/formats/gguf_quants.py for the
arithmetic rules both implementations follow). Work goes in cache-sized chunks of blocks with
per-thread scratch buffers, so a full SD1.5 UNet quantizes without a temporary per tensor.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

# 2048 blocks of 32 values: each float32 temporary is 256 KiB, so a chunk's working set stays in
# the 1-2 MiB L2 of the machines we run on while the per-call overhead of NumPy stays small.
CHUNK_BLOCKS = 2048
# fp16 Inf/NaN become magnitudes >= 2**16 through the bit conversion in `_Chunk.load`.
FP16_LIMIT = np.float32(65536.0)
NO_LIMIT = np.float32(np.inf)

QUANTS: dict[GGMLQuantizationType, type[Quant]] = {}
_local = threading.local()


class NonFiniteBlock(Exception):
    """Raised inside a worker; `quantize` turns it into `NonFiniteWeights` naming the tensor."""


class _Chunk:
    """Per-thread scratch buffers for one chunk of blocks, reused across chunks and calls."""

    def __init__(self, n_blocks: int, block_size: int) -> None:
        n = n_blocks * block_size
        # Few buffers, reused for several purposes, keep the working set near the L2 size.
        self.x = np.empty(n, np.float32)  # the chunk as float32 (when the source is not)
        self.t = np.empty(n, np.float32)  # |x|, then products
        self.u = np.empty(n, np.float32)  # block reductions (ping), then rounded values
        self.v = np.empty(n, np.float32)  # block reductions (pong), then rounding residues
        self.q = np.empty(n, np.uint8)  # quantized levels
        self.base = np.arange(n_blocks, dtype=np.intp) * block_size

    def load(self, src: np.ndarray, n: int) -> np.ndarray:
        """The chunk's values as a float32 array of `n` values, converted exactly like astype."""
        if src.dtype == np.float32:
            return src
        x = self.x[:n]
        if src.dtype == np.float16:
            # fp16 -> fp32 by bits (NumPy's own cast is ~4x slower without F16C): sign-extend,
            # shift sign|exponent|mantissa into float32 position, then rescale the exponent by
            # 2**112, which is exact for normal and subnormal halves. Inf/NaN land >= 2**16.
            i = x.view(np.int32)
            np.copyto(i, src.view(np.int16))
            np.left_shift(i, np.int32(13), out=i)
            np.bitwise_and(i, np.int32(-0x70002000), out=i)  # keep bits 0x8FFFE000
            np.multiply(x, np.float32(2.0**112), out=x)
            return x
        np.copyto(x, src, casting="unsafe")
        return x


def _scratch(block_size: int, n_blocks: int) -> _Chunk:
    """This thread's buffers for chunks of up to `n_blocks` blocks (allocated once, then reused)."""
    chunks = getattr(_local, "chunks", None)
    if chunks is None:
        chunks = _local.chunks = {}
    chunk = chunks.get(block_size)
    if chunk is None or chunk.base.size < n_blocks:
        chunk = chunks[block_size] = _Chunk(n_blocks, block_size)
    return chunk


def _scales(num: np.ndarray, divisor: float) -> tuple[np.ndarray, np.ndarray]:
    """`d = num / divisor` and `id = 1 / d` (0 where d == 0), in float32 like gguf-py."""
    d = np.divide(num, np.float32(divisor))
    inv = np.divide(np.float32(1), d)
    inv[d == 0] = 0
    return d, inv


def _block_reduce(op: np.ufunc, x: np.ndarray, s: _Chunk, block_size: int) -> np.ndarray:
    """`op` (maximum/minimum) over each block, as a view into scratch.

    log2(block_size) full-length contiguous passes pairing value k with k+16, k+8, ..., k+1 leave
    block b's result at 32*b; NumPy runs those as long SIMD loops, unlike its row-by-row axis
    reduction. Values past a block's end only feed positions that are never read.
    """
    p, q, src, m = s.u, s.v, x, x.size
    shift = block_size // 2
    while shift:
        op(src[: m - shift], src[shift:m], out=p[: m - shift])
        m -= shift
        shift //= 2
        src, p, q = p, q, p
    return src[0:m:block_size]


def _f16(values: np.ndarray) -> np.ndarray:
    """fp16 scales as gguf-py stores them (scales beyond 65504 become inf there too)."""
    return values.astype(np.float16)


def _put16(out: np.ndarray, offset: int, values: np.ndarray) -> None:
    """Store one fp16 (or uint16) per block at byte `offset` of each block."""
    out[:, offset : offset + 2].view(np.uint16)[:, 0] = values.view(np.uint16)


def _nibbles(q: np.ndarray, n_blocks: int, mask_low: bool) -> np.ndarray:
    """Pack levels j and j+16 of each block into byte j (low, high nibble), as uint8 (nb, 16).

    Works on 64-bit lanes (8 levels each), which NumPy runs as long 1-D loops instead of one
    short loop per block; masking first keeps the shift from carrying bit 4 into the next byte.
    """
    q64 = q.view(np.uint64).reshape(n_blocks, 4)
    packed = np.empty((n_blocks, 2), np.uint64)
    for lane in (0, 1):
        hi, lo = q64[:, lane + 2], q64[:, lane]
        if mask_low:
            lo = np.bitwise_and(lo, np.uint64(0x0F0F0F0F0F0F0F0F))
            hi = np.bitwise_and(hi, np.uint64(0x0F0F0F0F0F0F0F0F))
            np.left_shift(hi, np.uint64(4), out=hi)
        else:
            hi = np.left_shift(hi, np.uint64(4))
        np.bitwise_or(hi, lo, out=packed[:, lane])
    return packed.view(np.uint8)


def _high_bits(q: np.ndarray, n_blocks: int) -> np.ndarray:
    """Bit 4 of the 32 levels of each block as 4 bytes, like `np.packbits(q >> 4, 'little')`."""
    bits = np.right_shift(q.view(np.uint64), np.uint64(4))
    np.bitwise_and(bits, np.uint64(0x0101010101010101), out=bits)
    # Multiplying gathers byte k's low bit into bit 56 + k with no overlapping partial products.
    np.multiply(bits, np.uint64(0x0102040810204080), out=bits)
    np.right_shift(bits, np.uint64(56), out=bits)
    return bits.astype(np.uint8).reshape(n_blocks, 4)


def _store_levels(
    out: np.ndarray, scales: tuple[np.ndarray, ...], q: np.ndarray, five_bit: bool
) -> None:
    """The block layout Q4_0, Q4_1, Q5_0 and Q5_1 share (ggml's block_q4_0 ... block_q5_1):
    fp16 `scales` (d, then m for the affine types), for 5-bit levels the 32 high bits, then the
    low nibbles, levels j and j+16 in byte j. Called once per chunk of blocks, so one function
    for the four types costs nothing measurable."""
    nb, at = out.shape[0], 0
    for values in scales:
        _put16(out, at, values)
        at += 2
    if five_bit:
        out[:, at : at + 4] = _high_bits(q, nb)
        at += 4
    out[:, at:] = _nibbles(q, nb, mask_low=five_bit)


def _clip(q: np.ndarray, top: int) -> None:
    """`q.clip(0, top)` in place for uint8 levels, top = 2**k - 1.

    With sane scales the only level above `top` is `top + 1`, and subtracting `q >> k` fixes it
    in one fast pass (NumPy's uint8 minimum against a scalar is not vectorised). Degenerate
    scales (subnormal d) can give anything, and then the plain minimum runs.
    """
    if q.max() > top + 1:
        np.minimum(q, np.uint8(top), out=q)
    else:
        np.subtract(q, np.right_shift(q, np.uint8(top.bit_length())), out=q)


class Quant:
    """One GGML block type: `quantize_blocks` fills `out` (nb, type_size) from `x` (nb*bs,)."""

    qtype: ClassVar[GGMLQuantizationType]
    block_size: ClassVar[int]
    type_size: ClassVar[int]

    def __init_subclass__(cls, qtype: GGMLQuantizationType, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.qtype = qtype
        cls.block_size, cls.type_size = GGML_QUANT_SIZES[qtype]
        assert cls.block_size == 32, "the packing helpers assume 32-value blocks"
        QUANTS[qtype] = cls

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        raise NotImplementedError

    # shared steps -------------------------------------------------------------------------

    @classmethod
    def _signed_absmax(cls, x: np.ndarray, nb: int, limit: np.float32, s: _Chunk) -> np.ndarray:
        """The value of largest magnitude in each block, first one on ties (gguf's argmax)."""
        a = np.abs(x, out=s.t[: x.size]).reshape(nb, cls.block_size)
        first = a.argmax(axis=1)
        first += s.base[:nb]
        m = x[first]
        if not (np.abs(m) < limit).all():
            raise NonFiniteBlock
        return m

    @classmethod
    def _max_min(
        cls, x: np.ndarray, nb: int, limit: np.float32, s: _Chunk
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-block max and min equal to gguf's `blocks.max()` / `blocks.min()`, signed zeros too.

        `_block_reduce` is several times faster than NumPy's axis reductions; the only values it
        may pick differently are zeros of either sign, so blocks whose max or min is zero are
        redone with the reductions gguf-py itself uses.
        """
        blocks = x.reshape(nb, cls.block_size)
        mx = _block_reduce(np.maximum, x, s, cls.block_size).copy()
        mn = _block_reduce(np.minimum, x, s, cls.block_size)
        if not ((mx < limit).all() and (mn > -limit).all()):
            raise NonFiniteBlock
        zero = mx == 0
        if zero.any():
            mx[zero] = blocks[zero].max(axis=-1)
        zero = mn == 0
        if zero.any():
            mn[zero] = blocks[zero].min(axis=-1)
        return mx, mn

    @classmethod
    def _levels_symmetric(
        cls, x: np.ndarray, nb: int, limit: np.float32, s: _Chunk, levels: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Q4_0 / Q5_0: fp16 scale, levels `trunc(x * id + levels + 0.5)` clipped to 2*levels-1."""
        n = x.size
        d, inv = _scales(cls._signed_absmax(x, nb, limit, s), -levels)
        t = np.multiply(x, np.repeat(inv, cls.block_size), out=s.t[:n])
        np.add(t, np.float32(levels + 0.5), out=t)
        q = s.q[:n]
        np.copyto(q, t, casting="unsafe")  # truncates; sane scales give [0, 2*levels]
        _clip(q, 2 * levels - 1)
        return _f16(d), q

    @classmethod
    def _levels_affine(
        cls, x: np.ndarray, nb: int, limit: np.float32, s: _Chunk, top: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Q4_1 / Q5_1: fp16 scale, fp16 min and levels `trunc((x - min) * id + 0.5)` <= top."""
        n = x.size
        mx, mn = cls._max_min(x, nb, limit, s)
        d, inv = _scales(mx - mn, top)
        t = np.subtract(x, np.repeat(mn, cls.block_size), out=s.t[:n])
        np.multiply(t, np.repeat(inv, cls.block_size), out=t)
        np.add(t, np.float32(0.5), out=t)
        q = s.q[:n]
        np.copyto(q, t, casting="unsafe")
        _clip(q, top)
        return _f16(d), _f16(mn), q


class Q8_0(Quant, qtype=GGMLQuantizationType.Q8_0):
    """fp16 d = amax/127, then 32 int8 `roundf(x / d)` (half away from zero)."""

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        nb, n = out.shape[0], x.size
        amax = _block_reduce(np.maximum, np.abs(x, out=s.t[:n]), s, cls.block_size)
        if not (amax < limit).all():
            raise NonFiniteBlock
        d, inv = _scales(amax, 127)
        t = np.multiply(x, np.repeat(inv, cls.block_size), out=s.t[:n])
        r = np.rint(t, out=s.u[:n])  # half to even; differs from roundf only on exact halves
        diff = np.subtract(t, r, out=s.v[:n])
        if np.abs(diff, out=diff).max() == np.float32(0.5):
            ties = np.flatnonzero(diff == np.float32(0.5))
            r[ties] += np.sign(t[ties]) * (np.abs(t[ties]) > np.abs(r[ties]))
        overflow = np.isinf(inv)
        if overflow.any():
            # a subnormal d: gguf-py's roundf yields NaN for the whole block; cast the same
            r.reshape(nb, cls.block_size)[overflow] = np.nan
        q = s.q[:n].view(np.int8)
        np.copyto(q, r, casting="unsafe")
        _put16(out, 0, _f16(d))
        out[:, 2:] = q.view(np.uint8).reshape(nb, cls.block_size)


class Q4_0(Quant, qtype=GGMLQuantizationType.Q4_0):
    """fp16 d = max/-8, then 32 4-bit levels `x / d + 8`."""

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        d, q = cls._levels_symmetric(x, out.shape[0], limit, s, 8)
        _store_levels(out, (d,), q, five_bit=False)


class Q4_1(Quant, qtype=GGMLQuantizationType.Q4_1):
    """fp16 d = (max-min)/15 and fp16 min, then 32 4-bit levels `(x - min) / d`."""

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        d, m, q = cls._levels_affine(x, out.shape[0], limit, s, 15)
        _store_levels(out, (d, m), q, five_bit=False)


class Q5_0(Quant, qtype=GGMLQuantizationType.Q5_0):
    """fp16 d = max/-16, 32 high bits, then 32 low nibbles of the 5-bit levels `x / d + 16`."""

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        d, q = cls._levels_symmetric(x, out.shape[0], limit, s, 16)
        _store_levels(out, (d,), q, five_bit=True)


class Q5_1(Quant, qtype=GGMLQuantizationType.Q5_1):
    """fp16 d = (max-min)/31, fp16 min, 32 high bits, then the low nibbles of the levels."""

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, out: np.ndarray, limit: np.float32, s: _Chunk) -> None:
        d, m, q = cls._levels_affine(x, out.shape[0], limit, s, 31)
        _store_levels(out, (d, m), q, five_bit=True)


def quantize_range(
    quant: type[Quant], src: np.ndarray, out: np.ndarray, limit: np.float32, start: int, stop: int
) -> int:
    """NumPy: quantize blocks [start, stop) of `src` (flat) into rows [start, stop) of `out`."""
    chunk_blocks = CHUNK_BLOCKS
    s = _scratch(quant.block_size, chunk_blocks)
    bs = quant.block_size
    for b0 in range(start, stop, chunk_blocks):
        b1 = min(b0 + chunk_blocks, stop)
        x = s.load(src[b0 * bs : b1 * bs], (b1 - b0) * bs)
        # Inputs are checked for NaN/Inf; what is left to warn about is gguf-py's own arithmetic
        # on degenerate scales (fp16 overflow of d, 1/d overflow for subnormal d), reproduced.
        with np.errstate(all="ignore"):
            quant.quantize_blocks(x, out[b0:b1], limit, s)
    return 0
