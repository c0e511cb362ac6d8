"""Accounts and access: 401/403/404, private and gated repos, token file, namespaces."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from bot.hub import read_token, start_hub
from tests.bot.hub.conftest import TOKENS, client


def _status(exc: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    return exc.value.response.status_code


def _download(hub, repo_id: str, filename: str, cache: Path, who: str | None) -> Path:
    """`hf_hub_download` from the team Hub as `who` (None: anonymous, no token at all)."""
    token = TOKENS[who] if who else False
    return Path(
        hf_hub_download(repo_id, filename, endpoint=hub.endpoint, cache_dir=cache, token=token)
    )


def test_local_token_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with start_hub(root) as hub:
        assert read_token(root) == hub.token
        assert stat.S_IMODE((root / "token").stat().st_mode) == 0o600
    with start_hub(root) as again:  # the token survives restarts
        assert again.token == hub.token
        with pytest.raises(RuntimeError):
            start_hub(root)  # one server per root


def test_bad_or_missing_token(team_hub) -> None:
    with pytest.raises(HfHubHTTPError) as err:
        client(team_hub, None).whoami(token="hf_not_a_real_token_at_all")
    assert _status(err) == 401
    client(team_hub, "alice").create_repo("alice/pub")
    anon = client(team_hub, None)
    assert anon.model_info("alice/pub").id == "alice/pub"  # public read needs no token
    with pytest.raises(HfHubHTTPError) as err:
        anon.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/pub")
    assert _status(err) == 401


def test_read_token_and_foreign_namespace_are_403(team_hub) -> None:
    alice = client(team_hub, "alice")
    alice.create_repo("alice/m")
    assert alice.create_repo("acme/shared").repo_id == "acme/shared"  # org member
    reader = client(team_hub, "alice_read")
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as err:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/m")
    assert _status(err) == 403
    bob = client(team_hub, "bob")
    for call in (
        lambda: bob.create_repo("acme/bobs"),
        lambda: bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/m"),
        lambda: bob.delete_repo("alice/m"),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert _status(err) == 403
    with pytest.raises(HfHubHTTPError) as err:
        client(team_hub, "alice").create_repo("bob/not-mine")
    assert _status(err) == 403


def test_private_repo_is_404_to_others(team_hub, tmp_path: Path) -> None:
    alice = client(team_hub, "alice")
    alice.create_repo("alice/hidden", private=True)
    alice.upload_file(path_or_fileobj=b"s", path_in_repo="s.txt", repo_id="alice/hidden")
    assert alice.model_info("alice/hidden").private is True
    for who in ("bob", None):
        api = client(team_hub, who)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("alice/hidden")
        with pytest.raises(RepositoryNotFoundError):
            _download(team_hub, "alice/hidden", "s.txt", tmp_path / "c", who)
        with pytest.raises(RepositoryNotFoundError):
            list(api.get_repo_discussions("alice/hidden"))


def test_gated_repo(team_hub, tmp_path: Path) -> None:
    alice = client(team_hub, "alice")
    for name in ("alice/gated", "alice/granted"):
        alice.create_repo(name)
        alice.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id=name)
        alice.update_repo_settings(name, gated="manual")
    assert client(team_hub, "bob").model_info("alice/gated").gated == "manual"
    for who in ("bob", None):
        with pytest.raises(GatedRepoError):
            _download(team_hub, "alice/gated", "w.txt", tmp_path / "c", who)
    assert _download(team_hub, "alice/gated", "w.txt", tmp_path / "a", "alice").read_bytes() == b"w"
    assert _download(team_hub, "alice/granted", "w.txt", tmp_path / "b", "bob").read_bytes() == b"w"


def test_token_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="unetbot.hub")
    with start_hub(tmp_path / "root") as hub:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("unetbot-local/x")
        api.whoami()
    assert caplog.records and hub.token not in caplog.text


def test_any_write_token_may_open_a_pull_request(team_hub, tmp_path: Path) -> None:
    """As on the real Hub: bob cannot push to alice's main, but can open (and extend) a PR."""
    from huggingface_hub import CommitOperationAdd

    alice = HfApi(endpoint=team_hub.endpoint, token=TOKENS["alice"])
    bob = HfApi(endpoint=team_hub.endpoint, token=TOKENS["bob"])
    alice.create_repo("alice/model")
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))  # LFS-sized
    ops = [CommitOperationAdd("weights.bin", str(big))]
    with pytest.raises(HfHubHTTPError) as info:
        bob.create_commit("alice/model", ops, commit_message="direct")
    assert info.value.response.status_code == 403
    pr = bob.create_commit("alice/model", ops, commit_message="proposal", create_pr=True)
    assert pr.pr_num == 1
    bob.create_commit(
        "alice/model",
        [CommitOperationAdd("notes.txt", b"more")],
        commit_message="follow-up",
        revision="refs/pr/1",
    )
    files = alice.list_repo_files("alice/model", revision="refs/pr/1")
    assert {"weights.bin", "notes.txt"} <= set(files)
    assert "weights.bin" not in alice.list_repo_files("alice/model")
