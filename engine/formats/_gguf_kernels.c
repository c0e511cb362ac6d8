/*
 * engine.formats._gguf_kernels: GGML block quantizers (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1) in C.
 *
 * Why: engine/formats/gguf_quants.py reproduces gguf-py's NumPy arithmetic with whole-array NumPy
 * passes, which costs 3-5 ns per value; here each 32-value block is quantized in registers in
 * one pass, a fraction of a nanosecond per value. The bytes must stay identical to
 * `gguf.quants.quantize` from gguf==0.19.0 (gguf/quants.py), so every step below is the same
 * IEEE float32 operation, in the same order, as there:
 *
 *   - built with -O3 -ffp-contract=off (no FMA: `x * id + 8.5` is two roundings in NumPy too),
 *     never -ffast-math, and without -march: SSE2 is the x86-64 baseline, so the module runs
 *     on every x86-64 CPU. The loops use SSE2 intrinsics (4 floats per register, 8 registers
 *     per block) rather than relying on the auto-vectoriser: gcc 12 keeps float max/min
 *     reductions and selects scalar unless -ffast-math allows it, which measured 1.5-3 ns per
 *     value. Other architectures do not build this module and use the NumPy path;
 *   - the float environment is pinned for the duration of a call (round to nearest, no
 *     flush-to-zero / denormals-are-zero), because a library built with -ffast-math may have
 *     switched them for the process, and subnormal inputs and scales are part of the contract.
 *
 * What C cannot promise, it hands back: a block gets fixup[b] = 1 when its bytes depend on
 * something that is NumPy's choice rather than IEEE arithmetic (see the `block_*` functions),
 * and engine/formats/gguf_quants.py recomputes exactly those blocks with gguf-py itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__SSE2__) && !defined(_M_X64)
#error "engine.formats._gguf_kernels needs SSE2 (x86-64); other hosts use the NumPy quantizer"
#endif
#include <emmintrin.h>

/* Excess precision (x87) would round differently from NumPy's float32 loops. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "needs float32 arithmetic without excess precision (FLT_EVAL_METHOD == 0)"
#endif

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static __forceinline
#endif

#define QK 32 /* values per block, all five types */

/* GGMLQuantizationType values (gguf/constants.py). */
enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8 };

/* One block: 32 float32 values as 8 registers of 4. */
typedef struct {
    __m128 v[8];
} block_t;

INLINE uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

INLINE int lowest_set_bit(uint32_t mask) {
#if defined(__GNUC__)
    return __builtin_ctz(mask);
#else
    int i = 0;
    while (!(mask & 1u)) {
        mask >>= 1;
        i++;
    }
    return i;
#endif
}

/* ---- float16 <-> float32 -------------------------------------------------------------------- */

/* float32 -> float16 bits, round to nearest even, like NumPy's `astype(np.float16)`: overflow
 * (>= 65520 before rounding) gives a signed inf, tiny values a signed subnormal or zero. Only
 * finite values reach it (scales of unflagged blocks, or garbage that fixup overwrites). */
INLINE uint16_t f32_to_f16(float f) {
    const uint32_t u = bits_of(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x47800000u) { /* >= 2**16 (or inf/NaN): inf */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a >= 0x38800000u) { /* >= 2**-14: normal half; rebias 127 -> 15 and round */
        uint32_t r = a - 0x38000000u;
        r += 0x0fffu + ((r >> 13) & 1u); /* a carry into the exponent is the right result */
        return (uint16_t)(sign | (r >> 13));
    }
    /* subnormal half: the integer nearest (even on ties) to |f| * 2**24 */
    const uint32_t e = a >> 23;
    if (e < 102u) { /* |f| < 2**-25: at most half the smallest subnormal */
        return sign;
    }
    const uint32_t mant = (a & 0x007fffffu) | 0x00800000u;
    const uint32_t shift = 126u - e; /* 14 .. 24 */
    const uint32_t half = 1u << (shift - 1u);
    const uint32_t rest = mant & ((1u << shift) - 1u);
    uint32_t q = mant >> shift;
    q += (rest > half) | ((rest == half) & (q & 1u));
    return (uint16_t)(sign | q);
}

