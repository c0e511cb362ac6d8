"""Read and write safetensors files by header and byte range, without materialising tensors.

Written by hand (not `safetensors.safe_open`) because conversion must rename tensors and copy
their bytes at disk speed without importing torch or holding tensors in RAM, and because every
header from the Hub is untrusted: it is validated here (length, JSON, dtypes, shape x dtype =
byte span, offsets in bounds, no overlaps and no gaps) before any byte is trusted. The layout
follows the safetensors spec: 8-byte little-endian header length, JSON header, data section.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import BadSafetensorsHeader, MissingFile, TruncatedFile
from engine.formats.config_json import MAX_INDEX_BYTES, MAX_INDEX_DEPTH, parse_json, read_json_file
from engine.formats.fsio import atomic_output, copy_range
from engine.formats.output_hash import OutputHash, SourceStamps, sha256_file

# Bytes per element of every safetensors dtype.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}
FLOAT_DTYPES = ("F16", "BF16", "F32")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
# The format nests {name: {"shape": [...]}}: three levels. Deeper is not a safetensors header.
MAX_HEADER_DEPTH = 3
# No tensor of an SD1.5 UNet, VAE or CLIP text encoder (nor any file unetbot writes) has more
# than 4 dims (conv weights); more is not one of these models and is refused before any use.
MAX_DIMS = 4
# Dims and byte offsets must fit the int64 that torch, NumPy and the safetensors library use.
MAX_DIM = 2**63
# The longest name unetbot reads or writes is ~90 characters (prefixed original names).
MAX_NAME_CHARS = 512
_FLUSH_EVERY = 256 * 1024 * 1024  # start writeback after each such slice
# A copied range that starts at another offset in the output than in its source, modulo the page
# cache's folio sizes, was ~20 % slower to copy and write back (a 1.7 GB UNet, copy_file_range +
# fsync, paired medians against `cp` + `sync` over 7 rounds: 1.26-1.35x at unmatched offsets,
# 1.05-1.18x where the output offset equals the source's modulo 16 KiB or more; likely because
# each output folio is then filled from two source folios). So the header is padded (spaces, as
# the safetensors library pads; JSON parsers skip them, stable-diffusion.cpp's nlohmann::json
# included) to start the first copied range at the same offset modulo `_COPY_ALIGN` as in its
# source: at most 64 KiB more header.
_COPY_ALIGN = 64 * 1024


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a safetensors file: where its bytes are, not the bytes themselves."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset in the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: tensors in data-offset order, metadata, and where data begins."""

    path: Path
    tensors: tuple[TensorSpec, ...]
    metadata: dict[str, str]
    data_start: int  # absolute file offset of the data section
    data_bytes: int

    def by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.tensors}


