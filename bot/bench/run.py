"""`bot bench REPO_OR_DIR`: what each variant costs on this machine, and which one to pick.

The same measurement as the reference figures in the cards (engine/cost/run.py: each variant in
a fresh process, in the consumer that loads it), run on the user's own machine for:

- an output folder of `bot convert` (its `manifest.json`), or
- a repo unetbot published: its `unetbot-manifest.json` says which file is which variant and
  carries the validation metrics; only the files of the variants measured are downloaded
  (huggingface_hub, at one resolved commit).

The recommendation (bot/bench/report.py) is the fastest option that fits `--max-ram` (default:
this machine's RAM), with its quality metrics beside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot.bench.report import BenchReport, BenchRow, quality_of, recommend
from bot.client.hub import Hub
from bot.progress import stage_bar
from engine.cost.model import DEFAULT_STEPS, LATENT, compile_applies, sdcpp_applies, settings
from engine.cost.run import machine_info, measure_folder, plan_measurements, sdcpp_installed
from engine.errors import BadInput, HubNotFound
from engine.formats.config_json import read_json_file
from engine.formats.manifest import MANIFEST_NAME, Artifact, Manifest
from engine.run.selection import parse_variant_names
from engine.run.variants import variant

PUBLISHED_MANIFEST = "unetbot-manifest.json"  # what bot/publish/commit.py uploads with every repo
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # ~2 KB per artifact: 2000x what a repo holds
MAX_MANIFEST_DEPTH = 10  # root > artifacts > artifact > validation > metrics > output > value
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_size(text: str) -> int:
    """'8GB', '8 GiB', '512MB', '8' (GB) -> bytes; BadInput naming the value otherwise."""
    match = _SIZE.match(text or "")
    if not match:
        raise BadInput(f"--max-ram {text!r}: give a size such as 8GB, 7.5GiB or 512MB")
    number, unit = float(match.group(1)), (match.group(2) or "g").lower()
    scale = _UNITS[unit[0]]
    if "i" in unit:
        scale = 1024 ** ("kmgt".index(unit[0]) + 1)
    return int(number * scale)


@dataclass(frozen=True)
class BenchRequest:
    target: str  # a folder with manifest.json, or a Hub repo id
    variants: str | None = None  # comma list; default: every artifact that did not fail
    steps: int = DEFAULT_STEPS
    compiled: bool = False  # also measure torch.compile where it applies (minutes per variant)
    max_ram_bytes: int | None = None  # default: this machine's RAM
    revision: str | None = None
    latent: int = LATENT


def choose_variants(manifest: Manifest, spec: str | None, origin: str) -> list[str]:
    """The variants to bench, in manifest order: those asked for (each must be there), or every
    artifact whose validation did not fail."""
    available = [a.variant for a in manifest.artifacts]
    if spec is None:
        chosen = [a.variant for a in manifest.artifacts if not _failed(a)]
        if not chosen:
            raise BadInput(f"{origin}: no artifact passed validation; nothing to bench")
        return chosen
    asked = parse_variant_names(spec)
    if "all" in asked:
        return available
    missing = [n for n in asked if n not in available]
    if missing:
        raise BadInput(f"{origin}: no {missing} here; available: {', '.join(available)}")
    return [n for n in available if n in asked]


def _failed(artifact: Artifact) -> bool:
    return artifact.validation is not None and not artifact.passed


def _safe_relative(path: str, origin: str) -> str:
    """A manifest path as a repo path: relative, no `..` (a manifest cannot point elsewhere)."""
    parts = PurePosixPath(path).parts
    if not path or PurePosixPath(path).is_absolute() or ".." in parts:
        raise BadInput(f"{origin}: artifact path {path!r} is not a plain relative path")
    return path


def manifest_from_json(path: Path, origin: str) -> Manifest:
    """A published manifest (untrusted: size- and depth-capped, every variant known)."""
    raw = read_json_file(path, MAX_MANIFEST_BYTES, MAX_MANIFEST_DEPTH, BadInput)
    try:
        assert isinstance(raw, dict)
        manifest = Manifest(
            source=dict(raw["source"]),
            artifacts=[Artifact.from_dict(a) for a in raw["artifacts"]],
            schema_version=raw["schema_version"],
        )
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{origin}: not a unetbot manifest ({type(exc).__name__}: {exc})") from None
    for a in manifest.artifacts:
        variant(a.variant)  # BadInput for a name this unetbot does not know
        for f in [a.path, *(e.path for e in a.files)]:
            _safe_relative(f, origin)
    return manifest


def open_folder(folder: Path) -> Manifest:
    if not (folder / MANIFEST_NAME).is_file():
        raise BadInput(
            f"{folder}: no {MANIFEST_NAME}; `bot bench` reads a `bot convert` output folder "
            "or a repo published by unetbot"
        )
    return Manifest.load(folder)


def fetch_published(hub: Hub, repo_id: str, revision: str | None, spec: str | None):
    """Download a published repo's manifest, then only the files of the variants measured.

    Returns (snapshot folder, manifest, chosen variant names, source description)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    info = hub.call(f"read {repo_id}", hub.api.model_info, repo_id, revision=revision)
    commit = info.sha
    common = {
        "revision": commit,
        "endpoint": hub.settings.endpoint,
        "token": hub.settings.token,
        "cache_dir": hub.settings.cache_dir,
    }
    origin = f"{repo_id}/{PUBLISHED_MANIFEST}"
    try:
        path = hub.call(
            f"download {origin}", hf_hub_download, repo_id, PUBLISHED_MANIFEST, **common
        )
    except HubNotFound:
        raise BadInput(
            f"{repo_id}: no {PUBLISHED_MANIFEST}: not a repo published by unetbot; "
            "`bot bench` reads unetbot's repos or a `bot convert` output folder"
        ) from None
    manifest = manifest_from_json(Path(path), origin)
    names = choose_variants(manifest, spec, repo_id)
    wanted = [a for a in manifest.artifacts if a.variant in names and plan_measurements(a, False)]
    patterns = [f.path for a in wanted for f in (a.files or [])] + [a.path for a in wanted]
    folder = Path(path).parent
    if patterns:
        snapshot = hub.call(
            f"download {repo_id}",
            snapshot_download,
            repo_id,
            allow_patterns=sorted(set(patterns)),
            **common,
        )
        folder = Path(snapshot)
    return folder, manifest, names, {"repo": repo_id, "revision": commit}


