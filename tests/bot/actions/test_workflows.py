"""The scheduled workflow, proven to run: `.github/workflows/bot.yml` executed step by step.

A small runner (`WorkflowRun`) reads bot.yml with pyyaml and runs each job's `run:` scripts with
bash, in job order: plan, then one convert job per matrix entry of each non-empty chunk, then
report. It gives every step `GITHUB_OUTPUT`, `GITHUB_ENV` and `GITHUB_STEP_SUMMARY` files and
resolves the `${{ ... }}` expressions the steps use from a small context (inputs, matrix, needs
outputs, secrets, vars, runner). Only plain context lookups are allowed in `env:`/`run:`/`with:`
values: anything cleverer belongs in Python, and the runner fails on it. `uses:` steps are
simulated: checkout copies `.github/`, setup-python is a no-op (PATH already points at the
project's venv), upload/download-artifact copy files with the step's own include/exclude
patterns; the environment's actions/cache is checked for its key, the stable-diffusion.cpp wheel's
is a miss. The installs, the stable-diffusion.cpp wheel build and the runner disk clean-up steps
are skipped.

The Hub is the embedded server seeded like `bot demo`, with a reduced variant set so the test
stays fast; HF_TOKEN reaches a step only through `secrets.HF_TOKEN` in that step's `env:`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from bot.schedule.plan import MAX_CHUNKS, MAX_MATRIX, Plan, write_github_output
from engine.run.variants import PublishTarget

ROOT = Path(__file__).resolve().parents[3]
WORKFLOW = ROOT / ".github" / "workflows" / "bot.yml"
VENV_BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
LOOKUP = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")
HASH_FILES = re.compile(r"hashFiles\(('[\w.-]+'(?:, '[\w.-]+')*)\)")
# What the prebuilt environment's cache key hashes: every file that decides what is installed.
CACHE_KEY_FILES = ("constraints.txt", "pyproject.toml", "setup.py")
ALWAYS = "${{ !cancelled() }}"  # the only step/job `if` the runner accepts besides the chunk tests
FAST_CONFIG = {
    "scan": {"searches": ["tiny"], "library": "diffusers"},
    "publish": {
        "mode": "all",
        "gguf_variants": ["gguf-q8_0"],
        "torchao_variants": [],
        "quanto_variants": ["quanto-int8"],
    },
}


# --- a tiny GitHub Actions runner ---------------------------------------------------------------


def lookup(context: dict, path: str) -> str:
    """A context value as Actions renders it into text: null -> '', booleans lower-case."""
    value: object = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(text: object, context: dict) -> str:
    """A YAML value as the runner sees it: text with its `${{ lookups }}` substituted."""
    if isinstance(text, bool):
        return "true" if text else "false"

    def one(match: re.Match) -> str:
        expr = match.group(1)
        files = HASH_FILES.fullmatch(expr)
        if files:  # Actions' hashFiles(): one digest of the named files' contents
            names = re.findall(r"'([^']+)'", files.group(1))
            return hashlib.sha256(b"".join((ROOT / n).read_bytes() for n in names)).hexdigest()
        if not LOOKUP.fullmatch(expr):
            raise AssertionError(f"expression too clever for a step (move it to Python): {expr}")
        return lookup(context, expr)

    return EXPRESSION.sub(one, str(text))


def read_kv_file(path: Path) -> dict[str, str]:
    """Parse a $GITHUB_OUTPUT / $GITHUB_ENV file (`k=v` lines and `k<<EOF ... EOF` blocks)."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[key] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if line:
            key, value = line.split("=", 1)
            values[key] = value
        i += 1
    return values


def glob_regex(pattern: str) -> re.Pattern:
    """An Actions path glob (`**` spans folders, `*` does not) as a regex."""
    out, i = "", 0
    pattern = pattern.rstrip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?")


@dataclass
class Job:
    name: str
    status: str = "success"
    outputs: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    summary: str = ""
    skipped_steps: list[str] = field(default_factory=list)
    ran_steps: list[str] = field(default_factory=list)
    workspace: Path | None = None


