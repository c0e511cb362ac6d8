"""What `bot bench` reports: one row per variant, the recommendation, the table and the JSON.

The recommendation is the fastest measured option (a variant eager, or compiled where that was
measured) whose peak RSS fits in the RAM given, among variants whose validation did not fail;
its quality metrics (cosine and relative L2 of the output against the fp32 source, from the
manifest or the published repo's manifest) are printed beside it, so speed is never chosen
blind. Nothing that fits is said as such, naming the smallest peak measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.bench.cost_view import cost_cells, gigabytes, machine_line, seconds, settings_line
from engine.cost.model import Measurement, Mode, VariantCost, compile_applies, sdcpp_applies
from engine.formats.manifest import Artifact
from engine.run.variants import variant

JSON_SCHEMA_VERSION = 1


def quality_of(artifact: Artifact) -> dict:
    """The validation status and output metrics of an artifact (None where not validated)."""
    v = artifact.validation
    output = v.metrics.get("output", {}) if v else {}
    return {
        "status": v.status if v else "not validated",
        "cosine": output.get("cosine"),
        "rel_l2": output.get("rel_l2"),
    }


@dataclass
class BenchRow:
    cost: VariantCost
    quality: dict

    @property
    def variant(self) -> str:
        return self.cost.variant

    def to_dict(self) -> dict:
        return {**self.cost.to_dict(), "status": str(self.cost.status), "quality": self.quality}


@dataclass(frozen=True)
class Option:
    """One way to run a variant that was measured: eager or compiled."""

    row: BenchRow
    measurement: Measurement

    @property
    def label(self) -> str:
        compiled = self.measurement.mode == Mode.COMPILED
        return f"`{self.row.variant}`" + (" compiled with torch.compile" if compiled else "")


def options(rows: list[BenchRow]) -> list[Option]:
    """Every measured way to run a variant whose validation did not fail."""
    return [
        Option(row, m)
        for row in rows
        if row.quality["status"] != "failed"
        for m in row.cost.measurements()
        if m.measured and m.step_s is not None and m.peak_rss_bytes is not None
    ]


@dataclass
class Recommendation:
    option: Option | None
    line: str
    max_ram_bytes: int

    def to_dict(self) -> dict | None:
        if self.option is None:
            return None
        m, q = self.option.measurement, self.option.row.quality
        return {
            "variant": self.option.row.variant,
            "mode": m.mode,
            "step_s": m.step_s,
            "peak_rss_bytes": m.peak_rss_bytes,
            "load_s": m.load_s,
            "cosine": q["cosine"],
            "rel_l2": q["rel_l2"],
        }


def _quality_text(quality: dict) -> str:
    if quality["cosine"] is None:
        return f"quality: {quality['status']}"
    return (
        f"quality vs the fp32 source: cosine {quality['cosine']:.5f}, "
        f"rel. L2 {quality['rel_l2']:.4f}"
    )


def recommend(
    rows: list[BenchRow], max_ram_bytes: int, ram_label: str, pixels: int = 512
) -> Recommendation:
    """The fastest measured option whose peak RSS fits in `max_ram_bytes` (ties: less memory);
    `pixels` is the image side the steps were measured at."""
    found = options(rows)
    if not found:
        return Recommendation(None, "Nothing was measured; see the table for why.", max_ram_bytes)
    fits = [o for o in found if (o.measurement.peak_rss_bytes or 0) <= max_ram_bytes]
    if not fits:
        small = min(found, key=lambda o: o.measurement.peak_rss_bytes or 0)
        return Recommendation(
            None,
            f"Nothing measured fits in {gigabytes(max_ram_bytes)} of RAM ({ram_label}): the "
            f"smallest peak is {small.label} at {gigabytes(small.measurement.peak_rss_bytes)}.",
            max_ram_bytes,
        )
    best = min(fits, key=lambda o: (o.measurement.step_s, o.measurement.peak_rss_bytes))
    m = best.measurement
    compiled = m.mode == Mode.COMPILED
    compile_note = f" (the first step compiles: {seconds(m.warmup_s)})" if compiled else ""
    return Recommendation(
        best,
        f"Pick {best.label}: {seconds(m.step_s)} per step at {pixels} px, peak RAM "
        f"{gigabytes(m.peak_rss_bytes)} (fits in {gigabytes(max_ram_bytes)}, {ram_label})"
        f"{compile_note}; {_quality_text(best.row.quality)}.",
        max_ram_bytes,
    )


@dataclass
class BenchReport:
    target: str
    source: dict
    machine: dict
    settings: dict
    rows: list[BenchRow]
    recommendation: Recommendation
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "target": self.target,
            "source": self.source,
            "machine": self.machine,
            "settings": self.settings,
            "max_ram_bytes": self.recommendation.max_ram_bytes,
            "rows": [r.to_dict() for r in self.rows],
            "recommendation": self.recommendation.to_dict(),
            "recommendation_line": self.recommendation.line,
        }


def _metric(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(rows: list[BenchRow]) -> list[dict[str, str]]:
    """Printable cells per variant (the columns of `render_table`)."""
    out = []
    for row in rows:
        v = variant(row.variant)
        cells = cost_cells(row.cost, compile_applies(v), sdcpp_applies(v))
        m = row.cost.eager
        why = row.cost.not_measured or (m.reason if m and not m.measured else "")
        s = row.cost.sdcpp
        if s is not None and not s.measured:
            why = "; ".join(filter(None, [why, f"stable-diffusion.cpp: {s.reason}"]))
        out.append(
            {
                "variant": row.variant,
                "file": gigabytes(row.cost.file_bytes),
                **cells,
                "cosine": _metric(row.quality["cosine"], 5),
                "rel_l2": _metric(row.quality["rel_l2"], 4),
                "note": why if why else row.quality["status"],
            }
        )
    return out


COLUMNS = {
    "variant": "variant",
    "file": "file",
    "load": "load",
    "ram": "peak RAM",
    "step": "s/step",
    "compiled": "s/step compiled",
    "sdcpp": "stable-diffusion.cpp load / peak RAM / s/step",
    "cosine": "cosine",
    "rel_l2": "rel. L2",
    "note": "validation / note",
}


def render_table(report: BenchReport) -> str:
    """The table, the machine it ran on and the recommendation, as plain text (rich)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS.values(), title=f"bot bench {report.target}")
    for cells in table_rows(report.rows):
        table.add_row(*(cells[k] for k in COLUMNS))
    buffer = StringIO()
    console = Console(file=buffer, width=160, highlight=False)
    console.print(table)
    console.print(f"machine: {machine_line(report.machine)}", markup=False)
    console.print(f"settings: {settings_line(report.settings)}", markup=False)
    for note in report.notes:
        console.print(note, markup=False)
    console.print(report.recommendation.line, markup=False)
    return buffer.getvalue()
