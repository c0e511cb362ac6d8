"""ComfyUI-GGUF-only GGUFs: ComfyUI-GGUF's row layout and rules, gguf-py's bytes, and a validator
that passes honest files and fails each corrupted one for the reason it names."""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.formats.manifest import Manifest
from engine.run.convert import convert
from engine.run.validate import validate_manifest
from engine.run.variants import VARIANTS, Family, GGUFLayout, PublishTarget
from engine.source.keymap import UNET_PREFIX, unet_keymap
from engine.synthetic.models import unet_config, unet_shapes
from engine.writers.comfy_gguf import choose_comfy_type, stored_shape

COMFY = ["comfy-gguf-q8_0", "comfy-gguf-q5_0", "comfy-gguf-q4_0"]


def _original_shapes(kind: str, size: str) -> dict[str, tuple[int, ...]]:
    config = unet_config(kind, size)
    keymap = unet_keymap(config)
    return dict(keymap.to_original(n, s) for n, s in unet_shapes(config).items())


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("natural", "stored"),
    [
        ((320, 320, 3, 3), (3600, 256)),  # conv: 2-D rows of 256 (tools/convert.py shape_fix)
        ((640, 320, 1, 1), (800, 256)),  # 1x1 skip connection
        ((320, 320), (400, 256)),  # Linear whose rows do not fit 256
        ((320, 768), (320, 768)),  # cross-attention k/v: 768 = 3 x 256, natural
        ((320, 1280), (320, 1280)),  # rows already a multiple of 256: natural
        ((320, 256), (320, 256)),  # LCM cond_proj
        ((1280,), (1280,)),  # 1-D never
        ((16, 16), (16, 16)),  # fewer than REARRANGE_THRESHOLD (512) values
        ((3, 100), (3, 100)),  # 300 values, not a multiple of 256
    ],
)
def test_stored_shape_follows_comfyui_gguf_converter(natural, stored):
    assert stored_shape(natural) == stored


def test_policy_on_full_size_sd15_lcm():
    """All 278 Linear and conv weights quantized; kept: time embedding (3, cond_proj included),
    conv_in/conv_out (2) and 1-D tensors, as ComfyUI-GGUF's lcpp.patch does for sd1."""
    shapes = _original_shapes("sd15-lcm", "full")
    choices = {n: choose_comfy_type(n, s, "F16", "Q4_0") for n, s in shapes.items()}
    quantized = {n: c for n, c in choices.items() if c.ggml_type == "Q4_0"}
    assert len(quantized) == 278
    assert sum(len(shapes[n]) == 4 for n in quantized) == 96
    kept = {n for n, c in choices.items() if c.ggml_type == "F16"}
    bare = {n[len(UNET_PREFIX) :] for n in kept if len(shapes[n]) > 1}
    assert bare == {
        "time_embed.0.weight",
        "time_embed.2.weight",
        "time_embedding.cond_proj.weight",
        "input_blocks.0.0.weight",
        "out.2.weight",
    }
    for name, choice in quantized.items():
        stored = choice.shape or shapes[name]
        assert len(stored) == 2 and stored[-1] % 32 == 0, name
        assert math.prod(stored) == math.prod(shapes[name])
    quantized_values = sum(math.prod(shapes[n]) for n in quantized)
    assert quantized_values / sum(math.prod(s) for s in shapes.values()) > 0.99


def test_policy_refuses_unknown_targets_and_dtypes():
    with pytest.raises(ValueError, match="ComfyUI-GGUF target"):
        choose_comfy_type(UNET_PREFIX + "out.2.weight", (4, 320, 3, 3), "F16", "Q4_1")
    with pytest.raises(ValueError, match="dtype"):
        choose_comfy_type(UNET_PREFIX + "out.2.weight", (4, 320, 3, 3), "I8", "Q8_0")


