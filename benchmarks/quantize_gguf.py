"""Benchmark: unetbot's streaming GGUF writer vs the gguf-py path vs `cp`, full-size SD1.5 LCM.

For each GGUF type, on a random-weight full-size SD1.5 LCM fp16 UNet (engine.synthetic.models),
three commands run in their own subprocess, timed by wall clock with the child's peak RSS taken from
`os.wait4`:

- unetbot: `engine.writers.gguf_writer.write_gguf` (streaming, own quantizer, fsync + rename);
- unetbot_nosync: the same with fsync made a no-op, on the terms of `cp` and gguf-py, which do
  not wait for the disk (a measurement only: the bot always fsyncs);
- gguf-py: the usual script shape, `gguf.quants.quantize` per tensor + `GGUFWriter.add_tensor` +
  `write_tensors_to_file`, with the same tensor choices and metadata;
- cp: `cp` of the source safetensors file (and `cp` + fsync, since unetbot fsyncs).

Tensors are renamed by prefixing `model.diffusion_model.` to the diffusers names: the layout
policy only looks at the prefix, suffix and shape, and no key map is needed here. Both GGUFs are
then compared tensor by tensor (name, type, shape, data bytes) and as whole files.

Usage: .venv/bin/python benchmarks/quantize_gguf.py [--workdir DIR] [--types Q8_0,Q4_0] [--repeat N]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "model.diffusion_model."
ALL_TYPES = ["F16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"]
METADATA = {
    "general.name": "bench-sd15-lcm",
    "unetbot.source_repo": "synthetic/sd15-lcm",
    "unetbot.source_revision": "0" * 40,
    "unetbot.lcm_cond_proj": 256,
}
_NP_DTYPES = {"F16": np.float16, "F32": np.float32}


# --- child side -------------------------------------------------------------------------------


def _read_header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


def _sources(path: Path):
    """GGUFSources reading each tensor with pread into a fresh array (no mmap, so no RSS growth)."""
    from engine.writers.gguf_writer import GGUFSource

    base, header = _read_header(path)
    fd = os.open(path, os.O_RDONLY)
    sources = []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        dtype = info["dtype"]

        def load(begin=begin, end=end, shape=shape, dtype=dtype) -> np.ndarray:
            out = np.empty(shape, _NP_DTYPES[dtype])
            view = memoryview(out.reshape(-1).view(np.uint8))
            done = 0
            while done < end - begin:
                done += os.preadv(fd, [view[done:]], base + begin + done)
            return out

        # raw_at: tensors kept in their own dtype are copied in the kernel, as the bot does.
        sources.append(GGUFSource(PREFIX + name, shape, dtype, load, (path, base + begin)))
    return sources


def child_unetbot(src: Path, out: Path, target: str) -> None:
    from engine.writers.gguf_writer import write_gguf

    write_gguf(out, _sources(src), target, METADATA)


def child_unetbot_nosync(src: Path, out: Path, target: str) -> None:
    """The same writer with fsync/fdatasync turned into no-ops: what it costs on the terms of
    `cp` and the gguf-py path, neither of which waits for the disk. A measurement only; the
    bot always fsyncs before the rename."""
    os.fsync = os.fdatasync = lambda fd: None
    child_unetbot(src, out, target)


def child_ggufpy(src: Path, out: Path, target: str) -> None:
    import gguf

    from engine.writers.gguf_writer import TARGETS, choose_type

    writer = gguf.GGUFWriter(path=None, arch="sd1")
    writer.add_file_type(int(TARGETS[target][1]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in METADATA.items():
        if isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    for source in _sources(src):
        choice = choose_type(source.name, source.shape, source.dtype, target)
        qtype = gguf.GGMLQuantizationType[choice.ggml_type]
        data = gguf.quants.quantize(source.load(), qtype)
        writer.add_tensor(source.name, data, raw_dtype=qtype)
    writer.write_header_to_file(path=out)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def child_build(folder: Path) -> None:
    from engine.synthetic.models import write_unet_folder

    write_unet_folder(folder, "sd15-lcm", "full", dtype="float16", seed=0)


def child_compare(a: Path, b: Path) -> None:
    print(compare(a, b))


def child_cp_fsync(src: Path, out: Path) -> None:
    subprocess.run(["cp", str(src), str(out)], check=True)
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


# --- parent side ------------------------------------------------------------------------------


def run(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (MB) of one child process.

    CPU seconds are reported beside wall time because on a shared machine the wall clock also
    measures the neighbours.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def best(cmd: list[str], out: Path, repeat: int) -> tuple[float, float, float]:
    results = []
    for _ in range(repeat):
        out.unlink(missing_ok=True)
        os.sync()  # write-back of the previous run must not land in this one's time
        results.append(run(cmd))
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def compare(a: Path, b: Path) -> str:
    import gguf

    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    if [t.name for t in ra.tensors] != [t.name for t in rb.tensors]:
        return "tensor names differ"
    for ta, tb in zip(ra.tensors, rb.tensors, strict=True):
        if ta.tensor_type != tb.tensor_type or list(ta.shape) != list(tb.shape):
            return f"{ta.name}: type/shape differ"
        if not np.array_equal(np.asarray(ta.data), np.asarray(tb.data)):
            return f"{ta.name}: data differ"
    whole = "whole files identical" if filecmp.cmp(a, b, shallow=False) else "headers differ"
    return f"all {len(ra.tensors)} tensors identical; {whole}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep/reuse the synthetic UNet here")
    parser.add_argument("--types", default=",".join(ALL_TYPES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per command (best wall)")
    parser.add_argument(
        "--child",
        choices=["unetbot", "unetbot_nosync", "ggufpy", "cp_fsync", "build", "compare"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--type", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "unetbot":
        return child_unetbot(args.src, args.out, args.type)
    if args.child == "unetbot_nosync":
        return child_unetbot_nosync(args.src, args.out, args.type)
    if args.child == "ggufpy":
        return child_ggufpy(args.src, args.out, args.type)
    if args.child == "cp_fsync":
        return child_cp_fsync(args.src, args.out)
    if args.child == "build":
        return child_build(args.out)
    if args.child == "compare":
        return child_compare(args.src, args.out)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="unetbot-bench-"))
    folder = workdir / "sd15-lcm-full"
    src = folder / "diffusion_pytorch_model.safetensors"
    me = [sys.executable, str(Path(__file__).resolve())]
    # Everything heavy runs in children: a child's ru_maxrss starts from its parent's peak at
    # fork/exec, so this process must stay small for the RSS column to mean anything.
    if not src.exists():
        print(f"building full-size random SD1.5 LCM fp16 UNet in {folder} ...", flush=True)
        subprocess.run([*me, "--child", "build", "--out", str(folder)], check=True)
    size_mb = src.stat().st_size / 1e6
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from engine.formats.gguf_quants import active_kernel

    print(f"source: {src} ({size_mb:.0f} MB), {os.cpu_count()} CPUs", flush=True)
    print(f"unetbot quantizer kernel: {active_kernel()}", flush=True)
    print(f"(peak RSS of this parent, a floor for every child: {parent_mb:.0f} MB)", flush=True)
    out_dir = workdir / "out"
    out_dir.mkdir(exist_ok=True)
    cp_out = out_dir / "copy.safetensors"
    cp_wall, cp_cpu, cp_rss = best(["cp", str(src), str(cp_out)], cp_out, args.repeat)
    cpf_wall, cpf_cpu, cpf_rss = best(
        [*me, "--child", "cp_fsync", "--src", str(src), "--out", str(cp_out)], cp_out, args.repeat
    )
    cp_out.unlink()

    rows = [
        ("-", "cp", cp_wall, cp_cpu, cp_rss, size_mb),
        ("-", "cp+fsync", cpf_wall, cpf_cpu, cpf_rss, size_mb),
    ]
    notes = []
    for target in args.types.split(","):
        outs = {}
        for tool in ("unetbot", "unetbot_nosync", "ggufpy"):
            out = out_dir / f"{tool}-{target}.gguf"
            cmd = [*me, "--child", tool, "--src", str(src), "--out", str(out), "--type", target]
            wall, cpu, rss = best(cmd, out, args.repeat)
            rows.append((target, tool, wall, cpu, rss, out.stat().st_size / 1e6))
            outs[tool] = out
            print(
                f"  {target:5s} {tool:14s} {wall:6.2f} s {cpu:6.2f} cpu-s {rss:7.0f} MB", flush=True
            )
        cmd = [
            *me,
            "--child",
            "compare",
            "--src",
            str(outs["unetbot"]),
            "--out",
            str(outs["ggufpy"]),
        ]
        same = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        notes.append(f"{target}: {same}")
        for out in outs.values():
            out.unlink(missing_ok=True)

    walls = {(r[0], r[1]): r[2:4] for r in rows}
    print()
    print(
        f"{'type':5s} {'tool':14s} {'wall s':>7s} {'x cp':>6s} {'x cp+fs':>7s} {'cpu s':>6s} "
        f"{'gguf-py/unetbot wall':>20s} {'cpu':>5s} {'peak RSS MB':>11s} {'size MB':>8s}"
    )
    for target, tool, wall, cpu, rss, size in rows:
        speedup = cpu_speedup = ""
        if tool.startswith("unetbot"):
            other_wall, other_cpu = walls[(target, "ggufpy")]
            speedup, cpu_speedup = f"{other_wall / wall:.2f}x", f"{other_cpu / cpu:.2f}x"
        print(
            f"{target:5s} {tool:14s} {wall:7.2f} {wall / cp_wall:6.2f} {wall / cpf_wall:7.2f} "
            f"{cpu:6.2f} {speedup:>20s} {cpu_speedup:>5s} {rss:11.0f} {size:8.0f}"
        )
    print()
    for note in notes:
        print(note)
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
