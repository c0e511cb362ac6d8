"""The child process that unpickles statically scanned torch files (engine.source.pickle_load
starts it; nothing else runs this file).

Run as `python -I pickle_child.py MEMORY_BYTES CPU_SECONDS OUTPUT_BYTES SRC DST [SRC DST ...]`
with an environment holding no Hub token; it sets those limits on itself before it imports torch
or opens any SRC. One child loads every pickle of a source in turn (torch's import, most of a
small file's load time, is paid once), each unmapped before the next is mapped. It imports only
torch and the standard library (not the project: a file run with `-I` sees neither the working
directory nor user site-packages), loads each SRC with torch's `weights_only=True` unpickler and
`mmap=True` (storages stay in the page cache, never copied into the heap), checks that the
result is a flat mapping of names to tensors (a Lightning-style `{"state_dict": {...}}` is
unwrapped), and streams the tensors into a safetensors file at DST, one tensor at a time (copied
in the kernel from where it lies in SRC when that is shown, else written from the mapping). Its
only output is one JSON line per file on stdout.
"""

import json
import os
import resource
import struct
import sys
import time
import zipfile


def _limit(argv):
    memory, cpu, output = (int(a) for a in argv[1:4])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


if __name__ == "__main__":
    _limit(sys.argv)

import torch  # noqa: E402 (after the limits)

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_MAX_TENSORS = 100_000


def _state_dict(obj):
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"holds a {type(obj).__name__}, not a state dict")
    if len(obj) > _MAX_TENSORS:
        raise ValueError(f"holds {len(obj)} entries, more than any UNet state dict")
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ValueError(f"a key of type {type(name).__name__}, not a tensor name")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name!r} is a {type(value).__name__}, not a tensor")
        if value.dtype not in _DTYPES:
            raise ValueError(f"{name!r} has dtype {value.dtype}, not a weight dtype")
        out[name] = value
    return out


def _file_offsets(src, tensors):
    """name -> where a contiguous tensor's bytes lie in SRC, or {} when that cannot be shown.

    `mmap=True` maps SRC once and every storage is a slice of that mapping, so a storage's
    address minus the mapping's base is its place in the file; the base comes from the archive's
    first data entry (the static scan proved every entry is referenced). Each offset is checked
    against the tensor's own first and last bytes before it is used."""
    starts = []
    with zipfile.ZipFile(src) as archive, open(src, "rb") as f:
        for info in archive.infolist():
            if "/data/" in info.filename:
                f.seek(info.header_offset)
                name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])
                starts.append(info.header_offset + 30 + name_len + extra_len)
        if not starts or not tensors:
            return {}
        base = min(t.untyped_storage().data_ptr() for t in tensors.values()) - min(starts)
        size = os.fstat(f.fileno()).st_size
        out = {}
        for name, t in tensors.items():
            n = t.numel() * t.element_size()
            if not t.is_contiguous() or not n:
                continue
            at = t.untyped_storage().data_ptr() - base + t.storage_offset() * t.element_size()
            if at < 0 or at + n > size:
                return {}
            flat = t.reshape(-1).view(torch.uint8)
            probe = min(n, 64)
            for start in (0, n - probe):
                f.seek(at + start)
                if f.read(probe) != bytes(flat[start : start + probe].numpy()):
                    return {}
            out[name] = at
        return out


def _copy(src_fd, dst_fd, at, n):
    """n bytes of SRC from `at` to DST's position, in the kernel (copy_file_range)."""
    while n:
        done = os.copy_file_range(src_fd, dst_fd, n, at)
        if done <= 0:
            raise OSError("copy_file_range made no progress")
        at, n = at + done, n - done


def _write_all(f, data):
    """Every byte or an error (an unbuffered write may be short, e.g. at the output limit)."""
    while len(data):
        done = f.write(data)
        if not done:
            raise OSError("a write made no progress (output size limit)")
        data = data[done:]


def _write(tensors, dst, offsets, src):
    """A safetensors file, tensors in name order: each copied in the kernel from where it lies
    in SRC (`offsets`), or else written from its own (mmapped) bytes."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(dst, "wb", buffering=0) as f, open(src, "rb", buffering=0) as s:
        _write_all(f, memoryview(len(raw).to_bytes(8, "little") + raw))
        for name in sorted(tensors):
            t = tensors[name]
            n = t.numel() * t.element_size()
            if name in offsets:
                start = f.tell()
                try:
                    _copy(s.fileno(), f.fileno(), offsets[name], n)
                    continue
                except OSError:  # a filesystem without it: write the bytes instead
                    f.seek(start)
            flat = t.contiguous().reshape(-1)
            if flat.numel():
                _write_all(f, memoryview(flat.view(torch.uint8).numpy()))
    return offset


def _one(src, dst):
    started = time.perf_counter()
    obj = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    tensors = _state_dict(obj)
    data_bytes = _write(tensors, dst, _file_offsets(src, tensors), src)
    count = len(tensors)
    del obj, tensors  # unmaps SRC before the next file is mapped
    return {"tensors": count, "data_bytes": data_bytes,
            "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip


def main(argv):
    torch.set_num_threads(1)
    pairs = argv[4:]
    for src, dst in zip(pairs[0::2], pairs[1::2], strict=True):
        try:
            report = _one(src, dst)
        except Exception as exc:  # reported to the parent as one line, never a traceback
            print(json.dumps({"src": src, "error": f"{type(exc).__name__}: {exc}"[:2000]}))
            sys.exit(3)
        print(json.dumps({"src": src, **report}), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception as exc:  # reported to the parent as one line, never a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}))
        sys.exit(3)