@dataclass
class WorkflowRun:
    """One run of bot.yml: `base_env` is the runner's environment (no secrets in it)."""

    tmp: Path
    base_env: dict[str, str]
    inputs: dict
    secrets: dict[str, str]
    vars: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    workflow: dict = field(default_factory=lambda: yaml.safe_load(WORKFLOW.read_text()))

    def context(self, job: Job, extra: dict) -> dict:
        needs = {k: {"outputs": j.outputs, "result": j.status} for k, j in self.jobs.items()}
        return {
            "inputs": self.inputs,
            "secrets": self.secrets,
            "vars": self.vars,
            "needs": needs,
            "github": {"job": job.name.split("[")[0], "workspace": str(job.workspace)},
            "runner": {"temp": str(self.tmp / "runner-temp" / job.name), "os": "Linux"},
            **extra,
        }

    def run_job(self, job_id: str, matrix: dict | None = None, index: int = 0) -> Job:
        spec = self.workflow["jobs"][job_id]
        name = f"{job_id}[{index}]" if matrix is not None else job_id
        job = Job(name, workspace=self.tmp / "workspaces" / name)
        job.workspace.mkdir(parents=True)
        runner_temp = self.tmp / "runner-temp" / name
        runner_temp.mkdir(parents=True)
        github_env = runner_temp / "github_env"
        github_env.touch()
        steps_ctx: dict[str, dict] = {}
        extra = {"matrix": matrix or {}, "strategy": {"job-index": index}, "steps": steps_ctx}
        for n, step in enumerate(spec["steps"]):
            label = step.get("name") or step.get("uses") or f"step {n}"
            condition = step.get("if")
            assert condition in (None, ALWAYS), f"{label}: unexpected if: {condition}"
            if job.status == "failure" and condition is None:
                job.skipped_steps.append(label)
                continue
            ctx = self.context(job, extra)
            env = {**self.workflow.get("env", {}), **spec.get("env", {})}
            env = {k: render(v, ctx) for k, v in env.items()}
            ctx["env"] = env
            if "uses" in step:
                self.simulate_action(job, step, ctx)
                job.ran_steps.append(label)
                continue
            script = step["run"]
            if step.get("id") in ("free-disk", "install", "sdcpp-wheel", "sdcpp-install"):
                # runner housekeeping / already installed / a C++ build (`make sdcpp-wheel`)
                job.skipped_steps.append(label)
                continue
            output = runner_temp / f"output-{n}"
            summary = runner_temp / f"summary-{n}"
            step_env = {k: render(v, ctx) for k, v in step.get("env", {}).items()}
            full_env = {
                **self.base_env,
                **env,
                **read_kv_file(github_env),
                **step_env,
                "GITHUB_OUTPUT": str(output),
                "GITHUB_ENV": str(github_env),
                "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_WORKSPACE": str(job.workspace),
                "GITHUB_JOB": ctx["github"]["job"],
                "RUNNER_TEMP": str(runner_temp),
            }
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-e", "-c", render(script, ctx)],
                cwd=job.workspace,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            job.logs.append(f"## {label} (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}")
            job.ran_steps.append(label)
            if "id" in step:
                steps_ctx[step["id"]] = {"outputs": read_kv_file(output)}
            if summary.exists():
                job.summary += summary.read_text()
            if proc.returncode != 0:
                job.status = "failure"
        ctx = self.context(job, extra)
        job.outputs = {k: render(v, ctx) for k, v in spec.get("outputs", {}).items()}
        self.jobs[name] = job
        return job

    def simulate_action(self, job: Job, step: dict, ctx: dict) -> None:
        action, _, ref = step["uses"].partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{step['uses']}: not pinned to a commit"
        inputs = {k: render(v, ctx) for k, v in (step.get("with") or {}).items()}
        if action == "actions/checkout":
            assert inputs.get("persist-credentials") == "false"
            shutil.copytree(ROOT / ".github", job.workspace / ".github")
        elif action == "actions/setup-python":
            pass  # PATH already starts with the project's venv
        elif action == "actions/cache" and inputs["path"] == "~/.cache/unetbot/sdcpp-wheels":
            assert inputs["key"].endswith(ctx["env"]["SDCPP_VERSION"])  # a miss here
        elif action == "actions/cache":  # the environment is already installed here
            assert inputs["path"] == "~/.unetbot-venv"
            digest = hashlib.sha256(
                b"".join((ROOT / n).read_bytes() for n in CACHE_KEY_FILES)
            ).hexdigest()
            assert inputs["key"].endswith(digest), inputs["key"]
        elif action == "actions/upload-artifact":
            self.upload(job, inputs)
        elif action == "actions/download-artifact":
            # v5+: one matching artifact lands in `path`, several in `path/<name>/` each.
            target = job.workspace / inputs["path"]
            pattern = inputs.get("pattern", "*")
            found = {n: f for n, f in self.artifacts.items() if fnmatchcase(n, pattern)}
            for name, folder in found.items():
                dest = target / name if len(found) > 1 else target
                shutil.copytree(folder, dest, dirs_exist_ok=True)
        else:
            raise AssertionError(f"no simulation for {action}")

    def upload(self, job: Job, inputs: dict) -> None:
        name = inputs["name"]
        assert name not in self.artifacts, f"artifact name {name} is not unique"
        assert not set(name) & set('":<>|*?\\/\r\n'), f"{name}: invalid artifact name"
        patterns = [p.strip() for p in inputs["path"].splitlines() if p.strip()]
        includes = [p for p in patterns if not p.startswith("!")]
        excludes = [glob_regex(p[1:]) for p in patterns if p.startswith("!")]
        assert len(includes) == 1, "the runner supports one search path per upload"
        root = job.workspace / includes[0]
        files = [
            p
            for p in (sorted(root.rglob("*")) if root.is_dir() else [])
            if p.is_file()
            and not any(x.fullmatch(p.relative_to(job.workspace).as_posix()) for x in excludes)
        ]
        if not files:
            assert inputs.get("if-no-files-found") == "ignore"
            return
        stored = self.tmp / "artifacts" / name
        for f in files:
            (stored / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, stored / f.relative_to(root))
        self.artifacts[name] = stored

    def run(self) -> WorkflowRun:
        """plan -> convert-N (one job per entry of each non-empty chunk) -> report."""
        jobs = self.workflow["jobs"]
        assert list(jobs) == ["plan", *(f"convert-{n}" for n in range(MAX_CHUNKS)), "report"]
        plan = self.run_job("plan")
        for n in range(MAX_CHUNKS):
            if plan.status != "success":
                break  # a job whose `needs` failed is skipped
            spec = jobs[f"convert-{n}"]
            chunk = f"needs.plan.outputs.chunk_{n}"
            assert spec["if"] == f"{chunk} != ''"
            assert spec["strategy"]["matrix"] == f"${{{{ fromJSON({chunk}) }}}}"
            assert spec["strategy"]["fail-fast"] is False
            assert spec["strategy"]["max-parallel"] >= 1 and spec["timeout-minutes"] >= 1
            assert spec["concurrency"]["group"] == "unetbot-${{ matrix.repo_id }}"
            if plan.outputs[f"chunk_{n}"]:
                matrix = json.loads(plan.outputs[f"chunk_{n}"])
                for i, entry in enumerate(matrix["include"]):
                    self.run_job(f"convert-{n}", entry, i)
        assert jobs["report"]["if"] == ALWAYS
        self.run_job("report")
        return self

    @property
    def summary(self) -> str:
        return self.jobs["report"].summary

    def converts(self) -> list[Job]:
        return [j for k, j in self.jobs.items() if k.startswith("convert-")]

    def all_logs(self) -> str:
        return "\n".join(log for j in self.jobs.values() for log in j.logs)


