"""Cost figures as text, the same way in the model cards and in `bot bench`.

One place formats a measurement, so a card and a user's own `bot bench` table read alike, and
one rule says what a missing figure shows: "not measured" (no measurement exists, the reason is
given beside it) or "failed" (the consumer could not load or run the file), never a number that
was not measured.
"""

from __future__ import annotations

from engine.cost.model import Measurement, VariantCost

NOT_MEASURED = "not measured"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f} s"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def gigabytes(n: int | None) -> str:
    """Bytes for people: '1.72 GB', '412 MB', '2.3 MB' (decimal units, as file listings)."""
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e8:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e6:.1f} MB"


def measurement_cells(m: Measurement | None) -> dict[str, str]:
    """load / peak RAM / s per step of one measurement (or why there is none)."""
    if m is None:
        return {"load": NOT_MEASURED, "ram": NOT_MEASURED, "step": NOT_MEASURED}
    if not m.measured:
        return {"load": "failed", "ram": "failed", "step": "failed"}
    ram = gigabytes(m.peak_rss_bytes)
    return {"load": seconds(m.load_s), "ram": ram, "step": seconds(m.step_s)}


def compiled_cell(cost: VariantCost | None, applies: bool) -> str:
    """The compiled column: its s/step and one-off compile time, or why it is empty."""
    if not applies:
        return "-"
    m = cost.compiled if cost else None
    if m is None:
        return NOT_MEASURED
    if not m.measured:
        return "failed"
    return f"{seconds(m.step_s)} (compile {seconds(m.warmup_s)})"


def sdcpp_cell(cost: VariantCost | None, applies: bool) -> str:
    """The stable-diffusion.cpp column: load / peak RAM / s per step in the library itself, or
    why it is empty ("-": a file it does not read)."""
    if not applies:
        return "-"
    m = cost.sdcpp if cost else None
    if m is None or m.status == "not measured":
        return NOT_MEASURED
    if not m.measured:
        return "failed"
    return f"{seconds(m.load_s)} / {gigabytes(m.peak_rss_bytes)} / {seconds(m.step_s)}"


def cost_cells(
    cost: VariantCost | None, compile_applies: bool, sdcpp_applies: bool = False
) -> dict[str, str]:
    cells = measurement_cells(cost.eager if cost else None)
    cells["compiled"] = compiled_cell(cost, compile_applies)
    cells["sdcpp"] = sdcpp_cell(cost, sdcpp_applies)
    return cells


def machine_line(machine: dict) -> str:
    """'AMD EPYC, 2 cores, 25.3 GB RAM, torch 2.13.0, diffusers 0.42.1, ...'."""
    versions = machine.get("versions", {})
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "safetensors")
    parts = [
        str(machine.get("cpu", "unknown CPU")),
        f"{machine.get('cores', '?')} cores",
        gigabytes(machine.get("ram_bytes")) + " RAM",
        str(machine.get("os", "")).split("-")[0],
        libs,
    ]
    return ", ".join(p for p in parts if p)


def settings_line(settings: dict) -> str:
    """'CPU, float32 compute, 64x64 latent (512 px), batch 1, median of 3 steps after 1
    warm-up step, one fresh process per variant'."""
    if not settings:
        return ""
    return (
        f"{str(settings.get('device', 'cpu')).upper()}, {settings.get('compute_dtype')} compute, "
        f"{settings.get('latent')}x{settings.get('latent')} latent ({settings.get('pixels')} px), "
        f"batch {settings.get('batch')}, median of {settings.get('steps')} steps after "
        f"{settings.get('warmup_steps')} warm-up step, one fresh process per variant and mode"
    )