def run_bench(request: BenchRequest, hub_factory: Callable[[], Hub] | None = None) -> BenchReport:
    """Open the target (a folder, else a Hub repo id fetched with `hub_factory()`), measure
    the chosen variants, and recommend one."""
    import psutil

    folder = Path(request.target)
    if not folder.is_dir() and request.target.startswith((".", "/", "~")):
        raise BadInput(f"{request.target}: no such folder")
    if folder.is_dir():
        manifest = open_folder(folder)
        names = choose_variants(manifest, request.variants, str(folder))
        source = {k: str(manifest.source.get(k) or "") for k in ("repo", "revision")}
    else:
        if hub_factory is None:
            raise BadInput(f"{request.target}: not a folder, and no Hub client to fetch it with")
        folder, manifest, names, source = fetch_published(
            hub_factory(), request.target, request.revision, request.variants
        )
    machine = machine_info()
    with stage_bar("bench") as hook:
        costs = measure_folder(
            folder, manifest, names, request.steps, request.compiled, hook, request.latent
        )
    by_name = {a.variant: a for a in manifest.artifacts}
    rows = [BenchRow(c, quality_of(by_name[c.variant])) for c in costs]
    if request.max_ram_bytes is None:
        max_ram, label = psutil.virtual_memory().total, "this machine's RAM"
    else:
        max_ram, label = request.max_ram_bytes, "--max-ram"
    run_settings = {**settings(request.steps, request.latent), "compile": request.compiled}
    return BenchReport(
        request.target,
        source,
        machine,
        run_settings,
        rows,
        recommend(rows, max_ram, label, request.latent * 8),
        _notes(rows, request.compiled),
    )


def _notes(rows: list[BenchRow], compiled: bool) -> list[str]:
    notes = []
    if not compiled and any(compile_applies(variant(r.variant)) for r in rows):
        notes.append("torch.compile was not measured: add --compile (a cold compile takes minutes)")
    if not sdcpp_installed() and any(sdcpp_applies(variant(r.variant)) for r in rows):
        notes.append(
            "stable-diffusion.cpp was not measured: install the unetbot[sdcpp] extra (make sdcpp)"
        )
    return notes