# --- the embedded Hub ---------------------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    endpoint: str
    owner_token: str = field(repr=False)
    bot_token: str = field(repr=False)
    env: dict[str, str] = field(repr=False)

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.bot_token)

    def run(self, name: str, inputs: dict) -> WorkflowRun:
        run = WorkflowRun(
            self.tmp / name, dict(self.env), inputs, secrets={"HF_TOKEN": self.bot_token}
        ).run()
        leaked = [
            p
            for p in (self.tmp / name).rglob("*")
            if p.is_file() and self.bot_token.encode() in p.read_bytes()
        ]
        assert not leaked, f"the token was written to {leaked}"
        assert self.bot_token not in run.all_logs() + run.summary
        return run

    def bot_prs(self, repo_id: str) -> list:
        return [
            d
            for d in self.api().get_repo_discussions(repo_id, discussion_type="pull_request")
            if d.author == "unetbot"
        ]


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A fresh embedded Hub seeded like the demo, and the runner's environment for it."""
    from huggingface_hub import HfApi

    from bot.hub import start_hub
    from bot.seed import accounts_env, seed_repos, write_accounts
    from bot.settings import load_settings

    accounts = write_accounts(tmp_path / "hub")
    with start_hub(tmp_path / "hub" / "data", config=accounts.config_path) as hub:
        hub_env = accounts_env(hub.endpoint, accounts, tmp_path / "unused-cache")
        for key, value in hub_env.items():
            monkeypatch.setenv(key, value)
        load_settings()  # the local Hub has no Xet: applies that before the seeding uploads
        seed_repos(HfApi(endpoint=hub.endpoint, token=accounts.owner_token), tmp_path / "seed")
        config = tmp_path / "bot-config.yml"
        config.write_text(yaml.safe_dump(FAST_CONFIG))
        env = {k: v for k, v in hub_env.items() if k != "HF_TOKEN"}  # secrets only via `env:`
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
            HOME=str(tmp_path / "home"),
            HF_HOME=str(tmp_path / "hf-home"),
            UNETBOT_CONFIG=str(config),
            LANG="C.UTF-8",
            CI="true",
            GITHUB_ACTIONS="true",
        )
        yield World(tmp_path, hub.endpoint, accounts.owner_token, accounts.bot_token, env)


