"""Benchmark incremental discovery: what `bot plan` costs in Hub calls over 10,000 repos, with
the embedded Hub's rate limits enforced, on a first run, an unchanged rerun, after 100 commits
(50 README-only, 50 new weights), and under a small per-run call budget.

Run: .venv/bin/python benchmarks/scan.py [--repos 10000] [--window 5] [--api 200]
                                         [--resolvers 1000] [--budget 500] [--workdir DIR]

Seeding goes straight into the storage (bot/hub/bulk.py): about 4% SD1.5-family repos the bot
converts (StableDiffusionPipeline and LatentConsistencyModelPipeline pipelines, LCM UNets saved
as StableDiffusionPipeline, bare UNet repos, all named anything), SD2 pipelines it refuses
after reading their UNet config, SD pipelines it skips by policy (no licence, gated, opted
out), other diffusers pipelines (SDXL, Flux, SD3, PixArt...), bare VAEs and ControlNets, and
the rest other libraries. Judging reads configs and headers, never weights, so weights are
small (each repo its own LFS object).

The Hub runs in this process with fixed-window rate limits per account. The default window
is compressed (5 s with 200 API / 1,000 resolver calls: a free account's rate, 12 times
faster, so that the buckets bite several times in a few minutes); the bot is configured with
the same figures. Calls are the server's own counts (`state.stats.bucket`), 429s its
`throttled` counts; walls include the server's work (same process). Only `bot plan` runs:
judging and target checks, no conversion.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import local_hub_client, machine, table  # noqa: E402

local_hub_client()  # before huggingface_hub is imported

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from safetensors.numpy import save  # noqa: E402

from bot.client.hub import hub_for  # noqa: E402
from bot.client.pacing import RateLimits  # noqa: E402
from bot.config import BotConfig, BudgetConfig, PublishConfig, ScanConfig  # noqa: E402
from bot.hub import start_hub  # noqa: E402
from bot.hub.bulk import RepoSpec, Seeder, add_commit, seed_many  # noqa: E402
from bot.ledger.store import Location, read  # noqa: E402
from bot.schedule.plan import make_plan  # noqa: E402
from bot.settings import Settings  # noqa: E402
from engine.synthetic.models import unet_config  # noqa: E402

BOT, OWNER_TOKEN, BOT_TOKEN = "unetbot", "hf_" + "a" * 32, "hf_" + "b" * 32
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
# Repo mix per 100 repos (kind, count): 4% converted, the rest refused, skipped or unlisted.
MIX = [
    ("sd15", 2),
    ("lcm-pipeline", 1),
    ("lcm-unet", 0.5),
    ("bare-unet", 0.5),
    ("sd2", 1),
    ("no-licence", 1),
    ("gated", 0.5),
    ("opted-out", 0.5),
    ("sdxl", 6),
    ("flux", 4),
    ("sd3", 2),
    ("pixart", 1),
    ("bare-vae", 2),
    ("controlnet", 1),
    ("transformers", 77),
]
FOREIGN = {
    "sdxl": "StableDiffusionXLPipeline",
    "flux": "FluxPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "pixart": "PixArtSigmaPipeline",
}
CONVERTED = {"sd15", "lcm-pipeline", "lcm-unet", "bare-unet"}


def weights(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return save({"conv_in.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float16)})


def card(licence: str | None = "creativeml-openrail-m", tags: tuple[str, ...] = ()) -> str:
    meta = {"license": licence, "tags": list(tags)} if licence else {"tags": list(tags)}
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# model\n"


def _pipeline(klass: str, unet: dict | None, i: int) -> dict[str, bytes]:
    index = {"_class_name": klass, "_diffusers_version": "0.42.1"}
    files = {"model_index.json": json.dumps(index).encode()}
    if unet is not None:
        files["unet/config.json"] = json.dumps(unet).encode()
        files[UNET_WEIGHTS] = weights(i)
    else:
        files["transformer/config.json"] = b"{}"
        files["transformer/diffusion_pytorch_model.safetensors"] = weights(i)
    return files


def _bare(klass: str, extra: dict, i: int) -> dict[str, bytes]:
    config = {**extra, "_class_name": klass, "_diffusers_version": "0.42.1"}
    return {
        "config.json": json.dumps(config).encode(),
        "diffusion_pytorch_model.safetensors": weights(i),
    }


def spec(kind: str, i: int) -> RepoSpec:
    name = f"user{i % 500:03d}/{kind}-model-{i:05d}"  # named anything: no "lcm", no "sd"
    downloads = (i * 7919) % 100_000
    sd15, lcm = unet_config("sd15"), unet_config("sd15-lcm")
    if kind == "sd15":
        files = _pipeline("StableDiffusionPipeline", sd15, i)
    elif kind == "lcm-pipeline":
        files = _pipeline("LatentConsistencyModelPipeline", lcm, i)
    elif kind == "lcm-unet":
        files = _pipeline("StableDiffusionPipeline", lcm, i)
    elif kind == "bare-unet":
        files = _bare("UNet2DConditionModel", sd15, i)
    elif kind in ("sd2", "no-licence", "gated", "opted-out"):
        unet = unet_config("sd2") if kind == "sd2" else sd15
        files = _pipeline("StableDiffusionPipeline", unet, i)
    elif kind in FOREIGN:
        files = _pipeline(FOREIGN[kind], unet_config("sdxl") if kind == "sdxl" else None, i)
    elif kind == "bare-vae":
        files = _bare("AutoencoderKL", {"latent_channels": 4}, i)
    elif kind == "controlnet":
        files = _bare("ControlNetModel", {"in_channels": 4}, i)
    else:
        config = {"architectures": ["BertModel"], "model_type": "bert", "seed": i}
        files = {"config.json": json.dumps(config).encode(), "model.safetensors": weights(i)}
        return RepoSpec(name, files, card=card("apache-2.0"), downloads=downloads)
    tags = ("unetbot-opt-out",) if kind == "opted-out" else ()
    licence = None if kind == "no-licence" else "creativeml-openrail-m"
    gated = "auto" if kind == "gated" else False
    return RepoSpec(name, files, card=card(licence, tags), downloads=downloads, gated=gated)


def kinds(count: int) -> list[str]:
    """The kind of each repo index: MIX spread evenly over `count` repos."""
    out: list[str] = []
    for kind, per100 in MIX:
        out += [kind] * round(count * per100 / 100)
    out = (out + ["transformers"] * count)[:count]
    rng = np.random.default_rng(0)
    rng.shuffle(out)
    return out


def specs(kind_of: list[str]) -> Iterator[RepoSpec]:
    for i, kind in enumerate(kind_of):
        yield spec(kind, i)


def bot_config(budget_calls: int, limits: RateLimits) -> BotConfig:
    budget = replace(
        BudgetConfig(),
        max_minutes=600,
        api_per_window=limits.api,
        resolvers_per_window=limits.resolvers,
        window_seconds=limits.window,
    )
    return BotConfig(
        scan=replace(ScanConfig(), max_calls=budget_calls),
        publish=replace(PublishConfig(), mode="all"),
        budget=budget,
    )


def accounts(work: Path, limits: RateLimits) -> Path:
    config = {
        "users": [{"name": "owner"}, {"name": BOT}],
        "tokens": [
            {"id": "owner", "user": "owner", "role": "write", "token": OWNER_TOKEN},
            {"id": "bot", "user": BOT, "role": "write", "token": BOT_TOKEN},
        ],
        "rate_limits": {
            "window": int(limits.window),
            "free": {"api": limits.api, "resolvers": limits.resolvers},
        },
    }
    path = work / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(running, endpoint: str, config: BotConfig, cache: Path, label: str) -> dict:
    """One `bot plan` with a fresh download cache, as on a fresh runner."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=cache))
    stats = running.state.stats
    before = {b: stats.bucket(b) for b in ("api", "resolvers")}
    throttled = {b: stats.throttled(b) for b in ("api", "resolvers")}
    mark = len(stats.recent)
    settings = Settings(endpoint, BOT_TOKEN, None, str(cache))
    limits = RateLimits.of(config.budget)
    hub = hub_for(settings, config.scan.max_calls, config.budget.max_minutes, limits)
    waited = hub.pacer.waited  # the account's pacer is shared by the runs of this process
    start = time.perf_counter()
    plan = make_plan(hub, config)
    wall = time.perf_counter() - start
    recent = list(stats.recent)[mark:]
    api = stats.bucket("api") - before["api"]
    resolvers = stats.bucket("resolvers") - before["resolvers"]
    failed_by_429 = [s for s in plan.skipped if "rate limit" in s["reason"].lower()]
    return {
        "run": label,
        "api": api,
        "resolvers": resolvers,
        "calls": api + resolvers,
        "429s": sum(stats.throttled(b) - throttled[b] for b in throttled),
        "429 failures": len(failed_by_429),
        "paced s": round(hub.pacer.waited - waited, 1),
        "wall s": round(wall, 1),
        "todo": len(plan.entries),
        "done": len(plan.done),
        "skipped": len(plan.skipped),
        "deferred": len(plan.deferred),
        "unchanged": plan.unchanged,
        "_recent": recent,
        "_plan": plan,
    }


