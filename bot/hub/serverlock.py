"""One process per storage root: a server (or an offline bulk seeder) holds this lock."""

from __future__ import annotations

import fcntl
from pathlib import Path


class ServerLock:
    """Exclusive lock on a root so two processes never interleave commits to the same repos."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self._fh = open(root / ".server.lock", "w")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            raise RuntimeError(f"another hub server is using {root}") from exc

    def release(self) -> None:
        if self._fh.closed:
            return
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
