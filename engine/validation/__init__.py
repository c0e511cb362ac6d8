"""Prove every artifact with its consumer's own loader before it can ship.

One module per job: `context` (the source, the fp32 reference cache, which variants are exact
copies), `result` (ValidationResult, the manifest's `validation`), `exact` (byte proofs),
`original`, `gguf_file` (+ `gguf_tensors`, `diffusers_gguf`) and `diffusers_quant` (one per
variant family; each validator takes its registry `Variant`), `outputs` (metrics against the
reference), and `run` (an artifact, a manifest, a folder, the validation grid).
"""

from engine.validation.context import Context, exact_copy, needs_reference
from engine.validation.result import ValidationResult
from engine.validation.run import (
    import_loaders,
    validate_artifact,
    validate_folder,
    validate_manifest,
    write_validation_grid,
)

__all__ = [
    "Context",
    "ValidationResult",
    "exact_copy",
    "import_loaders",
    "needs_reference",
    "validate_artifact",
    "validate_folder",
    "validate_manifest",
    "write_validation_grid",
]
