"""Measure the costs of a manifest folder's artifacts, one fresh process per variant and mode.

Used by `bot bench` (a user's machine) and `benchmarks/cost.py` (the reference figures shipped
in engine/cost/cost_table.json). Each measurement is `python -m engine.cost.probe` in a child
process (why: engine/cost/probe.py), with a fresh, private inductor cache for compiled runs so
the compile time is a cold one and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath

from engine import __version__
from engine.cost.model import (
    DEFAULT_STEPS,
    LATENT,
    SDCPP_CONSUMER,
    WARMUP_STEPS,
    Measurement,
    Mode,
    Status,
    VariantCost,
    compile_applies,
    diffusers_consumer,
    median_step,
    not_measured_reason,
    sdcpp_applies,
)
from engine.cost.probe import RESULT_PREFIX, ProbeRequest
from engine.errors import BadInput
from engine.formats.manifest import Artifact, Manifest
from engine.run.variants import variant

TIMEOUT_S = 3600  # one measurement; a cold torch.compile of a full UNet takes minutes
ProgressHook = Callable[[str, int, int], None]
_LIBRARIES = (
    "torch",
    "diffusers",
    "torchao",
    "optimum-quanto",
    "gguf",
    "safetensors",
    "stable-diffusion-cpp-python",
)
# Where a UNet-only file's CLIP and VAE come from in stable-diffusion.cpp: a full original
# checkpoint of the same folder, fp16 first (the GGUFs are made from the half-precision weights).
_COMPANION_SOURCES = ("original-full-fp16", "original-full")
# Children log only errors: the figures are the output, not import-time notices.
_QUIET = {"DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error"}


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """What the figures depend on besides the variant: hardware, library versions, date."""
    import psutil

    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "versions": versions,
        "unetbot": __version__,
        "date": datetime.now(UTC).date().isoformat(),
    }


@contextmanager
def config_folder(manifest: Manifest) -> Iterator[Path]:
    """A temp folder holding the source's `unet/config.json` from the manifest: what diffusers
    needs beside a single file (the cards' snippets read the same config from the repo)."""
    config = manifest.source.get("unet_config")
    if not isinstance(config, dict) or not config:
        raise BadInput("the manifest's source has no unet_config; re-run `bot convert`")
    folder = Path(tempfile.mkdtemp(prefix="unetbot-cost-config-"))
    try:
        (folder / "unet").mkdir()
        (folder / "unet" / "config.json").write_text(json.dumps(config))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_probe(request: ProbeRequest, timeout: float = TIMEOUT_S) -> Measurement:
    """One measurement in a fresh child process; a crash, kill or timeout is a failed one."""
    cache = tempfile.mkdtemp(prefix="unetbot-inductor-")
    env = {**os.environ, **_QUIET, "TORCHINDUCTOR_CACHE_DIR": cache}
    cmd = [sys.executable, "-m", "engine.cost.probe", request.to_json()]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return Measurement.failed(request.variant, request.mode, f"timed out after {timeout:.0f}s")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if lines:
        return Measurement.from_dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}"
        if proc.returncode == -9:
            why += " (out of memory?)"
    else:
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        why = f"exited with {proc.returncode}: {tail[0][:300]}"
    return Measurement.failed(request.variant, request.mode, why)


def _artifact_path(folder: Path, artifact: Artifact) -> Path:
    """The artifact's main file inside `folder` (manifest paths are relative, never escaping)."""
    relative = PurePosixPath(artifact.path)
    # Lexical, not resolved: a Hub cache snapshot holds symlinks into its blob store.
    if relative.is_absolute() or ".." in relative.parts:
        raise BadInput(f"{folder}: {artifact.variant}'s path {artifact.path!r} leaves the folder")
    path = folder / relative
    if not path.is_file():
        raise BadInput(f"{folder / artifact.path}: {artifact.variant}'s file is missing")
    return path


def sdcpp_installed() -> bool:
    from engine.validation.sdcpp import installed_version

    return installed_version() is not None


def plan_measurements(artifact: Artifact, compiled: bool) -> list[str]:
    """The modes measured for an artifact: eager (diffusers), plus compiled when asked and it
    applies, plus stable-diffusion.cpp for the files it reads when the extra is installed."""
    v = variant(artifact.variant)
    modes: list[str] = []
    if not not_measured_reason(v):
        modes = [Mode.EAGER, Mode.COMPILED] if compiled and compile_applies(v) else [Mode.EAGER]
    if sdcpp_applies(v) and sdcpp_installed():
        modes.append(Mode.SDCPP)
    return modes


