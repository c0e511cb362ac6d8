"""Static scan of a torch pickle file, before anything unpickles it (layer 2 of the pickle path;
engine.source.pickle_source runs the layers in order).

Nothing here executes the pickle. Two checks, both from the bytes alone:

* **Imports**: the globals the pickle stream would import, listed by picklescan (the scanner the
  Hub itself runs on every pickle it stores; a maintained opcode disassembler with memo and
  `STACK_GLOBAL` handling, no dependencies). Only the globals a plain state dict needs are
  accepted (`ALLOWED_GLOBALS`); anything else, including what picklescan calls innocuous, is
  refused with its name. A stream picklescan cannot parse is refused too.
* **Archive**: torch >= 1.6 writes a zip (`{prefix}/data.pkl` plus one stored entry per storage
  under `{prefix}/data/`). Every entry name must sit under the one prefix with no `..`, absolute
  path, backslash or control character; entries must be stored uncompressed and lie inside the
  file (a truncated archive fails here); the storages the pickle references (its persistent ids,
  read with the standard library's `pickletools.genops`, which only decodes opcodes) must be
  exactly the archive's data entries, and each one's declared element count times its dtype's
  size must equal its entry's size (a storage "claiming a terabyte" is refused before torch
  could allocate it). Files in the pre-1.6 raw pickle format are refused (their storages have
  no archive to check against); their imports are still reported.

Each refusal is `PickleRefused` (exit 2) naming the file and the reason.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from engine.errors import PickleRefused

SCANNER = f"picklescan {version('picklescan')}"
# The globals a torch state dict pickle needs (torch.save of a dict of tensors, any torch
# version since 1.6), and nothing else: no callables beyond torch's tensor rebuilders.
_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "UntypedStorage": 1,
}
ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("_codecs", "encode"),
        *(("torch", name) for name in _STORAGE_ITEMSIZE),
        *(
            ("torch", dt)
            for dt in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8")
        ),
    }
)
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # data.pkl of an SD1.5 UNet is ~100 KB
MAX_ENTRIES = 100_000
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_BAD_NAME = re.compile(r"[\x00-\x1f\\]")
_MARK_CONSUMERS = {"LIST", "DICT", "SETITEMS", "APPENDS", "FROZENSET", "ADDITEMS", "OBJ", "INST",
                   "POP_MARK"}  # fmt: skip
_SIDE_FILES = {"version", ".data/version", "byteorder", ".data/serialization_id", ".format_version",
               ".storage_alignment"}  # fmt: skip


@dataclass(frozen=True)
class PickleScan:
    """What the static scan found in one file that passed it."""

    path: str
    scanner: str
    globals: tuple[str, ...]  # "module.name", sorted
    storages: int
    storage_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "scanner": self.scanner,
            "globals": list(self.globals),
            "storages": self.storages,
            "storage_bytes": self.storage_bytes,
        }


def _refuse(path: Path, why: str) -> PickleRefused:
    return PickleRefused(f"{path}: {why}; refused before unpickling (nothing of it ran)")


def scan_imports(data: bytes, path: Path) -> tuple[str, ...]:
    """The pickle's imports through picklescan; refuses any outside `ALLOWED_GLOBALS`."""
    from picklescan.scanner import scan_pickle_bytes

    result = scan_pickle_bytes(io.BytesIO(data), str(path))
    if result.scan_err:
        raise _refuse(path, f"{SCANNER} could not parse its pickle stream")
    found = {(g.module, g.name): g.safety.value for g in result.globals}
    bad = sorted(f"{m}.{n} ({s})" for (m, n), s in found.items() if (m, n) not in ALLOWED_GLOBALS)
    if bad:
        raise _refuse(path, f"imports {', '.join(bad)} (a state dict imports only torch tensor "
                            f"rebuilders and storages; scanned by {SCANNER})")  # fmt: skip
    return tuple(sorted(f"{m}.{n}" for m, n in found))


def _persistent_ids(data: bytes, path: Path) -> list[tuple]:
    """The persistent ids of the stream: the tuples torch's pickler wrote for its storages,
    ('storage', <storage class>, key, location, numel), decoded from opcodes only."""
    memo: dict[int, object] = {}
    stack: list[object] = []
    marks: list[int] = []
    out: list[tuple] = []
    try:
        ops = list(pickletools.genops(data))
    except Exception as exc:
        raise _refuse(path, f"malformed pickle stream ({exc})") from exc
    for i, (op, arg, _) in enumerate(ops):
        name = op.name
        if name == "PERSID":
            raise _refuse(path, "a text persistent id (protocol 0), which torch never writes")
        if name in ("MARK",):
            marks.append(len(stack))
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BINSTRING",
                      "SHORT_BINSTRING", "STRING", "BININT", "BININT1", "BININT2", "LONG1",
                      "LONG", "INT", "LONG4"):  # fmt: skip
            stack.append(arg)
        elif name == "GLOBAL":
            stack.append(("global", arg))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT") and i > 0:
            memo[int(arg)] = stack[-1] if stack else None
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(int(arg)))
        elif name == "STACK_GLOBAL" and len(stack) >= 2:
            qualname, module = stack.pop(), stack.pop()
            stack.append(("global", f"{module} {qualname}"))
        elif name == "TUPLE" and marks:
            start = marks.pop()
            items = tuple(stack[start:])
            del stack[start:]
            stack.append(items)
        elif name in _MARK_CONSUMERS and marks:
            del stack[marks.pop() :]
            stack.append(None)
        elif name == "BINPERSID":
            pid = stack.pop() if stack else None
            if not isinstance(pid, tuple):
                raise _refuse(path, "a persistent id that is not a storage record")
            out.append(pid)
            stack.append(None)
        else:
            stack.append(None)  # any other value: only its stack slot matters here
    return out


