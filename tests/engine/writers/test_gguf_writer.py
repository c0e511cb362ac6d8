"""The GGUF writer: layout policy, metadata, exact data, report, and no partial files."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file

from engine.errors import NonFiniteWeights
from engine.synthetic.models import unet_config, unet_shapes, write_unet_folder
from engine.writers.gguf_writer import (
    REASON_CONV,
    REASON_EMBEDDING,
    REASON_ROW,
    REASON_SMALL,
    REASON_TIME,
    REASON_VAE_CLIP,
    TARGETS,
    GGUFSource,
    choose_type,
    write_gguf,
)

U = "model.diffusion_model."
QUANT_TARGETS = [t for t in TARGETS if t != "F16"]


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = write_unet_folder(tmp_path_factory.mktemp("unet") / "u", "sd15-lcm", "tiny")
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


def sources_from(tensors: dict[str, np.ndarray], dtype: str = "F16") -> list[GGUFSource]:
    """Prefixed diffusers names are enough to exercise the policy (only prefix/suffix matter)."""
    return [
        GGUFSource(U + name, tuple(v.shape), dtype, (lambda v=v: v)) for name, v in tensors.items()
    ]


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# --- policy -----------------------------------------------------------------------------------

POLICY_CASES = [
    # name, shape, expected type for Q8_0 from F16, reason
    (U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", (320, 320), "Q8_0", None),
    (U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", (320, 768), "Q8_0", None),
    (U + "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight", (10240, 1280), "Q8_0", None),
    (U + "output_blocks.3.0.emb_layers.1.weight", (1280, 1280), "Q8_0", None),
    (U + "time_embed.0.weight", (1280, 320), "F16", REASON_TIME),
    (U + "time_embed.2.weight", (1280, 1280), "F16", REASON_TIME),
    (U + "time_embedding.cond_proj.weight", (320, 256), "F16", REASON_TIME),
    (U + "label_emb.0.0.weight", (1280, 2816), "F16", REASON_EMBEDDING),
    (U + "add_embedding.linear_1.weight", (1280, 2816), "F16", REASON_EMBEDDING),
    (U + "input_blocks.0.0.weight", (320, 4, 3, 3), "F16", REASON_CONV),
    (U + "input_blocks.1.1.proj_in.weight", (320, 320, 1, 1), "F16", REASON_CONV),
    (U + "out.2.weight", (4, 320, 3, 3), "F16", REASON_CONV),
    (U + "input_blocks.1.1.norm.weight", (320,), "F16", REASON_SMALL),
    (U + "input_blocks.1.1.transformer_blocks.0.attn1.to_out.0.bias", (320,), "F16", REASON_SMALL),
    (U + "some.linear.weight", (320, 100), "F16", REASON_ROW),
    ("first_stage_model.decoder.mid.attn_1.q.weight", (512, 512, 1, 1), "F16", REASON_VAE_CLIP),
    (
        "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
        (3072, 768),
        "F16",
        REASON_VAE_CLIP,
    ),
]


@pytest.mark.parametrize(("name", "shape", "expected", "reason"), POLICY_CASES)
def test_policy_on_original_names(name, shape, expected, reason):
    choice = choose_type(name, shape, "F16", "Q8_0")
    assert choice.name == name
    assert choice.ggml_type == expected
    assert choice.reason == (reason or "linear weight -> Q8_0")


@pytest.mark.parametrize("target", list(TARGETS))
def test_policy_keeps_small_f32_and_bf16_tensors_f32(target):
    for source in ("F32", "BF16"):
        assert choose_type(U + "out.0.weight", (320,), source, target).ggml_type == "F32"
        assert choose_type(U + "out.2.bias", (4,), source, target).ggml_type == "F32"
        assert choose_type(U + "out.2.weight", (4, 16, 3, 3), source, target).ggml_type == "F32"
        big_conv = choose_type(U + "out.2.weight", (4, 320, 3, 3), source, target)
        assert big_conv.ggml_type == "F16"
        # F16 sources never widen
        assert choose_type(U + "out.0.weight", (320,), "F16", target).ggml_type == "F16"


def test_policy_f16_target_stores_linear_weights_f16():
    choice = choose_type(U + "input_blocks.1.1.proj_out.weight", (320, 320), "F16", "F16")
    assert (choice.ggml_type, choice.reason) == ("F16", "linear weight -> F16")
    assert choose_type(U + "x.weight", (320, 320), "BF16", "F16").ggml_type == "F16"


@pytest.mark.parametrize("target", QUANT_TARGETS)
def test_policy_on_full_size_sd15_lcm_quantizes_182_linear_weights(target):
    shapes = unet_shapes(unet_config("sd15-lcm", "full"))
    choices = [choose_type(U + n, s, "F16", target) for n, s in shapes.items()]
    assert len(choices) == 687
    quantized = [c for c in choices if c.ggml_type == target]
    assert len(quantized) == 182
    assert all(".weight" in c.name and "time_embedding" not in c.name for c in quantized)
    cond = next(c for c in choices if c.name.endswith("time_embedding.cond_proj.weight"))
    assert cond.ggml_type == "F16"


def test_policy_rejects_unknown_target_and_dtype():
    with pytest.raises(ValueError):
        choose_type(U + "x.weight", (32, 32), "F16", "Q4_K")
    with pytest.raises(ValueError):
        choose_type(U + "x.weight", (32, 32), "F64", "Q8_0")


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
def test_written_file_reads_back(tmp_path, tiny_unet, target):
    sources = sources_from(tiny_unet)
    metadata = {
        "general.name": "tiny-lcm",
        "unetbot.source_repo": "someone/tiny-lcm",
        "unetbot.source_revision": "0123abcd",
        "unetbot.lcm_cond_proj": 16,
        "unetbot.empty": "",
    }
    path = tmp_path / f"tiny-{target}.gguf"
    report = write_gguf(path, sources, target, metadata)

    reader = gguf.GGUFReader(path)
    qtype, file_type = TARGETS[target]
    assert field(reader, "general.architecture") == "sd1"
    assert field(reader, "general.file_type") == int(file_type)
    assert field(reader, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    assert field(reader, "general.name") == "tiny-lcm"
    assert field(reader, "unetbot.source_repo") == "someone/tiny-lcm"
    assert field(reader, "unetbot.source_revision") == "0123abcd"
    assert field(reader, "unetbot.lcm_cond_proj") == 16
    assert reader.fields["unetbot.lcm_cond_proj"].types == [gguf.GGUFValueType.UINT32]
    assert field(reader, "unetbot.empty") == ""

    assert [t.name for t in reader.tensors] == [s.name for s in sources]
    by_name = {c.name: c for c in report.choices}
    for tensor, source in zip(reader.tensors, sources, strict=True):
        values = tiny_unet[source.name[len(U) :]]
        choice = by_name[source.name]
        assert tensor.tensor_type.name == choice.ggml_type
        assert tuple(int(d) for d in reversed(tensor.shape)) == values.shape  # natural shape
        stored = np.asarray(tensor.data)
        if choice.ggml_type == "F16":
            assert stored.dtype == np.float16
            assert np.array_equal(stored.reshape(values.shape), values)
        else:
            expected = gguf.quants.quantize(values, tensor.tensor_type)
            assert np.array_equal(stored, expected)
            dequantized = gguf.quants.dequantize(stored, tensor.tensor_type)
            assert np.array_equal(dequantized, gguf.quants.dequantize(expected, qtype))
            assert dequantized.shape == values.shape

    assert report.path == path
    assert report.file_type == file_type.name
    assert report.tensor_count == len(sources) == len(reader.tensors)
    quantized = sum(c.ggml_type == target for c in report.choices) if target != "F16" else 0
    assert report.quantized == quantized
    assert sum(report.kept.values()) + report.quantized == report.tensor_count
    assert sum(report.reasons.values()) == report.tensor_count
    assert report.kept["F32"] == 0  # F16 source
    if target != "F16":
        assert report.quantized > 0
        assert report.reasons[REASON_TIME] == 3  # linear_1, linear_2, cond_proj
    assert leftovers(tmp_path) == []


def test_f32_and_bf16_sources(tmp_path):
    rng = np.random.default_rng(5)
    bias = rng.standard_normal(320).astype(np.float32)
    conv = rng.standard_normal((320, 320, 3, 3)).astype(np.float32)
    linear = rng.standard_normal((320, 768)).astype(np.float32)
    sources = [
        GGUFSource(U + "a.bias", bias.shape, "F32", lambda: bias),
        GGUFSource(U + "a.conv.weight", conv.shape, "BF16", lambda: conv),
        GGUFSource(U + "a.to_k.weight", linear.shape, "F32", lambda: linear),
    ]
    path = tmp_path / "f32.gguf"
    report = write_gguf(path, sources, "Q4_1", {})
    assert report.kept == {"F16": 1, "F32": 1}
    reader = gguf.GGUFReader(path)
    stored = {t.name: t for t in reader.tensors}
    assert stored[U + "a.bias"].tensor_type == Q.F32
    assert np.array_equal(np.asarray(stored[U + "a.bias"].data), bias)
    assert stored[U + "a.conv.weight"].tensor_type == Q.F16
    assert np.array_equal(
        np.asarray(stored[U + "a.conv.weight"].data).reshape(conv.shape), conv.astype(np.float16)
    )
    assert stored[U + "a.to_k.weight"].tensor_type == Q.Q4_1
    expected = gguf.quants.quantize(linear, Q.Q4_1)
    assert np.array_equal(np.asarray(stored[U + "a.to_k.weight"].data), expected)


def test_each_load_called_once(tmp_path, tiny_unet):
    calls: dict[str, int] = {}

    def loader(name, values):
        def load():
            calls[name] = calls.get(name, 0) + 1
            return values

        return load

    sources = [GGUFSource(U + n, v.shape, "F16", loader(n, v)) for n, v in tiny_unet.items()]
    write_gguf(tmp_path / "once.gguf", sources, "Q5_0", {})
    assert calls == dict.fromkeys(tiny_unet, 1)


def _failing(tiny_unet, fail_at: int, exc: Exception) -> list[GGUFSource]:
    sources = sources_from(tiny_unet)

    def boom():
        raise exc

    bad = sources[fail_at]
    sources[fail_at] = GGUFSource(bad.name, bad.shape, bad.dtype, boom)
    return sources


@pytest.mark.parametrize("fail_at", [0, 1, 50, -1])
def test_no_partial_file_after_load_error(tmp_path, tiny_unet, fail_at):
    path = tmp_path / "broken.gguf"
    sources = _failing(tiny_unet, fail_at, OSError("disk gone"))
    with pytest.raises(OSError, match="disk gone"):
        write_gguf(path, sources, "Q8_0", {"general.name": "x"})
    assert not path.exists()
    assert leftovers(tmp_path) == []


def test_failure_keeps_previous_file(tmp_path, tiny_unet):
    path = tmp_path / "keep.gguf"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        write_gguf(path, _failing(tiny_unet, 10, RuntimeError("x")), "Q4_0", {})
    assert path.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_nan_in_quantized_tensor_raises_named_error(tmp_path, tiny_unet):
    tensors = dict(tiny_unet)
    name = next(
        n for n in tensors if n.endswith("attn1.to_q.weight") and tensors[n].shape[1] % 32 == 0
    )
    poisoned = tensors[name].copy()
    poisoned[0, 0] = np.nan
    tensors[name] = poisoned
    path = tmp_path / "nan.gguf"
    with pytest.raises(NonFiniteWeights, match=name.replace(".", r"\.")):
        write_gguf(path, sources_from(tensors), "Q8_0", {})
    assert not path.exists()
    assert leftovers(tmp_path) == []


def test_f32_values_beyond_f16_range_are_refused(tmp_path):
    conv = np.full((16, 16, 3, 3), 1e6, np.float32)  # > 1024 values: stored F16
    src = GGUFSource(U + "c.weight", conv.shape, "F32", lambda: conv)
    with pytest.raises(NonFiniteWeights, match="float16 range"):
        write_gguf(tmp_path / "big.gguf", [src], "Q8_0", {})
    assert list(tmp_path.iterdir()) == []


def test_sources_may_be_any_iterable(tmp_path, tiny_unet):
    report = write_gguf(tmp_path / "gen.gguf", iter(sources_from(tiny_unet)), "Q4_0", {})
    assert report.tensor_count == len(tiny_unet)
    assert len(gguf.GGUFReader(tmp_path / "gen.gguf").tensors) == len(tiny_unet)


def test_wrong_loaded_shape_is_an_error(tmp_path):
    src = GGUFSource(U + "x.weight", (64, 64), "F16", lambda: np.zeros((32, 64), np.float16))
    with pytest.raises(ValueError, match="shape"):
        write_gguf(tmp_path / "shape.gguf", [src], "F16", {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "metadata",
    [{"general.architecture": "sd15"}, {"general.file_type": 1}, {"x": 1.5}],
)
def test_bad_metadata_is_refused(tmp_path, tiny_unet, metadata):
    with pytest.raises((ValueError, TypeError)):
        write_gguf(tmp_path / "meta.gguf", sources_from(tiny_unet), "Q8_0", metadata)
    assert list(tmp_path.iterdir()) == []


def test_unknown_target_is_refused(tmp_path, tiny_unet):
    with pytest.raises(ValueError, match="Q3_K"):
        write_gguf(tmp_path / "t.gguf", sources_from(tiny_unet), "Q3_K", {})


@pytest.mark.parametrize("qtype", ["F16", "Q8_0"])
def test_kernel_copy_of_unchanged_tensors_gives_identical_file(tmp_path, monkeypatch, qtype):
    """Tensors kept in their own dtype are copied with copy_file_range (raw_at); the file must
    be byte-identical to the one written by loading every tensor."""
    import dataclasses

    import engine.writers.gguf_artifact as artifact
    from engine.source.folder import open_source
    from engine.synthetic.models import write_pipeline_folder
    from engine.writers.original import Provenance

    source = open_source(write_pipeline_folder(tmp_path / "src", "sd15-lcm", "tiny"))
    copied = tmp_path / "copied.gguf"
    artifact.write_gguf_artifact(source, copied, qtype, True, Provenance("a/b", "c" * 40))
    plain_source = artifact.gguf_source
    monkeypatch.setattr(
        artifact, "gguf_source", lambda t: dataclasses.replace(plain_source(t), raw_at=None)
    )
    loaded = tmp_path / "loaded.gguf"
    artifact.write_gguf_artifact(source, loaded, qtype, True, Provenance("a/b", "c" * 40))
    assert copied.read_bytes().replace(b"copied", b"loaded") == loaded.read_bytes()


def test_full_gguf_reusing_the_unet_gguf_is_identical_to_a_fresh_write(tmp_path, monkeypatch):
    """In one run the full GGUF copies the UNet tensors the UNet-only GGUF of its type already
    holds; the result must equal a full GGUF quantized from scratch."""
    import engine.writers.gguf_writer as writer
    from engine.run.convert import convert
    from engine.source.folder import open_source
    from engine.synthetic.models import write_pipeline_folder
    from engine.writers.gguf_artifact import write_gguf_artifact
    from engine.writers.original import Provenance

    src = write_pipeline_folder(tmp_path / "src", "sd15-lcm", "tiny")
    calls: list[str] = []
    real_quantize = writer.quantize
    monkeypatch.setattr(
        writer, "quantize", lambda a, q, name=None: calls.append(name) or real_quantize(a, q, name)
    )
    manifest = convert(src, tmp_path / "run", "gguf-q4_1,gguf-full-q4_1", stem="m")
    assert len(calls) == manifest.artifacts[0].details["quantized"]  # the full file quantized none
    monkeypatch.undo()
    (tmp_path / "fresh").mkdir()
    fresh = tmp_path / "fresh" / "m-full-Q4_1.gguf"
    write_gguf_artifact(open_source(src), fresh, "Q4_1", True, Provenance())
    assert (tmp_path / "run" / "m-full-Q4_1.gguf").read_bytes() == fresh.read_bytes()
