"""The bot end to end against the embedded Hub, through the real huggingface_hub client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from bot.client.hub import Hub
from bot.config import PublishMode, load_config
from bot.demo import run_round
from bot.job.run import JobRequest, run_job
from bot.schedule.plan import make_plan
from bot.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _bot_prs(api, repo_id: str) -> list:
    return [
        d
        for d in api.get_repo_discussions(repo_id, author="unetbot", discussion_type="pull_request")
    ]


def _card(seeded_hub, repo_id: str) -> ModelCard:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(
        repo_id,
        "README.md",
        endpoint=seeded_hub.endpoint,
        token=seeded_hub.bot_token,
        cache_dir=seeded_hub.workdir / "card-cache",
        force_download=True,
    )
    return ModelCard(Path(path).read_text())


def _commits(api, repo_id: str) -> int:
    return len(api.list_repo_commits(repo_id))


def _cli_convert(seeded_hub, repo_id: str, out: Path) -> list[str]:
    """`bot convert REPO --publish pr` with the seeded Hub's config, as its own process."""
    config = str(seeded_hub.config_path)
    cli = [sys.executable, "-m", "bot.cli", "convert", repo_id, "--publish", "pr"]
    return [*cli, "--config", config, "--out", str(out)]


def test_demo_scenario_publishes_once_and_explains_every_skip(seeded_hub, tmp_path):
    api = seeded_hub.owner_api()
    first = run_round("first", seeded_hub.config_path, tmp_path / "out1")
    outcomes = {(repo, outcome) for repo, outcome, _ in first.rows}
    reasons = {repo: detail for repo, outcome, detail in first.rows if outcome == "skipped"}
    assert "gated" in reasons["alice/tiny-gated"]
    assert "opted out" in reasons["alice/tiny-optout"]
    assert "the Hub's pickle scan flags posix.system" in reasons["alice/tiny-hostile"]
    assert "SDXL" in reasons["alice/tiny-sdxl"]
    assert ("alice/tiny-lcm", "published") in outcomes
    assert ("alice/tiny-sd15", "published") in outcomes
    assert ("alice/tiny-pickle", "published") in outcomes

    # One PR per source repo; the full checkpoint only where VAE + text encoder exist.
    for repo, files in (
        ("alice/tiny-lcm", {"tiny-lcm.unet.safetensors"}),
        ("alice/tiny-sd15", {"tiny-sd15.unet.safetensors", "tiny-sd15.safetensors"}),
    ):
        prs = _bot_prs(api, repo)
        assert len(prs) == 1
        pr_files = set(api.list_repo_files(repo, revision=f"refs/pr/{prs[0].num}"))
        assert files <= pr_files
        details = api.get_discussion_details(repo, prs[0].num)
        assert seeded_hub.repos[repo] in details.events[0].content  # source sha in description

    # New repos: weights on main, card with base_model + quantized relation + source revision.
    for repo in (
        "unetbot/alice__tiny-lcm-GGUF",
        "unetbot/alice__tiny-lcm-torchao-int8",
        "unetbot/alice__tiny-lcm-quanto",
    ):
        card = _card(seeded_hub, repo)
        assert card.data.base_model == "alice/tiny-lcm"
        assert card.data.base_model_relation == "quantized"
        assert card.data.license == "creativeml-openrail-m"
        assert (
            card.data.to_dict()["unetbot"]["source_revision"] == seeded_hub.repos["alice/tiny-lcm"]
        )
        assert "cond_proj" in card.text  # LCM note
    gguf_files = set(api.list_repo_files("unetbot/alice__tiny-sd15-GGUF"))
    assert {"tiny-sd15-Q8_0.gguf", "tiny-sd15-full-Q8_0.gguf", "LICENSE", "README.md"} <= gguf_files
    commits_before = {
        r: _commits(api, r)
        for r in ("unetbot/alice__tiny-lcm-GGUF", "unetbot/alice__tiny-sd15-quanto")
    }

    second = run_round("second", seeded_hub.config_path, tmp_path / "out2")
    assert not [row for row in second.rows if row[1] == "published"]
    done = {repo for repo, outcome, _ in second.rows if outcome == "already done"}
    assert {"alice/tiny-lcm", "alice/tiny-sd15"} <= done
    assert len(_bot_prs(api, "alice/tiny-lcm")) == 1
    assert commits_before == {r: _commits(api, r) for r in commits_before}


