"""diffusers -> original conversion, checked with diffusers' own single-file loader."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.errors import (
    BadSafetensorsHeader,
    MissingKey,
    PickleRefused,
    TruncatedFile,
    UnknownKey,
    UnsupportedArchitecture,
)
from engine.formats.safetensors_io import read_header
from engine.source.folder import open_source
from engine.source.keymap import LCM_COND_PROJ_ORIGINAL
from engine.synthetic.models import write_unet_folder
from engine.validation.loaders import load_unet
from engine.writers.original import Provenance, write_diffusers_from_original, write_original

CASES = [("sd15", 2), ("sd15", 1), ("sd15-lcm", 2), ("sd15-lcm", 1), ("sd15-inpaint", 2)]


def _source_unet(root: Path) -> dict[str, torch.Tensor]:
    return load_file(str(root / "unet" / "diffusion_pytorch_model.safetensors"))


def _assert_same(model, reference: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key].to(value.dtype), value), key
    assert not [n for n, p in model.named_parameters() if p.device.type == "meta"]


@pytest.mark.parametrize(("kind", "layers"), CASES)
def test_original_loads_in_diffusers_with_every_tensor_equal(tiny_pipeline, tmp_path, kind, layers):
    root = tiny_pipeline(kind, layers)
    out = write_original(open_source(root), tmp_path / "unet.safetensors")
    model = load_unet(out, root, "unet", torch_dtype=torch.float16)
    _assert_same(model, _source_unet(root))


def test_plain_diffusers_loader_reads_sd15_without_unetbot(tiny_pipeline, tmp_path):
    """A non-LCM file needs nothing from unetbot: diffusers' own conversion maps every key."""
    from diffusers import UNet2DConditionModel

    root = tiny_pipeline("sd15", 2)
    out = write_original(open_source(root), tmp_path / "unet.safetensors")
    model = UNet2DConditionModel.from_single_file(
        str(out), config=str(root), subfolder="unet", torch_dtype=torch.float16
    )
    _assert_same(model, _source_unet(root))


def test_lcm_cond_proj_kept_under_documented_name(tiny_pipeline, tmp_path):
    root = tiny_pipeline("sd15-lcm", 2)
    out = write_original(
        open_source(root), tmp_path / "unet.safetensors", provenance=Provenance("a/b", "c" * 40)
    )
    header = read_header(out)
    names = {t.name for t in header.tensors}
    assert LCM_COND_PROJ_ORIGINAL in names
    assert all(n.startswith("model.diffusion_model.") for n in names)
    assert header.metadata["unetbot.source_repo"] == "a/b"
    assert header.metadata["unetbot.source_revision"] == "c" * 40
    assert LCM_COND_PROJ_ORIGINAL in header.metadata["unetbot.lcm_cond_proj"]


def test_plain_diffusers_loader_drops_lcm_cond_proj(tiny_pipeline, tmp_path):
    """The trap unetbot's loader exists for: diffusers alone leaves cond_proj on meta."""
    from diffusers import UNet2DConditionModel

    root = tiny_pipeline("sd15-lcm", 2)
    out = write_original(open_source(root), tmp_path / "unet.safetensors")
    with pytest.raises(NotImplementedError, match="meta"):
        UNet2DConditionModel.from_single_file(str(out), config=str(root), subfolder="unet")


@pytest.mark.parametrize("kind", ["sd15", "sd15-lcm"])
def test_full_checkpoint_round_trips_byte_exact(tiny_pipeline, tmp_path, kind):
    from diffusers import AutoencoderKL

    root = tiny_pipeline(kind, 2)
    source = open_source(root)
    full = write_original(source, tmp_path / "full.safetensors", full=True)
    names = [t.name for t in read_header(full).tensors]
    assert any(n.startswith("first_stage_model.encoder.mid.attn_1.q.") for n in names)
    assert any(n.startswith("cond_stage_model.transformer.text_model.") for n in names)
    vae = AutoencoderKL.from_single_file(
        str(full), config=str(root), subfolder="vae", torch_dtype=torch.float16
    )
    _assert_same(vae, load_file(str(root / "vae" / "diffusion_pytorch_model.safetensors")))
    back = write_diffusers_from_original(
        full, tmp_path / "rt", source.unet.config, source.vae.config
    )
    for component, path in back.items():
        original = next((root / component).glob("*.safetensors"))
        a, b = read_header(path), read_header(original)
        assert [(t.name, t.dtype, t.shape) for t in a.tensors] == [
            (t.name, t.dtype, t.shape) for t in b.tensors
        ]
        with open(path, "rb") as fa, open(original, "rb") as fb:
            fa.seek(a.data_start)
            fb.seek(b.data_start)
            assert fa.read() == fb.read(), component


