"""HTTP errors of the embedded Hub: a status plus the `X-Error-Code` the client reads.

`huggingface_hub.utils.hf_raise_for_status` turns `X-Error-Code: RepoNotFound` (and
`RevisionNotFound`, `EntryNotFound`, `GatedRepo`) into its typed exceptions, so every refusal is
raised as one of these classes and answered by `http.error_response`. The bot has its own,
unrelated `engine.errors.HubError` (a failure seen by the client); these are the server's.
"""

from __future__ import annotations


class HttpError(Exception):
    """An answer other than 2xx, with the status and X-Error-Code the client maps."""

    status = 400
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(HttpError):
    status = 400


class Unauthorized(HttpError):
    status = 401


class Forbidden(HttpError):
    status = 403


class NotFound(HttpError):
    status = 404


class RepoNotFound(HttpError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(HttpError):
    status, code = 404, "RevisionNotFound"


class InvalidRevision(HttpError):
    """A revision that can never name a ref (`..`, empty, control characters): refused, and
    typed so the client raises RevisionNotFoundError as for any other unusable revision."""

    status, code = 400, "RevisionNotFound"


class EntryNotFound(HttpError):
    status, code = 404, "EntryNotFound"


class Conflict(HttpError):
    status = 409


class PreconditionFailed(HttpError):
    status = 412


class PayloadTooLarge(HttpError):
    status = 413


class TooManyRequests(HttpError):
    status = 429
