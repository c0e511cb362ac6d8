"""The new source paths at full size: a pickle-only SD1.5 pipeline (UNet, VAE and text encoder as
`.bin`) converted through the static scan and the child-process load, against reading the file
once and against the same pipeline in safetensors; and a single-file full checkpoint.

The source is the full-size random-weight fp16 SD1.5 pipeline of the other benchmarks
(benchmarks.common.full_size_source); its pickle twin holds `torch.save` of each component's state
dict under the names diffusers (`diffusion_pytorch_model.bin`) and transformers 4
(`pytorch_model.bin`) used, which is what their `save_pretrained(safe_serialization=False)` wrote.

Measured, each in its own process:
- reading the UNet `.bin` once (16 MiB reads), cold (the file evicted from the page cache with
  `posix_fadvise(DONTNEED)`, this file only) and warm;
- the static scan of it (engine.source.pickle_scan), and the child-process load that writes its
  safetensors copy (engine.source.pickle_load), cold and warm;
- the whole `bot convert --variants original,original-full` (validated) on the pickle pipeline
  and on its safetensors original, under GNU time (wall clock, peak RSS);
- the whole `bot convert model.safetensors --variants original-full,gguf-q8_0,gguf-full-q8_0`
  (validated) of a full original checkpoint (UNet + VAE + CLIP, written by unetbot's own
  converter from the same pipeline, plus an EMA-like extra and the noise-schedule buffer).

Usage: .venv/bin/python benchmarks/pickle_path.py [--workdir DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, full_size_source, machine, time_v

_TWIN = """
import shutil, sys, torch
from pathlib import Path
from safetensors.torch import load_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for rel in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json"):
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / rel, dst / rel)
for folder, st, pt in (("unet", "diffusion_pytorch_model", "diffusion_pytorch_model"),
                       ("vae", "diffusion_pytorch_model", "diffusion_pytorch_model"),
                       ("text_encoder", "model", "pytorch_model")):
    torch.save(load_file(str(src / folder / f"{st}.safetensors")), dst / folder / f"{pt}.bin")
"""
_READ = """
import os, sys, time
path = sys.argv[1]
if sys.argv[2] == "cold":
    fd = os.open(path, os.O_RDONLY); os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
t = time.perf_counter()
with open(path, "rb", buffering=0) as f:
    while f.read(16 << 20):
        pass
print(time.perf_counter() - t)
"""
_SCAN = """
import sys, time
t = time.perf_counter()
from engine.source.pickle_scan import scan_pickle_file
scan = scan_pickle_file(sys.argv[1])
print(time.perf_counter() - t)
"""
_LOAD = """
import os, sys, time
path, out = sys.argv[1], sys.argv[2]
if sys.argv[3] == "cold":
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
from engine.source.pickle_load import load_in_child
t = time.perf_counter()
load_in_child(path, out)
print(time.perf_counter() - t)
"""


def _seconds(code: str, *args: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


def pickle_twin(source: Path, base: Path) -> Path:
    twin = base / "sd15-full-pipeline-pickle"
    if not (twin / "unet" / "diffusion_pytorch_model.bin").is_file():
        subprocess.run([sys.executable, "-c", _TWIN, str(source), str(twin)], check=True)
    return twin


_CHECKPOINT = """
import sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
from engine.source.folder import open_source
from engine.writers.original import write_original
path = write_original(open_source(Path(sys.argv[1])), Path(sys.argv[2]), full=True)
tensors = load_file(str(path))
tensors["alphas_cumprod"] = torch.linspace(0.999, 0.005, 1000)
tensors["model_ema.decay"] = torch.tensor(0.9999)
save_file(tensors, str(path), metadata={"format": "pt"})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="unetbot-pickle-bench-"))
    source = full_size_source(base, "sd15", with_pipeline=True)
    twin = pickle_twin(source, base)
    unet_bin = twin / "unet" / "diffusion_pytorch_model.bin"
    scratch = base / "scratch.safetensors"
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in ("cold", "warm"):
            rows.setdefault(f"read once ({mode})", []).append(_seconds(_READ, str(unet_bin), mode))
            scratch.unlink(missing_ok=True)
            rows.setdefault(f"child load ({mode})", []).append(
                _seconds(_LOAD, str(unet_bin), str(scratch), mode)
            )
        rows.setdefault("static scan", []).append(_seconds(_SCAN, str(unet_bin)))
    scratch.unlink(missing_ok=True)
    medians = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    bot = str(Path(sys.executable).with_name("bot"))
    whole = {}
    for label, folder in (("pickle pipeline", twin), ("safetensors pipeline", source)):
        out = base / "out"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [bot, "convert", str(folder), "--variants", "original,original-full", "--out",
               str(out)]  # fmt: skip
        whole[label] = time_v(cmd)
        shutil.rmtree(out, ignore_errors=True)
    checkpoint = base / "sd15-full-model.safetensors"
    if not checkpoint.is_file():
        subprocess.run([sys.executable, "-c", _CHECKPOINT, str(source), str(checkpoint)],
                       check=True, cwd=ROOT)  # fmt: skip
    out = base / "out"
    shutil.rmtree(out, ignore_errors=True)
    variants = "original-full,gguf-q8_0,gguf-full-q8_0"
    cmd = [bot, "convert", str(checkpoint), "--variants", variants, "--out", str(out)]
    whole["single-file full checkpoint"] = time_v(cmd)
    shutil.rmtree(out, ignore_errors=True)
    result = {
        "machine": machine(),
        "load_average": os.getloadavg(),
        "unet_bin_bytes": unet_bin.stat().st_size,
        "medians_s": medians,
        "child_over_read": {
            mode: round(medians[f"child load ({mode})"] / medians[f"read once ({mode})"], 2)
            for mode in ("cold", "warm")
        },
        "whole_command": whole,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
