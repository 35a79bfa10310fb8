"""The Hugging Face Hub as a model source: ``snapshot("owner/name")`` -> a local folder (which
:func:`transformer_xl.run.resolve.resolve_model` then resolves like any other).

A path that exists is returned as it is. Otherwise a name of the Hub's form ``owner/name``
is fetched with ``huggingface_hub.snapshot_download`` (``revision``: a branch, tag or commit;
``cache_dir``: the Hub cache, default ``HF_HUB_CACHE``); with ``HF_HUB_OFFLINE=1`` only the
cache is read. Whatever fails is one ``ValueError`` line naming the repo and what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# what our loaders read from a model folder (both HF formats and ours)
MODEL_FILES = ["*.json", "*.safetensors", "*.py", "README.md", "vocab.*", "*.txt"]


def is_repo_id(source: str | os.PathLike) -> bool:
    """``owner/name`` that is no local path (nor inside an existing local folder ``owner``)."""
    text = os.fspath(source)
    if not REPO_ID.match(text) or ".." in text:
        return False
    return not Path(text).exists() and not Path(text).parent.is_dir()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def snapshot(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """A local folder for ``source``: the path itself, or the Hub snapshot of repo ``source``."""
    if not is_repo_id(source):
        return Path(source)
    repo = os.fspath(source)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise ValueError(
            f"{repo}: no such folder (a Hub repo id needs huggingface_hub: "
            "pip install 'transformer-xl[hf]')"
        ) from None
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None  # read now, not at import
    where = f"{repo}" + (f" at revision {revision!r}" if revision else "")
    try:
        path = snapshot_download(
            repo, revision=revision, cache_dir=cache_dir, allow_patterns=MODEL_FILES,
            local_files_only=_offline(),
        )  # fmt: skip
    except LocalEntryNotFoundError:
        cache = f" in {cache_dir}" if cache_dir else ""
        raise ValueError(
            f"{where}: not in the Hub cache{cache} and the Hub cannot be reached "
            "(offline: HF_HUB_OFFLINE or no network); download it once online or pass a folder"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ValueError(f"{where}: not found on the Hub ({type(e).__name__})") from None
    except (HfHubHTTPError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{where}: the Hub download failed ({first})") from None
    return Path(path)