INLINE void put_f16(unsigned char *out, float value) {
    const uint16_t h = f32_to_f16(value); /* native order, like NumPy's .view(np.uint8) */
    memcpy(out, &h, sizeof h);
}

/* Loads one block of float32; returns nonzero when it holds NaN or Inf. */
INLINE int load_f32(const unsigned char *p, block_t *x) {
    const __m128i exponent = _mm_set1_epi32(0x7f800000);
    __m128i bad = _mm_setzero_si128();
    for (int k = 0; k < 8; k++) {
        x->v[k] = _mm_loadu_ps((const float *)(const void *)(p + 16 * k));
        const __m128i e = _mm_and_si128(_mm_castps_si128(x->v[k]), exponent);
        bad = _mm_or_si128(bad, _mm_cmpeq_epi32(e, exponent));
    }
    return _mm_movemask_epi8(bad);
}

/* Loads one block of float16 as float32, exactly (gguf-py does `rows.astype(np.float32)`);
 * returns nonzero when it holds NaN or Inf. Needs no F16C: each half goes to the top of a
 * 32-bit lane, an arithmetic shift by 3 puts exponent|mantissa where float32 has them (and
 * copies the sign into bits 28..30, masked off), and multiplying by 2**112 rebiases the
 * exponent, exactly for normal and subnormal halves alike (denormals are enabled, see
 * run_ieee). */
INLINE int load_f16(const unsigned char *p, block_t *x) {
    const __m128i magnitude = _mm_set1_epi16(0x7fff);
    const __m128i largest = _mm_set1_epi16(0x7bff); /* 65504; above it: inf and NaN */
    const __m128i keep = _mm_set1_epi32((int)0x8fffe000u);
    const __m128 rebias = _mm_set1_ps(0x1p112f);
    const __m128i zero = _mm_setzero_si128();
    __m128i bad = zero;
    for (int k = 0; k < 4; k++) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        bad = _mm_or_si128(bad, _mm_cmpgt_epi16(_mm_and_si128(h, magnitude), largest));
        const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(zero, h), 3);
        const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(zero, h), 3);
        x->v[2 * k] = _mm_mul_ps(_mm_castsi128_ps(_mm_and_si128(lo, keep)), rebias);
        x->v[2 * k + 1] = _mm_mul_ps(_mm_castsi128_ps(_mm_and_si128(hi, keep)), rebias);
    }
    return _mm_movemask_epi8(bad);
}

/* ---- block reductions ------------------------------------------------------------------------ */

/* _mm_max_ps/_mm_min_ps are exact for non-NaN inputs; only zeros of opposite sign compare equal,
 * so a max or min can differ from NumPy's `blocks.max()` / `.min()` at most in the sign of a
 * zero result. Callers that store that sign flag those blocks for fixup. */

INLINE __m128 abs_ps(__m128 v) { return _mm_andnot_ps(_mm_set1_ps(-0.0f), v); }

