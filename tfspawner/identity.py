"""Which uid:gid a user's container runs as, and the passwd entry that names it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_PASSWD_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


class UnsafeIdentity(ValueError):
    """Raised when a user would run as root or with an invalid id."""


def stable_uid(base: int, hub_user_id: int) -> int:
    """The uid the ``stable`` strategy proposes for a hub user: ``base + id``.

    Hub user ids can be reused (SQLite, restored databases), so the uid
    registry decides whether the user gets it.
    """
    return base + hub_user_id


def parse_ids(value, default_gid: int, source: str) -> tuple[int, int]:
    """Accept ``uid``, ``"uid"``, ``"uid:gid"`` or ``(uid, gid)``."""
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            uid, gid = int(value[0]), int(value[1])
        elif isinstance(value, str) and ":" in value:
            uid_text, gid_text = value.split(":", 1)
            uid, gid = int(uid_text), int(gid_text)
        elif isinstance(value, bool):
            raise TypeError
        else:
            uid, gid = int(value), default_gid
    except (TypeError, ValueError):
        raise UnsafeIdentity(f"{source} gave {value!r}, which is not a uid or uid:gid") from None
    return uid, gid


@dataclass(frozen=True)
class Lookup:
    """What a uid strategy may use to find a user's ids."""

    username: str
    hub_user_id: int
    base: int
    default_gid: int
    static_map: Mapping[str, object]
    passwd_lookup: Callable[[str], tuple[int, int]]
    passwd_min_uid: int = 1000


def _stable(lookup: Lookup) -> tuple[int, int]:
    return stable_uid(lookup.base, lookup.hub_user_id), lookup.default_gid


def _static(lookup: Lookup) -> tuple[int, int]:
    if lookup.username not in lookup.static_map:
        raise UnsafeIdentity(f"user {lookup.username!r} has no entry in TFSpawner.uid_map")
    return parse_ids(lookup.static_map[lookup.username], lookup.default_gid, "TFSpawner.uid_map")


def _passwd(lookup: Lookup) -> tuple[int, int]:
    try:
        uid, gid = lookup.passwd_lookup(lookup.username)
    except KeyError:
        raise UnsafeIdentity(
            f"user {lookup.username!r} is not in the host's passwd database"
        ) from None
    if uid < lookup.passwd_min_uid:
        raise UnsafeIdentity(
            f"user {lookup.username!r} is the host's system account (uid {uid}, below "
            f"TFSpawner.passwd_min_uid = {lookup.passwd_min_uid})"
        )
    return uid, gid


# uid_strategy -> resolver. ``callable`` is the admin's own, awaited by the spawner.
RESOLVERS: dict[str, Callable[[Lookup], tuple[int, int]]] = {
    "stable": _stable,
    "static": _static,
    "passwd": _passwd,
}
STRATEGIES = (*RESOLVERS, "callable")


def resolve(strategy: str, **lookup) -> tuple[int, int]:
    """The ``(uid, gid)`` for a user by every strategy except ``callable`` (which is async)."""
    if strategy not in RESOLVERS:
        raise ValueError(f"unknown uid strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return RESOLVERS[strategy](Lookup(**lookup))


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


def passwd_name(username: str, fallback: str) -> str:
    """The hub username if passwd can hold it, else ``fallback`` (an escaped name)."""
    return username if _PASSWD_NAME.fullmatch(username) else fallback[:32]


def with_user(passwd: str, group: str, *, name: str, uid: int, gid: int, home: str):
    """``(passwd, group)`` texts with an entry for the user, replacing any clash.

    A line with the same name or uid would win the lookup, so it is dropped.
    """
    kept = [
        line
        for line in passwd.splitlines()
        if line and line.split(":")[0] != name and line.split(":")[2:3] != [str(uid)]
    ]
    kept.append(f"{name}:x:{uid}:{gid}::{home}:/bin/bash")
    groups = [line for line in group.splitlines() if line]
    if not any(line.split(":")[2:3] == [str(gid)] for line in groups):
        groups.append(f"{name}:x:{gid}:")
    return "\n".join(kept) + "\n", "\n".join(groups) + "\n"
