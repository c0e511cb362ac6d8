"""The derived validation bounds: they hold for every correct file, trained-like weights
included, and break for a wrong block; and which variants are exact copies."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from engine.validation.diffusers_gguf import diffusers_dequantized
from engine.validation.thresholds import diffusers_dequant_tolerance, quantization_tolerance

TYPES = ("Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1")


def trained_like(seed: int, source_dtype: str) -> np.ndarray:
    """Heavy tails, per-row scales over four orders of magnitude (rows reach float16's
    subnormal range), a few outlier columns; rounded to the source dtype like a checkpoint."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((64, 256)) * np.exp(0.6 * rng.standard_normal((64, 256)))
    values *= np.exp(2.0 * rng.standard_normal((64, 1))) * 0.01
    values[:, rng.choice(256, 3, replace=False)] *= 6
    values = torch.from_numpy(values.astype(np.float32))
    cast = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    return values.to(cast[source_dtype]).float().numpy()


class _Blocks:
    """A gguf-py reader tensor's two fields the decoders read (`data`, `tensor_type`)."""

    def __init__(self, data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
        self.data, self.tensor_type = data, qtype


@pytest.mark.parametrize("source_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("qtype", TYPES)
def test_bounds_hold_for_correct_quantization(qtype, source_dtype):
    kind = gguf.GGMLQuantizationType[qtype]
    for seed in range(3):
        source = trained_like(seed, source_dtype)
        blocks = gguf.quants.quantize(source, kind)
        ours = torch.from_numpy(gguf.quants.dequantize(blocks, kind))
        source_t = torch.from_numpy(source)
        error = (ours.double() - source_t.double()).abs()
        ratio = error / quantization_tolerance(source_t, qtype)
        assert ratio.max() <= 1.0
        assert ratio.max() > 0.5  # tight: the worst element uses most of its bound
        theirs = diffusers_dequantized(_Blocks(blocks, kind)).reshape(ours.shape)
        assert theirs.dtype == torch.float16  # diffusers 0.42.1 dequantizes in float16
        diff = (theirs.double() - ours.double()).abs()
        assert (diff / diffusers_dequant_tolerance(ours, qtype)).max() <= 1.0


@pytest.mark.parametrize("qtype", TYPES)
def test_quantization_bound_breaks_for_a_wrong_scale(qtype):
    kind = gguf.GGMLQuantizationType[qtype]
    source = trained_like(0, "float16")
    blocks = gguf.quants.quantize(source, kind).copy()
    scale = blocks[0, :2].view(np.float16)  # the first block's fp16 scale d
    scale *= np.float16(1.25)  # the largest code then lands 2 steps (Q4_0) or more off
    wrong = torch.from_numpy(gguf.quants.dequantize(blocks, kind))
    source_t = torch.from_numpy(source)
    ratio = (wrong.double() - source_t.double()).abs() / quantization_tolerance(source_t, qtype)
    assert ratio.max() > 1.0


@pytest.mark.parametrize("qtype", TYPES)
def test_dequant_bound_breaks_beyond_float16_rounding(qtype):
    kind = gguf.GGMLQuantizationType[qtype]
    blocks = gguf.quants.quantize(trained_like(1, "float32"), kind)
    ours = torch.from_numpy(gguf.quants.dequantize(blocks, kind))
    off = ours * (1 + 2.0**-8)  # 8 float16 ulps: more than any rounding diffusers does
    diff = (off.double() - ours.double()).abs()
    assert (diff / diffusers_dequant_tolerance(ours, qtype)).max() > 1


def test_exact_copies_are_what_holds_the_source_bytes(tmp_path):
    from engine.run.variants import VARIANTS, Family
    from engine.source.folder import open_source
    from engine.synthetic.models import write_pipeline_folder
    from engine.validation.context import exact_copy, needs_reference

    f16 = open_source(write_pipeline_folder(tmp_path / "f16", "sd15", "tiny", "float16"))
    bf16 = open_source(write_pipeline_folder(tmp_path / "bf16", "sd15", "tiny", "bfloat16"))
    originals = {name for name, v in VARIANTS.items() if v.family is Family.ORIGINAL}
    assert {name for name, v in VARIANTS.items() if exact_copy(v.check, f16)} == originals | {
        "gguf-f16",
        "gguf-full-f16",
    }
    assert {name for name, v in VARIANTS.items() if exact_copy(v.check, bf16)} == originals
    exact_variants = [VARIANTS["original"], VARIANTS["gguf-f16"]]
    assert not needs_reference([v.check for v in exact_variants], f16)
    assert needs_reference([v.check for v in exact_variants], bf16)
    assert needs_reference([VARIANTS["gguf-q8_0"].check], f16)


@pytest.mark.parametrize("qtype", TYPES)
def test_bound_check_in_float32_gives_the_float64_ratio(qtype):
    """bound_check evaluates in float32 (speed) and must report what float64 would: the same
    worst ratio to a few float32 roundings, and the same verdict for a file that breaks it."""
    from engine.validation.gguf_tensors import bound_check

    kind = gguf.GGMLQuantizationType[qtype]
    source = trained_like(2, "float16")
    source_t = torch.from_numpy(source)
    blocks = gguf.quants.quantize(source, kind)
    ours = torch.from_numpy(gguf.quants.dequantize(blocks, kind))
    exact = (ours.double() - source_t.double()).abs() / quantization_tolerance(source_t, qtype)
    got = bound_check(ours, source_t, qtype, quantization_tolerance)
    assert got.ratio == pytest.approx(exact.max().item(), rel=1e-5)
    want_rel = ((ours.double() - source_t.double()).norm() / source_t.double().norm()).item()
    assert got.rel_l2 == pytest.approx(want_rel, rel=1e-4)
    wrong = ours.clone()
    wrong[3, 5] += 3 * quantization_tolerance(source_t, qtype)[3, 5].item()
    assert bound_check(wrong, source_t, qtype, quantization_tolerance).ratio > 1.0


def test_bound_check_decides_near_the_bound_in_float64():
    """A chunk whose float32 ratio lands within 1e-3 of the bound is evaluated in float64: an
    error set at the bound, a hair under or over, gets float64's own ratio, not float32's."""
    from engine.validation.gguf_tensors import bound_check

    source_t = torch.from_numpy(trained_like(0, "float16"))
    tolerance = quantization_tolerance(source_t, "Q8_0")
    for factor in (1 - 1e-6, 1 + 1e-6):
        values = (source_t.double() + tolerance * factor).float()
        exact = ((values.double() - source_t.double()).abs() / tolerance).max().item()
        assert abs(exact - 1.0) < 1e-3  # the float32 pass alone would be near its rounding
        assert bound_check(values, source_t, "Q8_0", quantization_tolerance).ratio == exact


@pytest.mark.parametrize("qtype", TYPES)
def test_chunked_decoding_is_gguf_py_dequantize_bit_for_bit(qtype):
    """The validator calls gguf-py's block decoder on 32,768 blocks at a time: over several
    chunks and a ragged last one it gives gguf.quants.dequantize's float32 values exactly."""
    from engine.validation.gguf_tensors import gguf_py_dequantize

    kind = gguf.GGMLQuantizationType[qtype]
    rng = np.random.default_rng(3)
    source = (rng.standard_normal((1100, 1024)) * 0.02).astype(np.float32)  # 35,200 blocks
    blocks = gguf.quants.quantize(source, kind)
    want = gguf.quants.dequantize(blocks, kind).reshape(-1)
    got = gguf_py_dequantize(_Blocks(blocks, kind))
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_a_nan_value_never_passes_a_bound():
    """A NaN (a float16 NaN scale decodes to a block of them) fails the element check itself:
    Python's `max` would drop it, torch's propagates it, and bound_check reports infinity."""
    from engine.validation.gguf_tensors import bound_check

    source_t = torch.from_numpy(trained_like(0, "float16"))
    blocks = gguf.quants.quantize(source_t.numpy(), gguf.GGMLQuantizationType.Q8_0)
    values = torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q8_0))
    assert bound_check(values, source_t, "Q8_0", quantization_tolerance).ratio <= 1.0
    values[10, :32] = float("nan")
    assert bound_check(values, source_t, "Q8_0", quantization_tolerance).ratio == float("inf")
