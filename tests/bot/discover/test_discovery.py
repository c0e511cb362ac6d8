"""Discovery by what the Hub indexes (tags, library, pipeline class), through the real client
against the embedded Hub: what is found, what is decided from the list page alone, and what
each repo costs."""

from __future__ import annotations

import pytest

from bot.config import ScanConfig
from bot.discover.listing import Query, foreign_family, list_repos, listing_verdict, queries
from bot.ledger.rebuild import open_book
from bot.schedule.incremental import run_pass
from engine.errors import ExitCode
from tests.bot.hubworld import (
    bare_unet_files,
    bert_files,
    bot_config,
    card,
    hub_world,
    pipeline_files,
)


@pytest.fixture
def world(tmp_path):
    with hub_world(tmp_path) as w:
        w.seed("alice/anything-v5-bf16", pipeline_files(1), downloads=50)  # named neither
        w.seed("alice/lcm-dreamshaper", pipeline_files(2, "sd15-lcm"), downloads=40)
        w.seed("carol/my-unet", bare_unet_files(3), downloads=30)  # a bare UNet repo
        w.seed("alice/sdxl-base", pipeline_files(4, "sdxl", "StableDiffusionXLPipeline"))
        w.seed("alice/no-licence", pipeline_files(5), card="# no card metadata\n")
        w.seed("alice/opted-out", pipeline_files(6), card=card(tags=("unetbot-opt-out",)))
        w.seed("bob/bert", bert_files(), downloads=1000)  # transformers: not listed
        yield w


SINGLE_FILES = Query(("stable-diffusion", "text-to-image"))


def test_default_queries_list_the_diffusers_library_once():
    assert queries(ScanConfig()) == [Query(("diffusers",)), SINGLE_FILES]
    # A name search under the same filters is covered by the plain listing: not sent.
    assert queries(ScanConfig(searches=["lcm"])) == [Query(("diffusers",)), SINGLE_FILES]
    narrowed = ScanConfig(
        filters=["diffusers:StableDiffusionPipeline"], searches=["lcm"], single_file_tags=[]
    )
    assert queries(narrowed) == [
        Query(("diffusers", "diffusers:StableDiffusionPipeline")),
        Query(("diffusers",), search="lcm"),
    ]


def test_foreign_pipeline_classes_by_family_prefix():
    assert foreign_family("StableDiffusionXLImg2ImgPipeline") == "SDXL"
    assert foreign_family("FluxPipeline") == "Flux"
    assert foreign_family("IFPipeline") == "DeepFloyd IF"
    assert foreign_family("StableDiffusionPipeline") is None
    assert foreign_family("LatentConsistencyModelPipeline") is None
    assert foreign_family("Wanderer") is None  # a prefix must end at a word boundary
    assert foreign_family(None) is None


def test_tag_listing_finds_fine_tunes_named_anything_in_one_page(world):
    before = world.calls()
    listing = list_repos(world.hub(), ScanConfig(single_file_tags=[]))
    found = {r.repo_id: r for r in listing.repos}
    assert set(found) == {
        "alice/anything-v5-bf16",
        "alice/lcm-dreamshaper",
        "carol/my-unet",
        "alice/sdxl-base",
        "alice/no-licence",
        "alice/opted-out",
    }
    assert world.calls() == (before[0] + 1, before[1])  # one list page, nothing else
    # The page already holds what the first decisions need.
    anything = found["alice/anything-v5-bf16"]
    info = world.owner_api().model_info("alice/anything-v5-bf16")
    assert (anything.sha, anything.downloads) == (info.sha, 50)
    assert anything.pipeline_class == "StableDiffusionPipeline"
    assert anything.licence == "creativeml-openrail-m"
    assert found["carol/my-unet"].pipeline_class is None  # bare: judged from its config.json
    assert listing.complete


def test_single_file_repos_are_listed_by_their_cards_tags(world):
    """A Civitai-style repo (root checkpoints, a card tagging it, no library): not in the
    diffusers listing, found by the single-file listing the default config adds."""
    tags = ("stable-diffusion", "text-to-image")
    world.seed("dave/dreamy", {"dreamy-v1.safetensors": b"x" * 64},
               card=f"---\nlicense: creativeml-openrail-m\ntags: {list(tags)}\n---\n")  # fmt: skip
    before = world.calls()
    found = {r.repo_id: r for r in list_repos(world.hub(), ScanConfig()).repos}
    assert "dave/dreamy" in found and set(tags) <= set(found["dave/dreamy"].tags)
    assert world.calls()[0] == before[0] + 2  # one page per listing
    only_library = {
        r.repo_id for r in list_repos(world.hub(), ScanConfig(single_file_tags=[])).repos
    }
    assert "dave/dreamy" not in only_library


def test_page_only_verdicts_cost_no_call(world):
    listing = list_repos(world.hub(), ScanConfig())
    found = {r.repo_id: r for r in listing.repos}
    policy = bot_config().policy
    sdxl = listing_verdict(found["alice/sdxl-base"], policy, "unetbot")
    assert sdxl is not None and sdxl[1] is ExitCode.UNSUPPORTED and "SDXL" in sdxl[0]
    assert listing_verdict(found["alice/no-licence"], policy, "unetbot") == (
        "no licence declared",
        ExitCode.POLICY_SKIPPED,
    )
    assert "opted out" in listing_verdict(found["alice/opted-out"], policy, "unetbot")[0]
    assert listing_verdict(found["alice/anything-v5-bf16"], policy, "unetbot") is None


def test_a_pass_judges_the_candidates_and_only_them(world):
    hub, config = world.hub(), bot_config()
    book = open_book(hub, config, "unetbot", "unetbot", rebuild_lost=True)
    before = world.calls()
    report = run_pass(hub, config, "unetbot", book, list_repos(hub, config.scan))
    seen = {s.candidate.repo_id: s.candidate for s in report.seen}
    supported = {r for r, c in seen.items() if c.supported}
    assert supported == {"alice/anything-v5-bf16", "alice/lcm-dreamshaper", "carol/my-unet"}
    assert seen["carol/my-unet"].unet_folder == ""
    # 1 list page + per candidate model_info (1 API) and its UNet config (HEAD + GET); the
    # bare repo's root config is both its layout JSON and its UNet config: no second read.
    api, resolvers = (a - b for a, b in zip(world.calls(), before, strict=True))
    assert (api, resolvers) == (1 + 3, 2 * 3)
    assert all(len(c.fingerprint) == 64 for r, c in seen.items() if r in supported)
