"""The sha256 the writers compute while writing (engine.formats.output_hash) is the written file's
own.

Each digest is checked against hashlib over the file read back from disk: copied tensors (the
hash reads the source ranges the kernel copies), cast tensors (hashed from the bytes written),
quantized tensors and GGUF padding, and the manifest that `convert` writes. The fallbacks are
checked too: a source that changes during the write, and a hashing thread that fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.formats import output_hash
from engine.formats.manifest import Manifest
from engine.formats.output_hash import OutputHash, hash_range
from engine.formats.safetensors_io import write_safetensors
from engine.run.convert import convert
from engine.source.folder import open_source
from engine.writers.gguf_artifact import write_gguf_artifact
from engine.writers.original import Provenance, original_metadata, original_tensors


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_copied_tensors_hash_equals_file_hash(tiny_pipeline, tmp_path):
    source = open_source(tiny_pipeline("sd15-lcm"))
    out = tmp_path / "unet.safetensors"
    digest = write_safetensors(out, original_tensors(source, False), {"format": "pt"})
    assert digest == _sha256(out)


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_cast_tensors_hash_equals_file_hash(tiny_pipeline, tmp_path, dtype):
    """Cast tensors never go through the kernel copy: their hash comes from the bytes written."""
    source = open_source(tiny_pipeline("sd15"))
    tensors = original_tensors(source, True, dtype=dtype)
    assert all(t.dtype != t.spec.dtype for t in tensors if t.spec.dtype == "F16")
    out = tmp_path / "cast.safetensors"
    digest = write_safetensors(out, tensors, original_metadata(source, Provenance(), True))
    assert digest == _sha256(out)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_1"])
@pytest.mark.parametrize("full", [False, True])
def test_gguf_hash_equals_file_hash(tiny_pipeline, tmp_path, qtype, full):
    """Header read back, alignment padding, quantized arrays and kernel-copied F16 tensors."""
    source = open_source(tiny_pipeline("sd15-lcm"))
    out = tmp_path / f"m-{qtype}.gguf"
    written = write_gguf_artifact(source, out, qtype, full, Provenance("a/b", "c" * 40))
    assert written.sha256 == _sha256(out)


def test_gguf_reusing_another_gguf_hash_equals_file_hash(tiny_pipeline, tmp_path):
    """A full GGUF copying the quantized UNet tensors of the UNet-only GGUF (ranges of a GGUF)."""
    source = open_source(tiny_pipeline("sd15-lcm"))
    unet = tmp_path / "unet-Q5_0.gguf"
    write_gguf_artifact(source, unet, "Q5_0", False, Provenance())
    full = tmp_path / "full-Q5_0.gguf"
    written = write_gguf_artifact(source, full, "Q5_0", True, Provenance(), unet)
    assert written.sha256 == _sha256(full)


def test_convert_manifest_hashes_equal_file_hashes(tiny_pipeline, tmp_path):
    out = tmp_path / "out"
    variants = "original,original-full,gguf-q8_0,gguf-full-q8_0,gguf-f16"
    manifest = convert(tiny_pipeline("sd15-lcm"), out, variants)
    assert len(manifest.artifacts) == 5
    for artifact in Manifest.load(out).artifacts:
        for f in artifact.files:
            assert f.sha256 == _sha256(out / f.path), f.path
            assert f.bytes == (out / f.path).stat().st_size


def test_source_changed_during_write_hashes_the_written_file(tiny_pipeline, tmp_path, monkeypatch):
    """If a source file moves during the write, the copied ranges may not be what was hashed:
    the writer must hash the file it wrote instead of trusting the streamed digest."""
    source = open_source(tiny_pipeline("sd15"))
    tensors = original_tensors(source, False)
    src = tensors[0].source.path
    real_hash_range = output_hash.hash_range

    def hash_then_touch(digest, path, offset, length):
        digest.update(b"not what the kernel copied")  # the streamed digest is now wrong
        real_hash_range(digest, path, offset, length)
        src.touch()  # ... and the source's change time moves, as a rewrite would

    monkeypatch.setattr(output_hash, "hash_range", hash_then_touch)
    out = tmp_path / "unet.safetensors"
    assert write_safetensors(out, tensors, {}) == _sha256(out)


def test_hash_failure_falls_back_to_hashing_the_file(tiny_pipeline, tmp_path, monkeypatch):
    """The streamed digest is a shortcut: if the hashing thread fails, the write still succeeds
    and the digest comes from the written file, never from a partial stream."""
    source = open_source(tiny_pipeline("sd15"))

    def broken(digest, path, offset, length):
        digest.update(b"partial")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(output_hash, "hash_range", broken)
    out = tmp_path / "unet.safetensors"
    assert write_safetensors(out, original_tensors(source, False), {}) == _sha256(out)
    assert [p.name for p in tmp_path.iterdir()] == ["unet.safetensors"]


def test_output_hash_keeps_order_across_bytes_and_ranges(tmp_path):
    data = bytes(range(256)) * 4099
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    pieces = [b"head", (5, 70_000), b"mid" * 1000, (0, len(data)), b"", (len(data) - 3, 3)]
    expected = hashlib.sha256()
    with OutputHash(max_pending=10) as digest:  # tiny budget: the writer waits for the hasher
        for piece in pieces:
            if isinstance(piece, bytes):
                digest.add(piece)
                expected.update(piece)
            else:
                digest.add_range(src, *piece)
                expected.update(data[piece[0] : piece[0] + piece[1]])
        assert digest.hexdigest() == expected.hexdigest()


def test_hash_range_windows_cover_unaligned_ranges(tmp_path, monkeypatch):
    """Ranges longer than the map window, starting off the mapping granularity."""
    monkeypatch.setattr(output_hash, "_WINDOW", 65536)
    data = bytes((i * 7) % 251 for i in range(300_000))
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    got = hashlib.sha256()
    hash_range(got, src, 4097, 250_001)
    assert got.hexdigest() == hashlib.sha256(data[4097 : 4097 + 250_001]).hexdigest()


def test_hash_range_refuses_a_range_past_the_end(tmp_path):
    src = tmp_path / "short.bin"
    src.write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="shorter"):
        hash_range(hashlib.sha256(), src, 50, 51)
