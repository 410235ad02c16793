"""Names of containers and volumes: escaped injectively, so no two servers share one.

Every character outside ``[a-z0-9]`` becomes ``-xx`` (its UTF-8 bytes in hex),
so an escaped part never contains ``--`` and ``--`` can separate parts. Names
too long for the engine are cut and suffixed with a hash of the full name;
cut names are longer than any uncut name, so the two kinds never meet.
"""

from __future__ import annotations

import hashlib
import string

_SAFE = set(string.ascii_lowercase + string.digits)
SEPARATOR = "--"
MAX_PLAIN = 200
_KEEP = MAX_PLAIN - 16
_HASH_CHARS = 32


def escape(text: str) -> str:
    """Injective: different inputs always give different outputs."""
    out = []
    for char in text:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"-{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def join(*parts: str) -> str:
    """Escape each part and join with ``--``; bounded in length, still injective."""
    name = SEPARATOR.join(escape(part) for part in parts)
    if len(name) <= MAX_PLAIN:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[:_KEEP]}-{digest}"


def volume_name(prefix: str, hub: str, user: str, server: str | None = None) -> str:
    """``prefix--hub--user[--server]``; ``server`` None means the user's shared volume."""
    parts = [hub, user] if server is None else [hub, user, server]
    return f"{prefix}-{join(*parts)}"
