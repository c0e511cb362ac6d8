"""The ledger: its merge rule, what its records mean, and the runs built on it, against the
embedded Hub through the real client: unchanged repos cost nothing, README-only commits
download and publish nothing, a lost or corrupt ledger is rebuilt from the Hub's markers
without a duplicate, concurrent writers both land, and repos that vanish or move back are
handled."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from bot.config import PublishMode
from bot.job.run import JobRequest, run_job
from bot.ledger.model import (
    FILENAME,
    Entry,
    Ledger,
    Outcome,
    TargetRecord,
    Verdict,
    merge_entries,
    parse_ledger,
)
from bot.ledger.store import LedgerBook, LoadState, Location, read
from bot.schedule.plan import make_plan
from engine import __version__
from engine.errors import BadInput
from engine.run.variants import PublishTarget
from tests.bot.hubworld import bot_config, card, hub_world, pipeline_files, real_pipeline_files

LEDGER = Location("unetbot/unetbot-ledger")


def _record(status, revision="r1", fp="f1", version=__version__, at="2026-01-01T00:00:01"):
    return TargetRecord(Outcome(status), revision, fp, version, at)


# --- the format and the merge rule (no Hub) -----------------------------------------------------


def test_merge_is_commutative_idempotent_and_keeps_the_newest_judgement():
    verdict = Verdict("supported", "ok", 0, kind="sd15")
    a = Entry("o/m", "sha1", "fp1", verdict, __version__, "p", "2026-01-01T00:00:01")
    a.targets = {"pr": [_record("pending", at="2026-01-01T00:00:01")]}
    b = Entry("o/m", "sha2", "fp2", verdict, __version__, "p", "2026-01-02T00:00:00")
    b.targets = {
        "pr": [_record("published", at="2026-01-02T00:00:00")],
        "gguf": [_record("failed", at="2026-01-02T00:00:01")],
    }
    ab, ba = merge_entries(a, b, 4), merge_entries(b, a, 4)
    assert ab is not None and ba is not None
    assert ab.to_dict() == ba.to_dict()
    assert ab.sha == "sha2"  # the later judgement
    assert {r.status for r in ab.targets["pr"]} == {Outcome.PENDING, Outcome.PUBLISHED}
    assert merge_entries(ab, ab, 4).to_dict() == ab.to_dict()
    # Trimmed to the newest `keep` per target.
    assert [r.status for r in merge_entries(a, b, 1).targets["pr"]] == [Outcome.PUBLISHED]


def test_records_say_what_is_done_per_target_kind():
    entry = Entry("o/m")
    entry.targets["pr"] = [_record("published", "old", "f-old", at="1")]
    entry.targets["gguf"] = [
        _record("published", "old", "f-old", at="1"),
        _record("published", "new", "f-new", at="2"),
    ]
    # Any PR made from these inputs is done (a closed one was declined: not asked again)...
    assert entry.target(PublishTarget.PR, "other-sha", "f-old", __version__) is Outcome.PUBLISHED
    # ...but a repo holds one source: moving back to older inputs publishes them again.
    assert entry.target(PublishTarget.GGUF, "older", "f-old", __version__) is None
    assert entry.target(PublishTarget.GGUF, "readme", "f-new", __version__) is Outcome.PUBLISHED
    # A failure holds for the same inputs and converter version only.
    entry.targets["quanto"] = [_record("failed", "new", "f-new", version=__version__, at="3")]
    assert entry.target(PublishTarget.QUANTO, "x", "f-new", __version__) is Outcome.FAILED
    assert entry.target(PublishTarget.QUANTO, "x", "f-new", "99.0") is None
    assert entry.target(PublishTarget.QUANTO, "x", "f-other", __version__) is None
    entry.targets["torchao"] = [_record("pending", "new", "f-new", at="4")]
    assert entry.target(PublishTarget.TORCHAO, "new", "", __version__) is Outcome.PENDING
    # Published with a variant left out (it failed validation): done for this converter, tried
    # again by a newer one, as bot/publish/state.py Published.done_for decides from the card.
    partial = replace(_record("published", "new", "f-new", at="5"), variants=("gguf-q4_0",))
    entry.targets["gguf"].append(partial)
    assert entry.target(PublishTarget.GGUF, "new", "f-new", __version__) is Outcome.PUBLISHED
    assert entry.target(PublishTarget.GGUF, "new", "f-new", "99.0") is None


def test_a_corrupt_file_is_refused_whole_naming_the_line():
    good = Ledger({"o/m": Entry("o/m", "s", "f")}).to_jsonl()
    assert parse_ledger(good, "x").entries["o/m"].sha == "s"
    with pytest.raises(BadInput, match=r"x: corrupt ledger \(line 3"):
        parse_ledger(good + b'{"repo": 1, "targets": {"pr": [{"status": "bogus"}]}}\n', "x")
    with pytest.raises(BadInput, match="not a unetbot ledger header"):
        parse_ledger(b'{"hello": 1}\n', "x")
    with pytest.raises(BadInput, match="x: corrupt ledger"):
        parse_ledger(b"\x00garbage", "x")


# --- runs against the Hub -----------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    with hub_world(tmp_path) as w:
        yield w


def _plan(world, config=None, **hub):
    return make_plan(world.hub(**hub), config or bot_config())


def test_an_unchanged_run_costs_the_listing_and_the_ledger_read_only(world):
    for i in range(5):
        world.seed(f"alice/model-{i}", pipeline_files(i), downloads=i)
    first = _plan(world)
    assert len(first.entries) == 5 and first.calls > 20
    before = world.calls()
    second = _plan(world)
    api, resolvers = (a - b for a, b in zip(world.calls(), before, strict=True))
    # whoami + one list page (API); the ledger's HEAD + GET (resolvers); no write.
    assert (api, resolvers) == (2, 2) and second.calls == 4
    assert second.entries == first.entries and second.unchanged == 5


def test_two_runs_writing_at_once_both_land(world):
    hub = world.hub()
    LedgerBook.load(hub, LEDGER).save(hub)  # nothing to save: no repo created
    assert read(hub, LEDGER).state is LoadState.MISSING
    books = [LedgerBook.load(world.hub(), LEDGER) for _ in range(4)]
    for i, book in enumerate(books):
        book.put(Entry(f"o/m{i}", f"sha{i}"))
    errors: list[BaseException] = []

    def save(book):
        try:
            book.save(world.hub())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(b,)) for b in books]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = read(world.hub(), LEDGER)
    assert final.state is LoadState.OK
    assert {k: e.sha for k, e in final.ledger.entries.items()} == {
        f"o/m{i}": f"sha{i}" for i in range(4)
    }
    commits = world.bot_api().list_repo_commits(LEDGER.repo_id, repo_type="dataset")
    assert len(commits) >= 5  # the creation + one commit per writer: nobody was clobbered


def test_deleted_private_and_force_pushed_repos(world):
    world.seed("alice/deleted", pipeline_files(1))
    world.seed("alice/hidden", pipeline_files(2))
    old = world.seed("alice/moved", pipeline_files(3))
    new = world.commit("alice/moved", {"unet/diffusion_pytorch_model.safetensors": b"x" * 9})
    first = _plan(world)
    assert {e["repo_id"] for e in first.entries} == {"alice/deleted", "alice/hidden", "alice/moved"}
    assert read(world.hub(), LEDGER).ledger.entries["alice/moved"].sha == new

    owner = world.owner_api()
    owner.delete_repo("alice/deleted")
    owner.update_repo_settings("alice/hidden", private=True)
    world.running.state.repos.set_ref("model", "alice/moved", "refs/heads/main", old)
    second = _plan(world)
    rows = {e["repo_id"]: e for e in [*second.entries, *second.skipped, *second.deferred]}
    assert set(rows) == {"alice/moved"}
    assert rows["alice/moved"]["revision"] == old  # judged again at the older sha
    ledger = read(world.hub(), LEDGER).ledger
    assert set(ledger.entries) == {"alice/moved"}  # gone repos are forgotten
    assert ledger.entries["alice/moved"].sha == old


def test_a_verdict_of_an_older_converter_is_judged_again_only_when_it_refused(world):
    world.seed("alice/sd15", pipeline_files(1))
    world.seed("alice/sd2", pipeline_files(2, kind="sd2"))
    first = _plan(world)
    assert [r["repo_id"] for r in first.skipped] == ["alice/sd2"]
    book = LedgerBook.load(world.hub(), LEDGER)
    for repo_id in ("alice/sd15", "alice/sd2"):
        book.put(replace(book.entry(repo_id), version="0.0.1"))
    book.save(world.hub())
    world.stats.reset()
    second = _plan(world)
    infos = [p for _, p, _ in world.stats.recent if p.startswith("/api/models/alice/")]
    assert infos == ["/api/models/alice/sd2"]  # the refusal is re-judged, the supported reused
    assert [r["repo_id"] for r in second.skipped] == ["alice/sd2"]


def test_readme_only_commits_download_and_publish_nothing_even_after_the_ledger_is_lost(
    world, tmp_path
):
    world.seed("alice/tiny-lcm", real_pipeline_files(tmp_path / "src"), card=card(tags=("lcm",)))
    config = bot_config()
    request = JobRequest("alice/tiny-lcm", tmp_path / "out1", "auto", PublishMode.ALL)
    published = run_job(request, config, world.hub())
    assert published.exit_code == 0 and len(published.published) == 2  # the PR + the GGUF repo
    gguf = "unetbot/alice__tiny-lcm-GGUF"
    owner = world.owner_api()
    commits = len(owner.list_repo_commits(gguf))

    def one_run(name: str, judged_again: bool) -> None:
        world.stats.reset()
        plan = _plan(world, config)
        assert plan.entries == [], name
        assert [e["repo_id"] for e in plan.done] == ["alice/tiny-lcm"], name
        reads = [p for p in world.resolver_paths() if p.startswith("/alice/tiny-lcm/")]
        if judged_again:  # a rebuilt ledger holds no judgement: configs are read, no weights
            assert reads and all(p.endswith("/config.json") for p in reads), name
        else:
            assert reads == [], name

    for round_ in range(3):
        owner.upload_file(
            path_or_fileobj=card(tags=("lcm",), text=f"edit {round_}").encode(),
            path_in_repo="README.md",
            repo_id="alice/tiny-lcm",
        )
        if round_ == 0:
            one_run("ledger intact", judged_again=False)
        elif round_ == 1:  # corrupt: rebuilt from the PR marker and the GGUF repo's card
            world.bot_api().upload_file(
                path_or_fileobj=b"not a ledger",
                path_in_repo=FILENAME,
                repo_id=LEDGER.repo_id,
                repo_type="dataset",
            )
            one_run("ledger corrupt", judged_again=True)
            assert read(world.hub(), LEDGER).state is LoadState.OK
        else:  # lost
            world.bot_api().delete_repo(LEDGER.repo_id, repo_type="dataset")
            one_run("ledger lost", judged_again=True)

    again = run_job(replace(request, out=tmp_path / "out2"), config, world.hub())
    assert again.published == [] and again.skipped.startswith("already published")
    prs = [d for d in owner.get_repo_discussions("alice/tiny-lcm") if d.author == "unetbot"]
    assert len(prs) == 1 and len(owner.list_repo_commits(gguf)) == commits


def test_a_failed_variant_is_not_redone_until_the_converter_changes(world, tmp_path, monkeypatch):
    from engine.run.variants import VARIANTS
    from engine.validation.thresholds import Threshold

    strict = replace(VARIANTS["gguf-q8_0"], threshold=Threshold(1.01, 0.0, 0.0))
    monkeypatch.setitem(VARIANTS, "gguf-q8_0", strict)  # no quantized file can pass
    world.seed("alice/tiny-sd15", real_pipeline_files(tmp_path / "src", "sd15"))
    config = replace(bot_config(), publish=replace(bot_config().publish, mode="repo"))
    request = JobRequest("alice/tiny-sd15", tmp_path / "out", "auto", PublishMode.REPO)
    result = run_job(request, config, world.hub())
    assert result.failed() == ["gguf-q8_0"] and result.published == []
    entry = read(world.hub(), LEDGER).ledger.entries["alice/tiny-sd15"]
    failure = entry.targets["gguf"][-1]
    assert (failure.status, failure.variants, failure.version) == (
        Outcome.FAILED,
        ("gguf-q8_0",),
        __version__,
    )

    held = _plan(world, config)
    assert held.entries == []
    assert "gguf-q8_0 failed validation" in held.skipped[0]["reason"]

    book = LedgerBook.load(world.hub(), LEDGER)
    old = replace(failure, version="0.0.1", at="2026-01-01T00:00:00")
    book.put(replace(book.entry("alice/tiny-sd15"), targets={"gguf": [old]}))
    book.save(world.hub())
    retried = _plan(world, config)  # a newer converter: the variant is tried again
    assert [(e["repo_id"], e["targets"]) for e in retried.entries] == [("alice/tiny-sd15", "gguf")]


def test_the_ledger_commands(world, monkeypatch):
    import json

    from typer.testing import CliRunner

    from bot.cli import app

    for key, value in {
        "HF_ENDPOINT": world.endpoint,
        "HF_TOKEN": world.bot_token,
        "UNETBOT_CACHE": str(world.cache),
        "UNETBOT_CONFIG": "",
    }.items():
        monkeypatch.setenv(key, value)
    world.seed("alice/model", pipeline_files(1))
    runner = CliRunner()
    missing = runner.invoke(app, ["ledger", "show", "--json"])
    assert missing.exit_code == 0 and json.loads(missing.stdout)["state"] == "missing"
    scan = runner.invoke(app, ["scan", "--json"])  # reads the ledger, never writes it
    assert scan.exit_code == 0, scan.output
    assert [r["repo_id"] for r in json.loads(scan.stdout)] == ["alice/model"]
    assert read(world.hub(), LEDGER).state is LoadState.MISSING
    plan = runner.invoke(app, ["plan", "--json"])
    assert plan.exit_code == 0 and json.loads(plan.stdout)["count"] == 1
    shown = json.loads(runner.invoke(app, ["ledger", "show", "--json"]).stdout)
    assert (shown["state"], shown["entries"], shown["verdicts"]) == ("ok", 1, {"supported": 1})
    entry = json.loads(runner.invoke(app, ["ledger", "show", "--repo", "alice/model"]).stdout)
    assert entry["verdict"]["status"] == "supported" and set(entry["targets"]) == {
        "gguf",
        "quanto",
        "torchao",
    }
    rebuilt = runner.invoke(app, ["ledger", "rebuild"])
    assert rebuilt.exit_code == 0 and "0 source repo(s) with published targets" in rebuilt.stdout
    again = runner.invoke(app, ["plan", "--no-ledger", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["count"] == 1
