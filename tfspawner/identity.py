"""Which uid:gid a user's container runs as."""

from __future__ import annotations


class UnsafeIdentity(ValueError):
    """Raised when a user would run as root or with an invalid id."""


def stable_uid(base: int, hub_user_id: int) -> int:
    """A uid that never changes for a hub user: ``base + id``.

    Hub user ids are unique and never reused, so two users never share a uid.
    """
    return base + hub_user_id


def container_user(uid: int, gid: int) -> str:
    """The ``uid:gid`` string for the engine, refusing root and out-of-range ids."""
    for label, value in (("uid", uid), ("gid", gid)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnsafeIdentity(f"{label} must be an integer, not {value!r}")
        if value == 0:
            raise UnsafeIdentity(f"{label} 0 is root; user containers never run as root")
        if not 0 < value < 2**31:
            raise UnsafeIdentity(f"{label} {value} is outside 1..2147483647")
    return f"{uid}:{gid}"