def test_registry_entries_claim_comfyui_gguf_alone():
    from bot.config import DEFAULT_VARIANTS

    for name in COMFY:
        v = VARIANTS[name]
        assert v.consumers == ("ComfyUI-GGUF",)
        assert v.family is Family.GGUF and v.target is PublishTarget.GGUF
        assert v.gguf_layout is GGUFLayout.COMFYUI_GGUF and not v.full_checkpoint
        assert name in DEFAULT_VARIANTS["gguf"]  # published with the GGUF repo, when they pass
    assert all(
        v.gguf_layout is GGUFLayout.ALL_CONSUMERS
        for v in VARIANTS.values()
        if v.family is Family.GGUF and v.name not in COMFY
    )


# ---------------------------------------------------------------- written files


@pytest.fixture(scope="module")
def comfy_run(tmp_path_factory):
    """A trained-like tiny LCM converted to every ComfyUI-GGUF-only type and validated."""
    from engine.synthetic.models import write_pipeline_folder

    base = tmp_path_factory.mktemp("comfy")
    source = write_pipeline_folder(base / "src", "sd15-lcm", "tiny", statistics="trained")
    out = base / "out"
    convert(source, out, COMFY)
    return source, out, validate_manifest(out, source)


def _gguf_path(out: Path, variant: str) -> Path:
    return out / next(a.path for a in Manifest.load(out).artifacts if a.variant == variant)


def test_honest_files_pass_with_comfy_metrics(comfy_run):
    _, _, manifest = comfy_run
    for a in manifest.artifacts:
        assert a.validation is not None and a.passed, (a.variant, a.validation.reason)
        m = a.validation.metrics
        assert 0 < m["worst_quant_bound_ratio"] <= 1.0
        assert 0 < m["comfy_dequant"]["worst_bound_ratio"] <= 1.0
        assert "lcm_4step" in m
        assert a.details["quantized_convs"] > 0
        assert any("ComfyUI-GGUF's float16 dequantization" in c for c in a.validation.checks)


@pytest.mark.parametrize("variant", ["comfy-gguf-q8_0", "comfy-gguf-q4_0"])
def test_file_holds_gguf_py_blocks_and_natural_shapes(comfy_run, variant):
    """Every quantized tensor is gguf-py's quantization of the source tensor in its stored
    shape, byte for byte; orig_shape fields are INT32 arrays restoring the natural shape; kept
    tensors hold the source's bytes."""
    from engine.formats.tensor_values import read_tensor_array
    from engine.source.folder import open_source
    from engine.writers.original import original_tensors

    source_dir, out, _ = comfy_run
    reader = gguf.GGUFReader(str(_gguf_path(out, variant)))
    source = {t.name: t for t in original_tensors(open_source(source_dir), False)}
    reshaped = 0
    for tensor in reader.tensors:
        values = read_tensor_array(source[tensor.name].source, source[tensor.name].spec)
        field = reader.get_field(f"comfy.gguf.orig_shape.{tensor.name}")
        stored = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        if field is not None:
            reshaped += 1
            assert field.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
            assert tuple(int(field.parts[i][0]) for i in field.data) == values.shape
        else:
            assert stored == values.shape
        if tensor.tensor_type.name == "F16":
            assert np.asarray(tensor.data).tobytes() == values.tobytes()
        else:
            want = gguf.quants.quantize(values.reshape(stored), tensor.tensor_type)
            assert np.array_equal(np.asarray(tensor.data), want), tensor.name
    assert reshaped > 0