def measure_sdcpp(
    name: str,
    path: Path,
    full: bool,
    companions: Callable[[], tuple[str, str] | None],
    steps: int,
    latent: int,
) -> Measurement:
    """One measurement in stable-diffusion.cpp (a fresh child process, engine.validation.
    sdcpp_run): text-to-image at latent * 8 px, WARMUP_STEPS + `steps` Euler steps, CFG 1; the
    figures are its load, its peak RSS and the median of the steps after the warm-up."""
    from engine.validation.sdcpp import outcome_problems, run_child, threads
    from engine.validation.sdcpp_run import SdcppRequest

    request = SdcppRequest(
        width=latent * 8, height=latent * 8, steps=WARMUP_STEPS + steps, threads=threads()
    )
    if full:
        request.model_path = str(path)
    else:
        pair = companions()
        if pair is None:
            why = (
                "a UNet-only file runs in stable-diffusion.cpp beside a CLIP and a VAE file; no "
                f"{' or '.join(_COMPANION_SOURCES)} file here to take them from"
            )
            return Measurement(name, Mode.SDCPP, Status.NOT_MEASURED, why, SDCPP_CONSUMER)
        request.model_path, request.vae_path = pair
        request.diffusion_model_path = str(path)
    load_average = os.getloadavg()[0]
    outcome = run_child(request, TIMEOUT_S)
    problems = outcome_problems(outcome)
    if problems:
        return Measurement.failed(name, Mode.SDCPP, "; ".join(problems), SDCPP_CONSUMER)
    return Measurement(
        name,
        Mode.SDCPP,
        Status.MEASURED,
        consumer=SDCPP_CONSUMER,
        load_s=outcome.load_s,
        step_s=median_step(outcome.step_s) if outcome.step_s else None,
        steps_s=outcome.step_s,
        baseline_rss_bytes=outcome.baseline_rss_bytes,
        load_rss_bytes=outcome.load_rss_bytes,
        peak_rss_bytes=outcome.peak_rss_bytes,
        torch_threads=request.threads,
        load_average=round(load_average, 2),
    )


@contextmanager
def companion_files(folder: Path, manifest: Manifest) -> Iterator[Callable]:
    """A function giving the (CLIP, VAE) files for UNet-only files in stable-diffusion.cpp,
    written on first use from the folder's full original checkpoint (None without one)."""
    from engine.validation.sdcpp import companions_from_full

    made: dict[str, tuple[str, str] | None] = {}
    tmp = Path(tempfile.mkdtemp(prefix="unetbot-cost-sdcpp-"))

    def get() -> tuple[str, str] | None:
        if "pair" not in made:
            by_name = {a.variant: a for a in manifest.artifacts}
            full = next(
                (
                    folder / by_name[n].path
                    for n in _COMPANION_SOURCES
                    if n in by_name and (folder / by_name[n].path).is_file()
                ),
                None,
            )
            made["pair"] = companions_from_full(full, tmp) if full else None
        return made["pair"]

    try:
        yield get
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_folder(
    folder: Path,
    manifest: Manifest,
    names: list[str],
    steps: int = DEFAULT_STEPS,
    compiled: bool = False,
    progress: ProgressHook | None = None,
    latent: int = LATENT,
    modes: set[str] | None = None,
) -> list[VariantCost]:
    """Costs of the named artifacts of a manifest folder, in manifest order (`modes`: only
    these of the planned measurements)."""
    folder = Path(folder)
    chosen = [a for a in manifest.artifacts if a.variant in names]
    missing = sorted(set(names) - {a.variant for a in chosen})
    if missing:
        raise BadInput(f"{folder}: no artifact for {missing} in its manifest")
    todo = [
        (a, mode)
        for a in chosen
        for mode in plan_measurements(a, compiled)
        if modes is None or mode in modes
    ]
    paths = {a.variant: _artifact_path(folder, a) for a, _ in todo}  # all checked up front
    costs = {a.variant: _empty_cost(a) for a in chosen}
    with config_folder(manifest) as config, companion_files(folder, manifest) as companions:
        for index, (artifact, mode) in enumerate(todo):
            if progress:
                progress(f"{artifact.variant} ({mode})", index, len(todo))
            if mode == Mode.SDCPP:
                full = variant(artifact.variant).full_checkpoint
                costs[artifact.variant].sdcpp = measure_sdcpp(
                    artifact.variant, paths[artifact.variant], full, companions, steps, latent
                )
                continue
            request = ProbeRequest(
                artifact.variant,
                str(paths[artifact.variant]),
                str(config),
                mode,
                steps,
                latent,
            )
            result = run_probe(request)
            result.consumer = result.consumer or diffusers_consumer(variant(artifact.variant)) or ""
            setattr(costs[artifact.variant], "eager" if mode == Mode.EAGER else "compiled", result)
    if progress:
        progress("done", len(todo), len(todo))
    return list(costs.values())


def _empty_cost(artifact: Artifact) -> VariantCost:
    why = not_measured_reason(variant(artifact.variant))
    return VariantCost(artifact.variant, artifact.bytes, not_measured=why)
