"""Hostile input never takes the server down: body caps while streaming, JSON shapes, header
safety, `.`/`..` revisions and paths, README front matter (aliases, size, the Hub's fence rule).

Raw paths go through http.client, which sends them as written (httpx would normalise `..`)."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml
from huggingface_hub import HfApi, ModelCard

from bot.hub import RunningHub, start_hub
from tests.bot.hub.conftest import TOKENS, write_config

REPO = "alice/target"
CAPS = {"max_json_body": 4096, "max_commit_body": 16384}


@pytest.fixture(scope="module")
def capped_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    """One hub for this module (alice's repo REPO) with small body caps, so oversized bodies
    stay cheap to send; the tests only add commits to REPO or are refused."""
    base = tmp_path_factory.mktemp("hostile")
    with start_hub(base / "root", config=write_config(base / "h.yaml", **CAPS)) as hub:
        HfApi(endpoint=hub.endpoint, token=TOKENS["alice"]).create_repo(REPO)
        yield hub


def raw_request(
    hub: RunningHub, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> http.client.HTTPResponse:
    host, port = hub.endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def _objects(root: Path) -> set[Path]:
    return {p for p in (root / "objects").rglob("*") if p.is_file()}


@pytest.mark.parametrize("token", [TOKENS["alice"], None])
def test_chunked_commit_past_the_cap_is_413_and_stores_nothing(capped_hub, token) -> None:
    """No Content-Length: the cap is counted while the body streams (the whole body used to
    be buffered first). Anonymous callers are refused before any byte is read."""
    api = HfApi(endpoint=capped_hub.endpoint, token=TOKENS["alice"])
    before, objects = api.model_info(REPO).sha, _objects(capped_hub.root)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        r = c.post(f"/api/models/{REPO}/commit/main", content=chunks(100_000), headers=headers)
        assert "content-length" not in r.request.headers  # really sent chunked
    if token:
        assert r.status_code == 413 and "16384" in r.headers["x-error-message"]
    else:
        assert r.status_code == 401
    assert api.model_info(REPO).sha == before
    assert _objects(capped_hub.root) == objects
    api.upload_file(path_or_fileobj=b"small", path_in_repo="ok.txt", repo_id=REPO)  # still up


def test_json_body_cap_with_and_without_content_length(capped_hub) -> None:
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        chunked = c.post("/api/validate-yaml", content=chunks(10_000))
        sized = c.post("/api/validate-yaml", content=b"{" + b" " * 10_000 + b"}")
        fits = c.post("/api/validate-yaml", json={"content": "---\na: 1\n---\n"})
    assert chunked.status_code == 413 and sized.status_code == 413
    assert "4096" in chunked.headers["x-error-message"]
    assert fits.status_code == 200


SHAPES = [
    ("POST", "/api/repos/create", {"name": 5}, "'name'"),
    ("POST", "/api/repos/create", [], "object"),
    ("POST", "/api/repos/create", {"name": "x", "private": "yes"}, "'private'"),
    ("DELETE", "/api/repos/delete", {"organization": "alice"}, "'name'"),
    ("PUT", f"/api/models/{REPO}/settings", {"gated": "sometimes"}, "'gated'"),
    ("POST", f"/api/models/{REPO}/preupload/main", {"files": 3}, "'files'"),
    ("POST", f"/api/models/{REPO}/preupload/main", {"files": [1]}, "'files[0]'"),
    ("POST", f"/api/models/{REPO}/preupload/main", {"files": [{"path": "a"}]}, "'files[0].size'"),
    ("POST", f"/{REPO}.git/info/lfs/objects/batch", {"objects": [{"oid": 1}]}, "objects[0].oid"),
    ("POST", f"/{REPO}.git/info/lfs/objects/batch", {"objects": {}}, "'objects'"),
    ("POST", f"/{REPO}.git/info/lfs/objects/verify", {"oid": "a"}, "'size'"),
    ("POST", f"/api/models/{REPO}/paths-info/main", {"paths": [1]}, "'paths[0]'"),
    ("POST", f"/api/models/{REPO}/discussions", {"title": None}, "'title'"),
    ("POST", f"/api/models/{REPO}/discussions", {"title": "t", "pullRequest": 1}, "pullRequest"),
    ("POST", "/api/validate-yaml", {"content": ["---"]}, "'content'"),
    ("POST", "/api/validate-yaml", "not json{", "not valid JSON"),
]


@pytest.mark.parametrize(("method", "path", "body", "named"), SHAPES)
def test_json_of_the_wrong_shape_is_400_naming_the_field(
    capped_hub, method: str, path: str, body: object, named: str
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        r = c.request(method, path, content=content, headers=_auth("alice", json_type=True))
    assert r.status_code == 400, r.text
    assert named in r.headers["x-error-message"], r.headers["x-error-message"]


COMMITS = [
    ([{"key": "header", "value": []}], "line 1: header line, field 'value'"),
    ([{"key": "nope", "value": {}}], "line 1: field 'key': 'nope'"),
    ([{"key": "file", "value": {"path": "a", "content": 5}}], "field 'value.content'"),
    ([{"key": "file", "value": "z"}], "line 1: file line, field 'value'"),
    ([{"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64, "size": -1}}], "value.size"),
    ([{"key": "file", "value": {"path": "a", "content": "@@"}}], "not base64"),
    ([{"key": "deletedFile", "value": {}}], "field 'value.path'"),
    ([], "no header line"),
]


@pytest.mark.parametrize(("lines", "named"), COMMITS)
def test_bad_commit_lines_are_400_naming_line_and_field(capped_hub, lines, named: str) -> None:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        r = c.post(f"/api/models/{REPO}/commit/main", content=body, headers=_auth("alice"))
    assert r.status_code == 400, r.text
    assert named in r.headers["x-error-message"], r.headers["x-error-message"]


def test_bad_query_numbers_are_400(capped_hub) -> None:
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        for path in (
            "/api/models?limit=x",
            "/api/models?limit=0",
            "/api/models?sort=nonsense",
            "/api/models?cursor=%%%",
            f"/api/models/{REPO}/discussions?p=abc",
        ):
            r = c.get(path)
            assert r.status_code == 400, (path, r.status_code)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/models/{REPO}%00x",  # NUL: used to reach X-Error-Message and drop the connection
        f"/api/models/{REPO}%0D%0AX-Injected:%20yes",  # CR/LF: header injection attempt
        f"/api/models/{REPO}%C3%A9%E2%82%AC",  # non-ASCII
        f"/api/models/{REPO}/revision/main%00",
        f"/{REPO}/resolve/main/a%0Ab",
    ],
)
def test_control_and_non_ascii_characters_never_reach_a_header(capped_hub, path: str) -> None:
    response = raw_request(capped_hub, "GET", path)
    assert 400 <= response.status < 500
    assert response.getheader("X-Injected") is None
    for name, value in response.getheaders():
        assert value.isascii() and value.isprintable(), (name, value)


def test_non_ascii_upload_signature_is_403(capped_hub) -> None:
    """compare_digest refuses non-ASCII str: this used to be a 500."""
    path = f"/lfs/upload/{'a' * 64}?size=1&expires=99999999999&sig=%C3%A9%00"
    response = raw_request(capped_hub, "PUT", path, body=b"x")
    assert response.status == 403


@pytest.mark.parametrize("revision", ["..", "%2E%2E", ".", "%2E", "a%2F..%2Fb", "%2F", "x%00"])
def test_dot_and_empty_revisions_are_refused(capped_hub, revision: str) -> None:
    """`..` used to reach refs/heads/.. on disk (IsADirectoryError, 500)."""
    for path in (
        f"/api/models/{REPO}/revision/{revision}",
        f"/api/models/{REPO}/tree/{revision}",
        f"/{REPO}/resolve/{revision}/README.md",
    ):
        response = raw_request(capped_hub, "GET", path)
        assert response.status == 400, (path, response.status)
        assert response.getheader("X-Error-Code") == "RevisionNotFound"


@pytest.mark.parametrize("segment", ["..", ".", "a/../b", "a//b"])
def test_dot_and_empty_path_segments_are_refused(capped_hub, segment: str) -> None:
    for path in (f"/{REPO}/resolve/main/{segment}", f"/api/models/{REPO}/tree/main/{segment}"):
        response = raw_request(capped_hub, "GET", path)
        assert response.status == 400, (path, response.status)


ALIAS_BOMB = "---\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcde", "bcdef", strict=True)
)


def test_yaml_alias_bomb_is_refused_by_commit_and_validate_yaml(capped_hub) -> None:
    """400 bytes of nested aliases used to grow the repo metadata to 22 MB."""
    readme = ALIAS_BOMB + "---\n# model\n"
    assert len(readme) < 400
    status, message = _validate(capped_hub, readme)
    assert status == 400 and "alias *a" in message
    before = client(capped_hub).model_info(REPO).sha
    assert _commit_readme(capped_hub, readme) == 400
    assert client(capped_hub).model_info(REPO).sha == before


def test_front_matter_size_and_depth_are_capped(hub) -> None:
    """(the config-less hub: its JSON cap is the default, above the front matter's)"""
    big = "---\n" + "".join(f"k{i}: {'v' * 60}\n" for i in range(3000)) + "---\n"
    status, message = _validate(hub, big)
    assert status == 400 and "limit" in message
    deep = "---\nk: " + "[" * 100 + "]" * 100 + "\n---\n"
    status, message = _validate(hub, deep)
    assert status == 400 and "nested" in message


# (README, what huggingface_hub's ModelCard makes of it); each is a case where the previous
# line-based fence rule and huggingface_hub's REGEX_YAML_BLOCK disagree, or a plain one.
FENCES = [
    "---\nlicense: mit\n---\n# ok\n",
    "\n\n---\nlicense: [mit\n---\n",  # blank lines before the fence: the Hub sees the block
    "  ---\nlicense: [mit\n---\n",  # leading blanks too
    "--- \nlicense: [mit\n---\n",  # trailing blank on the opening fence: no block at all
    "---\nlicense: mit\n  ---\n",  # indented closing fence: not a fence
    "---\r\nlicense: mit\r\n---\r\nbody",
    "---\n- a list\n---\n",
    "---\nlicense: mit\n---   \nbody",  # trailing blanks on the closing fence are allowed
    "no front matter at all\n",
]


@pytest.mark.parametrize("readme", FENCES)
def test_front_matter_rule_is_huggingface_hubs(capped_hub, readme: str) -> None:
    """The server refuses exactly the READMEs huggingface_hub's ModelCard refuses, and reads
    the same metadata from the others (through validate-yaml and through a commit)."""
    try:
        expected = ModelCard(readme, ignore_metadata_errors=True).data.to_dict()
        hub_refuses = False
    except (ValueError, yaml.YAMLError):
        expected, hub_refuses = None, True
    status, _ = _validate(capped_hub, readme)
    assert (status == 400) == hub_refuses
    assert (_commit_readme(capped_hub, readme) == 400) == hub_refuses
    if not hub_refuses:
        info = client(capped_hub).model_info(REPO)
        assert (info.card_data.to_dict() if info.card_data else {}) == expected


def test_odd_yaml_values_are_served_as_json(capped_hub) -> None:
    """Dates and NaN are valid YAML but not JSON: they used to make every info call a 500."""
    readme = "---\nreleased: 2024-01-02\nscore: .nan\nsizes: [1, .inf]\n---\n"
    assert _commit_readme(capped_hub, readme) == 200
    with httpx2.Client(base_url=capped_hub.endpoint, timeout=30) as c:
        card = c.get(f"/api/models/{REPO}").json()["cardData"]
    assert card == {"released": "2024-01-02", "score": None, "sizes": [1, None]}


# -- helpers --------------------------------------------------------------------------------
def client(hub: RunningHub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=TOKENS["alice"])


def _auth(who: str, json_type: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    if json_type:
        headers["Content-Type"] = "application/json"
    return headers


def _validate(hub: RunningHub, readme: str) -> tuple[int, str]:
    with httpx2.Client(base_url=hub.endpoint, timeout=30) as c:
        r = c.post("/api/validate-yaml", json={"content": readme, "repoType": "model"})
    errors = r.json()["errors"]
    return r.status_code, errors[0]["message"] if errors else ""


def _commit_readme(hub: RunningHub, readme: str) -> int:
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {
            "key": "file",
            "value": {
                "path": "README.md",
                "content": base64.b64encode(readme.encode()).decode(),
                "encoding": "base64",
            },
        },
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    with httpx2.Client(base_url=hub.endpoint, timeout=30) as c:
        r = c.post(f"/api/models/{REPO}/commit/main", content=body, headers=_auth("alice"))
    return r.status_code
