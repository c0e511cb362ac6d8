"""The unit of work of the scheduled workflow: one full-size source repo through one matrix job.

A full-size random-weight SD1.5 pipeline in fp16 (UNet 1.72 GB, VAE, CLIP text encoder:
`engine.synthetic.models`, built once per work folder in a subprocess) is uploaded by its owner
to the embedded Hub through huggingface_hub. Then the matrix job's step runs as the workflow runs
it: `bot actions convert REPO --out out` with the bot's token, the shipped config
(`.github/unetbot.yml`, or `--config`) and a fresh download cache, as on a new runner.

It runs under GNU time (whole-process wall and peak RSS) through benchmarks/_stages.py, which
times the job's own stages (judge, fetch, convert + validate, publish, ledger) and their peak
RSS. Afterwards the Hub is read back: bytes downloaded (the fresh cache), bytes published into
the bot's namespace (every file of its repos but the ledger) and in the PR on the source repo.

Usage: .venv/bin/python benchmarks/per_repo.py [--work DIR] [--config FILE] [--json OUT]
Heavy (minutes, GBs): run it under `flock /tmp/unetbot-heavy.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, full_size_source, local_hub_client, machine, table, time_v

local_hub_client()  # before huggingface_hub is imported

import yaml  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402

from bot.hub import start_hub  # noqa: E402

OWNER, BOT = "alice", "unetbot"
SOURCE = f"{OWNER}/sd15-full"
SHIPPED = ROOT / ".github" / "unetbot.yml"
STAGE_ORDER = ["judge", "fetch", "convert + validate", "publish", "ledger", "other"]


def _hub_config(path: Path) -> tuple[str, str]:
    owner, bot = f"hf_{secrets.token_hex(16)}", f"hf_{secrets.token_hex(16)}"
    path.write_text(
        yaml.safe_dump(
            {
                "users": [{"name": OWNER}, {"name": BOT}],
                "tokens": [
                    {"id": "owner-w", "user": OWNER, "role": "write", "token": owner},
                    {"id": "bot-w", "user": BOT, "role": "write", "token": bot},
                ],
            }
        )
    )
    return owner, bot


def _repo_bytes(api: HfApi, repo_id: str, revision: str | None = None, **kw) -> dict[str, int]:
    info = api.repo_info(repo_id, revision=revision, files_metadata=True, **kw)
    return {s.rfilename: s.size or 0 for s in info.siblings}


def published(api: HfApi, source_files: set[str]) -> dict:
    """Bytes the job put on the Hub: per repo of the bot's namespace, and the PR's own files."""
    repos = {m.id: _repo_bytes(api, m.id) for m in api.list_models(author=BOT) if m.id != SOURCE}
    pr_files: dict[str, int] = {}
    prs = [d for d in api.get_repo_discussions(SOURCE) if d.is_pull_request]
    for pr in prs:
        files = _repo_bytes(api, SOURCE, revision=f"refs/pr/{pr.num}")
        pr_files.update({k: v for k, v in files.items() if k not in source_files})
    return {
        "repos": {r: sum(f.values()) for r, f in repos.items()},
        "files": {r: f for r, f in repos.items()},
        "namespace_bytes": sum(sum(f.values()) for f in repos.values()),
        "pr_bytes": sum(pr_files.values()),
        "pr_files": pr_files,
    }


def tiny_source(work: Path) -> Path:
    """A tiny pipeline of the same layout, to try the benchmark itself in seconds."""
    from engine.synthetic.models import write_pipeline_folder

    root = work / "sd15-tiny-pipeline"
    if not root.is_dir():
        write_pipeline_folder(root, "sd15", "tiny", "float16", 0, True)
    return root


def run(work: Path, config: Path, tiny: bool = False) -> dict:
    src = tiny_source(work) if tiny else full_size_source(work, "sd15", with_pipeline=True)
    hub_cfg = work / "hub.yaml"
    owner, bot = _hub_config(hub_cfg)
    hub_root = work / "hub"
    with start_hub(hub_root, config=hub_cfg, durable=False) as running:
        owner_api = HfApi(endpoint=running.endpoint, token=owner)
        owner_api.create_repo(SOURCE)
        owner_api.upload_folder(repo_id=SOURCE, folder_path=src, commit_message="upload")
        card = "---\nlicense: creativeml-openrail-m\nlibrary_name: diffusers\n---\n# sd15\n"
        owner_api.upload_file(
            path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=SOURCE
        )
        source_files = set(owner_api.list_repo_files(SOURCE))
        cache, out, stages = work / "cache", work / "out", work / "stages.json"
        env = {
            **os.environ,
            "HF_ENDPOINT": running.endpoint,
            "HF_TOKEN": bot,
            "UNETBOT_CACHE": str(cache),
            "UNETBOT_CONFIG": str(config),
            "UNETBOT_STAGES_OUT": str(stages),
        }
        cmd = [sys.executable, str(Path(__file__).with_name("_stages.py")), "actions", "convert"]
        cmd += [SOURCE, "--out", str(out)]  # a scheduled run: every other input empty
        old = dict(os.environ)
        os.environ.update(env)
        stats = running.state.stats
        before = {b: stats.bucket(b) for b in ("api", "resolvers")}
        load = [round(x, 2) for x in os.getloadavg()]
        try:
            whole = time_v(cmd, cwd=work)
        finally:
            os.environ.clear()
            os.environ.update(old)
        calls = {b: stats.bucket(b) - before[b] for b in before}
        load.append(round(os.getloadavg()[0], 2))
        result = json.loads(next(out.rglob("result.json")).read_text())
        manifests = list(out.rglob("manifest.json"))
        manifest = json.loads(manifests[0].read_text()) if manifests else {"artifacts": []}
        bytes_out = published(HfApi(endpoint=running.endpoint, token=bot), source_files)
    downloaded = sum(
        p.stat().st_size for p in cache.rglob("*") if p.is_file() and not p.is_symlink()
    )
    arts = manifest["artifacts"]
    return {
        "machine": machine(),
        "config": str(config),
        "whole": whole,
        "stages": json.loads(stages.read_text()),
        "validation_s": sum((a.get("validation") or {}).get("seconds", 0) for a in arts),
        "write_s": sum(a["details"].get("seconds", 0) for a in arts),
        "variants": {
            a["variant"]: {"bytes": a["bytes"], "status": (a.get("validation") or {}).get("status")}
            for a in arts
        },
        "downloaded_bytes": downloaded,
        "published": bytes_out,
        "notes": result.get("notes", []),
        "exit_code": whole["exit_code"],
        "load": load,  # 1, 5, 15-minute load average before, 1-minute after
        "calls": calls,  # the job's Hub requests, the server's own count
    }


def report(r: dict) -> None:
    print(f"machine: {r['machine']}; config: {r['config']}")
    whole = r["whole"]
    print(
        f"whole job: {whole['wall_s']:.1f} s, CPU {whole.get('cpu_s', 0):.1f} s, peak RSS "
        f"{whole['peak_rss_mb']:.0f} MB, load average {r.get('load', '?')}, "
        f"Hub calls {r.get('calls')}"
    )
    stages = r["stages"]["stages"]
    rows = [
        {
            "stage": n,
            "wall s": f"{stages[n]['wall_s']:.1f}",
            "CPU s": f"{stages[n].get('cpu_s', 0):.1f}",
            "peak RSS MB": f"{stages[n]['peak_rss_mb']:.0f}",
        }
        for n in STAGE_ORDER
        if n in stages
    ]
    print(table(rows, ["stage", "wall s", "CPU s", "peak RSS MB"]))
    print(
        f"of convert + validate: validation {r['validation_s']:.1f} s, writes {r['write_s']:.1f} s"
    )
    print(f"downloaded {r['downloaded_bytes'] / 1e9:.2f} GB")
    pub = r["published"]
    print(f"published into the bot's namespace {pub['namespace_bytes'] / 1e9:.2f} GB")
    print(f"published in the PR on the source repo {pub['pr_bytes'] / 1e9:.2f} GB")
    for repo, size in pub["repos"].items():
        print(f"  {repo}: {size / 1e9:.2f} GB")
    for note in r["notes"]:
        print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="work folder (kept)")
    parser.add_argument("--config", type=Path, default=SHIPPED)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (tries the script)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="unetbot-per-repo-"))
    for stale in ("hub", "cache", "out", "stages.json"):  # fresh Hub, cache and output each run
        subprocess.run(["rm", "-rf", str(work / stale)], check=True)
    r = run(work, args.config.resolve(), args.tiny)
    report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
