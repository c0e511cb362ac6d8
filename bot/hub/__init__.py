"""An embedded Hugging Face Hub-compatible server (Starlette + uvicorn) for tests and demos.

The bot only ever talks to a Hub through the unmodified `huggingface_hub` client; this server
speaks enough of the Hub protocol for everything the bot does, stores data durably under a
root directory, derives tags as the Hub does, applies the Hub's rate limits when configured,
refuses hostile input with typed 4xx answers, and can inject faults deterministically.

Where things are: app.py (dispatch, body caps, rate limits), state.py (config), routes_*.py
(endpoints), shapes.py (JSON bodies), repos.py / objects.py / model.py (storage), repotags.py
(derived tags), cardmeta.py (README metadata), ratelimit.py, faults.py, auth.py, bulk.py
(seeding straight into the storage for benchmarks and large tests).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from bot.hub.app import build_app
from bot.hub.auth import TOKEN_FILE, read_token
from bot.hub.serverlock import ServerLock
from bot.hub.state import HubState, build_state

__all__ = ["RunningHub", "read_token", "serve", "start_hub"]
log = logging.getLogger("unetbot.hub")


def _config(state: HubState, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
    )


@dataclass
class RunningHub:
    """A server running in a background thread; `token` is for in-process use only."""

    endpoint: str
    token: str = field(repr=False)
    root: Path
    state: HubState = field(repr=False)
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _lock: ServerLock = field(repr=False)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._lock.release()

    def __enter__(self) -> RunningHub:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_hub(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    config: Path | None = None,
    log_level: str = "warning",
    *,
    durable: bool = True,
) -> RunningHub:
    """Start a server on `host:port` (0 = a free port) and return once it accepts requests.

    `durable=False` skips fsyncs (tests and benchmarks only)."""
    root = Path(root)
    lock = ServerLock(root)
    try:
        state = build_state(root, config, durable=durable)
        server = uvicorn.Server(_config(state, host, port, log_level))
        thread = threading.Thread(target=server.run, name="unetbot-hub", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("hub server failed to start")
            time.sleep(0.01)
    except BaseException:
        lock.release()
        raise
    bound = server.servers[0].sockets[0].getsockname()[1]
    endpoint = f"http://{host}:{bound}"
    log.info("hub serving %s on %s", root, endpoint)
    return RunningHub(endpoint, state.token, root, state, server, thread, lock)


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: Path | None = None,
    log_level: str = "info",
) -> None:
    """Run a server in the foreground (CLI `bot hub serve`); prints where the token is."""
    root = Path(root)
    lock = ServerLock(root)
    try:
        state = build_state(root, config)
        if config is None:
            print(f"write token: {root / TOKEN_FILE} (read it with `bot hub token --root {root}`)")
        else:
            print(f"tokens: as configured in {config}")
        print(f"endpoint: http://{host}:{port}", flush=True)
        uvicorn.Server(_config(state, host, port, log_level)).run()
    finally:
        lock.release()