def test_scheduled_run_plans_converts_publishes_and_reports(world):
    from bot.publish.state import target_repo

    run = world.run("schedule", inputs={})  # a scheduled run has no inputs
    plan = run.jobs["plan"]
    assert plan.status == "success", plan.logs
    assert plan.outputs["count"] == "3" and plan.outputs["has_work"] == "true"
    chunks = [json.loads(plan.outputs[f"chunk_{n}"])["include"] for n in (0, 1, 2)]
    entries = [e for chunk in chunks for e in chunk]
    assert [len(chunk) for chunk in chunks] == [1, 1, 1]  # dealt out, so all run in parallel
    converted = ["alice/tiny-lcm", "alice/tiny-pickle", "alice/tiny-sd15"]
    assert sorted(e["repo_id"] for e in entries) == converted
    assert all(len(e["revision"]) == 40 and e["kind"] and e["targets"] for e in entries)
    assert plan.outputs["chunk_3"] == ""
    assert any(s.startswith("Install unetbot") for s in plan.skipped_steps)

    converts = run.converts()
    assert len(converts) == 3 and all(j.status == "success" for j in converts), run.all_logs()
    assert all(j.skipped_steps[0].startswith("Free disk space") for j in converts)

    # Manifests and logs reached the report job; weights never left the convert jobs.
    report_files = list((run.jobs["report"].workspace / "out").rglob("*"))
    names = {p.name for p in report_files}
    assert {"plan.json", "manifest.json", "result.json", "convert.log"} <= names
    assert not [p for p in report_files if p.suffix in (".safetensors", ".gguf", ".bin")]

    summary = run.summary
    assert "| source repo | revision | variant | size | validation |" in summary
    for repo, variants in {
        "alice/tiny-lcm": ["original", "gguf-q8_0", "quanto-int8"],
        "alice/tiny-sd15": ["original", "original-full", "gguf-q8_0", "quanto-int8"],
        "alice/tiny-pickle": ["original", "gguf-q8_0", "quanto-int8"],  # from .bin weights
    }.items():
        for variant in variants:
            assert re.search(rf"\| {re.escape(repo)} \| `[0-9a-f]{{12}}` \| {variant} \|", summary)
    assert "gguf-q4_0" not in summary  # the reduced config from UNETBOT_CONFIG was used
    assert "| failed" not in summary
    assert "alice/tiny-sdxl: skipped" in summary and "alice/tiny-hostile: skipped" in summary
    assert summary.count("- ✅") == 9  # 3 PRs + 3 GGUF repos + 3 quanto repos

    api = world.api()
    for repo in converted:
        assert len(world.bot_prs(repo)) == 1
        for kind in (PublishTarget.GGUF, PublishTarget.QUANTO):
            assert api.repo_exists(target_repo(kind, repo, "unetbot"))
        assert not api.repo_exists(target_repo(PublishTarget.TORCHAO, repo, "unetbot"))
    for repo in ("alice/tiny-sdxl", "alice/tiny-gated", "alice/tiny-optout", "alice/tiny-hostile"):
        assert not world.bot_prs(repo)

    # The next scheduled run finds nothing to redo: no convert job, "no work" in the summary.
    again = world.run("schedule-again", inputs={})
    assert again.jobs["plan"].outputs["has_work"] == "false"
    assert not again.converts()
    assert "No work this run" in again.summary
    assert "3 repo(s) already published" in again.summary
    assert all(len(world.bot_prs(r)) == 1 for r in converted)


