"""The "What to pick" section of a repo card: the reference costs of the files it publishes.

Only rows for the variants the card publishes; each shows the figures measured for files of
this converter version on the reference model (engine/cost/cost_table.json), or "not measured" with
the reason: no figure is ever borrowed from another variant, version or consumer. The machine,
the date and the settings are shown with the figures, and the card says plainly that they were
measured on the reference model, not on this one (and, when this model's UNet has other shapes
than SD1.5's, that its own costs differ).
"""

from __future__ import annotations

from bot.bench.cost_view import (
    cost_cells,
    gigabytes,
    machine_line,
    sdcpp_cell,
    seconds,
    settings_line,
)
from bot.bench.report import quality_of
from engine import __version__
from engine.cost.model import (
    Measurement,
    Mode,
    Status,
    compile_applies,
    not_measured_reason,
    sdcpp_applies,
)
from engine.cost.table import ReferenceRun, same_shapes_as_reference
from engine.formats.manifest import Artifact
from engine.run.variants import VARIANTS


def _metric(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _reason(artifact: Artifact, run: ReferenceRun | None) -> str:
    """Why a row has no figure ("" when it has one)."""
    why = not_measured_reason(VARIANTS[artifact.variant])
    if why:
        return why
    cost = run.costs.get(artifact.variant) if run else None
    if cost is None or cost.eager is None:
        return f"no reference measurement for files of unetbot {__version__} yet"
    if cost.eager.status == Status.FAILED:
        return f"the reference measurement failed: {cost.eager.reason}"
    return ""


def _clearly_fastest(measured: list[tuple[Artifact, Measurement]]) -> bool:
    """Whether the fastest option's slowest timed step beat every other option's fastest one:
    on a busy machine, medians that differ less than the steps' own spread name no winner."""
    ordered = sorted(measured, key=lambda x: x[1].step_s or 0.0)
    if len(ordered) < 2:
        return True
    best = max(ordered[0][1].steps_s or [ordered[0][1].step_s or 0.0])
    return all(best < min(m.steps_s or [m.step_s or 0.0]) for _, m in ordered[1:])


def _summary(artifacts: list[Artifact], run: ReferenceRun | None) -> str:
    """Which file was fastest per step (when the step times tell) and which needed the least
    memory, over the measured rows of files that passed validation."""
    if run is None:
        return ""
    measured = [
        (a, m)
        for a in artifacts
        if quality_of(a)["status"] != "failed" and (cost := run.costs.get(a.variant)) is not None
        for m in cost.measurements()
        if m.measured and m.step_s is not None and m.peak_rss_bytes is not None
    ]
    if not measured:
        return ""

    def name(a: Artifact, mode: str) -> str:
        return f"`{a.variant}`" + {
            "compiled": " compiled",
            Mode.SDCPP: " in stable-diffusion.cpp",
        }.get(mode, "")

    fast = min(measured, key=lambda x: x[1].step_s)
    small = min(measured, key=lambda x: x[1].peak_rss_bytes)
    speed = (
        f"the fastest per step is {name(fast[0], fast[1].mode)} ({seconds(fast[1].step_s)})"
        if _clearly_fastest(measured)
        else "no file is clearly fastest (the step times overlap within their spread)"
    )
    memory = f"{name(small[0], small[1].mode)} needs the least memory"
    return f"On that machine {speed}; {memory} ({gigabytes(small[1].peak_rss_bytes)})."


def conditions(run: ReferenceRun) -> str:
    """How busy the machine was: the load average range while measuring and the widest spread
    between the timed steps of one measurement, so a reader can judge small differences."""
    measured = [m for c in run.costs.values() for m in c.measurements() if m.measured]
    loads = [m.load_average for m in measured if m.load_average is not None]
    spreads = [max(m.steps_s) / min(m.steps_s) for m in measured if m.steps_s and min(m.steps_s)]
    parts = []
    if loads:
        cores = run.machine.get("cores", "?")
        parts.append(
            f"1-minute load average {min(loads):.1f} to {max(loads):.1f} on its {cores} cores "
            "while measuring"
        )
    if spreads:
        parts.append(f"the timed steps of one file varied up to {max(spreads):.1f}x")
    return "; ".join(parts)


def what_to_pick(
    artifacts: list[Artifact], unet_config: dict | None, run: ReferenceRun | None
) -> dict:
    """Everything the card's "What to pick" section shows; figures measured for another
    converter version's files are not this card's (shown as not measured)."""
    if run is not None and run.unetbot_version != __version__:
        run = None
    rows, reasons = [], {}
    for a in artifacts:
        v = VARIANTS[a.variant]
        cost = run.costs.get(a.variant) if run else None
        quality = quality_of(a)
        rows.append(
            {
                "variant": a.variant,
                **cost_cells(cost if cost and cost.eager else None, compile_applies(v)),
                "sdcpp": sdcpp_cell(cost, sdcpp_applies(v)),
                "cosine": _metric(quality["cosine"], 5),
                "rel_l2": _metric(quality["rel_l2"], 4),
            }
        )
        why = _reason(a, run)
        if why:
            reasons.setdefault(why, []).append(a.variant)
    return {
        "measured": run is not None,
        "rows": rows,
        "not_measured": [{"variants": names, "why": why} for why, names in reasons.items()],
        "version": run.unetbot_version if run else __version__,
        "date": run.machine.get("date", "") if run else "",
        "machine": machine_line(run.machine) if run else "",
        "settings": settings_line(run.settings) if run else "",
        "conditions": conditions(run) if run else "",
        "reference": run.reference if run else "",
        "pixels": (run.settings.get("pixels") if run else None) or 512,
        "compiled": any(compile_applies(VARIANTS[a.variant]) for a in artifacts),
        "sdcpp": any(sdcpp_applies(VARIANTS[a.variant]) for a in artifacts),
        "summary": _summary(artifacts, run),
        "same_shapes": same_shapes_as_reference(unet_config or {}),
    }
