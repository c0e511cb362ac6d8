"""Hostile sources: every malformed header, config or index is refused with a typed error that
names the file and the problem, before anything is written (the output folder is exactly as it
was, no temp file anywhere)."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import (
    BadConfig,
    BadInput,
    BadSafetensorsHeader,
    MissingFile,
    UnetbotError,
    UnknownKey,
)
from engine.formats.config_json import max_depth
from engine.run.convert import convert

UNET = "unet/diffusion_pytorch_model.safetensors"
TE = "text_encoder/model.safetensors"
VARIANTS = "original,original-full"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    from engine.synthetic.models import write_pipeline_folder

    return write_pipeline_folder(tmp_path_factory.mktemp("src") / "p", "sd15", layers_per_block=1)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_header(path: Path, header: bytes | dict, data: bytes) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _mutate_header(src: Path, rel: str, mutate) -> None:
    header, data = _split(src / rel)
    result = mutate(header)
    _write_header(src / rel, result if result is not None else header, data)


def _mutate_config(src: Path, component: str, mutate) -> None:
    path = src / component / "config.json"
    config = json.loads(path.read_text())
    result = mutate(config)
    path.write_text(result if isinstance(result, str) else json.dumps(config))


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _refused(src: Path, out: Path, error: type[UnetbotError], *fragments: str, variants=VARIANTS):
    """Convert must raise `error` naming the file and the problem, writing nothing."""
    out.mkdir(exist_ok=True)
    (out / "keep.txt").write_text("the user's own file")
    before_out, before_src = _listing(out), _listing(src)
    with pytest.raises(error) as info:
        convert(src, out, variants)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert _listing(out) == before_out
    assert _listing(src) == before_src
    fresh = out.parent / "never-created"
    with pytest.raises(error):
        convert(src, fresh, variants)
    assert not fresh.exists()
    return message


# ------------------------------------------------------------------ safetensors headers


def test_deeply_nested_header(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _, data = _split(src / UNET)
    _write_header(src / UNET, b"[" * 200_000 + b"]" * 200_000, data)
    _refused(src, tmp_path / "out", BadSafetensorsHeader, UNET, "nested 200000 levels")


def _depth_by_hand(raw: bytes) -> int:
    """The plain reading of JSON nesting, one character at a time (the scan's specification)."""
    depth = best = 0
    in_string = escaped = False
    for ch in raw:
        if escaped:
            escaped = False
        elif ch == ord("\\"):
            escaped = True
        elif ch == ord('"'):
            in_string = not in_string
        elif not in_string and ch in b"[{":
            depth += 1
            best = max(best, depth)
        elif not in_string and ch in b"]}":
            depth -= 1
    return best


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b":", b","])))
def test_depth_scan_matches_a_character_by_character_reading(pieces):
    raw = b"".join(pieces)
    assert max_depth(raw) == _depth_by_hand(raw)


