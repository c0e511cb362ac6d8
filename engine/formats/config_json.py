"""Untrusted JSON (config.json, model_index.json, shard indexes, safetensors headers), read safely.

Every small JSON file of a source comes from the Hub, so it is read with three limits the
standard library does not apply by itself:

* a size cap, checked before reading (a 100 MB config.json would otherwise be parsed and copied
  into manifest.json);
* a nesting-depth limit, checked by a linear scan before `json.loads` (CPython's parser recurses
  once per level: a header nested 200k levels deep raises RecursionError instead of a clean
  error, and legitimate files nest at most a few levels);
* duplicate keys refused (json.loads silently keeps the last one, so two readers of the same
  file could disagree about it).

Numbers too long for Python's int conversion (over 4300 digits) and NaN/Infinity are refused
too. Every failure is the caller's typed error naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from engine.errors import BadConfig, BadInput, MissingFile

# A diffusers config written by a current version (every key) is ~2.5 KB, a transformers
# CLIPConfig with both sub-configs ~6 KB, model_index.json ~1 KB: 64 KiB is 10x the largest.
MAX_CONFIG_BYTES = 64 * 1024
# diffusers/transformers configs nest at most 3 levels (object > list/object > value); 8 leaves
# room for quantization_config-style sub-objects.
MAX_CONFIG_DEPTH = 8
# A shard index lists every tensor once (~100 bytes each): 16 MiB is ~150k tensors, 100x SD1.5.
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_INDEX_DEPTH = 3  # {"metadata": {...}, "weight_map": {name: shard}}

# The depth scan works on the bytes that carry structure: escapes are removed first (so an
# escaped quote cannot end a string), then everything but quotes and brackets, then each quoted
# run (a string's own brackets); an unmatched quote leaves the rest inside a string. What is left
# is brackets only, summed as +1/-1 by `accumulate`. Each step runs in C (re, bytes.translate,
# map/accumulate/max): ~2 s for the worst case the size caps allow (16 MiB of brackets, only ever
# hostile; real headers and indexes hold a few brackets per tensor), without NumPy, whose import
# would cost every command ~0.15 s of start-up.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_QUOTED = re.compile(rb'"[^"]*"')
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def max_depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in `raw` (strings ignored); linear time, no recursion.

    Unbalanced or malformed input gives some number; json.loads then reports the syntax error."""
    kept = _QUOTED.sub(b"", _ESCAPE.sub(b"", raw).translate(None, _NOT_STRUCTURE))
    brackets = kept.partition(b'"')[0]
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def _no_duplicates(origin: str, error: type[BadInput]) -> Callable[[list], dict]:
    def hook(pairs: list) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise error(f"{origin}: key {key!r} appears twice")
            out[key] = value
        return out

    return hook


def _refuse_constant(origin: str, error: type[BadInput]) -> Callable[[str], float]:
    def hook(name: str) -> float:
        raise error(f"{origin}: {name} is not a JSON number")

    return hook


def parse_json(
    raw: bytes,
    origin: str,
    depth_limit: int = MAX_CONFIG_DEPTH,
    error: type[BadInput] = BadConfig,
) -> object:
    """Parse untrusted JSON bytes with the depth limit; `error` (naming `origin`) on any flaw."""
    depth = max_depth(raw)
    if depth > depth_limit:
        raise error(f"{origin}: JSON nested {depth} levels deep (at most {depth_limit} allowed)")
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates(origin, error),
            parse_constant=_refuse_constant(origin, error),
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # JSONDecodeError is a ValueError; so is "Exceeds the limit (4300 digits)".
        raise error(f"{origin}: not valid JSON ({exc})") from None


def read_json_file(
    path: Path,
    max_bytes: int = MAX_CONFIG_BYTES,
    depth_limit: int = MAX_CONFIG_DEPTH,
    error: type[BadInput] = BadConfig,
) -> object:
    """Read and parse a small JSON file, refusing it before reading if it exceeds `max_bytes`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{path}: file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size} bytes, more than the {max_bytes} a file of this kind can need")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:  # grew while we looked
        raise error(f"{path}: more than {max_bytes} bytes")
    return parse_json(raw, str(path), depth_limit, error)


def read_json_object(path: Path, max_bytes: int = MAX_CONFIG_BYTES) -> dict:
    """A config-like file: a JSON object within the config limits (BadConfig otherwise)."""
    value = read_json_file(path, max_bytes)
    if not isinstance(value, dict):
        raise BadConfig(f"{path}: must be a JSON object, not {type(value).__name__}")
    return value


def parse_json_object(raw: bytes, origin: str) -> dict:
    """As `read_json_object`, for bytes the caller already holds (e.g. downloaded by the bot)."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise BadConfig(f"{origin}: {len(raw)} bytes, more than the {MAX_CONFIG_BYTES} allowed")
    value = parse_json(raw, origin)
    if not isinstance(value, dict):
        raise BadConfig(f"{origin}: must be a JSON object, not {type(value).__name__}")
    return value
