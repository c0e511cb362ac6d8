"""A small Hub world for the discovery, ledger and pacing tests: the embedded Hub with an owner
(`alice`) and the bot (`unetbot`), optional rate limits, repos seeded through the Hub's own
bulk seeder (same trees, tags and card data as an upload, in milliseconds), and the bot's Hub
client for it. Weights are tiny: judging reads configs, headers and file lists, never weights."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml
from huggingface_hub import HfApi, constants
from safetensors.numpy import save

from bot.client.hub import Hub
from bot.config import BotConfig, LedgerConfig, PublishConfig, ScanConfig
from bot.hub import start_hub
from bot.hub.bulk import add_commit, seed_repo
from bot.settings import Settings
from engine.synthetic.models import unet_config

constants.HF_HUB_DISABLE_XET = True  # the embedded Hub speaks LFS (the ledger is uploaded)
OWNER, BOT = "alice", "unetbot"


def card(licence: str = "creativeml-openrail-m", tags: tuple[str, ...] = (), text: str = "") -> str:
    meta = {"license": licence, "tags": list(tags)}
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# model\n{text}"


def weights(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return save({"conv_in.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float16)})


def pipeline_files(seed: int = 0, kind: str = "sd15", klass: str = "StableDiffusionPipeline"):
    """A diffusers pipeline as `save_pretrained` lays it out (model_index.json + unet/)."""
    index = {"_class_name": klass, "_diffusers_version": "0.42.1", "unet": ["diffusers", "X"]}
    return {
        "model_index.json": json.dumps(index).encode(),
        "unet/config.json": json.dumps(unet_config(kind)).encode(),
        "unet/diffusion_pytorch_model.safetensors": weights(seed),
    }


def bare_unet_files(seed: int = 0) -> dict[str, bytes]:
    """A bare UNet repo (config.json with `_diffusers_version` at the root)."""
    config = {**unet_config("sd15"), "_diffusers_version": "0.42.1"}
    return {
        "config.json": json.dumps(config).encode(),
        "diffusion_pytorch_model.safetensors": weights(seed),
    }


def bert_files() -> dict[str, bytes]:
    return {"config.json": json.dumps({"model_type": "bert"}).encode()}


@dataclass
class World:
    running: object  # bot.hub.RunningHub
    owner_token: str = field(repr=False)
    bot_token: str = field(repr=False)
    cache: Path

    @property
    def endpoint(self) -> str:
        return self.running.endpoint

    @property
    def stats(self):
        return self.running.state.stats

    def owner_api(self) -> HfApi:
        return HfApi(endpoint=self.endpoint, token=self.owner_token)

    def bot_api(self) -> HfApi:
        return HfApi(endpoint=self.endpoint, token=self.bot_token)

    def seed(self, repo_id: str, files: dict[str, bytes], **kwargs) -> str:
        kwargs.setdefault("card", card())
        return seed_repo(self.running, repo_id, files, **kwargs)

    def commit(self, repo_id: str, files: dict[str, bytes], **kwargs) -> str:
        return add_commit(self.running, repo_id, files, **kwargs)

    def hub(self, **kwargs) -> Hub:
        """The bot's client (a fresh run), its sleep recorded when not given."""
        settings = Settings(self.endpoint, self.bot_token, None, str(self.cache))
        return Hub(settings, **kwargs)

    def calls(self) -> tuple[int, int]:
        return self.stats.bucket("api"), self.stats.bucket("resolvers")

    def resolver_paths(self) -> list[str]:
        return [path for _, path, _ in self.stats.recent if "/resolve/" in path]


def bot_config(**scan) -> BotConfig:
    """Judging-only runs: the plan's targets; fast variant lists; the ledger on; the diffusers
    listing only (the tests counting calls were written for one listing; the single-file
    listing has its own test in tests/bot/discover/test_discovery.py)."""
    scan.setdefault("single_file_tags", [])
    publish = replace(
        PublishConfig(),
        mode="all",
        gguf_variants=["gguf-q8_0"],
        torchao_variants=[],
        quanto_variants=[],
    )
    return BotConfig(scan=replace(ScanConfig(), **scan), publish=publish, ledger=LedgerConfig())


@contextmanager
def hub_world(tmp_path: Path, rate_limits: dict | None = None) -> Iterator[World]:
    owner, bot = f"hf_{secrets.token_hex(16)}", f"hf_{secrets.token_hex(16)}"
    config: dict = {
        "users": [{"name": OWNER}, {"name": BOT}],
        "tokens": [
            {"id": "alice-write", "user": OWNER, "role": "write", "token": owner},
            {"id": "bot-write", "user": BOT, "role": "write", "token": bot},
        ],
    }
    if rate_limits is not None:
        config["rate_limits"] = rate_limits
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    with start_hub(tmp_path / "hub", config=path, durable=False) as running:
        yield World(running, owner, bot, tmp_path / "cache")


def real_pipeline_files(folder: Path, kind: str = "sd15-lcm", seed: int = 0) -> dict[str, bytes]:
    """A tiny but real pipeline (engine.synthetic.models), for tests that convert and publish."""
    from engine.synthetic.models import write_pipeline_folder

    root = write_pipeline_folder(folder, kind, "tiny", seed=seed, with_vae_and_text_encoder=False)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
