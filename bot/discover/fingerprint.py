"""The input fingerprint of a source revision: what the bot's outputs are made from.

Two revisions with the same fingerprint give the same judgement and the same files, so a
commit that only edits the README (or adds a picture) costs the bot one `model_info` and
nothing else: nothing is downloaded, judged again or published.

The fingerprint hashes, from `model_info(files_metadata=True)` alone (no download):
- the content id of every input file: LFS files by their sha256, regular files (configs,
  `model_index.json`, licences) by their git blob id (a hash of their content). Input files
  are those any publish target is made from, by the engine's own weight-selection rule
  (`bot.client.repo_files.needed_files` over `engine.source.layout`: every component, both
  precisions), plus what judging reads: the layout JSON files
  (`engine.source.repo_kind.layout_json_files`) and the root `.safetensors` files whose headers
  decide the PR (`classify_repo(...) .root_checkpoints`);
- the names of all other files except documentation (README, `.md`, pictures,
  `.gitattributes`): judging reads the file list (adapters, pickles, opt-out files), so a
  file added or removed there is a change, while its content is not an input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from bot.client.repo_files import needed_files
from engine.source.layout import LICENSE_NAMES, Precision
from engine.source.repo_kind import UNET_CONFIG, classify_repo, layout_json_files

VERSION = b"unetbot-inputs-1\n"
_DOC_SUFFIXES = (".md", ".png", ".jpg", ".jpeg", ".webp", ".gif")


def content_ids(info) -> dict[str, str] | None:
    """path -> content id (LFS sha256, else git blob id) from a `model_info` fetched with
    `files_metadata=True`; None when any file lacks one (no fingerprint then)."""
    ids: dict[str, str] = {}
    for sibling in getattr(info, "siblings", None) or []:
        lfs = getattr(sibling, "lfs", None)
        oid = getattr(lfs, "sha256", None) or getattr(sibling, "blob_id", None)
        if not oid:
            return None
        ids[sibling.rfilename] = str(oid)
    return ids or None


def fingerprint_of(info) -> str:
    """The input fingerprint of a `model_info` with file metadata, "" when it has none."""
    ids = content_ids(info)
    return input_fingerprint(ids) if ids is not None else ""


def is_documentation(path: str) -> bool:
    """Files no judgement or conversion reads (licences are inputs: they are published)."""
    name = path.rsplit("/", 1)[-1]
    if path == ".gitattributes":
        return True
    return name.lower().endswith(_DOC_SUFFIXES) and name not in LICENSE_NAMES


def input_paths(files: Iterable[str]) -> list[str]:
    """The files whose content is an input (see the module docstring), sorted."""
    files = list(files)
    unet_folder = "unet" if UNET_CONFIG in files else ""
    wanted = needed_files(
        files,
        full=True,
        vae=True,
        precisions=(Precision.MAIN, Precision.HALF),
        unet_folder=unet_folder,
    )
    wanted += layout_json_files(files)
    layout = classify_repo(files)
    wanted += layout.root_checkpoints + layout.root_pickles
    return sorted(set(wanted))


def input_fingerprint(ids: Mapping[str, str]) -> str:
    """sha256 hex of the input files' content ids and the other files' names."""
    digest = hashlib.sha256(VERSION)
    for path in input_paths(ids):
        digest.update(f"{path}\t{ids[path]}\n".encode())
    digest.update(b"names\n")
    for name in sorted(p for p in ids if not is_documentation(p)):
        digest.update(f"{name}\n".encode())
    return digest.hexdigest()