def test_dispatch_with_repo_id_skips_scanning(world):
    from bot.publish.state import target_repo

    inputs = {"repo_id": "alice/tiny-lcm", "variants": "auto", "publish": "pr", "dry_run": False}
    run = world.run("dispatch", inputs)
    plan = run.jobs["plan"]
    assert plan.status == "success", plan.logs
    assert json.loads(plan.outputs["chunk_0"]) == {
        "include": [{"repo_id": "alice/tiny-lcm", "revision": "", "kind": "", "targets": ""}]
    }
    assert (plan.outputs["count"], plan.outputs["has_work"]) == ("1", "true")
    assert "unetbot-plan" not in run.artifacts  # no scan, so no plan.json
    assert [j.status for j in run.converts()] == ["success"], run.all_logs()
    assert "| alice/tiny-lcm |" in run.summary and "gguf-q8_0" not in run.summary

    api = world.api()
    assert len(world.bot_prs("alice/tiny-lcm")) == 1
    assert not world.bot_prs("alice/tiny-sd15")
    assert not api.repo_exists(target_repo(PublishTarget.GGUF, "alice/tiny-lcm", "unetbot"))

    # A dry run of an unsupported repo: the job succeeds, the summary says why nothing happened.
    dry = world.run(
        "dispatch-dry",
        {"repo_id": "alice/tiny-sdxl", "variants": "auto", "publish": "all", "dry_run": True},
    )
    assert [j.status for j in dry.converts()] == ["success"], dry.all_logs()
    assert re.search(r"- ⏭️ alice/tiny-sdxl: (unsupported|skipped by policy): ", dry.summary)
    assert not world.bot_prs("alice/tiny-sdxl")


def test_dispatch_with_a_bad_repo_id_fails_the_plan(world):
    run = world.run("bad", {"repo_id": "not a repo", "publish": "all", "dry_run": False})
    assert run.jobs["plan"].status == "failure"
    assert not run.converts()
    assert "No work this run" in run.summary


# --- plan chunking (no Hub) ---------------------------------------------------------------------


def test_more_than_256_entries_are_chunked(tmp_path):
    entries = [
        {"repo_id": f"o/m{i}", "revision": f"{i:040x}", "kind": "sd15", "targets": "pr"}
        for i in range(300)
    ]
    path = tmp_path / "out"
    write_github_output(Plan(entries=list(entries)), path)
    out = read_kv_file(path)
    sizes = [
        len(json.loads(out[f"chunk_{n}"])["include"]) if out[f"chunk_{n}"] else 0
        for n in range(MAX_CHUNKS)
    ]
    assert sizes == [75, 75, 75, 75]  # dealt round-robin: every chunk job runs in parallel
    assert json.loads(out["chunk_1"])["include"][:2] == [entries[1], entries[5]]
    assert (out["count"], out["has_work"]) == ("300", "true")


