"""What a user sees: `bot convert` under a pseudo-terminal (a live display, no log lines without
-v) and with stderr to a file (a plain line per event, no cursor control, no carriage returns),
-v and --log-file, `--skip-validation`'s exit code, `bot --version`, `bot variants` at 80
columns."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOT = [sys.executable, "-m", "bot.cli"]
COLUMNS = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) ", re.M)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "80", **extra}


def run_in_pty(
    args: list[str], env: dict[str, str] | None = None, stdout_too: bool = False
) -> tuple[int, str, str]:
    """Run `bot ARGS` with stderr (and with `stdout_too` stdout) on a pseudo-terminal (80 x 24),
    else stdout to a pipe: (exit code, stdout, everything the terminal got)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        [*BOT, *args], cwd=ROOT, env=env or _env(), stdin=slave,
        stdout=slave if stdout_too else subprocess.PIPE, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(), out, b"".join(chunks).decode(errors="replace")


def run_to_file(args: list[str], tmp_path: Path, env=None) -> tuple[int, str, str]:
    """Run `bot ARGS` with stderr to a file, as in a CI log: (exit code, stdout, the log)."""
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.run(
            [*BOT, *args], cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=err
        )
    return proc.returncode, proc.stdout.decode(), log.read_text(errors="replace")


def _convert_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", str(src), "--variants", "original,gguf-q8_0", "--out", str(out), *extra]


def test_terminal_shows_a_live_display_and_no_log_lines(tiny_pipeline, tmp_path):
    src = tiny_pipeline("sd15", full=False)
    code, out, tty = run_in_pty(_convert_args(src, tmp_path / "out"))
    assert code == 0, tty[-3000:]
    assert "\r" in tty and "\x1b[" in tty  # redrawn in place: a live display
    text = ANSI.sub("", tty)
    assert "convert + validate" in text
    gguf = tmp_path / "out" / f"{src.name}-Q8_0.gguf"
    assert re.search(rf"gguf-q8_0: passed \(\d+\.\d MB, {re.escape(str(gguf))}\)", text), text
    assert not LOG_LINE.search(text) and " INFO " not in text, text[-3000:]
    assert "Failed to load" not in text and "_pytree" not in text  # torch/torchao import noise
    for name in (f"{src.name}.unet.safetensors", f"{src.name}-Q8_0.gguf", "manifest.json"):
        assert str(tmp_path / "out" / name) in out
    assert "loads with: diffusers from_single_file" in out


def test_a_log_reads_top_to_bottom(tiny_pipeline, tmp_path):
    src = tiny_pipeline("sd15", full=False)
    code, out, log = run_to_file(_convert_args(src, tmp_path / "out"), tmp_path)
    assert code == 0, log[-3000:]
    assert "\r" not in log and "\x1b[" not in log  # no cursor control, no ESC[A, no colours
    lines = log.splitlines()
    assert "convert + validate (2 variants) ..." in lines
    assert any(re.fullmatch(r"  \[\d+/\d+\] validate original", line) for line in lines), log
    assert any(line.startswith("  original: passed (") for line in lines), log
    assert any(line.startswith("convert + validate: done in ") for line in lines)
    assert not LOG_LINE.search(log)
    assert f"{src.name}-Q8_0.gguf" in out


def test_a_hub_source_shows_its_download_as_a_stage(seeded_hub, tmp_path):
    args = ["convert", "alice/tiny-lcm", "--out", str(tmp_path / "a")]
    args += ["--config", str(seeded_hub.config_path)]
    code, out, tty = run_in_pty(args, _env())
    text = ANSI.sub("", tty)
    assert code == 0, text[-3000:]
    assert re.search(r"download alice/tiny-lcm .*2\.\d/2\.\d MB", text), text  # bytes of total
    assert "Fetching" not in text and "it/s" not in text  # no huggingface_hub bar
    args[3] = str(tmp_path / "b")
    code, out, log = run_to_file(args, tmp_path)
    assert code == 0, log[-3000:]
    assert "\r" not in log and "\x1b[" not in log
    lines = log.splitlines()
    assert re.fullmatch(r"download alice/tiny-lcm \(\d+ files, [\d.]+ MB\) \.\.\.", lines[0]), log
    assert any(line.startswith("download alice/tiny-lcm: done in ") for line in lines)
    assert "tiny-lcm.unet.safetensors" in out


def test_verbose_adds_the_log_lines_and_log_file_always_has_them(tiny_pipeline, tmp_path):
    src = tiny_pipeline("sd15", full=False)
    code, _, log = run_to_file(["-v", *_convert_args(src, tmp_path / "a")], tmp_path)
    assert code == 0 and re.search(r" INFO unetbot\.engine: wrote original ", log), log[-3000:]
    log_file = tmp_path / "logs" / "convert.log"
    code, _, log = run_to_file(
        ["--log-file", str(log_file), *_convert_args(src, tmp_path / "b")], tmp_path
    )
    assert code == 0 and not LOG_LINE.search(log)
    assert re.search(r" INFO unetbot\.engine: wrote original ", log_file.read_text())


def test_skip_validation_exits_0_and_says_not_validated(tiny_pipeline, tmp_path):
    src = tiny_pipeline("sd15", full=False)
    out = tmp_path / "out"
    proc = subprocess.run(
        [*BOT, *_convert_args(src, out, "--skip-validation", "--json")],
        cwd=ROOT, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout)
    assert result["failed"] == [] and result["exit_code"] == 0
    assert {a["validation"] for a in result["artifacts"]} == {None}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["validation"] for a in manifest["artifacts"]} == {None}
    proc = subprocess.run(
        [*BOT, *_convert_args(src, out, "--skip-validation")],
        cwd=ROOT, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0 and "not validated (--skip-validation)" in proc.stdout


def test_version_and_variants_at_80_columns():
    proc = subprocess.run([*BOT, "--version"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and re.fullmatch(r"unetbot \d+\.\d+\.\d+\S*\n", proc.stdout)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # the terminal's width
    code, _, tty = run_in_pty(["variants"], env, stdout_too=True)
    assert code == 0
    from engine.run.variants import VARIANTS

    lines = ANSI.sub("", tty).splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for name in VARIANTS:  # one line per variant
        rows = [line for line in lines if line.split(" ")[0] == name]
        assert len(rows) == 1, (name, rows)
    continuation = [line for line in lines if line.startswith(" " * 20) and line.strip()]
    assert continuation == [], continuation