def test_comfy_dequantize_is_float16_block_arithmetic_reshaped(comfy_run):
    """ComfyUI-GGUF's dequant.py: Q8_0 blocks decode as float16(d) * int8(q) in float16, in
    storage order, reshaped to orig_shape; checked against NumPy decoding the raw blocks."""
    from engine.validation.comfy_gguf import comfy_dequantize

    _, out, _ = comfy_run
    reader = gguf.GGUFReader(str(_gguf_path(out, "comfy-gguf-q8_0")))
    tensor = next(
        t
        for t in reader.tensors
        if t.tensor_type.name == "Q8_0" and reader.get_field(f"comfy.gguf.orig_shape.{t.name}")
    )
    field = reader.get_field(f"comfy.gguf.orig_shape.{tensor.name}")
    natural = tuple(int(field.parts[i][0]) for i in field.data)
    got = comfy_dequantize(tensor, natural)
    blocks = np.asarray(tensor.data).reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float16)
    assert str(got.dtype) == "torch.float16" and tuple(got.shape) == natural
    assert np.array_equal(got.numpy(), (d * q).reshape(natural))


# ---------------------------------------------------------------- must fail, for the reason


def _validated(comfy_run, tmp_path, variant: str, mutate) -> str:
    source, out, _ = comfy_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    mutate(_gguf_path(copy, variant))
    manifest = validate_manifest(copy, source)
    result = next(a for a in manifest.artifacts if a.variant == variant).validation
    assert result is not None and not result.passed
    return result.reason


def _orig_shape_at(path: Path) -> int:
    """File offset of the element type of a 3x3 conv weight's orig_shape array (the INT32 code,
    then the u64 count, then the dims follow)."""
    reader = gguf.GGUFReader(str(path))
    key = next(
        k
        for k, field in reader.fields.items()
        if k.startswith("comfy.gguf.orig_shape.") and int(field.parts[-1][0]) == 3
    ).encode()
    raw = path.read_bytes()
    at = raw.index(struct.pack("<Q", len(key)) + key) + 8 + len(key)
    assert struct.unpack_from("<II", raw, at) == (9, 5)  # ARRAY of INT32
    return at + 4


def test_orig_shape_of_another_type_fails(comfy_run, tmp_path):
    """ComfyUI-GGUF's get_orig_shape raises TypeError unless the field is ARRAY of INT32."""

    def as_uint32(path: Path) -> None:
        at = _orig_shape_at(path)
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(struct.pack("<I", 4))  # UINT32: same width, another type

    reason = _validated(comfy_run, tmp_path, "comfy-gguf-q8_0", as_uint32)
    assert "needs an ARRAY of INT32" in reason


def test_wrong_orig_shape_fails(comfy_run, tmp_path):
    def transpose_kernel_and_channels(path: Path) -> None:
        at = _orig_shape_at(path)
        raw = bytearray(path.read_bytes())
        dims = struct.unpack_from("<4i", raw, at + 12)
        struct.pack_into("<4i", raw, at + 12, dims[2], dims[1], dims[0], dims[3])
        path.write_bytes(bytes(raw))

    reason = _validated(comfy_run, tmp_path, "comfy-gguf-q4_0", transpose_kernel_and_channels)
    assert "!= natural shape" in reason


def test_swapped_blocks_fail_the_quantization_bound(comfy_run, tmp_path):
    def swap(path: Path) -> None:
        reader = gguf.GGUFReader(str(path))
        q = [t for t in reader.tensors if t.tensor_type.name == "Q8_0" and t.n_bytes >= 4096]
        a, b = q[0], q[1]
        with open(path, "r+b") as f:
            f.seek(int(b.data_offset))
            other = f.read(1024)
            f.seek(int(a.data_offset))
            f.write(other)

    reason = _validated(comfy_run, tmp_path, "comfy-gguf-q8_0", swap)
    assert "block quantization bound" in reason