def test_more_than_four_chunks_are_deferred(tmp_path):
    plan = Plan(
        entries=[
            {"repo_id": f"o/m{i}", "revision": "", "kind": "", "targets": ""}
            for i in range(MAX_CHUNKS * MAX_MATRIX + 5)
        ]
    )
    path = tmp_path / "out"
    write_github_output(plan, path)
    out = read_kv_file(path)
    assert all(
        len(json.loads(out[f"chunk_{n}"])["include"]) == MAX_MATRIX for n in range(MAX_CHUNKS)
    )
    assert out["count"] == str(MAX_CHUNKS * MAX_MATRIX) and len(plan.deferred) == 5


def test_empty_plan_has_no_work(tmp_path):
    path = tmp_path / "out"
    write_github_output(Plan(), path)
    out = read_kv_file(path)
    assert [out[f"chunk_{n}"] for n in range(MAX_CHUNKS)] == [""] * MAX_CHUNKS
    assert (out["count"], out["has_work"]) == ("0", "false")


def test_run_steps_are_thin_and_inputs_never_reach_scripts_directly():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            script = step.get("run", "")
            assert "${{" not in script, f"{job_id}: template in a script: {script}"
            assert "HF_TOKEN" not in script, f"{job_id}: a script touches the token"
            if "HF_TOKEN" in step.get("env", {}):
                assert step["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
                assert ("bot plan" in script) or ("bot actions convert" in script), step
    assert "HF_TOKEN" not in json.dumps(workflow.get("env", {}))
    assert all("HF_TOKEN" not in json.dumps(j.get("env", {})) for j in workflow["jobs"].values())
    assert workflow["permissions"] == {"contents": "read"}
    assert all("permissions" not in j for j in workflow["jobs"].values())


def test_actions_are_pinned_to_commits_with_their_tag():
    """Every `uses:` names a full commit SHA, with the release tag it came from in a comment."""
    for path in sorted(WORKFLOW.parent.glob("*.yml")):
        uses = [line.strip() for line in path.read_text().splitlines() if "uses:" in line]
        assert uses, path
        for line in uses:
            assert re.fullmatch(
                r"(?:- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line
            ), f"{path.name}: {line}"
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


# --- the cadence (bot/schedule/cadence.py, README "Cadence") ------------------------------------


def test_the_schedule_is_the_cadence_derived_from_the_measured_job():
    """bot.yml and the shipped config carry exactly what `derive` computes from the measured
    cost of one job, within GitHub's limits, and the README shows that arithmetic."""
    from bot.config import load_config
    from bot.schedule import cadence

    c = cadence.derive()
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["schedule"] == [{"cron": c.cron()}]  # pyyaml reads `on:` as True
    assert workflow["concurrency"] == {"group": "unetbot-schedule", "cancel-in-progress": False}
    converts = {n: j for n, j in workflow["jobs"].items() if n.startswith("convert-")}
    assert len(converts) == c.chunks == MAX_CHUNKS
    for job in converts.values():
        assert job["strategy"]["max-parallel"] == c.max_parallel
        assert job["timeout-minutes"] == c.convert_timeout
    assert workflow["jobs"]["plan"]["timeout-minutes"] == c.plan_timeout
    shipped = load_config(ROOT / ".github" / "unetbot.yml")
    assert shipped.budget.max_repos == c.max_repos
    assert shipped.scan.max_minutes < c.plan_timeout  # the plan always saves its ledger

    # GitHub's limits: concurrent jobs of a free account, jobs per matrix, hours per job.
    assert c.concurrency + cadence.RESERVED_JOBS <= cadence.FREE_CONCURRENT_JOBS
    assert c.max_repos <= c.chunks * MAX_MATRIX
    assert c.convert_timeout <= cadence.JOB_LIMIT_MINUTES
    assert c.run_minutes(cadence.MEASURED) <= c.interval_hours * 60  # a run ends before the next

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Cadence", 1)[1].split("\n## ", 1)[0]
    m = cadence.MEASURED
    for figure in (
        f"{m.job:g} min",
        f"{m.fixed:g} min",
        f"{c.waves} rounds",
        f"`budget.max_repos: {c.max_repos}`",
        f"`{c.cron()}`",
        f"max-parallel: {c.max_parallel}",
        f"timeout-minutes: {c.convert_timeout}",
        f"{c.repos_per_day:,} sources a day",
        f"{c.days_to_clear(10_000):g} days",
    ):
        assert figure in section, figure
