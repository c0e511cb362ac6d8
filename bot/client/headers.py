"""A Hub file's safetensors header, read with HTTP range requests (never the weights).

Discovery decides from it whether a root file already is an original checkpoint of a UNet, and
which SD1.5 checkpoint a single-file repo holds.
"""

from __future__ import annotations

from bot.client.hub import Hub


def safetensors_header(
    hub: Hub, repo_id: str, filename: str, revision: str | None
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """tensor name -> (dtype, shape) of `filename` at `revision` (None: the default branch)."""
    meta = hub.call(
        f"read the header of {repo_id}/{filename}",
        hub.api.parse_safetensors_file_metadata,
        repo_id,
        filename,
        revision=revision,
    )
    return {name: (t.dtype, tuple(t.shape)) for name, t in meta.tensors.items()}
