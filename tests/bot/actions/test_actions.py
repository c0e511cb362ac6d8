"""The steps the GitHub Actions workflow calls: `bot actions ...` and the stdlib-only summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.actions import cli as actions
from bot.actions import summary
from bot.cli import app
from bot.schedule.plan import MAX_CHUNKS, Plan, write_github_output
from engine.errors import BadInput, ExitCode


def _bot(args: list[str]):
    return CliRunner().invoke(app, args)


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _manifest(folder: Path, repo: str, revision: str, artifacts: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(
        json.dumps(
            {
                "source": {"repo": repo, "revision": revision, "kind": "sd15"},
                "artifacts": artifacts,
                "schema_version": 1,
            }
        )
    )
    return path


def _artifact(variant: str, size: int, status: str | None, reason: str = "") -> dict:
    validation = None if status is None else {"status": status, "reason": reason, "metrics": {}}
    return {"variant": variant, "path": f"{variant}.bin", "bytes": size, "validation": validation}


# --- config -----------------------------------------------------------------------------------


def test_config_precedence(tmp_path):
    (tmp_path / ".github").mkdir()
    assert actions.resolve_config("", {}, tmp_path) == ""  # no file: built-in defaults
    (tmp_path / ".github" / "unetbot.yml").write_text("publish: {mode: pr}\n")
    assert actions.resolve_config("", {}, tmp_path) == str(tmp_path / ".github" / "unetbot.yml")
    assert actions.resolve_config("", {"UNETBOT_CONFIG": "env.yml"}, tmp_path) == "env.yml"
    assert actions.resolve_config(" var.yml ", {"UNETBOT_CONFIG": "env.yml"}, tmp_path) == "var.yml"
    assert actions.resolve_config("  ", {"UNETBOT_CONFIG": ""}, tmp_path).endswith("unetbot.yml")


def test_config_command_writes_github_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNETBOT_CONFIG", "/etc/bot.yml")
    github_env = tmp_path / "env"
    assert _bot(["actions", "config", "--github-env", str(github_env)]).exit_code == 0
    assert github_env.read_text() == "UNETBOT_CONFIG=/etc/bot.yml\n"


# --- single-entry -------------------------------------------------------------------------------


def test_single_entry_outputs_shape():
    out = actions.single_entry_outputs("alice/tiny-lcm")
    assert set(out) == {f"chunk_{i}" for i in range(MAX_CHUNKS)} | {"count", "has_work"}
    assert json.loads(out["chunk_0"]) == {
        "include": [{"repo_id": "alice/tiny-lcm", "revision": "", "kind": "", "targets": ""}]
    }
    assert [out[f"chunk_{i}"] for i in range(1, MAX_CHUNKS)] == ["", "", ""]
    assert (out["count"], out["has_work"]) == ("1", "true")


def test_single_entry_has_the_same_keys_as_bot_plan(tmp_path):
    """The workflow reads one set of outputs whichever path the plan step took."""
    planned = tmp_path / "plan"
    write_github_output(Plan(), planned)
    single = tmp_path / "single"
    run = _bot(["actions", "single-entry", "alice/tiny-lcm", "--github-output", str(single)])
    assert run.exit_code == 0
    assert list(_outputs(planned)) == list(_outputs(single))


@pytest.mark.parametrize("bad", ["", "alice", "alice/", "/x", "a/b/c", "alice/tiny lcm", "a/b\nc"])
def test_single_entry_rejects_non_repo_ids(bad, tmp_path):
    with pytest.raises(BadInput):
        actions.single_entry_outputs(bad)
    target = tmp_path / "out"
    run = _bot(["actions", "single-entry", bad, "--github-output", str(target)])
    assert run.exit_code == 2
    assert not target.exists()  # nothing half-written for the workflow to read
    assert "not a Hub repo id" in run.output


def test_append_outputs_refuses_multiline_values(tmp_path):
    with pytest.raises(BadInput):
        actions.append_outputs(tmp_path / "o", {"a": "x\nb=y"})


# --- convert helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("", False), ("false", False), ("False", False), ("true", True), (" TRUE ", True)],
)
def test_parse_bool(text, value):
    assert actions.parse_bool(text) is value


def test_parse_bool_rejects_other_text():
    with pytest.raises(BadInput):
        actions.parse_bool("maybe")


def test_skips_do_not_fail_the_job_but_failures_do():
    codes = [actions.job_exit_code(c) for c in ExitCode]
    assert codes == [0, 1, 2, 0, 4, 5, 0, 7]


def test_slug_is_a_single_path_component():
    assert actions.slug("alice/tiny-lcm") == "alice__tiny-lcm"


def test_convert_rejects_unknown_publish_mode(tmp_path, monkeypatch):
    """A bad mode is reported in result.json (for the summary) and fails the job with 2."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("UNETBOT_CONFIG", raising=False)
    run = _bot(["actions", "convert", "alice/x", "--publish", "everything", "--out", str(tmp_path)])
    assert run.exit_code == 2
    result = json.loads((tmp_path / "alice__x" / "result.json").read_text())
    assert result["exit_code"] == 2 and "everything" in result["error"]
    assert (tmp_path / "alice__x" / "convert.log").is_file()


