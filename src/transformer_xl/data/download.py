"""Downloads with SHA-256 verification, resume of partial files (HTTP ``Range``) and a progress
bar on stderr, using only ``urllib``."""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from transformer_xl.data.prepared import sha256_file
from transformer_xl.fileio import make_parent
from transformer_xl.progress import Progress

USER_AGENT = "transformer-xl-data/1"


@dataclass(frozen=True)
class Remote:
    """A file as distributed: its name, where to get it, and its published SHA-256 (None where
    no checksum has been published; then the user can pass one)."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None


def _fetch(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """Download ``url`` into ``part``, continuing an existing partial file when the server
    honours ``Range`` (206) and starting over when it sends the whole file (200)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is complete
            return
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        if have and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise OSError(f"{url}: server answered Range {have}- with {content_range!r}")
            mode = "ab"
        else:
            have, mode = 0, "wb"
        total = have + int(length) if length is not None else None
        name = part.name.removesuffix(".part")
        with (
            Progress(total, name, unit="B", initial=have, enabled=progress, summary=True) as bar,
            open(part, mode) as f,
        ):
            while block := resp.read(1 << 20):
                f.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise OSError(f"{url}: connection closed at {part.stat().st_size} of {total} bytes")


def download(
    remote: Remote,
    directory: str | os.PathLike,
    *,
    urls: tuple[str, ...] | list[str] | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """``directory/remote.filename``, downloaded unless already there and intact.

    The file is fetched into ``NAME.part`` (kept between attempts, so a rerun resumes), checked
    against ``sha256`` (default: the published checksum) and only then renamed to ``NAME``. A
    checksum mismatch deletes the part file and raises a ValueError naming both checksums."""
    directory = Path(directory)
    dest = directory / remote.filename
    make_parent(dest)  # a file where the folder should be is named as such
    expected = (sha256 or remote.sha256 or "").lower() or None
    if dest.exists():
        got = sha256_file(dest)
        if expected is None or got == expected:
            return dest
        raise ValueError(
            f"{dest}: sha256 {got} does not match the expected {expected}; delete the file to "
            "download it again"
        )
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls or remote.urls:
        try:
            if progress:
                print(f"downloading {url}", file=sys.stderr)
            _fetch(url, part, timeout=timeout, progress=progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            errors.append(f"{url}: {e}")
    else:
        kept = part.is_file() and part.stat().st_size > 0
        if part.is_file() and not kept:
            part.unlink()  # nothing came: no part file to resume from
        where = f"partial data kept in {part} for a retry" if kept else "nothing was written"
        raise OSError(f"could not download {remote.filename} ({where}): " + "; ".join(errors))
    got = sha256_file(part)
    if expected is not None and got != expected:
        part.unlink()
        raise ValueError(
            f"{remote.filename}: downloaded file has sha256 {got}, expected {expected} "
            "(corrupt download or a changed file; it was deleted)"
        )
    os.replace(part, dest)
    return dest


def check_source(path: str | os.PathLike, remote: Remote, *, sha256: str | None = None,
                 strict: bool = False) -> dict:  # fmt: skip
    """Checksum a file the user already has. ``sha256`` (the user's) must match; the published
    checksum must match when ``strict``; otherwise a mismatch is only recorded
    (``matches_published`` False: archives rebuilt in the same layout are accepted, and the
    caller warns once it knows whether they could be prepared). Returns what was found for the
    metadata."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected {remote.filename} as distributed)")
    got = sha256_file(path)
    info = {"file": path.name, "sha256": got, "published_sha256": remote.sha256}
    if sha256 is not None and got != sha256.lower():
        raise ValueError(f"{path}: sha256 {got} does not match the expected {sha256.lower()}")
    if remote.sha256 is None:
        info["matches_published"] = None
    else:
        info["matches_published"] = got == remote.sha256
        if got != remote.sha256:
            msg = (f"{path}: sha256 {got} differs from the published {remote.filename} "
                   f"({remote.sha256})")  # fmt: skip
            if strict:
                raise ValueError(msg)
    return info


def unpublished_note(path: str | os.PathLike, info: dict) -> str | None:
    """What to tell about ``path`` when :func:`check_source` found it differs from the published
    file (None when it matches or nothing was published)."""
    if info.get("matches_published") is not False:
        return None
    return (
        f"{path}: sha256 {info['sha256']} differs from the published ({info['published_sha256']})"
    )