def _storages(pids: list[tuple], path: Path) -> dict[str, int]:
    """key -> declared byte size of every storage the pickle references."""
    out: dict[str, int] = {}
    for pid in pids:
        if len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], tuple):
            raise _refuse(path, f"a persistent id that is not a torch storage record: {pid!r:.80}")
        module, _, cls = str(pid[1][1]).partition(" ")
        key, numel = pid[2], pid[4]
        if module != "torch" or cls not in _STORAGE_ITEMSIZE:
            raise _refuse(path, f"storage class {module}.{cls} is not a torch storage")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise _refuse(path, f"storage key {key!r:.40} is not a plain name")
        if not isinstance(numel, int) or numel < 0:
            raise _refuse(path, f"storage {key} declares {numel!r:.40} elements")
        size = numel * _STORAGE_ITEMSIZE[cls]
        if out.setdefault(key, size) != size:
            raise _refuse(path, f"storage {key} is declared with two sizes")
    return out


def _check_names(path: Path, infos: list[zipfile.ZipInfo], archive_bytes: int) -> str:
    """The archive's one prefix, after checking every entry's name, method and extent."""
    if not infos:
        raise _refuse(path, "an empty archive")
    if len(infos) > MAX_ENTRIES:
        raise _refuse(path, f"{len(infos)} archive entries")
    prefix = infos[0].filename.split("/", 1)[0]
    if not _PREFIX.fullmatch(prefix) or prefix in (".", ".."):
        raise _refuse(path, f"archive prefix {prefix!r:.60} is not a plain name")
    total = 0
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if (
            name.startswith("/")
            or _BAD_NAME.search(name)
            or any(p in ("", ".", "..") for p in parts)
            or parts[0] != prefix
        ):
            raise _refuse(path, f"archive entry {name!r:.120} escapes the archive's folder")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _refuse(path, f"archive entry {name!r:.120} is compressed (torch stores)")
        total += info.file_size
        if info.header_offset + info.file_size > archive_bytes or total > archive_bytes:
            raise _refuse(path, f"archive entry {name!r:.120} lies beyond the end of the file")
    return prefix


def scan_pickle_file(path: Path) -> PickleScan:
    """Statically scan one torch file; a `PickleScan` when it may be unpickled, else
    `PickleRefused` naming the problem."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            f.seek(0)
            head = f.read(MAX_PICKLE_BYTES)
            scan_imports(head, path)  # names a hostile import, if there is one
            raise _refuse(path, "not a torch zip archive (a raw pickle stream, the pre-1.6 "
                                "format, or a truncated file)")  # fmt: skip
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            prefix = _check_names(path, infos, size)
            by_name = {i.filename: i for i in infos}
            pkl = by_name.get(f"{prefix}/data.pkl")
            if pkl is None:
                raise _refuse(path, f"no {prefix}/data.pkl in the archive")
            if pkl.file_size > MAX_PICKLE_BYTES:
                raise _refuse(path, f"data.pkl of {pkl.file_size} bytes")
            data = archive.read(pkl)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(path, f"unreadable archive ({exc})") from exc
    imports = scan_imports(data, path)
    storages = _storages(_persistent_ids(data, path), path)
    entries = {
        name[len(prefix) + 6 :]: info
        for name, info in by_name.items()
        if name.startswith(f"{prefix}/data/")
    }
    others = {n[len(prefix) + 1 :] for n in by_name if not n.startswith(f"{prefix}/data/")}
    stray = sorted(others - _SIDE_FILES - {"data.pkl"})
    if stray:
        raise _refuse(path, f"unexpected archive entries {stray[:3]}")
    if set(entries) != set(storages):
        missing = sorted(set(storages) - set(entries))[:3]
        extra = sorted(set(entries) - set(storages))[:3]
        raise _refuse(path, f"storage records and archive entries differ (referenced but "
                            f"absent: {missing}; present but unreferenced: {extra})")  # fmt: skip
    for key, declared in storages.items():
        actual = entries[key].file_size
        if declared != actual:
            raise _refuse(path, f"storage {key} declares {declared} bytes but its archive "
                                f"entry holds {actual}")  # fmt: skip
    return PickleScan(str(path), SCANNER, imports, len(storages), sum(storages.values()))
