"""`list_models` as huggingface_hub 2.4 sends it: filters, sort, expand, full, cardData, and
keyset pages that stay right while commits move repos around."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi

from bot.hub import start_hub
from bot.hub.bulk import seed_repo
from tests.bot.hub.conftest import TOKENS, client, write_config

CARD = "---\nlicense: {lic}\ntags: [{tag}]\n---\n"


def _seed(hub, n: int) -> list[str]:
    """alice/m-0..n-1: downloads 10*i, likes n-i; odd ones gated, every third Apache."""
    ids = []
    for i in range(n):
        repo = f"alice/m-{i}"
        card = CARD.format(lic="apache-2.0" if i % 3 == 0 else "mit", tag=f"t{i % 2}")
        seed_repo(
            hub,
            repo,
            {"config.json": b'{"_diffusers_version": "0.42.1"}'},
            card=card,
            downloads=10 * i,
            likes=n - i,
            gated="auto" if i % 2 else False,
        )
        ids.append(repo)
    return ids


def _all_pages(c: httpx2.Client, params: dict) -> list[dict]:
    """Every entry of a listing, following the Link header as the client does."""
    page = c.get("/api/models", params=params)
    out = page.json()
    while "next" in page.links:
        page = c.get(page.links["next"]["url"])
        out += page.json()
    return out


def test_sort_direction_and_counts(team_hub) -> None:
    ids = _seed(team_hub, 7)
    alice = client(team_hub, "alice")
    by_downloads = [m.id for m in alice.list_models(author="alice", sort="downloads")]
    assert by_downloads == ids[::-1]  # the Hub sorts descending
    assert [m.id for m in alice.list_models(sort="likes", limit=2)] == ids[:2]
    assert [m.id for m in alice.list_models(author="alice", sort="created_at")] == ids[::-1]
    with httpx2.Client(base_url=team_hub.endpoint) as c:
        asc = c.get("/api/models", params={"sort": "downloads", "direction": "1", "limit": 3})
        assert [m["id"] for m in asc.json()] == ids[:3]
        assert [m["downloads"] for m in asc.json()] == [0, 10, 20]


def test_filters(team_hub) -> None:
    _seed(team_hub, 6)
    alice = client(team_hub, "alice")
    assert {m.id for m in alice.list_models(filter=["t0", "license:apache-2.0"])} == {"alice/m-0"}
    assert {m.id for m in alice.list_models(gated=True)} == {"alice/m-1", "alice/m-3", "alice/m-5"}
    assert {m.id for m in alice.list_models(filter="diffusers", search="M-4")} == {"alice/m-4"}
    with httpx2.Client(base_url=team_hub.endpoint) as c:
        assert len(_all_pages(c, {"library": "diffusers", "author": "alice"})) == 6
        assert _all_pages(c, {"library": "transformers"}) == []


def test_expand_full_and_card_data(team_hub) -> None:
    _seed(team_hub, 2)
    alice = client(team_hub, "alice")
    expanded = next(
        iter(alice.list_models(search="m-1", expand=["sha", "downloads", "tags", "likes"]))
    )
    assert expanded.sha and expanded.downloads == 10 and expanded.likes == 1
    assert "license:mit" in expanded.tags
    assert expanded.card_data is None and expanded.siblings is None  # not asked for
    with httpx2.Client(base_url=team_hub.endpoint) as c:
        raw = c.get("/api/models", params=[("search", "m-1"), ("expand", "sha")]).json()
        assert set(raw[0]) == {"_id", "id", "sha"}
    full = next(iter(alice.list_models(search="m-0", full=True)))
    assert {s.rfilename for s in full.siblings} == {".gitattributes", "config.json", "README.md"}
    carded = next(iter(alice.list_models(search="m-0", cardData=True)))
    assert carded.card_data["license"] == "apache-2.0"


def test_pages_survive_concurrent_commits(team_hub) -> None:
    """Page size 3, newest first. While the client is between pages, a repo of a later page
    and one already listed get new commits (both move to the front): no repo is listed
    twice, and every repo that did not move is listed exactly once. An offset cursor would
    skip one (everything after the moved repo shifts by one)."""
    ids = _seed(team_hub, 10)
    alice = client(team_hub, "alice")
    listing = iter(alice.list_models(author="alice", sort="last_modified"))
    first_page = [next(listing).id for _ in range(3)]
    assert first_page == ids[::-1][:3]
    moved = ["alice/m-2", first_page[0]]
    for repo in moved:
        alice.upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id=repo)
    rest = [m.id for m in listing]
    seen = first_page + rest
    assert len(seen) == len(set(seen))
    unmoved = set(ids) - set(moved)
    assert unmoved <= set(seen)


def test_bad_cursor_and_sort_are_400(team_hub) -> None:
    _seed(team_hub, 4)
    with httpx2.Client(base_url=team_hub.endpoint) as c:
        page = c.get("/api/models", params={"sort": "likes"})
        next_url = page.links["next"]["url"]
        assert c.get(next_url).status_code == 200
        other_sort = next_url.replace("sort=likes", "sort=downloads")
        assert c.get(other_sort).status_code == 400
        assert c.get("/api/models", params={"cursor": "garbage!"}).status_code == 400


def test_counts_from_the_hub_config(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "h.yaml", repo_counts={"alice/popular": {"downloads": 1234}})
    with start_hub(tmp_path / "root", config=cfg) as hub:
        alice = HfApi(endpoint=hub.endpoint, token=TOKENS["alice"])
        alice.create_repo("alice/popular")
        alice.create_repo("alice/quiet")
        assert alice.model_info("alice/popular").downloads == 1234
        assert [m.id for m in alice.list_models(sort="downloads")] == [
            "alice/popular",
            "alice/quiet",
        ]


@pytest.mark.parametrize("bad", [{"repo_counts": {"a/b": {"stars": 1}}}, {"no_such_key": 1}])
def test_bad_config_is_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        start_hub(tmp_path / "root", config=write_config(tmp_path / "h.yaml", **bad))
