"""The byte budget (README "Byte budget"): which variants a source publishes into the bot's
namespace, what is dropped first, and that the cards say so. The sizes are the registry's
(engine/run/variants.py `size_vs_fp16_unet`) for a full-size SD1.5 UNet; the end-to-end test
publishes a tiny pipeline through the embedded Hub with the same rules and a cap scaled to it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from bot.choice import SourceSize, choose_variants, drop_sequence, trim_to_budget
from bot.config import DEFAULT_DROP_ORDER, BotConfig, PublishMode, load_config
from bot.publish.cards import CardContext, render_repo_card
from engine.errors import BadInput
from engine.formats.manifest import Artifact, Manifest
from engine.run.selection import SourceFacts
from engine.run.variants import VARIANTS, PublishTarget
from engine.source.classify import ModelKind

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / ".github" / "unetbot.yml"
FP16_UNET = 1_719_000_000  # a full-size SD1.5 UNet in fp16 (benchmarks/RESULTS.md)
PIPELINE = SourceFacts(has_full_pipeline=True)
# What the shipped config leaves for a full-size fp16 pipeline, and in which order the rest went.
KEPT = ["gguf-q8_0", "gguf-full-q8_0", "comfy-gguf-q8_0", "comfy-gguf-q5_0", "comfy-gguf-q4_0"]
DROPPED = [
    "quanto-float8",
    "gguf-q5_1",
    "gguf-q4_1",
    "gguf-q5_0",
    "gguf-f16",
    "quanto-int8",
    "gguf-full-q4_0",
    "torchao-int8wo",
    "gguf-q4_0",
]


def _repo_names(choice) -> list[str]:
    return [v.name for v in choice.variants if not v.target.is_pr]


def _published_estimate(choice, size: SourceSize) -> int:
    return sum(size.estimate(v) for v in choice.variants if not v.target.is_pr)


def test_shipped_config_keeps_a_full_size_fp16_source_under_6_gb_and_drops_in_order():
    config = load_config(SHIPPED)
    assert config.budget.max_published_bytes_per_source == 6_000_000_000
    size = SourceSize(FP16_UNET, downloads=10)
    choice = choose_variants("auto", PublishMode.ALL, PIPELINE, config, size)
    assert _repo_names(choice) == KEPT
    assert list(choice.over_budget) == DROPPED  # the order they gave way in
    assert _published_estimate(choice, size) <= 6_000_000_000
    # Without the budget the same lists publish 18.6 GB per source.
    everything = sum(
        size.estimate(VARIANTS[n])
        for t in PublishTarget
        if not t.is_pr
        for n in config.publish.variants_for(t)
    )
    assert 18e9 < everything < 19.5e9
    # The PR is the source owner's, never trimmed; every dropped file says why.
    assert choice.names(PublishTarget.PR) == ["original", "original-full"]
    assert all("byte budget" in why for why in choice.over_budget.values())
    assert any(n.startswith("byte budget: left out quanto-float8, gguf-q5_1") for n in choice.notes)
    # The TorchAO and Quanto targets are left empty: the plan schedules no work for them.
    assert not choice.per_target[PublishTarget.TORCHAO]
    assert not choice.per_target[PublishTarget.QUANTO]
    assert "nothing to publish to the quanto target: the byte budget left it empty" in choice.notes


def test_popular_sources_get_every_configured_file():
    config = load_config(SHIPPED)
    least = config.budget.full_set_min_downloads
    assert least > 0
    popular = choose_variants(
        "auto", PublishMode.ALL, PIPELINE, config, SourceSize(FP16_UNET, least)
    )
    assert not popular.over_budget
    assert len(_repo_names(popular)) == 14
    below = SourceSize(FP16_UNET, least - 1)
    assert choose_variants("auto", PublishMode.ALL, PIPELINE, config, below).over_budget


def test_explicit_lists_local_runs_and_unpublished_runs_are_not_trimmed():
    config = load_config(SHIPPED)
    size = SourceSize(FP16_UNET)
    explicit = choose_variants("gguf-q4_1,quanto-float8", PublishMode.REPO, PIPELINE, config, size)
    assert _repo_names(explicit) == ["gguf-q4_1", "quanto-float8"] and not explicit.over_budget
    assert not choose_variants("auto", PublishMode.NONE, PIPELINE, config, size).over_budget
    assert not choose_variants("auto", PublishMode.ALL, PIPELINE, config, None).over_budget


def test_an_fp32_source_with_an_fp16_variant_is_sized_by_its_fp16_files():
    twin = SourceSize.of(2 * FP16_UNET, fp16_twin=True)
    assert twin.fp16_unet_bytes == FP16_UNET
    # One fp32 set: taken at its full size, so trimmed harder (the cap still holds).
    fp32 = SourceSize.of(2 * FP16_UNET, fp16_twin=False)
    config = load_config(SHIPPED)
    choice = choose_variants("auto", PublishMode.REPO, PIPELINE, config, fp32)
    assert _repo_names(choice) == ["gguf-q8_0", "comfy-gguf-q8_0", "comfy-gguf-q4_0"]
    assert list(choice.over_budget) == [*DROPPED, "comfy-gguf-q5_0", "gguf-full-q8_0"]


def test_a_cap_below_every_file_drops_them_all_and_unlisted_variants_go_last_first():
    config = BotConfig()
    config.budget.max_published_bytes_per_source = 1
    config.budget.drop_order = ["gguf-q8_0"]
    size = SourceSize(FP16_UNET)
    choice = choose_variants("auto", PublishMode.REPO, PIPELINE, config, size)
    assert _repo_names(choice) == []
    dropped = list(choice.over_budget)
    assert dropped[0] == "gguf-q8_0"
    registry = [n for n in VARIANTS if n in dropped[1:]]
    assert dropped[1:] == registry[::-1]
    assert drop_sequence(config.budget, ["comfy-gguf-q4_0", "gguf-q8_0", "gguf-f16"]) == [
        "gguf-q8_0",
        "comfy-gguf-q4_0",
        "gguf-f16",
    ]


def test_the_validated_bytes_are_checked_again_in_the_same_order():
    """After validation the job trims by the files' exact sizes (bot/job/hub_source.py)."""
    budget = load_config(SHIPPED).budget
    exact = {"gguf-q8_0": 3_000_000_000, "comfy-gguf-q8_0": 2_000_000_000, "gguf-q4_0": 2e9}
    dropped = trim_to_budget({k: int(v) for k, v in exact.items()}, budget, estimated=False)
    assert list(dropped) == ["gguf-q4_0"]  # 7 GB -> 5 GB: the first in the drop order goes
    assert "validated files of this source total 7.00 GB" in dropped["gguf-q4_0"]
    assert not trim_to_budget({"gguf-q8_0": 6_000_000_000}, budget, estimated=False)


