"""Proofs for files that must hold the source's bytes: no torch copies, no forward passes.

An original-format file, or an F16 GGUF of an F16 source, stores every tensor in the source's
own encoding, so the strongest proof is also the cheapest: each tensor's bytes in the file equal
the source tensor's bytes, read side by side in chunks (the kernel's page cache holds both right
after conversion; ~1 MB of buffers here). Equal bytes give equal outputs, so such artifacts need
neither the fp32 reference nor a forward pass; what remains is the consumer's own load
(`loaded_differences`): diffusers must put every file tensor into the right parameter, in the
source's precision, with nothing left on `meta`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.formats.safetensors_io import read_tensor_bytes
from engine.source.folder import Component

_CHUNK = 1 << 20  # bytes compared per read: large enough for disk speed, small in memory


@dataclass(frozen=True)
class Stored:
    """Where a tensor's bytes sit in the file under test."""

    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute file offset
    nbytes: int


@dataclass(frozen=True)
class Expected:
    """A source tensor the file must hold byte for byte, under its original-format name."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path  # source file
    offset: int  # absolute offset in the source file
    nbytes: int


def expected_from(tensors: Iterable[Any]) -> list[Expected]:
    """`Expected` entries of `engine.writers.original.original_tensors` output (OutputTensor)."""
    return [
        Expected(
            t.name,
            t.spec.dtype,
            tuple(t.shape),
            t.source.path,
            t.source_offset,
            t.spec.nbytes,
        )
        for t in tensors
    ]


def same_bytes_on_disk(a: Path, a_offset: int, b: Path, b_offset: int, nbytes: int) -> bool:
    """Whether two byte ranges of two files are equal, read in chunks (memcmp per chunk)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(a_offset)
        fb.seek(b_offset)
        remaining = nbytes
        while remaining:
            n = min(remaining, _CHUNK)
            left, right = fa.read(n), fb.read(n)
            if len(left) != n or left != right:
                return False
            remaining -= n
    return True


def byte_differences(
    path: Path, stored: Mapping[str, Stored], expected: list[Expected]
) -> Iterator[str]:
    """Every way the file at `path` (its tensors `stored`) is not the `expected` tensors."""
    names = {e.name for e in expected}
    missing = [e.name for e in expected if e.name not in stored]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        yield f"{missing[0]} is missing{more}"
    extra = sorted(set(stored) - names)
    if extra:
        yield f"unexpected tensors: {extra[:5]}"
    for e in expected:
        s = stored.get(e.name)
        if s is None:
            continue
        if (s.dtype, tuple(s.shape)) != (e.dtype, e.shape):
            yield f"{e.name}: {s.dtype}{list(s.shape)}, the source has {e.dtype}{list(e.shape)}"
        elif s.nbytes != e.nbytes or not same_bytes_on_disk(
            path, s.offset, e.path, e.offset, e.nbytes
        ):
            yield f"{e.name} differs from the source"


def same_bytes(a: Any, b: Any) -> bool:
    """Whether two buffers (bytes, NumPy arrays) hold the same bytes, compared in place.

    A byte compare, not `==` on floats: NaN payloads and signed zeros count too. 8-byte words
    when the length allows (memoryview's own `==` unpacks item by item: ~20x slower)."""
    a = np.frombuffer(np.ascontiguousarray(a).reshape(-1).view(np.uint8), np.uint8)
    b = np.frombuffer(np.ascontiguousarray(b).reshape(-1).view(np.uint8), np.uint8)
    if a.nbytes != b.nbytes:
        return False
    word = np.uint64 if a.nbytes % 8 == 0 else np.uint8
    return bool(np.array_equal(a.view(word), b.view(word)))


def tensor_bytes(tensor: Any) -> np.ndarray:
    """The bytes of a CPU torch tensor as a NumPy uint8 view (no copy when contiguous)."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy()


@dataclass(frozen=True)
class FileMapping:
    """One memory mapping of a file in this process (a line of /proc/self/maps)."""

    start: int
    end: int
    offset: int  # file offset mapped at `start`


def file_mappings(path: Path) -> list[FileMapping]:
    """This process's mappings of `path` (Linux /proc/self/maps; [] where there is none)."""
    path = Path(path)
    try:
        inode = path.stat().st_ino
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    real = str(path.resolve())
    found = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == real and int(parts[4]) == inode:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            found.append(FileMapping(start, end, int(parts[2], 16)))
    return found


def mapped_file_offset(tensor: Any, mappings: list[FileMapping]) -> int | None:
    """The file offset whose bytes `tensor` views, if it lies in one of `mappings`."""
    if not tensor.is_contiguous():
        return None
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    for m in mappings:
        if m.start <= start and end <= m.end:
            return m.offset + start - m.start
    return None


def loaded_differences(
    loaded: Mapping[str, Any],
    component: Component,
    file_offsets: tuple[Path, Mapping[str, int]] | None = None,
) -> Iterator[str]:
    """How a model's state dict `loaded` (diffusers names) differs from `component`'s tensors:
    each must exist with the source dtype, shape and bytes; nothing extra, nothing on meta.

    `file_offsets` = (file, diffusers name -> absolute offset of that tensor's bytes in the
    file), for a file whose bytes were already proven equal to the source: a parameter that
    views exactly those file bytes (diffusers' loader memory-maps safetensors files, so the
    page tables say which file and offset a parameter's memory is) is proven without reading
    it. Reading it would fault every page of the file into this process (1.7 GB of RSS at full
    size); parameters held anywhere else are compared byte for byte."""
    import torch

    from engine.source.component_check import canonical_name

    path, offsets = file_offsets or (None, {})
    mappings = file_mappings(path) if path is not None else []
    seen = set()
    for header, spec in component.tensors():
        # the loaded model names tensors as current diffusers does (legacy VAE attention names)
        name = canonical_name(component.name, spec.name)
        seen.add(name)
        got = loaded.get(name)
        if got is None:
            yield f"{name} is missing"
            continue
        if got.device.type == "meta":
            yield f"{spec.name} was left on the meta device"
            continue
        want = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}.get(spec.dtype)
        if got.dtype != want or tuple(got.shape) != spec.shape:
            yield f"{spec.name} is {got.dtype}{list(got.shape)}, the source {spec.dtype}"
        elif spec.name in offsets and mapped_file_offset(got, mappings) == offsets[spec.name]:
            continue  # the file's own bytes, proven equal to the source's
        elif not same_bytes(tensor_bytes(got), read_tensor_bytes(header, spec)):
            yield f"{spec.name} differs from the source"
    extra = sorted(set(loaded) - seen)
    if extra:
        yield f"unexpected tensors: {extra[:5]}"
