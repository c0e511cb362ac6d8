"""Convert and validate in one run, with disk-bound writes overlapping CPU-bound validation.

Why: writing a GGUF or an original checkpoint streams GBs to disk (fsync included) on little CPU,
while validating runs fp32 forward passes on every core and reads files that are still in the
page cache. One after the other, a full-size `--variants all` run spends ~65 s writing and
~160 s validating; overlapped, the disk waits hide behind validation (measured: 214 s instead of
228 s; the writer's own CPU, sha256 and kernel copies, cannot hide on two busy cores).

Memory keeps the rule "one model at a time": one background thread writes the streaming variants
(~100 MB) in plan order, so a full GGUF can still reuse the UNet-only GGUF of its type, while this
thread first runs the writers that hold a whole model (`loads_model`: the diffusers
quantizations, ~3 GB), then computes the fp32 reference outputs and validates each artifact as
soon as it is on disk. The writer thread runs at idle CPU priority, so it takes the cores only
when validation leaves them. A writer error stops the run and is raised here, as `convert` raises
it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

from engine.formats.manifest import Artifact, Manifest
from engine.memory import keep_freed_memory
from engine.run.convert import ProgressHook, Run, start_run, write_variant
from engine.run.validate import import_loaders, validate_artifact, write_validation_grid
from engine.run.variants import Variant
from engine.run.variants import variant as variant_named
from engine.source.layout import Precision
from engine.source.weight_sets import WeightSets
from engine.validation.context import Context, needs_reference
from engine.writers.original import Provenance

log = logging.getLogger("unetbot.engine")

_FINISHED = object()  # the writer thread's last message


def convert_and_validate(
    source: WeightSets | Path,
    out_dir: Path,
    variants: str | list[str],
    provenance: Provenance = Provenance(),
    stem: str | None = None,
    progress: ProgressHook | None = None,
    grid: bool = False,
    precision: Precision | None = None,
) -> Manifest:
    """Write and validate every requested variant; the manifest lists them in plan order.

    Each artifact is validated against the source it was made from (one validation context
    per weight set read: engine.source.weight_sets). With `grid`, also the validation grid
    PNG (engine.validation.grid), from the half-precision source's context where the lossy variants
    are."""
    run = start_run(source, out_dir, variants, provenance, stem, precision)
    total = 2 * len(run.variants) + int(grid)
    step = 0

    def tick(what: str) -> None:
        nonlocal step
        if progress:
            progress(what, step, total)
        step += 1

    def record(artifact: Artifact) -> None:
        run.manifest.artifacts.append(artifact)
        run.manifest.save(run.out_dir)

    earlier: dict = {}
    streaming = [v for v in run.variants if not v.loads_model]
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()
    writer = threading.Thread(
        target=_write_all,
        args=(run, streaming, earlier, ready, stop),
        name="unetbot-writer",
        daemon=True,
    )
    writer.start()
    with keep_freed_memory():  # engine.memory says why
        try:
            import_loaders()  # while the writer thread writes the first files
            # Whole-model writers run here, beside the streaming writer but before any validation
            # model is loaded: ~3 GB + ~100 MB, then the validation models alone.
            heavy = []
            for variant in (v for v in run.variants if v.loads_model):
                tick(f"write {variant.name}")
                heavy.append(write_variant(run, variant, earlier))
                record(heavy[-1])
            revision = run.manifest.source.get("revision", "")
            contexts = {
                id(source): Context(source, run.out_dir, revision, grid)
                for source in run.sources.values()
            }

            def context(name: str) -> Context:
                return contexts[id(run.source_for(variant_named(name)))]

            for ctx in contexts.values():
                mine = [v for v in run.variants if context(v.name) is ctx]
                if needs_reference([v.check for v in mine], ctx.source):
                    if progress:
                        progress("fp32 reference outputs", step, total)
                    ctx.reference()
            for artifact in heavy:
                tick(f"validate {artifact.variant}")
                _validate(run, context(artifact.variant), artifact)
            while (item := ready.get()) is not _FINISHED:
                if isinstance(item, BaseException):
                    raise item
                tick(f"wrote {item.variant}")
                record(item)
                tick(f"validate {item.variant}")
                _validate(run, context(item.variant), item)
        finally:
            stop.set()
            writer.join()
        order = {v.name: i for i, v in enumerate(run.variants)}
        run.manifest.artifacts.sort(key=lambda a: order[a.variant])
        if grid:
            tick("validation grid")
            write_validation_grid(contexts[id(run.source)], run.manifest)
    run.manifest.save(run.out_dir)
    if progress:
        progress("done", total, total)
    return run.manifest


def _validate(run: Run, ctx: Context, artifact: Artifact) -> None:
    validate_artifact(artifact, ctx)
    run.manifest.save(run.out_dir)


def _lower_priority() -> None:
    """Run the calling thread (and the threads it starts) only on CPU time validation leaves.

    Validation's forward passes keep both cores busy; a writer competing with them at equal
    priority (sha256 of every file, kernel copies) slows every OpenMP step down more than the
    CPU it takes. Under SCHED_IDLE it runs in validation's single-threaded stretches and while
    its own I/O is in flight, which is when the disk work happens anyway. Linux only; elsewhere
    the writer keeps normal priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
    except (AttributeError, OSError) as exc:
        log.debug("writer thread keeps normal priority: %s", exc)


def _write_all(
    run: Run, variants: list[Variant], earlier: dict, ready: queue.Queue, stop: threading.Event
) -> None:
    """Writer thread: write `variants` in order, handing each artifact (or the error) over."""
    _lower_priority()
    try:
        for variant in variants:
            if stop.is_set():
                return
            ready.put(write_variant(run, variant, earlier))
    except BaseException as exc:  # handed to the validating thread, which raises it
        ready.put(exc)
    finally:
        ready.put(_FINISHED)