def _convert(
    seeded_hub, repo: str, publish: str, out: Path, variants: str = "auto", grid: bool = False
):
    request = JobRequest(
        repo, out, variants=variants, publish=PublishMode.parse(publish), grid=grid
    )
    return run_job(request, load_config(seeded_hub.config_path), Hub(load_settings()))


def test_commit_applied_but_answer_lost_is_not_repeated(seeded_hub, tmp_path):
    """The server applies the PR commit, then the connection drops: the retry finds the PR."""
    api = seeded_hub.owner_api()
    seeded_hub.set_faults(
        [{"kind": "drop", "method": "POST", "path": "/commit/", "calls": [1], "after_bytes": 0}]
    )
    result = _convert(seeded_hub, "alice/tiny-lcm", "pr", tmp_path / "out")
    assert result.exit_code == 0
    assert len(result.published) == 1
    assert len(_bot_prs(api, "alice/tiny-lcm")) == 1


def test_run_killed_mid_publish_then_rerun_gives_one_pr(seeded_hub, tmp_path):
    api = seeded_hub.owner_api()
    seeded_hub.set_faults(
        [{"kind": "delay", "method": "POST", "path": "/commit/", "calls": [1], "delay": 4}]
    )
    env = dict(os.environ)
    proc = subprocess.Popen(
        _cli_convert(seeded_hub, "alice/tiny-lcm", tmp_path / "killed"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    rule = seeded_hub.running.state.faults.snapshot()[0]
    while rule.get("seen", 0) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        rule = seeded_hub.running.state.faults.snapshot()[0]
    assert rule.get("seen", 0) >= 1, "the killed run never reached the commit"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(5)  # the killed request's handler finishes (or fails) server-side first
    seeded_hub.set_faults([])
    result = _convert(seeded_hub, "alice/tiny-lcm", "pr", tmp_path / "rerun")
    assert result.exit_code == 0
    rerun = _convert(seeded_hub, "alice/tiny-lcm", "pr", tmp_path / "rerun2")
    assert rerun.skipped.startswith("already published")
    assert len(_bot_prs(api, "alice/tiny-lcm")) == 1


def test_new_source_revision_is_picked_up_and_supersedes(seeded_hub, tmp_path):
    from engine.synthetic.models import write_unet_folder

    api = seeded_hub.owner_api()
    first = _convert(seeded_hub, "alice/tiny-lcm", "all", tmp_path / "a")
    assert first.exit_code == 0
    new_unet = write_unet_folder(tmp_path / "new-unet", "sd15-lcm", "tiny", seed=42)
    api.upload_folder(repo_id="alice/tiny-lcm", folder_path=str(new_unet), path_in_repo="unet")
    new_sha = api.model_info("alice/tiny-lcm").sha
    assert new_sha != seeded_hub.repos["alice/tiny-lcm"]
    config = load_config(seeded_hub.config_path)
    plan = make_plan(Hub(load_settings()), config)
    assert {e["repo_id"]: e["revision"] for e in plan.entries}.get("alice/tiny-lcm") == new_sha
    second = _convert(seeded_hub, "alice/tiny-lcm", "all", tmp_path / "b")
    assert second.exit_code == 0
    prs = sorted(_bot_prs(api, "alice/tiny-lcm"), key=lambda d: d.num)
    assert [p.status for p in prs] == ["closed", "open"]  # the old PR is superseded
    card = _card(seeded_hub, "unetbot/alice__tiny-lcm-GGUF")
    assert card.data.to_dict()["unetbot"]["source_revision"] == new_sha


def _strict(monkeypatch, name: str) -> None:
    """Make one variant's validation fail: no quantized file can meet this bound."""
    import dataclasses

    from engine.run.variants import VARIANTS
    from engine.validation.thresholds import Threshold

    strict = Threshold(1.01, 0.0, 0.0)
    monkeypatch.setitem(VARIANTS, name, dataclasses.replace(VARIANTS[name], threshold=strict))


def test_validation_failure_publishes_nothing(seeded_hub, tmp_path, monkeypatch):
    _strict(monkeypatch, "gguf-q8_0")
    api = seeded_hub.owner_api()
    result = _convert(seeded_hub, "alice/tiny-sd15", "repo", tmp_path / "out", variants="gguf-q8_0")
    assert result.exit_code == 4
    assert result.failed() == ["gguf-q8_0"]
    assert result.published == []
    assert "unetbot/alice__tiny-sd15-GGUF" not in {m.id for m in api.list_models(author="unetbot")}


def test_one_failed_variant_does_not_sink_the_rest(seeded_hub, tmp_path, monkeypatch):
    """The passing GGUF is published, the card says what was left out and why, and the next
    run with the same source revision and unetbot version does not redo the failed one."""
    _strict(monkeypatch, "gguf-q8_0")
    api = seeded_hub.owner_api()
    variants = "gguf-q8_0,gguf-f16"
    result = _convert(seeded_hub, "alice/tiny-sd15", "repo", tmp_path / "a", variants=variants)
    assert result.exit_code == 4 and result.failed() == ["gguf-q8_0"]
    assert len(result.published) == 1, result.summary()
    repo = "unetbot/alice__tiny-sd15-GGUF"
    files = set(api.list_repo_files(repo))
    assert "tiny-sd15-F16.gguf" in files and "tiny-sd15-Q8_0.gguf" not in files
    card = _card(seeded_hub, repo)
    assert set(card.data.to_dict()["unetbot"]["left_out"]) == {"gguf-q8_0"}
    left = card.text.split("## Left out")[1].split("##")[0]
    assert "`gguf-q8_0`" in left and "rel L2" in result.left_out["gguf"]["gguf-q8_0"], left
    again = _convert(seeded_hub, "alice/tiny-sd15", "repo", tmp_path / "b", variants=variants)
    assert again.skipped.startswith("already published") and again.manifest is None


@pytest.mark.parametrize(
    ("repo", "code"),
    [("alice/tiny-sdxl", 3), ("alice/tiny-gated", 6), ("alice/tiny-hostile", 6)],
)
def test_convert_refuses_with_documented_exit_code(seeded_hub, tmp_path, repo, code):
    proc = subprocess.run(
        _cli_convert(seeded_hub, repo, tmp_path / "o"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_grid_is_published_with_the_repo_card(seeded_hub, tmp_path):
    """--grid on an LCM pipeline with a VAE: the PNG lands in the new repo and its card shows it."""
    from bot.seed import _card as seed_card
    from bot.seed import _upload
    from engine.synthetic.models import write_pipeline_folder

    api = seeded_hub.owner_api()
    folder = write_pipeline_folder(tmp_path / "src", "sd15-lcm", "tiny")
    (folder / "README.md").write_text(seed_card("creativeml-openrail-m", ["diffusers", "lcm"]))
    _upload(api, "alice/tiny-lcm-pipeline", folder)
    result = _convert(
        seeded_hub, "alice/tiny-lcm-pipeline", "repo", tmp_path / "out", "gguf-q8_0", grid=True
    )
    assert result.exit_code == 0, result.summary()
    repo = "unetbot/alice__tiny-lcm-pipeline-GGUF"
    assert "validation-grid.png" in set(api.list_repo_files(repo))
    assert "](validation-grid.png)" in _card(seeded_hub, repo).text
