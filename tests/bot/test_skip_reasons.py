"""Every "nothing to do" states its true cause in `skipped` (the summary and `--json`), worded
by bot/reasons.py: one test per cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from bot import reasons
from bot.client.hub import Hub
from bot.config import PublishMode, load_config
from bot.job.run import JobRequest, run_job
from bot.settings import load_settings
from engine.synthetic.zoo import build_zoo

ROOT = Path(__file__).resolve().parents[2]
CARD = {"license": "creativeml-openrail-m", "library_name": "diffusers", "tags": ["diffusers"]}


def _cli_json(seeded_hub, *args: str) -> dict:
    cmd = [sys.executable, "-m", "bot.cli", "convert", *args, "--json"]
    cmd += ["--config", str(seeded_hub.config_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _job(seeded_hub, repo: str, out: Path, publish: str, **kwargs):
    request = JobRequest(repo, out, publish=PublishMode.parse(publish), **kwargs)
    return run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))


def test_a_repo_that_ships_an_original_checkpoint_says_so(seeded_hub, tmp_path):
    """The issue's case: not "already published" (nothing was), and the grammar fixed."""
    zoo = build_zoo(tmp_path / "zoo", names=["lcm-root-checkpoint"])
    folder = zoo["lcm-root-checkpoint"].folder
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(CARD)}---\n\n# root\n")
    api = seeded_hub.owner_api()
    api.create_repo("alice/lcm-root-checkpoint")
    api.upload_folder(repo_id="alice/lcm-root-checkpoint", folder_path=str(folder))
    result = _cli_json(
        seeded_hub, "alice/lcm-root-checkpoint", "--publish", "pr", "--dry-run",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    filename = zoo["lcm-root-checkpoint"].expected.root_checkpoint
    assert result["skipped"] == reasons.ships_original(filename, "a full checkpoint")
    assert result["skipped"] == (
        f"the repo already ships an original checkpoint ({filename}: a full checkpoint)"
    )
    assert not any("a original" in n for n in result["notes"])


def test_already_published_comes_from_the_hub_markers_or_the_ledger(seeded_hub, tmp_path):
    sha = seeded_hub.repos["alice/tiny-lcm"]
    first = _job(seeded_hub, "alice/tiny-lcm", tmp_path / "a", "pr")
    assert first.exit_code == 0 and first.published and first.skipped == ""
    # --dry-run reads no ledger: the PR's marker on the Hub decides
    dry = _cli_json(seeded_hub, "alice/tiny-lcm", "--publish", "pr", "--dry-run")
    assert dry["skipped"] == reasons.already_published(sha)
    assert dry["skipped"] == f"already published for revision {sha[:12]}"
    again = _job(seeded_hub, "alice/tiny-lcm", tmp_path / "b", "pr")
    assert again.skipped == reasons.already_published(sha, by_ledger=True)
    assert again.manifest is None and again.published == []


def test_targets_the_variants_leave_empty_are_not_a_cause_beside_a_published_one(
    seeded_hub, tmp_path
):
    sha = seeded_hub.repos["alice/tiny-lcm"]
    first = _job(seeded_hub, "alice/tiny-lcm", tmp_path / "a", "repo", variants="gguf-q8_0")
    assert first.exit_code == 0 and len(first.published) == 1
    result = _cli_json(
        seeded_hub, "alice/tiny-lcm", "--publish", "all", "--variants", "gguf-q8_0",
        "--dry-run", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result["skipped"] == reasons.already_published(sha)
    assert any("the pr target" in n for n in result["notes"]), result["notes"]  # said there


def test_variants_that_leave_every_target_empty_say_so():
    why = {"torchao": reasons.nothing_chosen("torchao"), "quanto": reasons.nothing_chosen("quanto")}
    assert reasons.combine(why) == (
        "torchao: no variant chosen for torchao; quanto: no variant chosen for quanto"
    )


def test_causes_of_several_targets_are_joined_unless_they_agree():
    same = reasons.already_published("a" * 40)
    assert reasons.combine({"gguf": same, "quanto": same}) == same
    mixed = reasons.combine(
        {
            "pr": reasons.ships_original("x.safetensors"),
            "gguf": same,
            "quanto": reasons.nothing_chosen("quanto"),  # not asked for: not a cause here
        }
    )
    assert mixed == (
        "pr: the repo already ships an original checkpoint (x.safetensors); "
        f"gguf: already published for revision {'a' * 12}"
    )
    held = reasons.held_back(["gguf"], "9.9.9")
    assert held.startswith("not redone: gguf failed validation") and "9.9.9" in held
