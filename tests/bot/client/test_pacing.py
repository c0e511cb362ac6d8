"""Runs that stay inside the Hub's rate limits and the run's budget: the pacer
(bot/client/pacing.py) on a fake clock, its counts against the embedded Hub's own, the Hub's rate
limiter and 429 storms met without a failed repo, and a small call budget walking the whole backlog
in order, resuming from the ledger's cursor."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from huggingface_hub import hf_hub_download

from bot.client.pacing import Pacer, RateLimits, bucket_of
from bot.ledger.store import Location, read
from bot.schedule.plan import make_plan
from engine.errors import BudgetExhausted
from tests.bot.hubworld import bot_config, hub_world, pipeline_files

LEDGER = Location("unetbot/unetbot-ledger")


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _pacer(api: int = 3, window: float = 10.0) -> tuple[Pacer, FakeTime]:
    t = FakeTime()
    return Pacer(RateLimits(api, 100, window), clock=t.clock, sleep=t.sleep), t


def test_buckets_follow_the_hub_rule():
    assert bucket_of("/alice/m/resolve/main/unet/config.json") == "resolvers"
    assert bucket_of("/datasets/u/l/resolve/abc/ledger.jsonl") == "resolvers"
    assert bucket_of("/api/models/alice/m") == "api"
    assert bucket_of("/alice/m.git/info/lfs/objects/batch") is None  # LFS: no bucket


def test_a_spent_window_is_waited_out_before_the_next_request():
    pacer, t = _pacer(api=3, window=10)
    t.now = 100.0
    for _ in range(3):
        pacer.before("api")
    assert t.slept == []
    t.now = 104.0
    pacer.before("api")
    assert t.slept == [6.0] and pacer.counts["api"] == 4  # until the window that began at 100
    for _ in range(2):
        pacer.before("api")
    assert len(t.slept) == 1  # a fresh window


def test_the_servers_headers_win_over_the_configured_limits():
    pacer, t = _pacer(api=1000)
    pacer.before("api")
    headers = {"RateLimit": '"api";r=0;t=7', "RateLimit-Policy": '"fixed window";"api";q=5;w=60'}
    pacer.after("api", 200, headers)
    pacer.before("api")
    assert t.slept == [7.0]
    for _ in range(4):
        pacer.before("api")
    assert len(t.slept) == 1
    pacer.before("api")  # the 6th in a window of the server's q=5
    assert t.slept[1] == pytest.approx(60.0)


def test_a_429_closes_the_bucket_for_its_retry_after():
    pacer, t = _pacer(api=1000)
    pacer.before("resolvers")
    pacer.after("resolvers", 429, {"Retry-After": "12"})
    pacer.before("resolvers")
    assert t.slept == [12.0] and pacer.throttles["resolvers"] == 1


def test_a_wait_past_the_deadline_defers_instead():
    pacer, t = _pacer(api=1, window=300)
    pacer.deadline = 60.0
    pacer.before("api")
    with pytest.raises(BudgetExhausted, match="after the run's time budget"):
        pacer.before("api")
    assert t.slept == []


# --- against the embedded Hub -------------------------------------------------------------------


def test_the_pacer_counts_what_the_hub_counts(tmp_path):
    with hub_world(tmp_path) as world:
        world.seed("alice/m", pipeline_files(1))
        hub = world.hub()
        before = world.calls()
        hub.call("info", hub.api.model_info, "alice/m")
        hub.call(
            "download",
            hf_hub_download,
            "alice/m",
            "unet/config.json",
            endpoint=world.endpoint,
            token=world.bot_token,
            cache_dir=str(tmp_path / "c"),
        )
        hub.call("list", lambda: list(hub.api.list_models(filter="diffusers")))
        world.owner_api().model_info("alice/m")  # another account: not the bot's
        api, resolvers = (a - b for a, b in zip(world.calls(), before, strict=True))
        assert (hub.pacer.counts["api"], hub.pacer.counts["resolvers"]) == (api - 1, resolvers)
        assert (api - 1, resolvers) == (2, 2) and hub.requests == 4


def test_the_hubs_rate_limiter_is_never_hit(tmp_path):
    """The bot is configured for a free account; the Hub allows 6 API calls per 2 s. Its
    RateLimit headers teach the pacer the real quota: no 429, every repo judged."""
    limits = {"window": 2, "free": {"api": 6, "resolvers": 12}}
    with hub_world(tmp_path, rate_limits=limits) as world:
        for i in range(4):
            world.seed(f"alice/m{i}", pipeline_files(i))
        hub = world.hub()
        start = time.monotonic()
        plan = make_plan(hub, bot_config())
        assert len(plan.entries) == 4 and not plan.skipped and not plan.deferred
        assert world.stats.throttled("api") == world.stats.throttled("resolvers") == 0
        assert hub.pacer.waited > 0 and time.monotonic() - start >= 2


def _storm(world, retry_after: float, calls: int) -> None:
    rule = {"kind": "status", "status": 429, "retry_after": retry_after, "method": "GET"}
    world.running.state.faults.set([{**rule, "path": "^/api/models/alice/", "calls": calls}])


def test_a_429_storm_is_waited_out_and_never_fails_a_repo(tmp_path):
    with hub_world(tmp_path) as world:
        for i in range(3):
            world.seed(f"alice/m{i}", pipeline_files(i))
        _storm(world, 3, list(range(1, 11)))  # the first 10 model_info calls are refused
        slept: list[float] = []
        plan = make_plan(world.hub(sleep=slept.append, max_attempts=2), bot_config())
        assert len(plan.entries) == 3 and not plan.skipped and not plan.deferred
        assert slept.count(3.0) == 10  # each 429's Retry-After, served by the client
        assert world.running.state.faults.snapshot()[0]["fired"] == 10


def test_a_429_past_the_time_budget_defers_to_the_next_run(tmp_path):
    with hub_world(tmp_path) as world:
        for i in range(3):
            world.seed(f"alice/m{i}", pipeline_files(i), downloads=i)
        _storm(world, 120, list(range(1, 100)))
        slept: list[float] = []  # the pacer keeps the Hub's 120 s: the next run waits it
        hub = world.hub(deadline=time.monotonic() + 30, sleep=slept.append)
        first = make_plan(hub, bot_config())
        assert first.entries == [] and first.skipped == []
        assert {d["repo_id"] for d in first.deferred} == {"alice/m0", "alice/m1", "alice/m2"}
        assert all("rate limited" in d["reason"] for d in first.deferred)
        world.running.state.faults.clear()
        second = make_plan(world.hub(), bot_config())
        assert {e["repo_id"] for e in second.entries} == {"alice/m0", "alice/m1", "alice/m2"}
        assert slept and slept[0] == pytest.approx(120, abs=2)  # the Hub's wait, served once


def test_a_small_budget_walks_the_backlog_in_order_and_resumes_from_the_cursor(tmp_path):
    config = bot_config(max_calls=30)
    with hub_world(tmp_path) as world:
        for i in range(9):
            world.seed(f"alice/m{i}", pipeline_files(i), downloads=10 * (i + 1))
        per_run: list[int] = []
        for run in range(12):
            plan = make_plan(world.hub(max_calls=config.scan.max_calls), config)
            assert plan.calls <= config.scan.max_calls
            ledger = read(world.hub(), LEDGER).ledger
            judged = [r for r, e in ledger.entries.items() if e.verdict is not None]
            per_run.append(len(judged) - sum(per_run))
            if run == 0:  # a popular newcomer: judged after the backlog's tail (the cursor)
                world.seed("alice/new", pipeline_files(99), downloads=1000)
            if len(judged) == 10:
                break
        assert len(per_run) > 2 and all(per_run)  # several runs, each one progressed
        entries = ledger.entries
        order = sorted(entries, key=lambda r: entries[r].judged_at)
        assert order == [f"alice/m{i}" for i in reversed(range(9))] + ["alice/new"]
        assert ledger.cursor is None  # the last run reached the end of the backlog


def test_budget_config_reaches_the_pacer():
    config = replace(bot_config(), budget=replace(bot_config().budget, api_per_window=2500))
    assert RateLimits.of(config.budget) == RateLimits(2500, 5000, 300.0)
