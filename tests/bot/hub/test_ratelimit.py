"""Rate limits as the Hub applies them, seen through the real client: per-bucket fixed windows,
per account (per IP when anonymous), the IETF RateLimit headers huggingface_hub parses, 429
with Retry-After, and the client's own wait-and-retry during pagination and downloads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_session, parse_ratelimit_headers

from bot.hub import RunningHub, start_hub
from bot.hub.bulk import seed_repo
from tests.bot.hub.conftest import TOKENS, client, write_config

WINDOW = 2
LIMITS = {
    "window": WINDOW,
    "anonymous": {"api": 3, "resolvers": 2},
    "free": {"api": 5},
    "pro": {"api": 8},
}
REPO = "alice/limited"


@pytest.fixture
def limited_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A hub with small limits and alice's REPO (seeded in-process: no call counted yet)."""
    cfg = write_config(tmp_path / "hub.yaml", rate_limits=LIMITS)
    with start_hub(tmp_path / "root", config=cfg) as hub:
        seed_repo(hub, REPO, {"w.txt": b"w"})
        yield hub


def test_burst_over_the_limit_is_429_with_headers_the_client_parses(limited_hub) -> None:
    anon = client(limited_hub, None)
    infos = [anon.model_info(REPO) for _ in range(3)]
    assert all(i.id == REPO for i in infos)
    with pytest.raises(HfHubHTTPError) as err:
        anon.model_info(REPO)
    response = err.value.response
    assert response.status_code == 429
    info = parse_ratelimit_headers(response.headers)
    assert info is not None
    assert (info.resource_type, info.remaining, info.limit, info.window_seconds) == (
        "api",
        0,
        3,
        WINDOW,
    )
    assert 1 <= info.reset_in_seconds <= WINDOW
    assert response.headers["Retry-After"] == str(info.reset_in_seconds)
    assert f"(0/3 requests remaining in current {WINDOW}s window)" in str(err.value)
    assert limited_hub.state.stats.bucket("api") == 4
    assert limited_hub.state.stats.throttled("api") == 1


def test_every_answer_carries_the_remaining_quota(limited_hub) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['alice']}"}
    seen = []
    for _ in range(2):
        r = get_session().get(f"{limited_hub.endpoint}/api/models/{REPO}", headers=auth)
        info = parse_ratelimit_headers(r.headers)
        seen.append((r.status_code, info.remaining, info.limit))
    assert seen == [(200, 4, 5), (200, 3, 5)]  # alice is on the free plan: 5 per window
    missing = get_session().get(f"{limited_hub.endpoint}/api/models/alice/nothing", headers=auth)
    assert missing.status_code == 404 and parse_ratelimit_headers(missing.headers).remaining == 2


def test_accounts_ips_and_buckets_are_counted_apart(limited_hub, tmp_path: Path) -> None:
    alice, bob = client(limited_hub, "alice"), client(limited_hub, "bob")
    for _ in range(5):
        alice.model_info(REPO)
    with pytest.raises(HfHubHTTPError):
        alice.model_info(REPO)
    assert bob.model_info(REPO).id == REPO  # bob's own window
    assert client(limited_hub, None).model_info(REPO).id == REPO  # and the IP's
    for i in range(2):  # downloads count against resolvers, not api
        hf_hub_download(
            REPO,
            "w.txt",
            endpoint=limited_hub.endpoint,
            cache_dir=tmp_path / f"c{i}",
            token=TOKENS["alice"],
        )
    stats = limited_hub.state.stats
    assert (stats.bucket("api"), stats.throttled("api")) == (8, 1)
    assert (stats.bucket("resolvers"), stats.throttled("resolvers")) == (4, 0)  # HEAD + GET


def test_client_waits_for_the_window_during_downloads(limited_hub, tmp_path: Path) -> None:
    """Anonymous resolvers: 2 per window, one download is HEAD + GET; the second download
    is refused, waits for the window (RateLimit reset + 1 s) and completes."""
    start = time.monotonic()
    for i in range(2):
        path = hf_hub_download(
            REPO, "w.txt", endpoint=limited_hub.endpoint, cache_dir=tmp_path / f"c{i}", token=False
        )
        assert Path(path).read_bytes() == b"w"
    assert time.monotonic() - start >= 1
    assert limited_hub.state.stats.throttled("resolvers") >= 1


def test_client_waits_for_the_window_during_pagination(limited_hub) -> None:
    """list_models goes through http_backoff: on a 429 it sleeps the RateLimit reset + 1 s
    and retries, so a listing started with a spent quota still completes."""
    anon = client(limited_hub, None)
    for _ in range(3):
        anon.model_info(REPO)
    start = time.monotonic()
    assert [m.id for m in anon.list_models(author="alice")] == [REPO]
    assert time.monotonic() - start >= 1  # waited for the window to reset
    assert limited_hub.state.stats.throttled("api") == 1


def test_pro_accounts_get_the_pro_tier(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "hub.yaml", rate_limits=LIMITS)
    text = cfg.read_text().replace("- name: bob", "- name: bob\n  plan: pro")
    cfg.write_text(text)
    with start_hub(tmp_path / "root", config=cfg) as hub:
        bob = HfApi(endpoint=hub.endpoint, token=TOKENS["bob"])
        assert bob.whoami()["isPro"] is True
        auth = {"Authorization": f"Bearer {TOKENS['bob']}"}
        headers = get_session().get(f"{hub.endpoint}/api/models", headers=auth).headers
        assert parse_ratelimit_headers(headers).limit == 8


def test_off_by_default(team_hub) -> None:
    r = get_session().get(f"{team_hub.endpoint}/api/models")
    assert r.status_code == 200 and parse_ratelimit_headers(r.headers) is None
    assert team_hub.state.stats.bucket("api") >= 1  # counted all the same
