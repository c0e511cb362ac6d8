"""The JSON Schema of `bot bench --json` (schema_version 1), as data.

Rows reuse the cost records of engine/cost/cost_table.json
(`engine.cost.model.VariantCost.to_dict`), so a user's measurement and the reference figures in the
cards compare field by field. Memory is in bytes (peak resident set of the measuring process), times
in seconds. A field that was not measured is null, never a guess.
"""

from __future__ import annotations

_NUMBER = {"type": ["number", "null"]}
_INT = {"type": ["integer", "null"]}

MEASUREMENT = {
    "type": "object",
    "required": ["variant", "mode", "status", "reason", "consumer", "load_s", "step_s"],
    "properties": {
        "variant": {"type": "string"},
        "mode": {"enum": ["eager", "compiled", "stable-diffusion.cpp"]},
        "status": {"enum": ["measured", "failed", "not measured"]},
        "reason": {"type": "string", "description": "why it failed; empty when measured"},
        "consumer": {"type": "string", "description": "the loader measured"},
        "import_s": _NUMBER,
        "load_s": _NUMBER,
        "warmup_s": {**_NUMBER, "description": "the excluded first step (compilation too)"},
        "step_s": {**_NUMBER, "description": "median of steps_s"},
        "steps_s": {"type": "array", "items": {"type": "number"}},
        "baseline_rss_bytes": {**_INT, "description": "peak RSS after imports"},
        "load_rss_bytes": {**_INT, "description": "peak RSS after loading"},
        "peak_rss_bytes": {**_INT, "description": "peak RSS of the whole process"},
        "torch_threads": _INT,
        "load_average": _NUMBER,
    },
}

BENCH_JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "bot bench --json",
    "type": "object",
    "required": [
        "schema_version",
        "target",
        "source",
        "machine",
        "settings",
        "max_ram_bytes",
        "rows",
        "recommendation",
        "recommendation_line",
    ],
    "properties": {
        "schema_version": {"const": 1},
        "target": {"type": "string", "description": "the folder or Hub repo id benched"},
        "source": {
            "type": "object",
            "properties": {"repo": {"type": "string"}, "revision": {"type": "string"}},
        },
        "machine": {
            "type": "object",
            "required": ["cpu", "cores", "ram_bytes", "versions", "unetbot", "date"],
        },
        "settings": {
            "type": "object",
            "required": ["latent", "batch", "steps", "warmup_steps", "compute_dtype"],
        },
        "max_ram_bytes": {"type": "integer"},
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "variant",
                    "status",
                    "file_bytes",
                    "eager",
                    "compiled",
                    "not_measured",
                    "quality",
                ],
                "properties": {
                    "variant": {"type": "string"},
                    "status": {"enum": ["measured", "failed", "not measured"]},
                    "file_bytes": {"type": "integer"},
                    "eager": {"oneOf": [{"type": "null"}, MEASUREMENT]},
                    "compiled": {"oneOf": [{"type": "null"}, MEASUREMENT]},
                    "not_measured": {"type": "string", "description": "why; empty if measured"},
                    "sdcpp": {
                        "oneOf": [{"type": "null"}, MEASUREMENT],
                        "description": "in stable-diffusion.cpp itself (the sdcpp extra); "
                        "absent or null: not measured there",
                    },
                    "quality": {
                        "type": "object",
                        "required": ["status", "cosine", "rel_l2"],
                        "properties": {
                            "status": {"type": "string"},
                            "cosine": _NUMBER,
                            "rel_l2": _NUMBER,
                        },
                    },
                },
            },
        },
        "recommendation": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["variant", "mode", "step_s", "peak_rss_bytes", "cosine"],
                    "properties": {
                        "variant": {"type": "string"},
                        "mode": {"enum": ["eager", "compiled"]},
                        "step_s": {"type": "number"},
                        "peak_rss_bytes": {"type": "integer"},
                        "load_s": _NUMBER,
                        "cosine": _NUMBER,
                        "rel_l2": _NUMBER,
                    },
                },
            ]
        },
        "recommendation_line": {"type": "string"},
    },
}
