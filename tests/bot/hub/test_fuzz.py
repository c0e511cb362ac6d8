"""Fuzz the JSON endpoints with random and malformed bodies, headers and URL segments: the
server must always answer, and never with a 5xx (a 5xx is a crash the client cannot act on).

`/admin/faults` is left out on purpose: an admin asking it for 503s gets 503s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.hub import RunningHub, start_hub
from tests.bot.hub.conftest import TOKENS, write_config

REPO = "alice/fuzzed"
ENDPOINTS = [
    ("POST", "/api/repos/create"),
    ("DELETE", "/api/repos/delete"),
    ("PUT", f"/api/models/{REPO}/settings"),
    ("POST", f"/api/models/{REPO}/preupload/main"),
    ("POST", f"/{REPO}.git/info/lfs/objects/batch"),
    ("POST", f"/{REPO}.git/info/lfs/objects/verify"),
    ("POST", f"/api/models/{REPO}/commit/main"),
    ("POST", f"/api/models/{REPO}/commit/main?create_pr=1"),
    ("POST", f"/api/models/{REPO}/paths-info/main"),
    ("POST", f"/api/models/{REPO}/discussions"),
    ("POST", f"/api/models/{REPO}/discussions/1/comment"),
    ("POST", f"/api/models/{REPO}/discussions/1/status"),
    ("POST", f"/api/models/{REPO}/discussions/1/merge"),
    ("POST", "/api/validate-yaml"),
]
KEYS = [
    "name",
    "organization",
    "type",
    "private",
    "visibility",
    "gated",
    "files",
    "path",
    "size",
    "sample",
    "objects",
    "oid",
    "operation",
    "paths",
    "expand",
    "title",
    "description",
    "pullRequest",
    "comment",
    "status",
    "content",
    "key",
    "value",
    "summary",
    "parentCommit",
    "encoding",
    "algo",
]
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["..", ".", "", "a/../b", "README.md", "\x00", "refs/pr/1", "0" * 64, "---\na: *x\n---"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=5)
    ),
    max_leaves=12,
)
COMMIT_LINE = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["header", "file", "lfsFile", "deletedFile", "deletedFolder"])
        | TEXT,
        "value": JSON,
    }
)
BODIES = (
    JSON.map(lambda v: json.dumps(v).encode())
    | st.lists(COMMIT_LINE | JSON, max_size=4).map(
        lambda lines: b"\n".join(json.dumps(line).encode() for line in lines)
    )
    | st.binary(max_size=200)
)
# what a client can send at all: printable ASCII without surrounding blanks (h11 refuses more)
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30
).map(str.strip)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.sampled_from(
            [f"Bearer {TOKENS['alice']}", f"Bearer {TOKENS['bob']}", "Bearer hf_nope", "Basic x"]
        )
        | HEADER_TEXT,
        "Content-Type": st.sampled_from(
            ["application/json", "application/x-ndjson", "application/x-www-form-urlencoded"]
        )
        | HEADER_TEXT,
        "Range": HEADER_TEXT,
    },
)


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    base = tmp_path_factory.mktemp("fuzz")
    config = write_config(base / "hub.yaml", max_json_body=64 * 1024)
    with start_hub(base / "root", config=config, durable=False) as hub:
        with httpx2.Client(base_url=hub.endpoint) as c:
            auth = {"Authorization": f"Bearer {TOKENS['alice']}"}
            c.post("/api/repos/create", json={"name": "fuzzed"}, headers=auth)
            c.post(f"/api/models/{REPO}/discussions", json={"title": "t"}, headers=auth)
        yield hub


@pytest.fixture(scope="module")
def http(fuzz_hub: RunningHub) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=fuzz_hub.endpoint, timeout=30) as c:
        yield c


FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=BODIES, headers=HEADERS)
def test_json_endpoints_never_answer_5xx(http, endpoint, body: bytes, headers) -> None:
    method, path = endpoint
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, (method, path, body, response.text)


@FUZZ
@given(
    segment=TEXT,
    where=st.sampled_from(
        [
            "/api/models/{repo}/revision/{s}",
            "/api/models/{repo}/tree/{s}",
            "/api/models/{repo}/tree/main/{s}",
            "/{repo}/resolve/{s}/README.md",
            "/{repo}/resolve/main/{s}",
            "/api/models/{repo}/commits/{s}",
            "/api/models/{s}/x",
            "/api/models?search={s}&sort={s}&cursor={s}&limit={s}&gated={s}",
        ]
    ),
)
def test_url_segments_never_answer_5xx(http, segment: str, where: str) -> None:
    path = where.format(repo=REPO, s=quote(segment, safe=""))
    response = http.get(path)
    assert response.status_code < 500, (path, response.text)
    for name, value in response.headers.items():
        assert value.isascii() and value.isprintable(), (name, value)
