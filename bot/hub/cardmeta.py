"""Model-card metadata: the YAML front matter of README.md.

The Hub derives `cardData`, tags, `library_name` and `pipeline_tag` from this block and the bot
reads them back through `model_info`; commits and `/api/validate-yaml` both parse it here, so
they refuse the same READMEs.

- Where the block is: huggingface_hub's own rule, `huggingface_hub.repocard.REGEX_YAML_BLOCK`
  (the `---` fence at the very start, optionally after whitespace, closed by a line that is
  `---` plus trailing blanks), as `RepoCard.content` and `metadata_load` apply it. A README with
  no such block has no metadata; it is not an error.
- How it is parsed: `yaml.safe_load` semantics (never the unsafe loader), as huggingface_hub;
  the block must be a mapping (`RepoCard`: "repo card metadata block should be a dict").
- What this server adds against hostile input: the block is capped at `MAX_YAML_BYTES`, YAML
  aliases are refused (a few hundred bytes of nested aliases expand to megabytes of JSON on
  every info call), and nesting deeper than `MAX_DEPTH` is an error, not a crash (libyaml's
  document builder recurses without limit). Values JSON cannot carry are
  made JSON-safe the way a JavaScript YAML parser and `JSON.stringify` would (dates become ISO
  strings, NaN/Infinity become null); binary values are refused.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import yaml
from huggingface_hub.repocard import REGEX_YAML_BLOCK

MAX_YAML_BYTES = 128 * 1024
MAX_DEPTH = 64


class CardMetaError(ValueError):
    """The front matter exists but the Hub would refuse it (broken YAML, not a mapping...)."""


# libyaml's parser when available (the same safe constructor, ~20x faster than pure Python)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_structure(block: str) -> None:
    """Refuse aliases and nesting deeper than MAX_DEPTH, from the event stream (the parser is
    iterative; building the document recurses, and libyaml's composer has no depth limit)."""
    depth = 0
    for event in yaml.parse(block, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise CardMetaError(
                f"README front matter uses the YAML alias *{event.anchor} (line"
                f" {event.start_mark.line + 1}); aliases are not allowed, write the value out"
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise CardMetaError(f"README front matter is nested deeper than {MAX_DEPTH}")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def split_front_matter(text: str) -> str | None:
    """The YAML text of the metadata block, or None when the README has none."""
    match = REGEX_YAML_BLOCK.search(text.removeprefix("\ufeff"))
    return match.group(2) if match else None


def _key(key: Any) -> str:
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, (dt.date, dt.datetime)):
        return key.isoformat()
    if isinstance(key, (str, int, float)):
        return str(key)
    raise CardMetaError(f"README front matter has a key of type {type(key).__name__}")


def json_safe(value: Any) -> Any:
    """Turn what `safe_load` can return into JSON values (see the module docstring)."""
    if isinstance(value, dict):
        return {_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=str)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        raise CardMetaError("README front matter has a binary (!!binary) value")
    return value


def parse_card_data(text: str) -> dict[str, Any] | None:
    """Parse README front matter; None when there is none, CardMetaError when it is broken,
    so a commit is refused exactly when validate-yaml reports an error."""
    block = split_front_matter(text)
    if block is None:
        return None
    size = len(block.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise CardMetaError(
            f"README front matter is {size} bytes; the limit is {MAX_YAML_BYTES} bytes"
        )
    try:
        _check_structure(block)
        data = yaml.load(block, Loader=_LOADER)  # a safe loader: plain data types only
    except yaml.YAMLError as exc:
        raise CardMetaError(f"invalid YAML in README front matter: {exc}") from exc
    except UnicodeError as exc:  # a lone surrogate (from a JSON escape) is not UTF-8
        raise CardMetaError(f"README front matter is not valid UTF-8: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CardMetaError("README front matter must be a YAML mapping")
    return json_safe(data)