/* The largest lane, in every lane. */
INLINE __m128 spread_max(__m128 v) {
    v = _mm_max_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_max_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

INLINE __m128 spread_min(__m128 v) {
    v = _mm_min_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_min_ps(v, _mm_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

INLINE __m128 block_max(const block_t *x) {
    __m128 a = _mm_max_ps(_mm_max_ps(x->v[0], x->v[1]), _mm_max_ps(x->v[2], x->v[3]));
    __m128 b = _mm_max_ps(_mm_max_ps(x->v[4], x->v[5]), _mm_max_ps(x->v[6], x->v[7]));
    return spread_max(_mm_max_ps(a, b));
}

INLINE __m128 block_min(const block_t *x) {
    __m128 a = _mm_min_ps(_mm_min_ps(x->v[0], x->v[1]), _mm_min_ps(x->v[2], x->v[3]));
    __m128 b = _mm_min_ps(_mm_min_ps(x->v[4], x->v[5]), _mm_min_ps(x->v[6], x->v[7]));
    return spread_min(_mm_min_ps(a, b));
}

INLINE void block_abs(const block_t *x, block_t *a) {
    for (int k = 0; k < 8; k++) a->v[k] = abs_ps(x->v[k]);
}

/* One bit per value (bit i = value i) of the lanes where `mask` is all ones. */
INLINE uint32_t lane_bits(const __m128 *mask) {
    const __m128i w0 = _mm_packs_epi32(_mm_castps_si128(mask[0]), _mm_castps_si128(mask[1]));
    const __m128i w1 = _mm_packs_epi32(_mm_castps_si128(mask[2]), _mm_castps_si128(mask[3]));
    const __m128i w2 = _mm_packs_epi32(_mm_castps_si128(mask[4]), _mm_castps_si128(mask[5]));
    const __m128i w3 = _mm_packs_epi32(_mm_castps_si128(mask[6]), _mm_castps_si128(mask[7]));
    const uint32_t lo = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(w0, w1));
    const uint32_t hi = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(w2, w3));
    return lo | hi << 16;
}

INLINE uint32_t is_finite(float f) { return fabsf(f) <= FLT_MAX; }

/* ---- levels and packing ---------------------------------------------------------------------- */

/* int32 levels (8 registers) -> 32 bytes: q[0] holds levels 0..15, q[1] levels 16..31.
 * Saturating packs are exact for the in-range levels of unflagged blocks. */
INLINE void pack_u8(const __m128i *l, __m128i *q) {
    q[0] = _mm_packus_epi16(_mm_packs_epi32(l[0], l[1]), _mm_packs_epi32(l[2], l[3]));
    q[1] = _mm_packus_epi16(_mm_packs_epi32(l[4], l[5]), _mm_packs_epi32(l[6], l[7]));
}

/* Byte j = level j (low nibble) | level j + 16 (high nibble): quants.py's
 * `qs[..., 0, :] & 0x0F | qs[..., 1, :] << 4` (a uint8 shift, so bit 4 of the high level
 * drops; the 16-bit shift here is masked to the same bits). */
INLINE void put_nibbles(unsigned char *out, const __m128i *q) {
    const __m128i low = _mm_and_si128(q[0], _mm_set1_epi8(0x0f));
    const __m128i high = _mm_and_si128(_mm_slli_epi16(q[1], 4), _mm_set1_epi8((char)0xf0));
    _mm_storeu_si128((__m128i *)(void *)out, _mm_or_si128(low, high));
}

/* Bit 4 of the 32 levels as 4 bytes, `np.packbits(q >> 4, bitorder="little")`: bit k of byte w
 * is level 8w + k. Shifting each 16-bit lane left by 3 moves every byte's bit 4 to its bit 7
 * (bits from the low byte only reach bits 0..2 of the high one), where movemask reads it. */
INLINE void put_high_bits(unsigned char *out, const __m128i *q) {
    const uint32_t lo = (uint32_t)_mm_movemask_epi8(_mm_slli_epi16(q[0], 3));
    const uint32_t hi = (uint32_t)_mm_movemask_epi8(_mm_slli_epi16(q[1], 3));
    const unsigned char bytes[4] = {(unsigned char)lo, (unsigned char)(lo >> 8),
                                    (unsigned char)hi, (unsigned char)(hi >> 8)};
    memcpy(out, bytes, sizeof bytes);
}

/* Whether some level value t (tracked as the lane-wise min `lo` and max `hi`) is outside
 * [0, 256): there NumPy's float -> uint8 cast gives whatever the platform gives. */
INLINE uint32_t outside_u8(__m128 lo, __m128 hi) {
    const __m128 out = _mm_or_ps(_mm_cmplt_ps(lo, _mm_setzero_ps()),
                                 _mm_cmpge_ps(hi, _mm_set1_ps(256.0f)));
    return _mm_movemask_ps(out) != 0;
}

/* 4- and 5-bit levels of one block, `trunc(x * id + offset)` (Q4_0/Q5_0) or
 * `trunc((x - min) * id + 0.5)` (Q4_1/Q5_1) cast to uint8 and clipped to `top`
 * (trunc(min(t, top)) == min(trunc(t), top) for t >= 0 and an integer top). Returns whether a
 * level value lies outside [0, 256). Callers flag blocks whose d or id is not finite, and with
 * both finite every t is finite (|x| <= |max| so |x * id| <= about `levels`; or
 * 0 <= x - min <= max - min), so the min/max tracking cannot miss a NaN. */
INLINE uint32_t levels_u8(const block_t *x, __m128 min, float id, float offset, float top,
                          __m128i *q) {
    const __m128 vid = _mm_set1_ps(id), voffset = _mm_set1_ps(offset), vtop = _mm_set1_ps(top);
    __m128 lo = _mm_set1_ps(256.0f), hi = _mm_setzero_ps();
    __m128i l[8];
    for (int k = 0; k < 8; k++) {
        const __m128 t = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(x->v[k], min), vid), voffset);
        lo = _mm_min_ps(lo, t);
        hi = _mm_max_ps(hi, t);
        l[k] = _mm_cvttps_epi32(_mm_min_ps(t, vtop)); /* truncates, like np.trunc */
    }
    pack_u8(l, q);
    return outside_u8(lo, hi);
}