def read_header(path: Path) -> SafetensorsHeader:
    """Parse and validate the header of `path`; raise a typed error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{path}: file not found")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise TruncatedFile(f"{path}: {file_size} bytes, too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len == 0 or header_len > MAX_HEADER_BYTES:
            raise BadSafetensorsHeader(f"{path}: header length {header_len} is not plausible")
        if 8 + header_len > file_size:
            raise TruncatedFile(
                f"{path}: header claims {header_len} bytes but the file has {file_size}"
            )
        raw = f.read(header_len)
    header = parse_json(raw, f"{path}: header", MAX_HEADER_DEPTH, BadSafetensorsHeader)
    if not isinstance(header, dict):
        raise BadSafetensorsHeader(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise BadSafetensorsHeader(f"{path}: __metadata__ must map strings to strings")
    data_start = 8 + header_len
    tensors = sorted(
        (_tensor_spec(path, name, entry) for name, entry in header.items()),
        key=lambda t: (t.start, t.end),
    )
    expected = 0
    for t in tensors:
        if t.start != expected:
            kind = "overlaps the previous tensor" if t.start < expected else "leaves a gap"
            raise BadSafetensorsHeader(f"{path}: tensor {t.name!r} {kind} (offset {t.start})")
        expected = t.end
    data_bytes = file_size - data_start
    if expected > data_bytes:
        raise TruncatedFile(
            f"{path}: tensors need {expected} data bytes but the file holds {data_bytes}"
        )
    if expected < data_bytes:
        raise BadSafetensorsHeader(f"{path}: {data_bytes - expected} trailing bytes after data")
    return SafetensorsHeader(path, tuple(tensors), dict(metadata), data_start, data_bytes)


def check_tensor_name(path: Path, name: str) -> None:
    """Names end up in output headers, GGUF strings, logs and cards: printable and short.

    A NUL or other control character would otherwise be copied into the original file and only
    fail later in the GGUF writer (or worse, in a consumer)."""
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise BadSafetensorsHeader(
            f"{path}: tensor name {shown!r} is empty, longer than {MAX_NAME_CHARS} characters "
            "or holds non-printable characters"
        )


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _tensor_spec(path: Path, name: str, entry: object) -> TensorSpec:
    check_tensor_name(path, name)
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise BadSafetensorsHeader(f"{path}: tensor {name!r} needs dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise BadSafetensorsHeader(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d, 0, MAX_DIM) for d in shape):
        raise BadSafetensorsHeader(
            f"{path}: tensor {name!r} has invalid shape {shape!r} (dims must be in [0, 2**63))"
        )
    if len(shape) > MAX_DIMS:
        raise BadSafetensorsHeader(
            f"{path}: tensor {name!r} has {len(shape)} dims; no tensor of these models has "
            f"more than {MAX_DIMS}"
        )
    if math.prod(shape) * DTYPE_SIZES[dtype] >= MAX_DIM:
        raise BadSafetensorsHeader(f"{path}: tensor {name!r} of shape {shape} is too large")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o, 0, MAX_DIM) for o in offsets)
        or not offsets[0] <= offsets[1]
    ):
        raise BadSafetensorsHeader(f"{path}: tensor {name!r} has invalid offsets {offsets!r}")
    span = offsets[1] - offsets[0]
    if span != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise BadSafetensorsHeader(
            f"{path}: tensor {name!r} spans {span} bytes but {dtype}{shape} needs "
            f"{math.prod(shape) * DTYPE_SIZES[dtype]}"
        )
    return TensorSpec(name, dtype, tuple(shape), offsets[0], offsets[1])


def read_weight_map(index_path: Path) -> dict[str, str]:
    """tensor name -> shard file name of a shard index (`*.safetensors.index*.json`), checked:
    size-capped, depth-limited, names printable, shard names plain file names of this folder."""
    index = read_json_file(index_path, MAX_INDEX_BYTES, MAX_INDEX_DEPTH, BadSafetensorsHeader)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadSafetensorsHeader(f"{index_path}: not a shard index (no weight_map object)")
    for name, shard in weight_map.items():
        check_tensor_name(Path(index_path), name)
        if (
            not isinstance(shard, str)
            or not shard.endswith(".safetensors")
            or "/" in shard
            or "\\" in shard
            or shard.startswith(".")
            or not shard.isprintable()
        ):
            raise BadSafetensorsHeader(f"{index_path}: invalid shard name {shard!r} for {name!r}")
    return weight_map


def read_index(index_path: Path) -> list[Path]:
    """Shard files of a shard index, in the order they first appear."""
    shards = dict.fromkeys(read_weight_map(index_path).values())
    return [Path(index_path).parent / s for s in shards]


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class OutputTensor:
    """A tensor to write: its new name/shape/dtype and where its source bytes are."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    source: SafetensorsHeader
    spec: TensorSpec

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]

    @property
    def source_offset(self) -> int:
        """Absolute offset of the source bytes in their file."""
        return self.source.data_start + self.spec.start


