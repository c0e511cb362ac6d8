"""Fault injection as the client sees it: retries, Retry-After, errors, dropped bodies, delay."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_session

from bot.hub import start_hub
from tests.bot.hub.conftest import TOKENS, write_config

REPO = "unetbot-local/faulty"


def set_faults(hub: Any, rules: list[dict[str, Any]], token: str | None = None) -> Any:
    auth = {"Authorization": f"Bearer {token or hub.token}"}
    return get_session().post(f"{hub.endpoint}/admin/faults", json={"rules": rules}, headers=auth)


def fired(hub: Any) -> list[int]:
    return [r["fired"] for r in hub.state.faults.snapshot()]


def test_503_on_preupload_is_retried(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    r = set_faults(
        hub,
        [{"kind": "status", "status": 503, "method": "POST", "path": "/preupload/", "calls": [1]}],
    )
    assert r.status_code == 200
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert fired(hub) == [1]
    assert "x.txt" in api.list_repo_files(REPO)


def test_429_retry_after_is_honoured(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    set_faults(
        hub,
        [
            {
                "status": 429,
                "retry_after": 1,
                "method": "GET",
                "path": r"^/api/models$",
                "calls": [1],
            }
        ],
    )
    start = time.monotonic()
    assert [m.id for m in api.list_models(author="unetbot-local")] == [REPO]
    assert time.monotonic() - start >= 1.9  # Retry-After (1 s) + the client's 1 s margin
    assert fired(hub) == [1]


def test_500_and_502_reach_the_client(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    before = api.model_info(REPO).sha
    set_faults(
        hub,
        [
            {"status": 500, "method": "GET", "path": "^/api/models/", "calls": [1]},
            {"status": 502, "method": "POST", "path": "/commit/", "calls": [1]},
        ],
    )
    with pytest.raises(HfHubHTTPError) as err:
        api.model_info(REPO)
    assert err.value.response.status_code == 500
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert err.value.response.status_code == 502
    assert api.model_info(REPO).sha == before  # the faulted commit never happened
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)  # call 2 passes


def test_dropped_download_resumes_with_range(api: HfApi, hub, tmp_path: Path) -> None:
    """The client keeps whole 10 MiB chunks it got and asks for the rest with a Range."""
    api.create_repo(REPO)
    data = os.urandom(12 * 1024 * 1024)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=REPO)
    set_faults(
        hub,
        [
            {
                "kind": "drop",
                "after_bytes": 11 * 1024 * 1024,
                "method": "GET",
                "path": "/resolve/",
                "calls": [1],
            }
        ],
    )
    got = hf_hub_download(
        REPO, "w.bin", endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=hub.token
    )
    assert Path(got).read_bytes() == data
    statuses = [s for m, p, s in hub.state.stats.recent if m == "GET" and "/resolve/" in p]
    assert statuses == [200, 206]


def test_dropped_commit_response(api: HfApi, hub) -> None:
    """The commit happens but its answer is lost: the client errors, the server has it."""
    api.create_repo(REPO)
    set_faults(hub, [{"kind": "drop", "method": "POST", "path": "/commit/", "calls": [1]}])
    with pytest.raises(Exception):  # noqa: B017 - httpx2.RemoteProtocolError, untyped by hf
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert "x.txt" in api.list_repo_files(REPO)


def test_delay(api: HfApi, hub) -> None:
    api.create_repo(REPO)
    set_faults(hub, [{"kind": "delay", "delay": 0.3, "path": "^/api/models/"}])
    start = time.monotonic()
    api.model_info(REPO)
    api.model_info(REPO)
    assert time.monotonic() - start >= 0.6
    assert fired(hub) == [2]


def test_admin_endpoint_auth_and_clear(tmp_path: Path) -> None:
    """Faults change what every caller sees: only admins (here alice, listed under `admins`)
    may set them; bob's write token and alice's read token are refused."""
    cfg = write_config(
        tmp_path / "hub.yaml",
        admins=["alice"],
        faults=[{"status": 503, "method": "GET", "path": "^/api/whoami-v2$", "calls": [1, 2]}],
    )
    with start_hub(tmp_path / "root", config=cfg) as hub:
        alice = HfApi(endpoint=hub.endpoint, token=TOKENS["alice"])
        for _ in range(2):  # whoami is not retried by the client: both calls fail
            with pytest.raises(HfHubHTTPError) as err:
                alice.whoami(cache=False)
            assert err.value.response.status_code == 503
        assert alice.whoami(cache=False)["name"] == "alice"
        assert set_faults(hub, [], token="hf_wrong_token").status_code == 401
        assert set_faults(hub, [], token=TOKENS["alice_read"]).status_code == 403
        refused = set_faults(hub, [{"status": 500}], token=TOKENS["bob"])
        assert refused.status_code == 403 and "admin" in refused.headers["x-error-message"]
        assert [r["status"] for r in hub.state.faults.snapshot()] == [503]  # bob's: not set
        assert set_faults(hub, [{"kind": "explode"}]).status_code == 400
        set_faults(hub, [{"status": 503, "path": "^/api/whoami-v2$"}])
        auth = {"Authorization": f"Bearer {TOKENS['alice']}"}
        r = get_session().delete(f"{hub.endpoint}/admin/faults", headers=auth)
        assert r.status_code == 200 and r.json() == {"rules": []}
        assert alice.whoami(cache=False)["name"] == "alice"


def test_admin_role_token(tmp_path: Path) -> None:
    """A token whose role is `admin` may set faults without an `admins` list."""
    cfg = write_config(tmp_path / "hub.yaml")
    raw = yaml.safe_load(cfg.read_text())
    raw["tokens"].append({"id": "ops", "user": "bob", "role": "admin", "token": "hf_ops_admin_01"})
    cfg.write_text(yaml.safe_dump(raw))
    with start_hub(tmp_path / "root", config=cfg) as hub:
        assert set_faults(hub, [{"status": 500}], token=TOKENS["bob"]).status_code == 403
        assert set_faults(hub, [{"status": 500}], token="hf_ops_admin_01").status_code == 200
        assert [r["status"] for r in hub.state.faults.snapshot()] == [500]