/* Q8_0 levels `np_roundf(x * id)` cast to int8, packed into out[0..31]. np_roundf is
 * sign(v) * (floor(a) + floor(2 * (a - floor(a)))) with a = |v|: for 0 <= a < 2**23 floor is
 * the truncating conversion and 2 * (a - floor(a)) is exact, so the integer is the same.
 * Returns whether some |v| >= 127.5, where the level may leave int8 (with id finite every v is
 * finite, as for levels_u8). */
INLINE uint32_t levels_q8_0(const block_t *x, float id, unsigned char *out) {
    const __m128 vid = _mm_set1_ps(id), one = _mm_set1_ps(1.0f);
    __m128 largest = _mm_setzero_ps();
    __m128i r[8];
    for (int k = 0; k < 8; k++) {
        const __m128 v = _mm_mul_ps(x->v[k], vid);
        const __m128 av = abs_ps(v);
        largest = _mm_max_ps(largest, av);
        const __m128i whole = _mm_cvttps_epi32(av);
        const __m128 frac = _mm_sub_ps(av, _mm_cvtepi32_ps(whole));
        const __m128i up = _mm_castps_si128(_mm_cmpge_ps(_mm_add_ps(frac, frac), one)); /* -1 */
        const __m128i mag = _mm_sub_epi32(whole, up);
        const __m128i neg = _mm_srai_epi32(_mm_castps_si128(v), 31); /* sign(-0) * 0 == 0 */
        r[k] = _mm_sub_epi32(_mm_xor_si128(mag, neg), neg);
    }
    const __m128i q0 = _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]), _mm_packs_epi32(r[2], r[3]));
    const __m128i q1 = _mm_packs_epi16(_mm_packs_epi32(r[4], r[5]), _mm_packs_epi32(r[6], r[7]));
    _mm_storeu_si128((__m128i *)(void *)out, q0);
    _mm_storeu_si128((__m128i *)(void *)(out + 16), q1);
    return _mm_cvtss_f32(spread_max(largest)) >= 127.5f;
}

/* ---- block types ----------------------------------------------------------------------------- */

/* Blocks go through in batches: pass 1 loads each block and reduces it to the numbers its
 * scale comes from, the scales of 4 blocks are then divided at once, and pass 2 writes the
 * levels. Done block by block, reduce -> divide -> divide -> levels is one long dependency
 * chain the CPU cannot overlap; split like this the passes run at throughput. */
#define BATCH 16

typedef struct {
    block_t x[BATCH];
    float hi[BATCH]; /* Q8_0: amax; Q4_0/Q5_0: the signed max; Q4_1/Q5_1: max */
    float lo[BATCH]; /* Q4_1/Q5_1: min */
    float d[BATCH];
    float id[BATCH];
} batch_t;

