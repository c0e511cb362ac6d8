"""The former home of validation, now the package `engine.validation`.

Kept only as a re-export while callers (bot/) still import `engine.validate`; new code imports
`engine.validation`. Delete this module once nothing imports it.
"""

from engine.validation import (
    Context,
    ValidationResult,
    needs_reference,
    validate_artifact,
    validate_folder,
    validate_manifest,
    write_validation_grid,
)

__all__ = [
    "Context",
    "ValidationResult",
    "needs_reference",
    "validate_artifact",
    "validate_folder",
    "validate_manifest",
    "write_validation_grid",
]
