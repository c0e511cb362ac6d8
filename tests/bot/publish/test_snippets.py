"""A snippet in a card is a product: every Python block of every published card and PR
description runs verbatim, outside this project, against what the bot published.

Each block is run with `python -I` in an empty working directory outside the checkout, with
`HF_ENDPOINT` at the embedded Hub and a fresh cache. After the block (unchanged), an epilogue
runs the `unet` it built on a small input and reports the output shape and which modules of
this project were imported: none may be (the venv has unetbot installed, so "not imported" is
what proves the snippet needs nothing from it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from bot.client.hub import Hub
from bot.config import PublishMode, load_config
from bot.job.run import JobRequest, run_job
from bot.settings import load_settings

PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EPILOGUE = """
import json as _json, sys as _sys
import torch as _torch
_c = unet.config
_x = _torch.randn(1, _c.in_channels, 8, 8)
_text = _torch.randn(1, 77, _c.cross_attention_dim)
_cond = _torch.randn(1, _c.time_cond_proj_dim) if _c.time_cond_proj_dim else None
_dtype = next(p.dtype for p in unet.parameters() if p.is_floating_point())
with _torch.no_grad():
    _cast = (lambda t: None if t is None else t.to(_dtype)) if _dtype.is_floating_point else None
    _out = unet(_cast(_x), 999, encoder_hidden_states=_cast(_text), timestep_cond=_cast(_cond))
_ours = sorted(m for m in _sys.modules if m.split(".")[0] in ("engine", "bot", "model_cards"))
print("RESULT " + _json.dumps({"shape": list(_out.sample.shape), "ours": _ours}))
"""


def _blocks(text: str) -> list[str]:
    return PYTHON_BLOCK.findall(text)


def _run_block(block: str, seeded_hub, cwd: Path) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HF_ENDPOINT": seeded_hub.endpoint,
        "HF_HOME": str(cwd / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-c", block + EPILOGUE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{block}\n--- stderr ---\n{proc.stderr[-3000:]}"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture
def published(seeded_hub, tmp_path):
    """Publish an LCM UNet and a plain SD1.5 pipeline to every target; merge the PRs."""
    config = load_config(seeded_hub.config_path)
    hub = Hub(load_settings())
    for repo in ("alice/tiny-lcm", "alice/tiny-sd15"):
        request = JobRequest(repo, tmp_path / repo.replace("/", "__"), publish=PublishMode.ALL)
        result = run_job(request, config, hub)
        assert result.exit_code == 0 and result.published, result.summary()
    return seeded_hub


def _texts(seeded_hub, workdir: Path) -> dict[str, str]:
    """Every published card and PR description (PRs merged, as a user would find them)."""
    owner = seeded_hub.owner_api()
    bot = HfApi(endpoint=seeded_hub.endpoint, token=seeded_hub.bot_token)
    texts = {}
    for repo in ("alice/tiny-lcm", "alice/tiny-sd15"):
        for pr in bot.get_repo_discussions(repo, author="unetbot"):
            details = owner.get_discussion_details(repo, pr.num)
            texts[f"{repo} PR #{pr.num}"] = details.events[0].content
            owner.merge_pull_request(repo, pr.num)
    for model in bot.list_models(author="unetbot"):
        readme = hf_hub_download(
            model.id, "README.md", endpoint=seeded_hub.endpoint, cache_dir=workdir / "cards"
        )
        texts[model.id] = Path(readme).read_text()
    return texts


def test_every_snippet_runs_without_unetbot(published, tmp_path):
    texts = _texts(published, tmp_path)
    assert len(texts) == 8, sorted(texts)  # 2 PRs, 2 x (GGUF, TorchAO, Quanto) repos
    runs = []
    for where, text in texts.items():
        blocks = _blocks(text)
        assert blocks, f"{where}: no Python snippet"
        for i, block in enumerate(blocks):
            assert "engine" not in block and "unetbot import" not in block, where
            cwd = tmp_path / f"run-{len(runs)}"
            cwd.mkdir()
            runs.append((where, i, block, cwd))
    # Each block is its own interpreter (imports dominate): two at a time, one per core.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda r: _run_block(r[2], published, r[3]), runs))
    for (where, i, _, _), result in zip(runs, results, strict=True):
        assert result["ours"] == [], f"{where} block {i} imported {result['ours']}"
        assert result["shape"] == [1, 4, 8, 8], (where, i, result)
    assert len(runs) >= 8