/* Q8_0 (quants.py Q8_0.quantize_blocks): d = abs(blocks).max() / 127, which is >= +0, so d
 * has one sign even on all-zero blocks. */
INLINE void scan_q8_0(const block_t *x, batch_t *s, int j) {
    block_t a;
    block_abs(x, &a);
    s->hi[j] = _mm_cvtss_f32(block_max(&a));
}

/* Q4_0 / Q5_0 (quants.py Q4_0/Q5_0.quantize_blocks): `max` is the signed value at the FIRST
 * index of the largest |x| (`abs(blocks).argmax(axis=-1)`, then take_along_axis). */
INLINE void scan_symmetric(const block_t *x, batch_t *s, int j) {
    block_t a;
    __m128 hit[8];
    float values[QK];
    block_abs(x, &a);
    const __m128 amax = block_max(&a);
    for (int k = 0; k < 8; k++) {
        hit[k] = _mm_cmpeq_ps(a.v[k], amax);
        _mm_storeu_ps(values + 4 * k, x->v[k]);
    }
    s->hi[j] = values[lowest_set_bit(lane_bits(hit))];
}

/* Q4_1 / Q5_1 (quants.py Q4_1/Q5_1.quantize_blocks): blocks.max() and blocks.min(). */
INLINE void scan_affine(const block_t *x, batch_t *s, int j) {
    s->hi[j] = _mm_cvtss_f32(block_max(x));
    s->lo[j] = _mm_cvtss_f32(block_min(x));
}

/* d = (hi - lo) / divisor (Q4_1/Q5_1) or hi / divisor, and id = `np.where(d == 0, 0, 1 / d)`,
 * 4 blocks at a time (divps rounds exactly like the scalar division). The whole batch is done;
 * entries past the last block of a short batch hold stale finite values and are not used.
 * 1 / 0 raises no trap: exceptions are masked (run_ieee). */
INLINE void scales(batch_t *s, float divisor, int affine) {
    const __m128 vdivisor = _mm_set1_ps(divisor);
    for (int j = 0; j < BATCH; j += 4) {
        __m128 num = _mm_loadu_ps(s->hi + j);
        if (affine) num = _mm_sub_ps(num, _mm_loadu_ps(s->lo + j));
        const __m128 d = _mm_div_ps(num, vdivisor);
        const __m128 zero = _mm_cmpeq_ps(d, _mm_setzero_ps());
        _mm_storeu_ps(s->d + j, d);
        _mm_storeu_ps(s->id + j, _mm_andnot_ps(zero, _mm_div_ps(_mm_set1_ps(1.0f), d)));
    }
}

/* Q8_0: fp16 d, then 32 int8 levels. Flagged when 1/d overflowed (gguf-py's levels are NaN
 * there) or a level may leave int8. */
INLINE uint32_t put_q8_0(const batch_t *s, int j, unsigned char *out) {
    put_f16(out, s->d[j]);
    return levels_q8_0(&s->x[j], s->id[j], out + 2) | !is_finite(s->id[j]);
}

/* Q4_0 / Q5_0: d = max / -levels, levels `trunc(x * id + (levels + 0.5))` clipped to
 * 2 * levels - 1; fp16 d, [Q5_0: 4 bytes of high bits,] 16 bytes of nibbles. Flagged when 1/d
 * overflowed (x * inf and 0 * inf give gguf-py inf and NaN levels) or a level value is outside
 * [0, 256). */
INLINE uint32_t put_symmetric(const batch_t *s, int j, float levels, unsigned char *out) {
    __m128i q[2];
    const uint32_t bad = levels_u8(&s->x[j], _mm_setzero_ps(), s->id[j], levels + 0.5f,
                                   2.0f * levels - 1.0f, q);
    put_f16(out, s->d[j]);
    if (levels == 16.0f) {
        put_high_bits(out + 2, q);
        put_nibbles(out + 6, q);
    } else {
        put_nibbles(out + 2, q);
    }
    return bad | !is_finite(s->id[j]);
}