def test_copied_data_keeps_its_source_offset_within_64_kib(tiny_pipeline, tmp_path):
    # The kernel copy is ~20 % faster when source and output offsets agree within the page
    # cache's folios (engine/formats/safetensors_io.py, _COPY_ALIGN): the header is padded with
    # spaces.
    root = tiny_pipeline("sd15-lcm", 2)
    src = read_header(root / "unet" / "diffusion_pytorch_model.safetensors")
    out = write_original(open_source(root), tmp_path / "unet.safetensors")
    got = read_header(out)
    assert got.data_start % 65536 == src.data_start % 65536
    with open(out, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        raw = f.read(length)
    compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert raw.startswith(compact) and set(raw[len(compact) :]) <= {ord(" ")}
    assert len(raw) - len(compact) < 65536 + 8
    assert set(load_file(str(out))) == {t.name for t in got.tensors}  # the library reads it


def test_dtype_cast_streams_exact_values(tiny_pipeline, tmp_path):
    root = tiny_pipeline("sd15", 1)
    source = open_source(root)
    from engine.formats.safetensors_io import write_safetensors
    from engine.writers.original import original_tensors

    out = tmp_path / "bf16.safetensors"
    write_safetensors(out, original_tensors(source, False, dtype="BF16"), {})
    cast = load_file(str(out))
    ref = _source_unet(root)
    assert all(t.dtype == torch.bfloat16 for t in cast.values())
    assert torch.equal(
        cast["model.diffusion_model.input_blocks.0.0.weight"],
        ref["conv_in.weight"].to(torch.bfloat16),
    )


# ------------------------------------------------------------------ refusals


def _corrupt(src: Path, dst: Path, mutate) -> Path:
    data = bytearray(src.read_bytes())
    dst.write_bytes(bytes(mutate(data)))
    return dst


def _unet_copy(root: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "unet"
    shutil.copytree(root / "unet", target)
    return target


def _assert_refused(folder: Path, out: Path, error) -> None:
    with pytest.raises(error) as info:
        write_original(open_source(folder), out)
    assert not out.exists()
    assert not list(out.parent.glob(".*tmp*"))
    assert str(folder) in str(info.value) or "unet" in str(info.value)


def test_truncated_file_refused(tiny_pipeline, tmp_path):
    unet = _unet_copy(tiny_pipeline("sd15", 1), tmp_path)
    weights = unet / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    _assert_refused(unet, tmp_path / "o" / "x.safetensors", TruncatedFile)


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        json.dumps({"a": {"dtype": "F99", "shape": [1], "data_offsets": [0, 2]}}).encode(),
        json.dumps({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 2]}}).encode(),
        json.dumps(
            {
                "a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]},
                "b": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]},
            }
        ).encode(),
    ],
    ids=["json", "dtype", "span", "overlap"],
)
def test_corrupt_header_refused(tmp_path, header):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    with pytest.raises(BadSafetensorsHeader, match="bad.safetensors"):
        read_header(path)


def test_unknown_key_refused(tiny_pipeline, tmp_path):
    from safetensors.torch import save_file

    unet = _unet_copy(tiny_pipeline("sd15", 1), tmp_path)
    weights = unet / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["down_blocks.0.mystery.weight"] = torch.zeros(2)
    save_file(tensors, str(weights))
    with pytest.raises(UnknownKey, match="down_blocks.0.mystery.weight"):
        write_original(open_source(unet), tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_missing_key_refused(tiny_pipeline, tmp_path):
    from safetensors.torch import save_file

    unet = _unet_copy(tiny_pipeline("sd15", 1), tmp_path)
    weights = unet / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    del tensors["mid_block.resnets.1.conv2.weight"]
    save_file(tensors, str(weights))
    with pytest.raises(MissingKey, match="mid_block.resnets.1.conv2.weight"):
        write_original(open_source(unet), tmp_path / "o.safetensors")


@pytest.mark.parametrize("kind", ["sdxl", "sd2"])
def test_other_architectures_refused(tmp_path, kind):
    unet = write_unet_folder(tmp_path / kind, kind)  # type: ignore[arg-type]
    source = open_source(unet)
    assert source.classification.kind == "unsupported"
    assert ("SDXL" if kind == "sdxl" else "SD2") in source.classification.reason
    with pytest.raises(UnsupportedArchitecture):
        write_original(source, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_pickle_only_refused_without_opening(tmp_path):
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    (unet / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04 not even a real pickle")
    with pytest.raises(PickleRefused, match="diffusion_pytorch_model.bin"):
        open_source(unet)


def test_classification_kinds(tiny_pipeline):
    assert open_source(tiny_pipeline("sd15")).classification.kind == "sd15"
    assert open_source(tiny_pipeline("sd15-lcm")).classification.kind == "sd15-lcm"
    assert open_source(tiny_pipeline("sd15-inpaint")).classification.kind == "sd15-inpaint"


def test_sharded_input_converts(tiny_pipeline, tmp_path):
    from safetensors.torch import save_file

    root = tiny_pipeline("sd15", 1, full=False)
    tensors = _source_unet(root)
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text((root / "unet" / "config.json").read_text())
    keys = sorted(tensors)
    half = len(keys) // 2
    weight_map = {}
    for i, part in enumerate((keys[:half], keys[half:])):
        name = f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(unet / name))
        weight_map.update(dict.fromkeys(part, name))
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    out = write_original(open_source(unet), tmp_path / "o.safetensors")
    model = load_unet(out, unet, torch_dtype=torch.float16)
    _assert_same(model, tensors)


def test_original_path_never_imports_torch(tiny_pipeline, tmp_path):
    import subprocess
    import sys

    root = tiny_pipeline("sd15-lcm", 1)
    code = (
        "import sys; from pathlib import Path; from engine.run.convert import convert; "
        f"convert(Path({str(root)!r}), Path({str(tmp_path)!r}), 'original,original-full'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
    assert (tmp_path / "manifest.json").is_file()


def test_interrupted_write_leaves_no_file(tiny_pipeline, tmp_path, monkeypatch):
    import engine.formats.safetensors_io as io

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "_copy_range", boom)
    with pytest.raises(OSError, match="disk full"):
        write_original(open_source(tiny_pipeline("sd15", 1)), tmp_path / "o.safetensors")
    assert list(tmp_path.iterdir()) == []
