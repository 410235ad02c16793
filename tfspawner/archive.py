"""Tar archives exchanged with the engine's archive API."""

from __future__ import annotations

import io
import tarfile

# One archive entry and, for a regular file, its contents.
Member = tuple[tarfile.TarInfo, "bytes | None"]


def text_file(path: str, text: str, mode: int = 0o644) -> Member:
    """A root-owned file at ``path``, relative to where the archive is unpacked."""
    data = text.encode()
    info = tarfile.TarInfo(path)
    info.size, info.mode = len(data), mode
    return info, data


def build(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as target:
        for info, data in members:
            target.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def read_text(archive: bytes, name: str) -> str:
    """The text of ``name`` in an archive the engine returned; "" if it is not a file."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as source:
        member = source.extractfile(name)
        return member.read().decode() if member else ""