def test_the_default_drop_order_names_every_repo_variant_once():
    repo_variants = {n for n, v in VARIANTS.items() if not v.target.is_pr}
    assert sorted(DEFAULT_DROP_ORDER) == sorted(repo_variants)
    assert DEFAULT_DROP_ORDER[-1] == "gguf-q8_0"


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"drop_order": ["original-fp16"]}, "the PR is not in the byte budget"),
        ({"drop_order": ["gguf-q9"]}, "unknown variant"),
        ({"drop_order": ["all"]}, "not `all`"),
        ({"max_published_bytes_per_source": -1}, ">= 0"),
        ({"max_published_bytes_per_source": "6GB"}, "expected int"),
    ],
)
def test_budget_settings_are_checked(tmp_path, budget, message):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"budget": budget}))
    with pytest.raises(BadInput, match=message):
        load_config(path)


def _artifact(variant: str, path: str) -> Artifact:
    return Artifact(
        variant=variant,
        format="GGUF",
        path=path,
        bytes=1_468_000_000,
        sha256="0" * 64,
        consumers=list(VARIANTS[variant].consumers),
        details={"gguf_type": VARIANTS[variant].gguf_type},
        validation={
            "status": "passed",
            "reason": "all checks passed",
            "metrics": {"output": {"cosine": 0.99999, "rel_l2": 0.002, "max_abs": 0.01}},
            "checks": [],
        },
    )


