"""Judging a repo of single-file checkpoints (root `*.safetensors`, no diffusers folders), from its
file list and each checkpoint's header, read with an HTTP range request (never the weights).

A `.ckpt` has no header to read: it is a candidate when the Hub's own scan reports it safe
(bot/client/security.py), and is recognised once the pickle path has loaded it. Each checkpoint
is a source of its own (engine.source.single_file recognises it against SD1.5's
shipped configs: full UNet+VAE+CLIP or UNet-only, SD1.5, inpainting or LCM); the repo is a
candidate when at least one is recognised, and the others are listed with their reasons. They
get the quantized targets only: they are already in the original format, so never a pull request.
"""

from __future__ import annotations

import logging

from bot.client.headers import safetensors_header
from bot.client.hub import Hub
from bot.client.security import hub_verdicts
from bot.config import BotConfig
from bot.discover.policy import RepoFacts, size_skip
from engine.errors import BadInput, ExitCode, PolicySkipped, UnsupportedArchitecture
from engine.source.classify import ModelKind
from engine.source.single_file import inspect_single_file

log = logging.getLogger("unetbot.scan")

MAX_CHECKPOINTS = 8  # header reads per repo; more checkpoints wait for a later version
PR_SKIP = "single-file checkpoints are already in the original format"


def _pickles(hub: Hub, facts: RepoFacts, ckpts: tuple[str, ...], refused: list[str]) -> dict:
    """`.ckpt` files the Hub's scan reports safe (bot/client/security.py), each with that
    record; they are recognised after the pickle path has loaded them (no header to read)."""
    out: dict[str, dict] = {}
    for filename in ckpts[:MAX_CHECKPOINTS]:
        try:
            verdict = hub_verdicts(hub, facts.repo_id, facts.sha, [filename])[filename]
        except PolicySkipped as exc:
            refused.append(str(exc))
            continue
        out[filename] = {
            "contents": "recognised once loaded (a pickle has no header to range-read)",
            "kind": ModelKind.SD15.value,
            "bytes": facts.files.get(filename, 0),
            "hub": verdict,
        }
    return out


def judge_single_files(
    hub: Hub,
    facts: RepoFacts,
    files: tuple[str, ...],
    config: BotConfig,
    candidate,
    ckpts: tuple[str, ...] = (),
):
    """Fill `candidate` (bot.discover.scan.Candidate) for a repo of root checkpoints."""
    recognised: dict[str, dict] = {}
    refused: list[str] = []
    for filename in files[:MAX_CHECKPOINTS]:
        try:
            table = header_table_of(hub, facts, filename)
            info = inspect_single_file(table, filename)
        except (UnsupportedArchitecture, BadInput) as exc:
            refused.append(str(exc))
            continue
        recognised[filename] = {
            "contents": info.contents,
            "kind": info.kind.value,
            "bytes": facts.files.get(filename, 0),
            "left_out": len(info.left_out),
        }
    recognised |= _pickles(hub, facts, ckpts, refused)
    if not recognised:
        code = ExitCode.POLICY_SKIPPED if ckpts and not files else ExitCode.UNSUPPORTED
        why = "; ".join(refused[:2]) or "no root checkpoint"
        return candidate.refuse(f"no SD1.5-family single-file checkpoint ({why})", code)
    first = recognised[next(iter(recognised))]
    candidate.kind = ModelKind(first["kind"])
    candidate.single_files = recognised
    candidate.unet_folder = ""
    # A .ckpt's contents are known once loaded: full variants are offered, and left out for a
    # UNet-only file then (bot/job/single_files.py).
    candidate.has_full_pipeline = any(r["contents"] != "unet" for r in recognised.values())
    candidate.unet_bytes = max(r["bytes"] for r in recognised.values())
    total = sum(r["bytes"] for r in recognised.values())
    reason = size_skip(candidate.unet_bytes, total, config.policy)
    if reason:
        return candidate.refuse(reason, ExitCode.POLICY_SKIPPED)
    candidate.pr_skip = PR_SKIP
    described = ", ".join(f"{f} ({r['contents']}, {r['kind']})" for f, r in recognised.items())
    candidate.status = "supported"
    candidate.reason = f"{len(recognised)} single-file checkpoint(s): {described}"
    if refused:
        candidate.reason += f"; not converted: {'; '.join(refused[:2])}"
    return candidate


def header_table_of(hub: Hub, facts: RepoFacts, filename: str) -> dict:
    """name -> (dtype, shape) of a root checkpoint; BadInput when unreadable."""
    try:
        table = safetensors_header(hub, facts.repo_id, filename, facts.sha or None)
    except (ValueError, RecursionError, AttributeError, TypeError) as exc:
        raise BadInput(f"{filename}: not a readable safetensors header ({exc})") from exc
    if not table:
        raise BadInput(f"{filename}: an empty safetensors header")
    return table