/* Q4_1 / Q5_1: d = (max - min) / top, levels `trunc((x - min) * id + 0.5)` clipped to top;
 * fp16 d, fp16 min, [Q5_1: 4 bytes of high bits,] 16 bytes of nibbles. Flagged when max or
 * min is a zero (which zero NumPy's reduction returns decides the sign bit of the stored min,
 * and of d when both are zeros), when d or 1/d is not finite (max - min overflowed, or a
 * subnormal d), or a level value is outside [0, 256). */
INLINE uint32_t put_affine(const batch_t *s, int j, float top, unsigned char *out) {
    __m128i q[2];
    const float d = s->d[j], id = s->id[j], mx = s->hi[j], mn = s->lo[j];
    const uint32_t bad = levels_u8(&s->x[j], _mm_set1_ps(mn), id, 0.5f, top, q);
    put_f16(out, d);
    put_f16(out + 2, mn);
    if (top == 31.0f) {
        put_high_bits(out + 4, q);
        put_nibbles(out + 8, q);
    } else {
        put_nibbles(out + 4, q);
    }
    return bad | (mx == 0.0f) | (mn == 0.0f) | !is_finite(d) | !is_finite(id);
}

/* ---- driver ---------------------------------------------------------------------------------- */

/* Quantizes nb blocks of type `qtype`; returns the number of blocks flagged for fixup, or -1
 * at the first batch holding NaN or Inf. Inlined once per type and source dtype (both are
 * constants at each call site), so every branch on them folds away. */
INLINE Py_ssize_t run_blocks(int qtype, int f16, const unsigned char *src, unsigned char *out,
                             unsigned char *fixup, Py_ssize_t nb) {
    const size_t src_block = f16 ? QK * 2 : QK * 4;
    const size_t size = qtype == T_Q8_0 ? 34 : qtype == T_Q4_0 ? 18 : qtype == T_Q4_1 ? 20
                      : qtype == T_Q5_0 ? 22 : 24;
    const int affine = qtype == T_Q4_1 || qtype == T_Q5_1;
    const float divisor = qtype == T_Q8_0 ? 127.0f : qtype == T_Q4_0 ? -8.0f
                        : qtype == T_Q5_0 ? -16.0f : qtype == T_Q4_1 ? 15.0f : 31.0f;
    batch_t s;
    memset(s.hi, 0, sizeof s.hi);
    memset(s.lo, 0, sizeof s.lo);
    Py_ssize_t flagged = 0;
    for (Py_ssize_t b0 = 0; b0 < nb; b0 += BATCH) {
        const int n = nb - b0 < BATCH ? (int)(nb - b0) : BATCH;
        for (int j = 0; j < n; j++) {
            const unsigned char *p = src + (size_t)(b0 + j) * src_block;
            if (f16 ? load_f16(p, &s.x[j]) : load_f32(p, &s.x[j])) {
                return -1;
            }
            if (qtype == T_Q8_0) {
                scan_q8_0(&s.x[j], &s, j);
            } else if (affine) {
                scan_affine(&s.x[j], &s, j);
            } else {
                scan_symmetric(&s.x[j], &s, j);
            }
        }
        scales(&s, divisor, affine);
        for (int j = 0; j < n; j++) {
            unsigned char *o = out + (size_t)(b0 + j) * size;
            uint32_t bad;
            switch (qtype) {
                case T_Q8_0: bad = put_q8_0(&s, j, o); break;
                case T_Q4_0: bad = put_symmetric(&s, j, 8.0f, o); break;
                case T_Q5_0: bad = put_symmetric(&s, j, 16.0f, o); break;
                case T_Q4_1: bad = put_affine(&s, j, 15.0f, o); break;
                default: bad = put_affine(&s, j, 31.0f, o); break;
            }
            fixup[b0 + j] = (unsigned char)bad;
            flagged += bad;
        }
    }
    return flagged;
}

#define RUN_TYPE(t)                                                                           \
    (f16 ? run_blocks(t, 1, src, out, fixup, nb) : run_blocks(t, 0, src, out, fixup, nb))

