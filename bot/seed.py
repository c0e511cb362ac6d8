"""Seed a Hub with generated source repos: the demo's and the end-to-end tests' world.

Every repo is uploaded through the real `huggingface_hub` client by its owner `alice`; the bot
works as user `unetbot`. The set covers each path through the bot: an LCM UNet, a plain SD1.5
pipeline with VAE + text encoder, an SDXL-like UNet, a gated repo, an opted-out repo, a
pickle-only repo (converted through the pickle path) and a hostile pickle (skipped: the Hub's
scan marks it unsafe).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import HfApi

from engine.synthetic.models import write_pipeline_folder, write_unet_folder
from engine.synthetic.zoo import pickle_only as pickle_only_repo

OWNER = "alice"
BOT = "unetbot"
LICENCE_TEXT = "CreativeML Open RAIL-M (demo copy)\n\nUse responsibly; see the full licence.\n"


@dataclass(frozen=True)
class Accounts:
    config_path: Path
    owner_token: str
    bot_token: str


def write_accounts(root: Path) -> Accounts:
    """A Hub accounts file with fresh random tokens (mode 0600, never printed)."""
    owner, bot = f"hf_{secrets.token_hex(16)}", f"hf_{secrets.token_hex(16)}"
    config = {
        "users": [{"name": OWNER}, {"name": BOT}],
        "tokens": [
            {"id": "alice-write", "user": OWNER, "role": "write", "token": owner},
            {"id": "bot-write", "user": BOT, "role": "write", "token": bot},
        ],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "accounts.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return Accounts(path, owner, bot)


def _card(licence: str, tags: list[str], extra: str = "") -> str:
    meta = {"license": licence, "library_name": "diffusers", "tags": tags}
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# Demo model\n{extra}"


def _upload(api: HfApi, repo_id: str, folder: Path, gated: bool = False) -> str:
    api.create_repo(repo_id, exist_ok=True)
    if gated:
        api.update_repo_settings(repo_id, gated="auto")
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="upload")
    return info.oid


class _SystemCall:
    """Pickles as a call of `os.system` (what a hostile `.bin` on the Hub does)."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unetbot-demo: a hostile pickle ran",))


def _write_hostile_pickle(path: Path) -> None:
    import torch

    torch.save({"conv_in.bias": torch.zeros(4), "x": _SystemCall()}, path)


def seed_repos(api: HfApi, workdir: Path | None = None) -> dict[str, str]:
    """Create the demo repos under `alice`; returns repo id -> head sha."""
    base = Path(workdir or tempfile.mkdtemp(prefix="unetbot-seed-"))
    tags = ["diffusers", "stable-diffusion", "text-to-image"]
    repos: dict[str, str] = {}

    lcm = write_pipeline_folder(base / "lcm", "sd15-lcm", "tiny", with_vae_and_text_encoder=False)
    (lcm / "README.md").write_text(_card("creativeml-openrail-m", [*tags, "lcm"]))
    repos[f"{OWNER}/tiny-lcm"] = _upload(api, f"{OWNER}/tiny-lcm", lcm)

    sd15 = write_pipeline_folder(base / "sd15", "sd15", "tiny", seed=1)
    (sd15 / "README.md").write_text(_card("creativeml-openrail-m", tags))
    (sd15 / "LICENSE").write_text(LICENCE_TEXT)
    repos[f"{OWNER}/tiny-sd15"] = _upload(api, f"{OWNER}/tiny-sd15", sd15)

    sdxl = base / "sdxl"
    write_unet_folder(sdxl / "unet", "sdxl", "tiny")
    (sdxl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    (sdxl / "README.md").write_text(_card("openrail++", tags))
    repos[f"{OWNER}/tiny-sdxl"] = _upload(api, f"{OWNER}/tiny-sdxl", sdxl)

    gated = write_pipeline_folder(base / "gated", "sd15", "tiny", with_vae_and_text_encoder=False)
    (gated / "README.md").write_text(_card("creativeml-openrail-m", tags))
    repos[f"{OWNER}/tiny-gated"] = _upload(api, f"{OWNER}/tiny-gated", gated, gated=True)

    opted = write_pipeline_folder(base / "optout", "sd15", "tiny", with_vae_and_text_encoder=False)
    (opted / "README.md").write_text(_card("creativeml-openrail-m", [*tags, "unetbot-opt-out"]))
    repos[f"{OWNER}/tiny-optout"] = _upload(api, f"{OWNER}/tiny-optout", opted)

    # Pickle-only weights (diffusers `safe_serialization=False`): converted through the pickle
    # path (the Hub's scan says safe, the static scan passes, the child process loads them).
    pickle_only = pickle_only_repo(base / "pickle").folder
    (pickle_only / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline"})
    )
    (pickle_only / "README.md").write_text(_card("creativeml-openrail-m", tags))
    repos[f"{OWNER}/tiny-pickle"] = _upload(api, f"{OWNER}/tiny-pickle", pickle_only)

    # A hostile pickle (its reduce calls `os.system("echo ...")`): the Hub's own scan marks it
    # unsafe, so the bot skips the repo by policy before downloading anything.
    hostile = base / "hostile"
    (hostile / "unet").mkdir(parents=True)
    config = json.loads((gated / "unet" / "config.json").read_text())
    (hostile / "unet" / "config.json").write_text(json.dumps(config))
    _write_hostile_pickle(hostile / "unet" / "diffusion_pytorch_model.bin")
    (hostile / "model_index.json").write_text(json.dumps({"_class_name": "SDPipeline"}))
    (hostile / "README.md").write_text(_card("creativeml-openrail-m", tags))
    repos[f"{OWNER}/tiny-hostile"] = _upload(api, f"{OWNER}/tiny-hostile", hostile)
    return repos


def demo_config(path: Path) -> Path:
    """The bot config the demo uses: search the seeded repos, publish everything."""
    config = {
        "scan": {"searches": ["tiny"], "library": "diffusers"},
        "publish": {"mode": "all"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def accounts_env(endpoint: str, accounts: Accounts, cache: Path) -> dict[str, str]:
    """Environment for the bot against a seeded Hub (the bot's token, a private cache)."""
    return {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": accounts.bot_token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "UNETBOT_CACHE": str(cache),
        "UNETBOT_CONFIG": "",
    }


@dataclass
class SeededHub:
    """A running embedded Hub seeded with the demo repos; the bot's env points at it."""

    running: object  # bot.hub.RunningHub
    accounts: Accounts
    repos: dict[str, str]  # repo id -> head sha after seeding


@contextmanager
def seeded_hub(workdir: Path) -> Iterator[SeededHub]:
    """Start the embedded Hub under `workdir`, point the environment at it, seed the repos;
    the environment is restored on exit. Used by `bot demo` and the end-to-end tests."""
    from bot.hub import start_hub
    from bot.settings import load_settings

    accounts = write_accounts(workdir / "hub")
    saved = dict(os.environ)
    try:
        with start_hub(workdir / "hub" / "data", config=accounts.config_path) as running:
            os.environ.update(accounts_env(running.endpoint, accounts, workdir / "cache"))
            load_settings()  # applies the local-Hub settings (no Xet) before any upload
            api = HfApi(endpoint=running.endpoint, token=accounts.owner_token)
            yield SeededHub(running, accounts, seed_repos(api, workdir / "seed"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
