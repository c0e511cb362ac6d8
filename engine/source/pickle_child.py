"""The child process that unpickles one statically scanned torch file (engine.source.pickle_load
starts it; nothing else runs this file).

Run as `python -I pickle_child.py SRC DST MEMORY_BYTES CPU_SECONDS OUTPUT_BYTES` with an
environment holding no Hub token; it sets those limits on itself before it imports torch or opens
SRC. It imports only torch and the standard library (not
the project: a file run with `-I` sees neither the working directory nor user site-packages),
loads SRC with torch's `weights_only=True` unpickler and `mmap=True` (storages stay in the page
cache, never copied into the heap), checks that the result is a flat mapping of names to
tensors (a Lightning-style `{"state_dict": {...}}` is unwrapped), and streams the tensors into a
safetensors file at DST, one tensor at a time. Its only output is one JSON line on stdout.
"""

import json
import resource
import sys


def _limit(argv):
    memory, cpu, output = (int(a) for a in argv[3:6])
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


def _write(tensors, dst):
    """A safetensors file, tensors in name order, each written from its own (mmapped) bytes."""
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
    with open(dst, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in sorted(tensors):
            t = tensors[name].contiguous().reshape(-1)
            if t.numel():
                f.write(memoryview(t.view(torch.uint8).numpy()))
    return offset


def main(argv):
    src, dst = argv[1], argv[2]
    torch.set_num_threads(1)
    obj = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    tensors = _state_dict(obj)
    data_bytes = _write(tensors, dst)
    print(json.dumps({"tensors": len(tensors), "data_bytes": data_bytes}))


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception as exc:  # reported to the parent as one line, never a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]}))
        sys.exit(3)
