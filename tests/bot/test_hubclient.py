"""The bot's Hub client: retries with backoff (Retry-After honoured), run budgets, and every
failure translated into the project's typed errors at this one door."""

from __future__ import annotations

import errno
import os

import pytest
from huggingface_hub import constants

from bot.hub import start_hub
from bot.hubclient import Hub
from bot.settings import Settings
from engine.errors import BudgetExhausted, ExitCode, HubError, HubNotFound, LocalIOError

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
