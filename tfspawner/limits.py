"""Parse resource limits written the way admins write them: ``2G``, ``512M``, ``1.5``."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)


def parse_bytes(value: str | int) -> int:
    """``"4G"`` -> 4294967296. Plain integers are bytes. Refuses zero and negatives."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(float(match[1]) * _UNITS[match[2].upper()])
    else:
        raise ValueError(f"{value!r} is not a size; write it like '512M' or '4G'")
    if size <= 0:
        raise ValueError(f"{value!r} must be more than 0 bytes")
    return size


def parse_cpus(value: int | float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{value!r} is not a CPU count; write it like 2 or 0.5")
    return float(value)


def format_bytes(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size}"
