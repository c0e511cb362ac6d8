"""Hostile input and faults at the bot level: one bad repo or secret never stops a run, leaks,
or publishes where it should not. Every case asserts the exit code, the message, that nothing
was written or published, and that the token never appears in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi

from bot.client.hub import Hub
from bot.config import PublishMode, load_config
from bot.hub.bulk import seed_repo
from bot.job.run import JobRequest, run_job
from bot.settings import load_settings
from engine.errors import ExitCode, PolicySkipped

ROOT = Path(__file__).resolve().parents[2]
CARD = "---\n" + yaml.safe_dump({"license": "mit", "library_name": "diffusers"}) + "---\n"


def _bot(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _env(token: str) -> dict:
    env = dict(os.environ)
    env["HF_TOKEN"] = token
    env["PYTHONPATH"] = str(ROOT)
    return env


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _outputs(tmp_path: Path) -> str:
    """Everything the commands wrote to files (result.json, logs, manifests...)."""
    texts = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".md", ".txt", ".yaml", ""):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_token_with_a_trailing_newline_works_and_never_leaks(seeded_hub, tmp_path):
    tmp_path = tmp_path / "work"  # only what the commands write (the Hub's files are beside)
    tmp_path.mkdir()
    token = seeded_hub.bot_token
    env = _env(token + "\n")
    outputs = []
    for args in (
        ["scan", "--config", str(seeded_hub.config_path)],
        ["plan", "--json", "--config", str(seeded_hub.config_path)],
        ["actions", "convert", "alice/tiny-sdxl", "--publish", "all", "--out", "out"],
    ):
        proc = _bot(args, env | {"UNETBOT_CONFIG": str(seeded_hub.config_path)}, tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]
    summary = subprocess.run(
        [sys.executable, "-m", "bot.actions.summary", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    outputs += [summary.stdout, summary.stderr, _outputs(tmp_path)]
    assert "alice/tiny-sdxl" in summary.stdout
    assert all(token not in text for text in outputs)


@pytest.mark.parametrize("bad", ["hf_abc def", "hf_abc\x07def", "hf_ab\ncd"])
def test_malformed_tokens_are_refused_without_being_echoed(seeded_hub, tmp_path, bad):
    tmp_path = tmp_path / "work"  # only what the commands write (the Hub's files are beside)
    tmp_path.mkdir()
    env = _env(seeded_hub.bot_token[:10] + bad)
    proc = _bot(["plan", "--config", str(seeded_hub.config_path)], env, tmp_path)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert "HF_TOKEN holds spaces or control characters" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seeded_hub.bot_token[:10] not in proc.stdout + proc.stderr
    record = _bot(["actions", "convert", "alice/tiny-lcm", "--out", "out"], env, tmp_path)
    assert record.returncode == ExitCode.BAD_INPUT
    result = json.loads((tmp_path / "out" / "alice__tiny-lcm" / "result.json").read_text())
    assert "control characters" in result["error"]
    assert seeded_hub.bot_token[:10] not in _outputs(tmp_path) + record.stdout + record.stderr


def test_an_invalid_token_is_a_hub_error_without_leak(seeded_hub, tmp_path):
    wrong = "hf_" + "x" * 30
    proc = _bot(["plan", "--config", str(seeded_hub.config_path)], _env(wrong), tmp_path)
    assert proc.returncode == ExitCode.HUB_ERROR, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and wrong not in proc.stdout + proc.stderr


def test_a_hostile_repo_is_a_skipped_row_not_the_end_of_the_run(seeded_hub, tmp_path):
    """A unet/config.json nested 200k levels deep, another with wrong types: `bot plan` still
    plans every other repo and names each bad one with its reason."""
    running = seeded_hub.running
    for name, config in (
        ("tiny-deep", _nested(200_000)),
        ("tiny-types", json.dumps({"block_out_channels": "abc"}).encode()),
    ):
        files = {
            "unet/config.json": config,
            "unet/diffusion_pytorch_model.safetensors": b"\x08" + b"\0" * 7 + b"{}      ",
            "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
        }
        seed_repo(running, f"alice/{name}", files, card=CARD, author="alice")
    proc = _bot(
        ["plan", "--json", "--config", str(seeded_hub.config_path)],
        _env(seeded_hub.bot_token),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    todo = {e["repo_id"] for chunk in plan["chunks"] for e in chunk["include"]}
    assert {"alice/tiny-lcm", "alice/tiny-sd15"} <= todo
    skipped = {e["repo_id"]: e["reason"] for e in plan["skipped"]}
    assert "nested" in skipped["alice/tiny-deep"] or "deep" in skipped["alice/tiny-deep"]
    assert "block_out_channels" in skipped["alice/tiny-types"]


def test_same_named_repos_of_two_owners_never_share_a_target(seeded_hub, tmp_path):
    from bot.publish.state import target_repo
    from engine.run.variants import PublishTarget

    a = target_repo(PublishTarget.GGUF, "alice/foo", "unetbot")
    b = target_repo(PublishTarget.GGUF, "bob/foo", "unetbot")
    assert a != b and a.startswith("unetbot/") and b.startswith("unetbot/")
    long = target_repo(PublishTarget.GGUF, "o" * 40 + "/" + "n" * 90, "unetbot")
    assert len(long.split("/")[1]) <= 96


def test_the_bot_never_publishes_into_a_repo_recording_another_source(seeded_hub, tmp_path):
    """A bot repo whose card names another source is refused (policy), nothing committed."""
    bot = HfApi(endpoint=seeded_hub.endpoint, token=seeded_hub.bot_token)
    squatted = "unetbot/alice__tiny-lcm-GGUF"
    bot.create_repo(squatted)
    card = "---\n" + yaml.safe_dump({"unetbot": {"source_repo": "mallory/x"}}) + "---\n"
    bot.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=squatted)
    commits = len(bot.list_repo_commits(squatted))
    request = JobRequest(
        "alice/tiny-lcm", tmp_path / "out", variants="gguf-q8_0", publish=PublishMode.REPO
    )
    with pytest.raises(PolicySkipped, match="records 'mallory/x'"):
        run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))
    assert len(bot.list_repo_commits(squatted)) == commits


def test_a_private_repo_without_access_is_a_hub_error(seeded_hub, tmp_path):
    seeded_hub.owner_api().update_repo_settings("alice/tiny-lcm", private=True)
    proc = _bot(
        ["convert", "alice/tiny-lcm", "--publish", "pr", "--config", str(seeded_hub.config_path)],
        _env(seeded_hub.bot_token),
        tmp_path,
    )
    assert proc.returncode == ExitCode.HUB_ERROR, proc.stderr[-2000:]
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_superseded_prs_left_open_by_a_killed_run_are_closed_by_the_next(seeded_hub, tmp_path):
    """The crash window: a run opens the new revision's PR and dies before closing the old one
    (here the close call keeps failing); the next run sees two open PRs and closes the old."""
    from engine.errors import HubError
    from engine.synthetic.models import write_unet_folder

    config = load_config(seeded_hub.config_path)
    owner = seeded_hub.owner_api()

    def job(out: str):
        request = JobRequest(
            "alice/tiny-lcm", tmp_path / out, variants="original", publish=PublishMode.PR
        )
        return run_job(request, config, Hub(load_settings(), base_delay=0.01))

    def statuses() -> dict[int, str]:
        return {d.num: d.status for d in owner.get_repo_discussions("alice/tiny-lcm")}

    assert job("a").published
    (old,) = statuses()
    unet = write_unet_folder(tmp_path / "unet", "sd15-lcm", "tiny", seed=9)
    owner.upload_folder(repo_id="alice/tiny-lcm", folder_path=str(unet), path_in_repo="unet")
    seeded_hub.set_faults(
        [{"kind": "status", "status": 503, "method": "POST", "path": "/discussions/\\d+/status"}]
    )
    with pytest.raises(HubError):
        job("b")
    seeded_hub.set_faults([])
    assert list(statuses().values()).count("open") == 2
    again = job("c")
    assert again.skipped.startswith("already published"), again.summary()
    assert statuses()[old] == "closed" and list(statuses().values()).count("open") == 1
