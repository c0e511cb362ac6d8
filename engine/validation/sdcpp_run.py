"""One stable-diffusion.cpp load + generation, in the process that runs this module.

`python -m engine.validation.sdcpp_run '<json SdcppRequest>'` loads the files with the real
library (stable-diffusion-cpp-python, the `unetbot[sdcpp]` extra), generates one image on the CPU
and prints one `RESULT_PREFIX` line of JSON (`SdcppOutcome`). A child process, not the caller's:
the library is C++ (a crash on a bad file must fail that file, not the bot), its log callback and
progress callback are process-global, and its memory (GBs for SD1.5) is only surely returned when
the process ends; the child's peak RSS is then the figure `bot bench` reports.

What the library says is kept: its load failures and tensor problems go only to its log callback
(ERROR "get sd version from file failed", "tensor '...' not in model file", "tensor '...' has wrong
shape ...", and INFO "unknown tensor '...' in model file" for a tensor it drops), so every log line
at WARN or above and every unknown-tensor line is returned verbatim.

Binding 0.4.7 details: `StableDiffusion(...)` does not raise when the C++ loader fails (the binding
tests `is None` against a NULL ctypes pointer, which is not None), and its clean-up then calls
`free_sd_ctx(NULL)`, which crashes the process; the context pointer is tested here instead (and
cleared), so a failed load is reported as one, with the library's own reason.

Imports no torch and nothing of unetbot beyond the standard library, NumPy and Pillow.
"""

from __future__ import annotations

import itertools
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field

RESULT_PREFIX = "UNETBOT-SDCPP "
LOG_PREFIX = "UNETBOT-SDCPP-LOG "  # stderr: each kept log line, written when it is logged
PROMPT = "a photograph of an astronaut riding a horse"
UNKNOWN_TENSOR = "unknown tensor '"
WARN = 2  # stable-diffusion.cpp sd_log_level_t: 0 DEBUG, 1 INFO, 2 WARN, 3 ERROR
ERROR = 3


@dataclass
class SdcppRequest:
    """What to load (stable-diffusion.cpp's own parameters) and what to generate."""

    model_path: str = ""  # a full checkpoint, or for SD1.x the CLIP text encoder file
    diffusion_model_path: str = ""  # a UNet-only file (read under model.diffusion_model.)
    vae_path: str = ""  # a VAE-only file (read under vae.)
    width: int = 64
    height: int = 64
    steps: int = 1
    seed: int = 42
    threads: int = 2
    image_out: str = ""  # PNG path for the image ("" keeps none)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SdcppRequest:
        return cls(**json.loads(text))


@dataclass
class SdcppOutcome:
    loaded: bool
    generated: bool = False
    version: str = ""
    load_s: float | None = None
    generate_s: float | None = None
    # sampling steps after the first (which also carries first-call set-up): the time between
    # successive progress reports of the sampler (it reports step 0 when sampling starts)
    step_s: list[float] = field(default_factory=list)
    baseline_rss_bytes: int | None = None  # after imports
    load_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    errors: list[str] = field(default_factory=list)  # WARN/ERROR log lines, verbatim
    unknown_tensors: list[str] = field(default_factory=list)  # tensors the library dropped
    exception: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SdcppOutcome:
        raw = json.loads(text)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run(request: SdcppRequest) -> SdcppOutcome:
    import ctypes
    from importlib import metadata

    import stable_diffusion_cpp
    from stable_diffusion_cpp import stable_diffusion_cpp as lib

    outcome = SdcppOutcome(loaded=False, version=metadata.version("stable-diffusion-cpp-python"))

    @lib.sd_log_callback
    def on_log(level: int, text: bytes, _data) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if UNKNOWN_TENSOR in line:
            outcome.unknown_tensors.append(line)
        elif level >= WARN:
            outcome.errors.append(line)
        else:
            return
        # as it happens too: a crash of the library leaves its last words to the parent
        print(f"{LOG_PREFIX}{line}", file=sys.stderr, flush=True)

    lib.sd_set_log_callback(on_log, ctypes.c_void_p(0))  # replaces the binding's printer
    outcome.baseline_rss_bytes = _rss()
    started = time.perf_counter()
    try:
        sd = stable_diffusion_cpp.StableDiffusion(
            model_path=request.model_path,
            diffusion_model_path=request.diffusion_model_path,
            vae_path=request.vae_path,
            n_threads=request.threads,
            # verbose=False sends fds 1 and 2 to /dev/null around the load, which would swallow
            # the lines streamed above; the binding's own printer is replaced, so nothing else
            # is printed but its system-info line on stdout (the parent reads RESULT_PREFIX only)
            verbose=True,
        )
    except Exception as exc:  # the binding's own argument checks (missing path, ...)
        outcome.exception = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.load_s = round(time.perf_counter() - started, 3)
    outcome.load_rss_bytes = _rss()
    if not sd._model.model:  # NULL context: the C++ loader failed (module docstring)
        sd._model.model = None  # else the binding's clean-up frees NULL: a segfault
        return outcome
    outcome.loaded = True
    marks: list[float] = []

    def on_progress(step: int, steps: int, _seconds: float) -> None:
        if steps == request.steps:  # the sampler's reports (not the VAE's or a loader's)
            marks.append(time.perf_counter())

    started = time.perf_counter()
    try:
        images = sd.generate_image(
            prompt=PROMPT,
            width=request.width,
            height=request.height,
            cfg_scale=1.0,  # one conditional pass per step
            sample_method="euler",  # deterministic: no ancestral noise
            sample_steps=request.steps,
            seed=request.seed,
            progress_callback=on_progress,
        )
    except Exception as exc:
        outcome.exception = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.generate_s = round(time.perf_counter() - started, 3)
    outcome.peak_rss_bytes = _rss()
    durations = [round(b - a, 3) for a, b in itertools.pairwise(marks)]  # steps 1..n
    outcome.step_s = durations[1:]  # step 1 is the warm-up
    if images:
        outcome.generated = True
        if request.image_out:
            images[0].save(request.image_out)
    sd.close()
    return outcome


def main(argv: list[str]) -> int:
    outcome = run(SdcppRequest.from_json(argv[1]))
    print(RESULT_PREFIX + outcome.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
