"""Every uid ever given to a hub user, so that no uid is ever given to another.

Hub user ids are not a safe source on their own: SQLite hands a deleted
user's id to the next user created, and a restored database forgets users
created after the backup. The registry is a small file kept beside the
database but never restored with it; it only grows.

``claim`` is the pure decision; ``UidRegistry`` is the file around it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


class UidTaken(ValueError):
    """The uid a strategy gave belongs to another user; the message is for the admin."""


def claim(
    users: Mapping[str, int],
    retired: Iterable[int],
    name: str,
    proposed: int,
    *,
    movable: bool,
    seen: Mapping[str, int] | None = None,
) -> int:
    """The uid ``name`` gets: its registered one, else ``proposed`` if no one else had it.

    ``movable`` (the ``stable`` strategy, whose uids are derived, not assigned
    by an admin) keeps a user's registered uid and gives a new user whose
    proposed uid is taken the next uid above every uid ever given. Otherwise
    a uid another user had is refused. ``seen`` (user -> uid from the labels
    of the engine's notebook volumes) stands in for a registry file that was
    lost; the registry wins where both know a user.
    """
    known = {**(seen or {}), **users}
    if movable and name in known:
        return known[name]
    owners = {uid: user for user, uid in known.items() if user != name}
    taken = set(owners) | set(retired)
    if proposed not in taken:
        return proposed
    if not movable:
        holder = owners.get(proposed)
        whom = f"user {holder!r}" if holder is not None else "a user who no longer has it"
        raise UidTaken(
            f"uid {proposed} for user {name!r} was already given to {whom}; "
            "a uid is never given to two users"
        )
    return max(taken | set(known.values()) | {proposed}) + 1


class UidRegistry:
    """A JSON file ``{"users": {name: uid}, "retired": [uid]}``, changed under a lock
    and replaced atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> tuple[dict[str, int], list[int]]:
        """``(users, retired)``: each user's uid, and uids users had before they changed."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}, []
        users = {str(name): int(uid) for name, uid in data.get("users", {}).items()}
        return users, [int(uid) for uid in data.get("retired", [])]

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def claim(self, name: str, proposed: int, *, movable: bool, seen=None) -> int:
        with self._locked():
            users, retired = self.read()
            uid = claim(users, retired, name, proposed, movable=movable, seen=seen)
            if users.get(name) != uid:
                if name in users:
                    retired.append(users[name])
                users[name] = uid
                self._write(users, retired)
            return uid

    def _write(self, users: dict[str, int], retired: list[int]) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"users": users, "retired": sorted(set(retired))}, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
