"""The fetch stage: the files a job reads, as a local folder.

A local source folder is a fetch that returns its own path; a Hub source downloads exactly the
files the engine will read (bot/client/repo_files.py chooses them from the file list alone, with the
engine's weight-selection rule) at the judged revision, within the run's download budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download

from bot.client.hub import Hub
from bot.client.repo_files import bytes_matching, needed_files
from bot.progress import byte_reporter, describe_bytes, display, stage_bar
from engine.errors import BudgetExhausted
from engine.source.layout import Precision


@dataclass(frozen=True)
class FetchRequest:
    """What to download: the components the chosen variants read."""

    repo_id: str
    revision: str
    files: dict[str, int]  # the repo's file list (path -> size)
    full_pipeline: bool  # vae/ + text_encoder/ too (full checkpoints)
    vae: bool  # vae/ alone (the validation grid decodes with it)
    # Which weight sets: HALF (the fp16 variant when present) for quantized outputs, MAIN
    # for the files a PR mirrors (engine.source.layout has the rule).
    precisions: tuple[Precision, ...] = (Precision.HALF,)
    unet_folder: str = "unet"  # "" for a bare UNet repo


def fetch(hub: Hub, request: FetchRequest, budget_bytes: int) -> Path:
    """Download the needed files into the cache; the snapshot folder they land in."""
    patterns = needed_files(
        request.files,
        request.full_pipeline,
        request.vae,
        precisions=request.precisions,
        unet_folder=request.unet_folder,
    )
    size = bytes_matching(request.files, patterns)
    count = bytes_matching(dict.fromkeys(request.files, 1), patterns)
    return download(hub, request.repo_id, request.revision, patterns, size, count, budget_bytes)


def download(
    hub: Hub,
    repo_id: str,
    revision: str,
    patterns: list[str],
    size: int,
    count: int,
    budget_bytes: int,
) -> Path:
    """Download `patterns` (`count` files, `size` bytes) of `repo_id` at `revision` into the
    cache, refused over the run's download budget; the snapshot folder they land in."""
    if size > budget_bytes:
        raise BudgetExhausted(
            f"{repo_id}: {size / 1e9:.2f} GB to download exceeds the download budget "
            f"({budget_bytes / 1e9:.2f} GB)"
        )
    with stage_bar(f"download {repo_id}", describe_bytes(count, size), True) as hook:
        # on a terminal, the bytes huggingface_hub reports drive the stage's bar
        bars = {"tqdm_class": byte_reporter(hook)} if display().live else {}
        hook("", 0, size)
        path = hub.call(
            f"download {repo_id}",
            snapshot_download,
            repo_id,
            revision=revision,
            allow_patterns=patterns,
            endpoint=hub.settings.endpoint,
            token=hub.settings.token,
            cache_dir=hub.settings.cache_dir,
            **bars,
        )
    return Path(path)
