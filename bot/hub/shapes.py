"""The shapes of the JSON bodies the server accepts, validated before a handler runs.

Each model lists the fields huggingface_hub 2.4 sends (hf_api.py `create_repo`,
`update_repo_settings`, `delete_repo`, `get_paths_info`, `create_discussion`...;
_commit_api.py `_fetch_upload_modes` and `_prepare_commit_payload`; lfs.py
`post_lfs_batch_info`). Validation is strict (a string is never taken for a number or a
boolean); unknown fields are ignored, as the Hub does for fields of newer clients. A body of
the wrong shape is a 400 naming the offending field, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bot.hub.errors import BadRequest

RepoType = Literal["model", "dataset", "space"]
Gated = Literal[False, "auto", "manual"]
Visibility = Literal["public", "private", "protected"]
NonNegative = Annotated[int, Field(ge=0)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CreateRepo(Body):
    name: str
    organization: str | None = None
    type: RepoType | None = None
    private: bool | None = None
    visibility: Visibility | None = None
    gated: Gated | None = None


class DeleteRepo(Body):
    name: str
    organization: str | None = None
    type: RepoType | None = None


class RepoSettings(Body):
    private: bool | None = None
    visibility: Visibility | None = None
    gated: Gated | None = None


class PreuploadFile(Body):
    path: str
    size: NonNegative
    sample: str = ""


class Preupload(Body):
    files: list[PreuploadFile]
    gitAttributes: str | None = None
    gitIgnore: str | None = None


class LfsObject(Body):
    oid: str
    size: int


class LfsBatch(Body):
    operation: str = "upload"
    objects: list[LfsObject]
    transfers: list[str] | None = None
    hash_algo: str | None = None


class LfsVerify(Body):
    oid: str
    size: int


class PathsInfo(Body):
    paths: list[str]
    expand: bool = False


class ValidateYaml(Body):
    content: str
    repoType: str | None = None


class NewDiscussion(Body):
    title: str
    description: str | None = None
    pullRequest: bool | None = None


class Comment(Body):
    comment: str


class StatusChange(Body):
    status: Literal["open", "closed"]
    comment: str | None = None


class Merge(Body):
    comment: str | None = None


class FaultRules(Body):
    rules: list[dict[str, Any]]


# -- NDJSON commit lines ---------------------------------------------------------------------
class CommitHeader(Body):
    summary: str | None = None
    description: str | None = None
    parentCommit: str | None = None


class RegularFile(Body):
    path: str
    content: str
    encoding: Literal["base64"] = "base64"


class LfsFile(Body):
    path: str
    oid: str
    algo: Literal["sha256"] = "sha256"
    size: NonNegative | None = None


class DeletedPath(Body):
    path: str


class HeaderLine(Body):
    key: Literal["header"]
    value: CommitHeader


class FileLine(Body):
    key: Literal["file"]
    value: RegularFile


class LfsFileLine(Body):
    key: Literal["lfsFile"]
    value: LfsFile


class DeletedFileLine(Body):
    key: Literal["deletedFile"]
    value: DeletedPath


class DeletedFolderLine(Body):
    key: Literal["deletedFolder"]
    value: DeletedPath


CommitLine = Annotated[
    HeaderLine | FileLine | LfsFileLine | DeletedFileLine | DeletedFolderLine,
    Field(discriminator="key"),
]
COMMIT_LINE = TypeAdapter(CommitLine)

M = TypeVar("M", bound=BaseModel)


def describe_error(exc: ValidationError, tagged: bool = False) -> str:
    """`field 'files[3].path': Input should be a valid string` for the first error; with
    `tagged`, the first location is the discriminator value of a commit line."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        return f"not valid JSON ({err['msg']})"
    if err["type"] == "union_tag_not_found":
        return "field 'key' is missing"
    if err["type"] == "union_tag_invalid":
        return f"field 'key': {err.get('ctx', {}).get('tag')!r} is not a commit operation"
    loc = list(err["loc"])
    prefix = f"{loc.pop(0)} line, " if tagged and loc else ""
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return f"{prefix}field '{where}': {err['msg']}" if where else prefix + err["msg"]


def parse(model: type[M], body: bytes | bytearray, what: str = "request body") -> M:
    """Validate a JSON body against `model`; BadRequest naming the field otherwise."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise BadRequest(f"invalid {what}: {describe_error(exc)}") from None


def parse_commit_line(line: bytes, number: int) -> Any:
    try:
        return COMMIT_LINE.validate_json(line)
    except ValidationError as exc:
        raise BadRequest(
            f"invalid commit payload, line {number}: {describe_error(exc, tagged=True)}"
        ) from None