static Py_ssize_t run(int qtype, int f16, const unsigned char *src, unsigned char *out,
                      unsigned char *fixup, Py_ssize_t nb) {
    switch (qtype) {
        case T_Q8_0: return RUN_TYPE(T_Q8_0);
        case T_Q4_0: return RUN_TYPE(T_Q4_0);
        case T_Q4_1: return RUN_TYPE(T_Q4_1);
        case T_Q5_0: return RUN_TYPE(T_Q5_0);
        case T_Q5_1: return RUN_TYPE(T_Q5_1);
        default: return 0; /* rejected by the caller */
    }
}

static Py_ssize_t type_size(int qtype) {
    switch (qtype) {
        case T_Q8_0: return 34;
        case T_Q4_0: return 18;
        case T_Q4_1: return 20;
        case T_Q5_0: return 22;
        case T_Q5_1: return 24;
        default: return 0;
    }
}

/* Runs `run` with round-to-nearest, all exceptions masked and flush-to-zero /
 * denormals-are-zero off, then restores the caller's MXCSR (it is per thread). */
static Py_ssize_t run_ieee(int qtype, int f16, const unsigned char *src, unsigned char *out,
                           unsigned char *fixup, Py_ssize_t nb) {
    const unsigned int saved = _mm_getcsr();
    _mm_setcsr(0x1f80u); /* masks 0x1f80; RC (0x6000), FTZ (0x8000), DAZ (0x0040) all 0 */
    const Py_ssize_t result = run(qtype, f16, src, out, fixup, nb);
    _mm_setcsr(saved);
    return result;
}

PyDoc_STRVAR(quantize_blocks_doc,
             "quantize_blocks(qtype, src, src_is_f16, out, fixup, /) -> int\n"
             "\n"
             "Quantize whole 32-value blocks of `src` (contiguous float16 or float32 values) to\n"
             "GGML `qtype` (a GGMLQuantizationType value: Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0) into\n"
             "`out` (n_blocks * type_size bytes), byte-identical to gguf.quants.quantize.\n"
             "`fixup` (n_blocks bytes) gets 1 for each block whose bytes the caller must\n"
             "recompute with gguf-py and 0 for the others. Returns the number of such blocks,\n"
             "or -1 when `src` holds NaN or Inf (then `out` and `fixup` are partly written).\n"
             "Releases the GIL while it runs.");

static PyObject *quantize_blocks(PyObject *self, PyObject *args) {
    (void)self;
    int qtype, f16;
    Py_buffer src, out, fixup;
    if (!PyArg_ParseTuple(args, "iy*pw*w*:quantize_blocks", &qtype, &src, &f16, &out, &fixup)) {
        return NULL;
    }
    PyObject *result = NULL;
    const Py_ssize_t size = type_size(qtype);
    const Py_ssize_t block_bytes = QK * (f16 ? 2 : 4);
    const Py_ssize_t nb = src.len / block_bytes;
    if (size == 0) {
        PyErr_Format(PyExc_ValueError, "unsupported GGML type %d", qtype);
    } else if (src.len % block_bytes != 0) {
        PyErr_SetString(PyExc_ValueError, "src must hold whole 32-value blocks");
    } else if (out.len != nb * size || fixup.len != nb) {
        PyErr_SetString(PyExc_ValueError, "out or fixup does not match the number of blocks");
    } else {
        Py_ssize_t flagged;
        Py_BEGIN_ALLOW_THREADS
        flagged = run_ieee(qtype, f16, (const unsigned char *)src.buf, (unsigned char *)out.buf,
                           (unsigned char *)fixup.buf, nb);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(flagged);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    PyBuffer_Release(&fixup);
    return result;
}

static PyMethodDef methods[] = {
    {"quantize_blocks", quantize_blocks, METH_VARARGS, quantize_blocks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "engine.formats._gguf_kernels",
    .m_doc = "GGML block quantizers in C, byte-identical to gguf.quants "
             "(see engine/formats/gguf_quants.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__gguf_kernels(void) { return PyModule_Create(&module); }
