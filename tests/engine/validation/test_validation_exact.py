"""Byte proofs of exact copies: streamed compares, and parameters proven by their mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.source.folder import open_source
from engine.synthetic.models import write_unet_folder
from engine.validation.exact import (
    Expected,
    Stored,
    byte_differences,
    file_mappings,
    loaded_differences,
    mapped_file_offset,
    same_bytes,
    same_bytes_on_disk,
)


def test_same_bytes_compares_bits_not_values():
    assert same_bytes(np.float16([1.0, 2.0]), np.float16([1.0, 2.0]).tobytes())
    assert not same_bytes(np.float16([0.0]), np.float16([-0.0]))  # equal as floats
    assert not same_bytes(b"abc", b"abcd")


def test_same_bytes_on_disk_finds_one_changed_byte(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    data = np.random.default_rng(0).bytes(3 << 20)
    a.write_bytes(b"xx" + data)
    b.write_bytes(data)
    assert same_bytes_on_disk(a, 2, b, 0, len(data))
    changed = bytearray(data)
    changed[(2 << 20) + 5] ^= 1
    b.write_bytes(bytes(changed))
    assert not same_bytes_on_disk(a, 2, b, 0, len(data))
    assert not same_bytes_on_disk(a, 2, b, 0, len(data) + 1)  # past the end


def test_byte_differences_names_each_problem(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"\x01" * 8 + b"\x02" * 8)
    out = tmp_path / "out"
    out.write_bytes(b"\x01" * 8 + b"\x03" * 8)
    expected = [
        Expected("a", "F16", (4,), src, 0, 8),
        Expected("b", "F16", (4,), src, 8, 8),
        Expected("c", "F16", (4,), src, 0, 8),
    ]
    stored = {"a": Stored("F16", (4,), 0, 8), "b": Stored("F16", (4,), 8, 8)}
    stored["z"] = Stored("F32", (2,), 0, 8)
    assert list(byte_differences(out, stored, expected)) == [
        "c is missing",
        "unexpected tensors: ['z']",
        "b differs from the source",
    ]
    stored["a"] = Stored("F32", (2,), 0, 8)
    assert "a: F32[2], the source has F16[4]" in list(byte_differences(out, stored, expected))


def test_mapped_file_offset_only_for_tensors_viewing_the_file(tmp_path):
    path = tmp_path / "blob"
    np.arange(1024, dtype=np.float32).tofile(path)
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=4096)
    mapped = torch.tensor([], dtype=torch.float32).set_(storage)[16:32]
    mappings = file_mappings(path)
    if not mappings:
        pytest.skip("no /proc/self/maps here: every parameter is compared by value instead")
    assert mapped_file_offset(mapped, mappings) == 64
    assert mapped_file_offset(mapped.clone(), mappings) is None  # a copy is not the file


def test_loaded_differences_compares_what_it_cannot_prove_by_mapping(tmp_path):
    folder = write_unet_folder(tmp_path / "unet", "sd15", "tiny", "float16")
    component = open_source(folder).unet
    from safetensors.torch import load_file

    loaded = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    assert list(loaded_differences(loaded, component)) == []
    name = "conv_in.weight"
    loaded[name] = loaded[name].clone()
    loaded[name][0, 0, 0, 0] += 1
    # a wrong offset map proves nothing: the value is still compared, and fails
    wrong = (Path(folder / "diffusion_pytorch_model.safetensors"), {name: 0})
    assert list(loaded_differences(loaded, component, wrong)) == [f"{name} differs from the source"]
    loaded[name] = loaded[name].float()
    assert "conv_in.weight is torch.float32" in next(loaded_differences(loaded, component))
    del loaded[name]
    loaded["extra.weight"] = torch.zeros(1)
    assert list(loaded_differences(loaded, component)) == [
        f"{name} is missing",
        "unexpected tensors: ['extra.weight']",
    ]
