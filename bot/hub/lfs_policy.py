"""Which files the Hub stores through LFS, and the `.gitattributes` a new repo starts with.

The rule answered by `preupload` (and applied by bulk seeding, so both store a file the same
way): empty files are regular; files over 10 MiB, binary files (a NUL byte, or bytes that are
not UTF-8, in the first 512 bytes the client samples) and files matched by a `filter=lfs`
pattern of `.gitattributes` go through LFS; everything else is sent inline.
"""

from __future__ import annotations

import fnmatch
import functools
import re

REGULAR_MAX = 10 * 1024 * 1024  # the Hub sends bigger files through LFS
SAMPLE_SIZE = 512  # bytes of each file the client sends to preupload (huggingface_hub)

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gguf",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lfs.*",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "saved_model/**/*",
        "*.tar.*",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
)


def _looks_binary(sample: bytes) -> bool:
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(sample) - 4  # not just a character cut at the sample's end
    return False


@functools.lru_cache(maxsize=64)
def _lfs_patterns(gitattributes: str) -> tuple[tuple[re.Pattern[str], bool], ...]:
    """(compiled pattern, matches the whole path) per `filter=lfs` line, compiled once per
    distinct .gitattributes text."""
    out = []
    for line in gitattributes.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "filter=lfs" in parts[1:]:
            out.append((re.compile(fnmatch.translate(parts[0])), "/" in parts[0]))
    return tuple(out)


def tracked_by_lfs(path: str, gitattributes: str) -> bool:
    """True when a `filter=lfs` line of `.gitattributes` matches `path` (a pattern without a
    slash matches the file name too, as git's gitattributes matching does)."""
    name = path.rsplit("/", 1)[-1]
    return any(
        pattern.match(path) or (not whole_path and pattern.match(name))
        for pattern, whole_path in _lfs_patterns(gitattributes)
    )


def upload_mode(path: str, size: int, sample: bytes, gitattributes: str) -> str:
    """ "regular" or "lfs" for a file of `size` bytes starting with `sample`."""
    if size == 0:
        return "regular"
    if size > REGULAR_MAX or _looks_binary(sample[:SAMPLE_SIZE]):
        return "lfs"
    return "lfs" if tracked_by_lfs(path, gitattributes) else "regular"