def encode_header(
    tensors: Sequence[OutputTensor], metadata: dict[str, str], data_offset: int = 0
) -> bytes:
    """Header bytes (length prefix included), padded with spaces to 8-byte alignment and, when
    `data_offset` is a multiple of 8, until the data section starts at `data_offset` modulo
    `_COPY_ALIGN` (see there)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if data_offset % 8 == 0:
        raw += b" " * ((data_offset - 8 - len(raw)) % _COPY_ALIGN)
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(
    out_path: Path, tensors: Sequence[OutputTensor], metadata: dict[str, str]
) -> str:
    """Write `tensors` to `out_path` atomically, copying bytes range by range; return the file's
    sha256.

    Consecutive tensors whose source bytes are contiguous and unchanged are copied as one range,
    so a rename-only conversion is a single `copy_file_range` of the whole data section. The
    sha256 is computed on a second thread from the header and the source ranges while the
    kernel copies them (engine.formats.output_hash says why and how it stays the file's own hash).
    """
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{out_path}: tensor name {dup!r} would be written twice")
    stamps = SourceStamps.of(t.source.path for t in tensors)
    runs = _contiguous_runs(tensors)
    with OutputHash() as digest:
        with atomic_output(out_path) as tmp, open(tmp, "wb") as dst:
            header = encode_header(tensors, metadata, runs[0][0].source_offset if runs else 0)
            digest.add(header)
            dst.write(header)
            dst.flush()
            for run in runs:
                first = run[0]
                if first.dtype == first.spec.dtype:
                    start = first.source_offset
                    length = sum(t.spec.nbytes for t in run)
                    digest.add_range(first.source.path, start, length)
                    _copy_range(first.source.path, start, length, dst)
                else:
                    from engine.formats.float_casts import cast_bytes  # NumPy: only when casting

                    for t in run:
                        raw = read_tensor_bytes(t.source, t.spec)
                        data = cast_bytes(raw, t.spec.dtype, t.dtype)
                        digest.add(data)
                        dst.write(data)
            dst.flush()
        streamed = digest.hexdigest()
    return streamed if streamed and stamps.unchanged() else sha256_file(out_path)


def _contiguous_runs(tensors: Sequence[OutputTensor]) -> list[list[OutputTensor]]:
    runs: list[list[OutputTensor]] = []
    for t in tensors:
        prev = runs[-1][-1] if runs else None
        same_file = prev is not None and prev.source.path == t.source.path
        if (
            same_file
            and prev.spec.end == t.spec.start
            and prev.dtype == prev.spec.dtype
            and t.dtype == t.spec.dtype
        ):
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


class _BackgroundFlush:
    """Start writeback of what is already copied while the copy goes on.

    The durability fsync at the end then waits only for the tail instead of the whole file: the
    same overlap gguf_writer uses. One `fdatasync` runs at a time, in a daemon thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.thread: threading.Thread | None = None

    def poke(self, _copied: int = 0) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._sync, daemon=True)
            self.thread.start()

    def _sync(self) -> None:
        with contextlib.suppress(OSError):  # the final fsync reports real errors
            os.fdatasync(self.fd)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


def _copy_range(src_path: Path, offset: int, length: int, dst) -> None:
    """Append a byte range of `src_path` to the open file `dst`, starting writeback as it goes."""
    flush = _BackgroundFlush(dst.fileno())
    try:
        copy_range(src_path, offset, length, dst.fileno(), _FLUSH_EVERY, flush.poke)
    finally:
        flush.join()
    dst.seek(0, os.SEEK_END)  # the copy moved the descriptor; keep the file object in step


def read_tensor_bytes(header: SafetensorsHeader, spec: TensorSpec) -> bytes:
    with open(header.path, "rb") as f:
        f.seek(header.data_start + spec.start)
        data = f.read(spec.nbytes)
    if len(data) != spec.nbytes:
        raise TruncatedFile(f"{header.path}: tensor {spec.name!r} is cut short")
    return data


def output_tensor(
    header: SafetensorsHeader,
    spec: TensorSpec,
    name: str,
    dtype: str | None = None,
    shape: tuple[int, ...] | None = None,
) -> OutputTensor:
    """Describe `spec` written under `name`, optionally cast (floats only) or reshaped."""
    new_dtype = spec.dtype if dtype is None or spec.dtype not in FLOAT_DTYPES else dtype
    new_shape = spec.shape if shape is None else shape
    if math.prod(new_shape) != math.prod(spec.shape):
        raise ValueError(f"{spec.name}: cannot reshape {spec.shape} to {new_shape}")
    return OutputTensor(name, new_dtype, new_shape, header, replace(spec))
