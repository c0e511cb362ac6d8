"""ValidationResult: the manifest keeps exactly schema 1's validation dict."""

from __future__ import annotations

import json

from engine.formats.manifest import Artifact, FileEntry, Manifest
from engine.formats.validation_record import ValidationResult


def _artifact(validation: ValidationResult | None) -> Artifact:
    return Artifact(
        "gguf-q8_0",
        "GGUF Q8_0",
        "m-Q8_0.gguf",
        3,
        "ab",
        ["diffusers"],
        [FileEntry("m-Q8_0.gguf", 3, "ab")],
        {"gguf_type": "Q8_0"},
        validation,
    )


def test_from_problems_passes_only_without_problems():
    ok = ValidationResult.from_problems([], {"x": 1}, ["a"])
    bad = ValidationResult.from_problems(["one", "two"])
    assert ok.passed and ok.status == "passed" and ok.reason == "all checks passed"
    assert not bad.passed and bad.status == "failed" and bad.reason == "one; two"


def test_manifest_json_keeps_the_schema_and_round_trips(tmp_path):
    ran = ValidationResult.from_problems([], {"output": {"cosine": 0.99}}, ["checked"])
    ran.seconds = 1.5
    hashed = ValidationResult.from_problems(["m-Q8_0.gguf: sha256 does not match"], {}, ["sha"])
    manifest = Manifest({"repo": "o/n"}, [_artifact(ran), _artifact(hashed), _artifact(None)])
    manifest.save(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    first, second, third = (a["validation"] for a in raw["artifacts"])
    assert list(first) == ["status", "reason", "metrics", "checks", "seconds"]
    assert first == {
        "status": "passed",
        "reason": "all checks passed",
        "metrics": {"output": {"cosine": 0.99}},
        "checks": ["checked"],
        "seconds": 1.5,
    }
    assert "seconds" not in second  # the validators never ran: no time to report
    assert third is None
    loaded = Manifest.load(tmp_path)
    assert loaded.artifacts == manifest.artifacts
    assert [a.passed for a in loaded.artifacts] == [True, False, False]