def judged_repos(endpoint: str, cache: Path) -> set[str]:
    settings = Settings(endpoint, BOT_TOKEN, None, str(cache))
    snap = read(hub_for(settings, 100, None), Location(f"{BOT}/unetbot-ledger"))
    return {k for k, e in snap.ledger.entries.items() if e.verdict is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--api", type=int, default=200)
    parser.add_argument("--resolvers", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=500, help="calls per run for (d)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unetbot-scan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    limits = RateLimits(args.api, args.resolvers, args.window)
    kind_of = kinds(args.repos)
    start = time.perf_counter()
    with Seeder(work / "root") as seeder:
        seed_many(seeder, specs(kind_of), workers=4)
    seed_s = time.perf_counter() - start
    counts = {k: kind_of.count(k) for k, _ in MIX}
    print(f"machine: {machine()}")
    print(f"seeded {args.repos} repos in {seed_s:.1f} s: {counts}")
    print(f"rate limits: api {limits.api}, resolvers {limits.resolvers} per {limits.window} s")
    rows = []
    with start_hub(work / "root", config=accounts(work, limits), durable=False) as running:
        endpoint, cache = running.endpoint, work / "cache"
        cache.mkdir(exist_ok=True)
        unlimited = bot_config(1_000_000, limits)
        rows.append(run(running, endpoint, unlimited, cache, "(a) first run"))
        rows.append(run(running, endpoint, unlimited, cache, "(b) nothing changed"))

        converted = sorted(spec(k, i).repo_id for i, k in enumerate(kind_of) if k in CONVERTED)
        readme_only, new_weights = converted[:50], converted[50:100]
        for repo in readme_only:
            add_commit(running, repo, {}, card=card(tags=("edited",)), summary="Update README")
        for n, repo in enumerate(new_weights):
            bare = "bare-unet" in repo
            path = "diffusion_pytorch_model.safetensors" if bare else UNET_WEIGHTS
            add_commit(running, repo, {path: weights(10**6 + n)}, summary="New weights")
        row = run(running, endpoint, unlimited, cache, "(c) 50 README + 50 weights")
        readme_reads = [
            p
            for _, p, _ in row["_recent"]
            if "/resolve/" in p and p.split("/resolve/")[0][1:] in readme_only
        ]
        row["README downloads"] = len(readme_reads)
        rows.append(row)
        settings = Settings(endpoint, BOT_TOKEN, None, str(cache))
        ledger = read(hub_for(settings, 100, None), Location(f"{BOT}/unetbot-ledger")).ledger
        size = len(ledger.to_jsonl())
        print(f"ledger: {len(ledger.entries)} entries, {size / 1e6:.2f} MB")

        # (d) the same world from an empty ledger, N calls per run.
        running.state.repos.delete("dataset", f"{BOT}/unetbot-ledger")
        budgeted = bot_config(args.budget, limits)
        needing_calls = {
            spec(k, i).repo_id
            for i, k in enumerate(kind_of)
            if k in CONVERTED | {"sd2", "bare-vae", "controlnet"}
        }
        d_rows, total = [], 0
        for n in range(1, 200):
            row = run(running, endpoint, budgeted, cache, f"(d) budget {args.budget}, run {n}")
            d_rows.append(row)
            total += row["calls"]
            if needing_calls <= judged_repos(endpoint, cache):
                break
    columns = ["run", "api", "resolvers", "calls", "429s", "429 failures", "paced s", "wall s"]
    columns += ["todo", "done", "skipped", "deferred", "unchanged"]
    print(table(rows + d_rows, columns))
    b, c = rows[1], rows[2]
    listed = sum(1 for k in kind_of if k != "transformers")
    print(f"listed repos: {listed}; goal (b) <= {listed / 1000 + 5:.1f} calls: {b['calls']}")
    changed = 50
    print(
        f"goal (c) <= (b) + 6 x {changed} = {b['calls'] + 6 * changed} calls: {c['calls']}; "
        f"README-only downloads: {c['README downloads']}"
    )
    need = math.ceil(rows[0]["calls"] / args.budget)
    print(
        f"goal (d): all {len(needing_calls)} repos needing calls judged in {len(d_rows)} runs of "
        f"<= {args.budget} calls ({total} calls in all); ceil(cost (a) / N) = {need}"
    )


if __name__ == "__main__":
    main()