def test_quantized_time_embedding_breaks_comfyui_gguf_rules(comfy_run, tmp_path, monkeypatch):
    """A file quantizing what ComfyUI-GGUF's tools keep (time_embed) fails the rules."""
    import engine.writers.comfy_gguf as comfy
    from engine.writers.gguf_writer import TensorChoice

    real = comfy.choose_comfy_type

    def also_time_embed(name, shape, dtype, target):
        choice = real(name, shape, dtype, target)
        stored = choice.shape or tuple(shape)
        if "time_embed.2.weight" in name and stored[-1] % 32 == 0:
            return TensorChoice(name, target, "forced", choice.shape)
        return choice

    source, _, _ = comfy_run
    monkeypatch.setattr(comfy, "choose_comfy_type", also_time_embed)
    out = tmp_path / "out"
    convert(source, out, "comfy-gguf-q8_0")
    monkeypatch.undo()
    result = validate_manifest(out, source).artifacts[0].validation
    assert result is not None and not result.passed
    assert "time_embed.2.weight: Q8_0 where ComfyUI-GGUF's tools keep F16/F32" in result.reason


def test_comfy_dequantization_off_its_bound_fails(comfy_run, tmp_path, monkeypatch):
    """The float16 check can fail: a decoder that mixes up the order of blocks is caught."""
    import engine.validation.comfy_gguf as check

    real = check.comfy_dequantize

    def reversed_blocks(tensor, shape):
        return real(tensor, shape).reshape(-1, 32).flip(0).reshape(shape)

    monkeypatch.setattr(check, "comfy_dequantize", reversed_blocks)
    reason = _validated(comfy_run, tmp_path, "comfy-gguf-q5_0", lambda path: None)
    assert "float16 rounding bound" in reason


# ---------------------------------------------------------------- alongside the other GGUFs


def test_full_gguf_never_reuses_a_comfy_file(tiny_pipeline, tmp_path):
    """A full GGUF copies the UNet tensors of the run's UNet-only GGUF of its type; a
    ComfyUI-GGUF-only file of that type has another layout and must not be the one."""
    source = tiny_pipeline("sd15-lcm")
    convert(source, tmp_path / "both", "comfy-gguf-q8_0,gguf-full-q8_0")
    convert(source, tmp_path / "alone", "gguf-full-q8_0")
    both = _gguf_path(tmp_path / "both", "gguf-full-q8_0").read_bytes()
    assert both == _gguf_path(tmp_path / "alone", "gguf-full-q8_0").read_bytes()


@pytest.mark.slow
def test_full_size_comfy_ggufs_pass(tmp_path):
    """Trained-like values: the harder case (the calibration's worst cases are all trained-like;
    init-like full-size sources pass too: benchmarks/cost.py, benchmarks/real_layout.py)."""
    from engine.synthetic.models import write_pipeline_folder

    source = write_pipeline_folder(
        tmp_path / "src", "sd15-lcm", "full", "float16", 0, False, statistics="trained"
    )
    convert(source, tmp_path / "out", COMFY)
    manifest = validate_manifest(tmp_path / "out", source)
    unet_bytes = manifest.source["unet_bytes"]
    for a in manifest.artifacts:
        assert a.validation is not None and a.passed, (a.variant, a.validation.reason)
        assert a.details["quantized"] == 278 and a.details["quantized_convs"] == 96
        assert a.bytes / unet_bytes < VARIANTS[a.variant].size_vs_fp16_unet + 0.01


def test_gguf_card_states_comfyui_gguf_only_and_never_loads_them_in_a_snippet(comfy_run):
    from bot.publish.cards import CardContext, render_repo_card
    from engine.source.classify import ModelKind

    _, out, manifest = comfy_run
    ctx = CardContext("alice/tiny", "a" * 40, ModelKind.SD15_LCM, "mit", {}, [], "http://hub")
    card = render_repo_card(ctx, PublishTarget.GGUF, "bot/tiny-GGUF", manifest, manifest.artifacts)
    section = card[card.index("**ComfyUI-GGUF only**") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")][: len(COMFY)]
    assert [r.split("`")[1] for r in rows] == [_gguf_path(out, v).name for v in COMFY]
    for row in rows:  # no universal GGUF was made: no borrowed twin figures
        assert "not in this repo" in row and "0." in row.split("|")[4]
    code = card.split("```")[1::2]
    assert code and not any("-comfy-" in block for block in code)
