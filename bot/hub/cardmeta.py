"""Model-card metadata: the YAML front matter of README.md.

The Hub derives `cardData`, tags, `library_name` and `pipeline_tag` from this block, and the bot
reads them back through `model_info`; parsing lives here so commits and the validate-yaml
endpoint agree on what is valid.
"""

from __future__ import annotations

from typing import Any

import yaml

_FENCE = "---"


class CardMetaError(ValueError):
    """The front matter exists but is not a YAML mapping (the Hub refuses such a README)."""


def split_front_matter(text: str) -> str | None:
    """Return the YAML text between the leading `---` fences, or None when there is none."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != _FENCE:
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == _FENCE:
            return "\n".join(lines[1:i])
    return None


def parse_card_data(text: str) -> dict[str, Any] | None:
    """Parse README front matter with `yaml.safe_load` (never the unsafe loader).

    Returns None when the README has no front matter; raises CardMetaError when it is broken,
    so a commit can be refused the same way validate-yaml refuses it.
    """
    block = split_front_matter(text)
    if block is None:
        return None
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        raise CardMetaError(f"invalid YAML in README front matter: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CardMetaError("README front matter must be a YAML mapping")
    return data


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def derive_tags(card: dict[str, Any] | None, filenames: list[str]) -> list[str]:
    """Compute the repo tags the way the Hub does (card tags, library, license, files).

    list_models' `filter=` matches against these, so e.g. `filter="license:mit"` works.
    """
    card = card or {}
    tags: list[str] = []

    def add(tag: str) -> None:
        if tag and tag not in tags:
            tags.append(tag)

    library = card.get("library_name")
    if library:
        add(str(library))
    for tag in _as_list(card.get("tags")):
        add(tag)
    if any(name.endswith(".safetensors") for name in filenames):
        add("safetensors")
    if any(name.endswith(".gguf") for name in filenames):
        add("gguf")
    pipeline = card.get("pipeline_tag")
    if pipeline:
        add(str(pipeline))
    for lang in _as_list(card.get("language")):
        add(lang)
    for ds in _as_list(card.get("datasets")):
        add(f"dataset:{ds}")
    for base in _as_list(card.get("base_model")):
        add(f"base_model:{base}")
    for lic in _as_list(card.get("license")):
        add(f"license:{lic}")
    add("region:us")
    return tags
