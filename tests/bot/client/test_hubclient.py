"""The bot's Hub client: retries with backoff (Retry-After honoured), run budgets, and every
failure translated into the project's typed errors at this one door."""

from __future__ import annotations

import errno
import os

import pytest
from huggingface_hub import constants

from bot.client.hub import Hub
from bot.hub import start_hub
from bot.settings import Settings
from engine.errors import (
    BudgetExhausted,
    ExitCode,
    HubError,
    HubNotFound,
    HubRateLimited,
    LocalIOError,
)

os.environ["HF_HUB_DISABLE_XET"] = "1"
constants.HF_HUB_DISABLE_XET = True


@pytest.fixture
def local_hub(tmp_path):
    with start_hub(tmp_path / "root") as running:
        yield running


def _hub(running, **kwargs) -> tuple[Hub, list[float]]:
    slept: list[float] = []
    settings = Settings(running.endpoint, running.token, None, None)
    return Hub(settings, sleep=slept.append, **kwargs), slept


def test_429_and_5xx_are_retried_honouring_retry_after(local_hub):
    hub, slept = _hub(local_hub)
    hub.api.create_repo("unetbot-local/m")
    local_hub.state.faults.set(
        [
            {
                "kind": "status",
                "status": 429,
                "retry_after": 7,
                "method": "GET",
                "path": "/api/models/unetbot-local/m",
                "calls": [1],
            },
            {
                "kind": "status",
                "status": 503,
                "method": "GET",
                "path": "/api/models/unetbot-local/m",
                "calls": [2],
            },
        ]
    )
    info = hub.call("model_info", hub.api.model_info, "unetbot-local/m")
    assert info.id == "unetbot-local/m"
    assert slept[0] == 7.0  # Retry-After honoured
    assert len(slept) == 2 and hub.calls == 3


def test_client_errors_are_not_retried_and_become_typed_errors(local_hub):
    hub, slept = _hub(local_hub)
    with pytest.raises(HubNotFound, match="model_info unetbot-local/absent: HTTP 404") as err:
        hub.call("model_info unetbot-local/absent", hub.api.model_info, "unetbot-local/absent")
    assert err.value.exit_code is ExitCode.HUB_ERROR
    assert slept == [] and hub.calls == 1


def test_negative_retry_after_is_clamped(local_hub):
    hub, slept = _hub(local_hub)
    hub.api.create_repo("unetbot-local/m")
    local_hub.state.faults.set(
        [{"kind": "status", "status": 429, "retry_after": -5, "path": "/api/models/", "calls": [1]}]
    )
    assert hub.call("model_info", hub.api.model_info, "unetbot-local/m").id == "unetbot-local/m"
    assert slept == [0.0]


def test_local_disk_errors_are_not_retried():
    hub = Hub(Settings("http://127.0.0.1:9", None, None, None), sleep=lambda s: None)

    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/blob")

    with pytest.raises(LocalIOError, match="disk is full") as err:
        hub.call("download", full_disk)
    assert err.value.exit_code is ExitCode.LOCAL_IO
    assert hub.calls == 1


def test_persistent_failure_gives_up_after_max_attempts(local_hub):
    hub, slept = _hub(local_hub, max_attempts=3)
    hub.api.create_repo("unetbot-local/m")
    local_hub.state.faults.set([{"kind": "status", "status": 502, "path": "/api/models/"}])
    with pytest.raises(HubError, match="HTTP 502"):
        hub.call("model_info", hub.api.model_info, "unetbot-local/m")
    assert len(slept) == 2 and slept[1] == 2 * slept[0]  # exponential backoff


def test_call_budget_is_enforced(local_hub):
    hub, _ = _hub(local_hub, max_calls=1)
    hub.call("whoami", hub.api.whoami)
    with pytest.raises(BudgetExhausted):
        hub.call("whoami", hub.api.whoami)


def _throttle(running, retry_after: float, calls: list[int] | None = None) -> None:
    rule = {"kind": "status", "status": 429, "retry_after": retry_after}
    running.state.faults.set([{**rule, "path": "/api/models/unetbot-local/m", "calls": calls}])


def test_a_429_storm_is_waited_out_whatever_the_attempt_limit(local_hub):
    hub, slept = _hub(local_hub, max_attempts=2)
    hub.api.create_repo("unetbot-local/m")
    _throttle(local_hub, 4, list(range(1, 9)))
    assert hub.call("model_info", hub.api.model_info, "unetbot-local/m").id == "unetbot-local/m"
    assert slept == [4.0] * 8  # eight 429s: eight waits, no failure
    assert hub.pacer.throttles["api"] == 8


def test_a_429_wait_past_the_deadline_is_a_spent_budget_not_a_failure(local_hub):
    import time

    hub, slept = _hub(local_hub, deadline=time.monotonic() + 60)
    hub.api.create_repo("unetbot-local/m")
    _throttle(local_hub, 600)
    with pytest.raises(BudgetExhausted, match="would pass the run's time budget"):
        hub.call("model_info", hub.api.model_info, "unetbot-local/m")
    assert slept == []


def test_a_hub_that_never_stops_refusing_is_rate_limited_after_max_rate_wait(local_hub):
    hub, slept = _hub(local_hub, max_rate_wait=10)
    hub.api.create_repo("unetbot-local/m")
    _throttle(local_hub, 4)
    with pytest.raises(HubRateLimited, match="rate limited after retries"):
        hub.call("model_info", hub.api.model_info, "unetbot-local/m")
    assert slept == [4.0, 4.0]  # a third wait would pass 10 s


def test_the_budget_counts_http_requests(local_hub, tmp_path):
    from huggingface_hub import hf_hub_download

    hub, _ = _hub(local_hub, max_calls=3)
    hub.api.create_repo("unetbot-local/m")  # 1 request
    hub.api.upload_file(path_or_fileobj=b"{}", path_in_repo="c.json", repo_id="unetbot-local/m")
    spent = hub.spent()
    assert spent >= 3  # create, preupload, commit: the account's requests, not `call`s
    with pytest.raises(BudgetExhausted):
        hub.call(
            "download",
            hf_hub_download,
            "unetbot-local/m",
            "c.json",
            endpoint=local_hub.endpoint,
            cache_dir=str(tmp_path / "c"),
        )
