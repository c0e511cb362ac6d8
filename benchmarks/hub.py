"""Benchmark the embedded Hub: bulk seeding, listing 10,000 repos, a 1 GiB LFS upload/download
against `cp`, and hostile 300 MiB chunked uploads, with the server's peak RSS per phase.

Run: .venv/bin/python benchmarks/hub.py [--size-mib 1024] [--repos 10000] [--hostile-mib 300]
                                        [--workdir DIR]

Seeding goes straight into the storage (bot/hub/bulk.py, durability off, 4 threads): about 4%
tiny SD1.5 pipelines in diffusers layout (half saved as LCM pipelines), the rest small repos
of other libraries; every repo has its own weights. The server then runs as a subprocess
(`python -m bot.hub`) so its RSS is sampled on its own; the client is the real
huggingface_hub (Xet off, as against any local Hub).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import local_hub_client  # noqa: E402

local_hub_client()  # before huggingface_hub is imported

import httpx2  # noqa: E402
import psutil  # noqa: E402
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402

from bot.hub.auth import LOCAL_USER  # noqa: E402
from bot.hub.bulk import RepoSpec, Seeder, seed_many  # noqa: E402

SD_SHARE = 25  # one repo in 25 (4%) is a tiny SD1.5 pipeline
RSS_GOAL_MB = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    """Samples a process's RSS every 20 ms; `phase()` returns the peak since the last call."""

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

    def phase(self) -> float:
        peak, self.peak = self.peak, self.proc.memory_info().rss
        return peak / 2**20


def make_file(path: Path, size: int) -> None:
    chunk = 16 * 1024 * 1024
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def tiny_pipeline(work: Path) -> dict[str, bytes]:
    """A tiny SD1.5 pipeline (no VAE/CLIP) from engine.synthetic.models, built in a subprocess so
    torch and diffusers never load in this process."""
    folder = work / "tiny-sd15"
    code = (
        "from pathlib import Path; from engine.synthetic.models import write_pipeline_folder; "
        f"write_pipeline_folder(Path({str(folder)!r}), 'sd15', 'tiny', "
        "with_vae_and_text_encoder=False)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _own_bytes(data: bytes, i: int) -> bytes:
    """`data` with its last 8 bytes replaced by `i`: each repo stores its own LFS object."""
    return data[:-8] + i.to_bytes(8, "little")


def repo_specs(count: int, sd: dict[str, bytes]) -> Iterator[RepoSpec]:
    weights = "unet/diffusion_pytorch_model.safetensors"
    index = json.loads(sd["model_index.json"])
    for i in range(count):
        author = f"user{i % 400:03d}"
        if i % SD_SHARE == 0:
            lcm = i % (2 * SD_SHARE) == 0
            klass = "LatentConsistencyModelPipeline" if lcm else index["_class_name"]
            files = {
                **sd,
                "model_index.json": json.dumps({**index, "_class_name": klass}).encode(),
                weights: _own_bytes(sd[weights], i),
            }
            card = "---\nlicense: creativeml-openrail-m\ntags: [stable-diffusion]\n---\n"
            yield RepoSpec(f"{author}/sd15-{i:05d}", files, card=card, downloads=i % 997)
        else:
            config = {"architectures": ["BertModel"], "model_type": "bert", "seed": i}
            files = {
                "config.json": json.dumps(config).encode(),
                "model.safetensors": os.urandom(16 * 1024),
            }
            card = "---\nlicense: apache-2.0\n---\n"
            yield RepoSpec(f"{author}/model-{i:05d}", files, card=card, downloads=i % 991)


def seed(root: Path, count: int, sd: dict[str, bytes]) -> float:
    start = time.perf_counter()
    with Seeder(root) as seeder:
        seed_many(seeder, repo_specs(count, sd), workers=4)
    return time.perf_counter() - start


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "bot.hub", "--root", str(root), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL
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


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def chunked(total_mib: int) -> Iterator[bytes]:
    block = b"x" * (1 << 20)
    for _ in range(total_mib):
        yield block


def hostile_uploads(endpoint: str, token: str, mib: int) -> list[tuple[str, int]]:
    """300 MiB chunked bodies (no Content-Length): anonymous and authenticated commits, and
    an anonymous JSON endpoint. Each must be refused without the body being buffered."""
    commit = f"/api/models/{LOCAL_USER}/big/commit/main"
    cases = [
        ("anonymous commit", commit, {}),
        ("anonymous validate-yaml", "/api/validate-yaml", {}),
        ("authenticated commit", commit, {"Authorization": f"Bearer {token}"}),
    ]
    out = []
    with httpx2.Client(base_url=endpoint, timeout=600) as c:
        for name, path, headers in cases:
            r = c.post(path, content=chunked(mib), headers=headers)
            out.append((name, r.status_code))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--hostile-mib", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unetbot-hub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root, size = work / "root", args.size_mib * 1024 * 1024
    rows: list[tuple[str, str]] = []
    try:
        sd = tiny_pipeline(work)
        seed_s = seed(root, args.repos, sd)
        sd_count = len(range(0, args.repos, SD_SHARE))
        rows.append(
            (
                f"seed {args.repos} repos ({sd_count} tiny SD1.5, bulk, no fsync)",
                f"{seed_s:.1f} s  ({args.repos / seed_s:.0f} repos/s)",
            )
        )
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
            list_s, listed = timed(lambda: sum(1 for _ in api.list_models()))
            rows.append((f"list_models all {listed} repos (pages of 1000)", f"{list_s:.2f} s"))
            sd_s, found = timed(
                lambda: [m.id for m in api.list_models(filter="diffusers:StableDiffusionPipeline")]
            )
            rows.append(
                (f"list_models diffusers:StableDiffusionPipeline -> {len(found)}", f"{sd_s:.2f} s")
            )
            search_s, hits = timed(lambda: [m.id for m in api.list_models(search="model-0999")])
            rows.append((f"list_models search -> {len(hits)} hits", f"{search_s * 1000:.0f} ms"))
            rows.append(("server peak RSS, listing", f"{sampler.phase():.0f} MB"))

            api.create_repo(f"{LOCAL_USER}/big")
            refused = hostile_uploads(endpoint, token, args.hostile_mib)
            for name, status in refused:
                rows.append((f"{args.hostile_mib} MiB chunked {name}", f"HTTP {status}"))
            rows.append(
                (
                    f"server peak RSS, {args.hostile_mib} MiB chunked uploads",
                    f"{sampler.phase():.0f} MB (goal < {RSS_GOAL_MB} MB)",
                )
            )

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
            rows.append(
                (
                    f"server peak RSS, {args.size_mib} MiB upload + download",
                    f"{sampler.phase():.0f} MB (goal <= {RSS_GOAL_MB} MB)",
                )
            )
        finally:
            sampler.stop.set()
            sampler.join()
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"\n{'measure'.ljust(width)} | result\n{'-' * width}-+-{'-' * 30}")
    for k, v in rows:
        print(f"{k.ljust(width)} | {v}")


if __name__ == "__main__":
    main()