def test_the_card_says_what_the_budget_left_out():
    ctx = CardContext("alice/m", "a" * 40, ModelKind.SD15, "mit", {}, [], "http://hub")
    size = SourceSize(FP16_UNET)
    choice = choose_variants("auto", PublishMode.ALL, PIPELINE, load_config(SHIPPED), size)
    artifacts = [_artifact("gguf-q8_0", "m-Q8_0.gguf")]
    text = render_repo_card(
        ctx, PublishTarget.GGUF, "bot/alice__m-GGUF", Manifest({}), artifacts,
        over_budget=choice.over_budget,
    )  # fmt: skip
    card = ModelCard(text)
    assert card.data.to_dict()["unetbot"]["over_budget"] == sorted(DROPPED)
    section = text.split("## Not made for this source", 1)[1].split("## ", 1)[0]
    rows = [line.split("|")[1].strip(" `") for line in section.splitlines() if line[:3] == "| `"]
    assert rows == DROPPED  # in the order they gave way
    assert "`bot convert alice/m --variants quanto-float8,gguf-q5_1," in section
    plain = render_repo_card(ctx, PublishTarget.GGUF, "bot/alice__m-GGUF", Manifest({}), artifacts)
    assert "Not made for this source" not in plain
    assert "over_budget" not in ModelCard(plain).data.to_dict()["unetbot"]


def test_publishing_through_the_hub_keeps_the_cap_and_the_card_names_what_went(tmp_path):
    """A tiny pipeline published with `bot convert REPO --publish repo`: the cap holds for the
    bytes uploaded to the bot's namespace, the dropped files are neither converted nor uploaded,
    and the GGUF card names them."""
    import subprocess
    import sys

    from bot.publish.state import target_repo
    from tests.bot.hubworld import BOT, hub_world, real_pipeline_files

    with hub_world(tmp_path) as world:
        files = real_pipeline_files(tmp_path / "src")
        world.seed("alice/tiny-lcm", files, downloads=5)
        unet = sum(
            len(b) for p, b in files.items() if p.startswith("unet/") and ".safetensors" in p
        )
        wanted = ["gguf-q8_0", "gguf-q4_0", "comfy-gguf-q8_0"]
        size = SourceSize(unet)
        estimates = {n: size.estimate(VARIANTS[n]) for n in [*wanted, "quanto-int8"]}
        # Room for everything but quanto-int8 and gguf-q4_0, the first two in the drop order.
        cap = estimates["gguf-q8_0"] + estimates["comfy-gguf-q8_0"] + estimates["gguf-q4_0"] // 2
        config = {
            "publish": {
                "namespace": BOT,
                "gguf_variants": wanted,
                "torchao_variants": [],
                "quanto_variants": ["quanto-int8"],
            },
            "budget": {"max_published_bytes_per_source": cap, "full_set_min_downloads": 1000},
        }
        path = tmp_path / "bot.yml"
        path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "HF_ENDPOINT": world.endpoint,
            "HF_TOKEN": world.bot_token,
            "UNETBOT_CACHE": str(tmp_path / "cache"),
        }
        cmd = [sys.executable, "-m", "bot.cli", "convert", "alice/tiny-lcm", "--publish", "repo"]
        cmd += ["--config", str(path), "--out", str(tmp_path / "out")]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "byte budget: left out quanto-int8, gguf-q4_0" in proc.stdout + proc.stderr
        out = list((tmp_path / "out").iterdir())
        assert not [p for p in out if "Q4_0" in p.name or "quanto" in p.name]  # never converted

        api = world.bot_api()
        gguf = target_repo(PublishTarget.GGUF, "alice/tiny-lcm", BOT)
        assert not api.repo_exists(target_repo(PublishTarget.QUANTO, "alice/tiny-lcm", BOT))
        info = api.model_info(gguf, files_metadata=True)
        weights = {s.rfilename: s.size for s in info.siblings if s.rfilename.endswith(".gguf")}
        assert sum(weights.values()) <= cap
        assert weights and not [n for n in weights if "Q4_0" in n]
        text = Path(api.hf_hub_download(gguf, "README.md", cache_dir=tmp_path / "c")).read_text()
        left = ModelCard(text).data.to_dict()["unetbot"]["over_budget"]
        assert {"quanto-int8", "gguf-q4_0"} <= set(left)
        section = text.split("## Not made for this source", 1)[1].split("## ", 1)[0]
        assert all(f"`{name}`" in section for name in left)