def test_dimension_beyond_int64(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")

    def add(header):
        end = max(e["data_offsets"][1] for k, e in header.items() if k != "__metadata__")
        header["conv_in.extra"] = {"dtype": "F16", "shape": [0, 2**63], "data_offsets": [end, end]}

    _mutate_header(src, UNET, add)
    _refused(src, tmp_path / "out", BadSafetensorsHeader, UNET, "conv_in.extra", "2**63")


def test_more_dims_than_these_models_have(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_header(src, UNET, lambda h: h["conv_in.weight"]["shape"].append(1))
    _refused(src, tmp_path / "out", BadSafetensorsHeader, UNET, "conv_in.weight", "5 dims")


@pytest.mark.parametrize(
    ("rel", "old"), [(UNET, "conv_in.weight"), (TE, "text_model.final_layer_norm.weight")]
)
@pytest.mark.parametrize("bad", ["\x00", "\x1b[2J", "\u200b"], ids=["nul", "escape", "zero-width"])
def test_non_printable_tensor_name(pipeline, tmp_path, rel, old, bad):
    """A NUL in a text-encoder name used to pass straight into the original file."""
    src = _copy(pipeline, tmp_path / "src")
    _mutate_header(src, rel, lambda h: h.__setitem__(old + bad, h.pop(old)))
    _refused(src, tmp_path / "out", BadSafetensorsHeader, rel, "non-printable")


@pytest.mark.parametrize(
    ("rel", "old", "new"),
    [
        (UNET, "mid_block.resnets.1.conv2.weight", "mid_block.resnets.1.conv9.weight"),
        ("vae/diffusion_pytorch_model.safetensors", "decoder.conv_in.bias", "decoder.conv_in.beta"),
        (TE, "text_model.final_layer_norm.weight", "text_model.final_layer_norm.gamma"),
        (TE, "text_model.final_layer_norm.weight", "final_layer_norm.weight.extra"),
    ],
)
def test_name_not_in_the_key_map(pipeline, tmp_path, rel, old, new):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_header(src, rel, lambda h: h.__setitem__(new, h.pop(old)))
    _refused(src, tmp_path / "out", UnknownKey, rel, repr(new))


def test_every_file_is_checked_even_for_a_unet_only_variant(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_header(
        src, TE, lambda h: h.__setitem__("x\x00", h.pop("text_model.final_layer_norm.bias"))
    )
    _refused(src, tmp_path / "out", BadSafetensorsHeader, TE, variants="original")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            b'{"a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}, "a": {}}',
            "appears twice",
        ),
        (
            b'{"a": {"dtype": "F16", "shape": [1], "data_offsets": [0, ' + b"9" * 5000 + b"]}}",
            "not valid JSON",
        ),
        (
            json.dumps(
                {"x" * 600: {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}
            ).encode(),
            "longer than",
        ),
        (b'{"a": {"dtype": "F16", "shape": [NaN], "data_offsets": [0, 2]}}', "NaN"),
    ],
    ids=["duplicate", "huge-int", "long-name", "nan"],
)
def test_malformed_header_json(pipeline, tmp_path, raw, fragment):
    src = _copy(pipeline, tmp_path / "src")
    _write_header(src / UNET, raw, b"\0\0")
    _refused(src, tmp_path / "out", BadSafetensorsHeader, UNET, fragment)


# ------------------------------------------------------------------ config.json


@pytest.mark.parametrize(
    ("component", "field", "value", "fragment"),
    [
        ("unet", "transformer_layers_per_block", [], "transformer_layers_per_block"),
        ("unet", "block_out_channels", "abc", "block_out_channels"),
        ("unet", "layers_per_block", 10**9, "layers_per_block must be an integer in [1, 8]"),
        ("unet", "layers_per_block", -1, "layers_per_block"),
        ("unet", "block_out_channels", [32, -64], "block_out_channels"),
        ("unet", "block_out_channels", [32, 2**40], "block_out_channels"),
        ("unet", "down_block_types", ["DownBlock2D"], "a list of 2 block types"),
        ("unet", "cross_attention_dim", [32, 32, 32], "one per block"),
        ("unet", "norm_num_groups", 7, "norm_num_groups"),
        ("unet", "in_channels", True, "in_channels"),
        ("unet", "time_cond_proj_dim", "16", "time_cond_proj_dim"),
        ("vae", "layers_per_block", "1", "layers_per_block"),
        ("vae", "block_out_channels", [], "block_out_channels"),
        ("text_encoder", "num_hidden_layers", -1, "num_hidden_layers"),
        ("text_encoder", "hidden_size", 10**12, "hidden_size"),
        ("text_encoder", "architectures", [["CLIPTextModel"]], "architectures"),
    ],
)
def test_config_field_of_the_wrong_type_or_size(
    pipeline, tmp_path, component, field, value, fragment
):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_config(src, component, lambda c: c.__setitem__(field, value))
    _refused(src, tmp_path / "out", BadConfig, f"{component}/config.json", fragment)


def test_config_and_weights_disagree(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_config(src, "unet", lambda c: c.__setitem__("block_out_channels", [64, 128]))
    _refused(src, tmp_path / "out", BadConfig, UNET, "config and weights disagree")


def test_deeply_nested_config(pipeline, tmp_path):
    """30k levels: within the size cap, 30x deeper than Python's parser can recurse."""
    src = _copy(pipeline, tmp_path / "src")
    nested = '{"_class_name": "UNet2DConditionModel", "x": ' + "[" * 30_000 + "]" * 30_000 + "}"
    _mutate_config(src, "unet", lambda c: nested)
    _refused(src, tmp_path / "out", BadConfig, "unet/config.json", "nested 30001 levels")


def test_oversized_config_is_refused_unread(pipeline, tmp_path):
    """A 100 MB config.json used to be parsed and copied into manifest.json."""
    src = _copy(pipeline, tmp_path / "src")
    with open(src / "unet" / "config.json", "r+b") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: no 100 MB written to the test disk
    _refused(src, tmp_path / "out", BadConfig, "unet/config.json", "104857600 bytes")


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"norm_eps": NaN}', "[1, 2]", "\xff"])
def test_malformed_config_json(pipeline, tmp_path, text):
    src = _copy(pipeline, tmp_path / "src")
    _mutate_config(src, "vae", lambda c: text)
    _refused(src, tmp_path / "out", BadConfig, "vae/config.json")


# ------------------------------------------------------------------ shard indexes, buffers


def _shard(src: Path) -> Path:
    """Split the UNet into two shards with an index, as diffusers names them."""
    header, data = _split(src / UNET)
    meta = header.pop("__metadata__", None)
    names = sorted(header, key=lambda n: header[n]["data_offsets"][0])
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"
        start = header[part[0]]["data_offsets"][0]
        end = header[part[-1]]["data_offsets"][1]
        sub = {
            n: {**header[n], "data_offsets": [o - start for o in header[n]["data_offsets"]]}
            for n in part
        }
        if meta:
            sub["__metadata__"] = meta
        _write_header(src / "unet" / shard, sub, data[start:end])
        weight_map.update(dict.fromkeys(part, shard))
    (src / UNET).unlink()
    index = src / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def test_sharded_source_converts(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _shard(src)
    manifest = convert(src, tmp_path / "out", "original")
    assert manifest.source["files"]["unet"][1].endswith(".index.json")


def test_missing_shard(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    _shard(src)
    (src / "unet" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    _refused(src, tmp_path / "out", MissingFile, "index.json", "[2] of 2 missing")


def test_index_disagrees_with_shards(pipeline, tmp_path):
    src = _copy(pipeline, tmp_path / "src")
    index = _shard(src)
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = "diffusion_pytorch_model-00002-of-00002.safetensors"
    index.write_text(json.dumps(data))
    _refused(src, tmp_path / "out", BadInput, "index.json", "disagrees", first)


@pytest.mark.parametrize("shard", ["../escape.safetensors", "x\x00.safetensors", "notes.txt"])
def test_index_with_a_bad_shard_name(pipeline, tmp_path, shard):
    src = _copy(pipeline, tmp_path / "src")
    index = _shard(src)
    data = json.loads(index.read_text())
    data["weight_map"][next(iter(data["weight_map"]))] = shard
    index.write_text(json.dumps(data))
    _refused(src, tmp_path / "out", BadSafetensorsHeader, "index.json", "invalid shard name")


def test_corrupted_clip_position_ids(pipeline, tmp_path):
    """transformers 4 files carry position_ids; only the constant 0..n-1 may be left out."""
    src = _copy(pipeline, tmp_path / "src")
    header, data = _split(src / TE)
    ids = struct.pack("<77q", *[i + (i == 40) for i in range(77)])
    header["text_model.embeddings.position_ids"] = {
        "dtype": "I64",
        "shape": [1, 77],
        "data_offsets": [len(data), len(data) + len(ids)],
    }
    _write_header(src / TE, header, data + ids)
    _refused(src, tmp_path / "out", BadInput, TE, "position_ids", "corrupted")


# ------------------------------------------------------------------ fuzz

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Config mutations often still convert (each conversion ends in a gc pass): fewer examples.
_FUZZ_CONFIG = settings(_FUZZ, max_examples=40)


def _convert_or_refuse(src: Path, out: Path) -> None:
    """Either a clean conversion or a typed refusal that left nothing behind. (One variant: the
    whole source is checked whatever is asked, and each written variant costs a gc pass.)"""
    try:
        convert(src, out, "original")
    except UnetbotError:
        assert not out.exists()
    else:
        assert (out / "manifest.json").is_file()
    assert not [p for p in src.parent.rglob("*") if ".tmp" in p.name]


@_FUZZ
@given(
    rel=st.sampled_from([UNET, TE, "vae/diffusion_pytorch_model.safetensors"]),
    position=st.integers(min_value=0, max_value=10_000),
    field=st.sampled_from(["dtype", "shape", "data_offsets", None, "__metadata__", "rename"]),
    value=_json,
)
def test_fuzz_safetensors_header(pipeline, rel, position, field, value):
    with tempfile.TemporaryDirectory() as tmp:
        src = _copy(pipeline, Path(tmp) / "src")
        header, data = _split(src / rel)
        names = sorted(k for k in header if k != "__metadata__")
        name = names[position % len(names)]
        if field == "__metadata__":
            header["__metadata__"] = value
        elif field == "rename":
            header[str(value)] = header.pop(name)
        elif field is None:
            header[name] = value
        else:
            header[name][field] = value
        _write_header(src / rel, json.dumps(header).encode(), data)
        _convert_or_refuse(src, Path(tmp) / "out")


@_FUZZ_CONFIG
@given(
    component=st.sampled_from(["unet", "vae", "text_encoder"]),
    field=st.sampled_from(
        [
            "block_out_channels",
            "layers_per_block",
            "down_block_types",
            "up_block_types",
            "cross_attention_dim",
            "attention_head_dim",
            "transformer_layers_per_block",
            "time_cond_proj_dim",
            "in_channels",
            "norm_num_groups",
            "_class_name",
            "latent_channels",
            "num_hidden_layers",
            "hidden_size",
            "max_position_embeddings",
            "architectures",
            "use_linear_projection",
        ]
    ),
    value=_json,
)
def test_fuzz_config_fields(pipeline, component, field, value):
    with tempfile.TemporaryDirectory() as tmp:
        src = _copy(pipeline, Path(tmp) / "src")
        _mutate_config(src, component, lambda c: c.__setitem__(field, value))
        _convert_or_refuse(src, Path(tmp) / "out")
