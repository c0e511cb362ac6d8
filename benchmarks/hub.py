"""Benchmark the embedded Hub: 1 GiB LFS upload/download vs `cp`, server RSS, list_models.

Run: .venv/bin/python benchmarks/hub.py [--size-mib 1024] [--repos 10000] [--workdir DIR]

The server runs as a subprocess (`python -m bot.hub`) so its peak RSS can be sampled with
psutil on its own; the client is the real huggingface_hub (Xet off, as against any local Hub).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import psutil
from huggingface_hub import HfApi, constants, hf_hub_download

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bot.hub import storage  # noqa: E402
from bot.hub.auth import LOCAL_USER, Accounts  # noqa: E402

constants.HF_HUB_DISABLE_XET = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    """Samples a process's RSS every 20 ms and keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


def make_file(path: Path, size: int) -> None:
    chunk = 16 * 1024 * 1024
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def seed_repos(root: Path, count: int) -> float:
    """Create `count` repos straight through the storage API (fsync off: seeding only)."""
    Accounts.local(root)
    start = time.perf_counter()
    storage.FSYNC = False
    try:
        repos = storage.RepoStore(root, storage.ObjectStore(root), 1 << 40)
        for i in range(count):
            repos.create("model", f"{LOCAL_USER}/bench-{i:05d}", author=LOCAL_USER)
    finally:
        storage.FSYNC = True
    return time.perf_counter() - start


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.hub",
            "--root",
            str(root),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.perf_counter() - start > 120:
                raise RuntimeError("server did not start") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", time.perf_counter() - start


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unetbot-hub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root, size = work / "root", args.size_mib * 1024 * 1024
    rows: list[tuple[str, str]] = []
    try:
        seed_s = seed_repos(root, args.repos)
        rows.append((f"seed {args.repos} repos (storage API)", f"{seed_s:.1f} s"))
        src = work / "big.bin"
        make_file(src, size)
        os.sync()  # start every timed step with no dirty pages from the previous one
        cp_s, _ = timed(
            lambda: (
                subprocess.run(["cp", str(src), str(work / "copy.bin")], check=True),
                os.sync(),
            )
        )
        (work / "copy.bin").unlink()
        rows.append((f"cp {args.size_mib} MiB + sync", f"{cp_s:.2f} s"))

        proc, endpoint, boot_s = start_server(root)
        rows.append((f"server start ({args.repos} repos indexed)", f"{boot_s:.2f} s"))
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            token = (root / "token").read_text().strip()
            api = HfApi(endpoint=endpoint, token=token)
            api.create_repo(f"{LOCAL_USER}/big")
            os.sync()
            up_s, _ = timed(
                lambda: api.upload_file(
                    path_or_fileobj=str(src), path_in_repo="big.bin", repo_id=f"{LOCAL_USER}/big"
                )
            )
            rows.append(
                (
                    f"upload {args.size_mib} MiB (LFS, incl. client sha256)",
                    f"{up_s:.2f} s  ({up_s / cp_s:.1f}x cp)",
                )
            )
            os.sync()
            down_s, path = timed(
                lambda: hf_hub_download(
                    f"{LOCAL_USER}/big",
                    "big.bin",
                    endpoint=endpoint,
                    token=token,
                    cache_dir=work / "cache",
                )
            )
            rows.append(
                (f"download {args.size_mib} MiB", f"{down_s:.2f} s  ({down_s / cp_s:.1f}x cp)")
            )
            assert Path(str(path)).stat().st_size == size
            list_s, listed = timed(lambda: sum(1 for _ in api.list_models(author=LOCAL_USER)))
            rows.append((f"list_models all {listed} repos (pages of 1000)", f"{list_s:.2f} s"))
            search_s, found = timed(lambda: [m.id for m in api.list_models(search="bench-0999")])
            rows.append((f"list_models search -> {len(found)} hits", f"{search_s * 1000:.0f} ms"))
        finally:
            sampler.stop.set()
            sampler.join()
            proc.terminate()
            proc.wait(timeout=30)
        rows.append(("server peak RSS", f"{sampler.peak / 2**20:.0f} MB (goal <= 150 MB)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"\n{'measure'.ljust(width)} | result\n{'-' * width}-+-{'-' * 30}")
    for k, v in rows:
        print(f"{k.ljust(width)} | {v}")


if __name__ == "__main__":
    main()