# --- summary ------------------------------------------------------------------------------------


def test_summary_table_from_manifests(tmp_path):
    sha = "0123456789abcdef0123"
    m = _manifest(
        tmp_path / "a",
        "alice/tiny-lcm",
        sha,
        [
            _artifact("original", 3_400_000, "passed"),
            _artifact("gguf-q8_0", 1_800_000_000, "failed", "max abs error | 0.5 > 0.1"),
            _artifact("quanto-int8", 512, None),
        ],
    )
    text = summary.summary_markdown([m])
    assert "| source repo | revision | variant | size | validation |" in text
    assert "| alice/tiny-lcm | `0123456789ab` | original | 3.4 MB | passed |" in text
    assert "| gguf-q8_0 | 1.8 GB | failed: max abs error \\| 0.5 > 0.1 |" in text
    assert "| quanto-int8 | 512 B | not validated |" in text
    assert "No work" not in text


def test_summary_lines_for_results_and_plan(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = {
        "pub": {"repo_id": "alice/a", "exit_code": 0, "published": ["http://hub/alice/a/pr/1"]},
        "policy": {"repo_id": "alice/b", "exit_code": 6, "skipped": "gated repo"},
        "hub": {"repo_id": "alice/c", "exit_code": 5, "error": "429 Too Many Requests"},
        "invalid": {"repo_id": "alice/d", "exit_code": 4, "failed": ["gguf-q4_0"]},
        "done": {"repo_id": "alice/e", "exit_code": 0, "skipped": "already published"},
        "pickle": {"repo_id": "alice/g", "exit_code": 2, "skipped": "pickle-only UNet weights"},
        "dry": {"repo_id": "alice/f", "exit_code": 0, "dry_run": True, "planned": ["original"]},
    }
    paths = []
    for name, row in rows.items():
        paths.append(results / f"{name}.json")
        paths[-1].write_text(json.dumps(row))
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "skipped": [{"repo_id": "alice/sdxl", "reason": "not SD1.5: sdxl"}],
                "deferred": [{"repo_id": "alice/late", "reason": "run budget"}],
                "done": [{"repo_id": "alice/old", "reason": "already"}],
            }
        )
    )
    text = summary.summary_markdown([], paths, [plan])
    assert "- ✅ alice/a: published http://hub/alice/a/pr/1" in text
    assert "- ⏭️ alice/b: skipped by policy: gated repo" in text
    assert "- ❌ alice/c: Hub error: 429 Too Many Requests" in text
    assert "- ❌ alice/d: validation failed: gguf-q4_0" in text
    assert "- ⏭️ alice/e: already published" in text
    assert "- ❌ alice/g: bad input: pickle-only UNet weights" in text
    assert "- 🔍 alice/f: dry run, would convert original" in text
    assert "- ⏭️ alice/sdxl: skipped: not SD1.5: sdxl" in text
    assert "- ⏳ alice/late: deferred: run budget" in text
    assert "1 repo(s) already published" in text
    assert "No work" not in text  # something was published or failed


def test_summary_tolerates_missing_and_empty_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    manifests, results, plans = summary.collect([tmp_path / "missing", tmp_path / "empty"])
    assert (manifests, results, plans) == ([], [], [])
    assert "No work this run" in summary.summary_markdown(manifests, results, plans)


def test_summary_survives_unreadable_files(tmp_path):
    bad = tmp_path / "x" / "manifest.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    bad_result = tmp_path / "x" / "result.json"
    bad_result.write_text("[]")
    text = summary.summary_markdown(*summary.collect([tmp_path]))
    assert "unreadable manifest" in text and "unreadable result" in text


def test_summary_command_runs_without_project_dependencies(tmp_path):
    """The report job runs `python -m bot.actions.summary` with no `pip install`: stdlib only."""
    code = (
        "import sys, runpy; sys.modules['huggingface_hub'] = None; sys.modules['torch'] = None;"
        "sys.modules['numpy'] = None; sys.modules['yaml'] = None; sys.modules['typer'] = None;"
        f"sys.argv = ['bot.actions.summary', {str(tmp_path / 'nothing')!r}];"
        "runpy.run_module('bot.actions.summary', run_name='__main__')"
    )
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "No work this run" in proc.stdout
