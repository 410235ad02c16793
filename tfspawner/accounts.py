"""Who a user's server runs as: the uid and gid by the admin's strategy, and the passwd entry.

The strategies themselves are pure (``identity``); this adds the admin's
callable (which may be async) and the uid registry, so that a uid is never
given to a second account.
"""

from __future__ import annotations

import inspect
import pwd

from . import archive, identity
from .settings import Identity
from .uidregistry import UidRegistry


async def resolve(ids: Identity, spawner, volume_uids: dict[str, int]) -> tuple[int, int]:
    """``(uid, gid)`` for the spawner's user.

    Raises ``identity.UnsafeIdentity`` for root or an invalid id, and
    ``uidregistry.UidTaken`` when the uid belonged to another account.
    """
    user = spawner.user
    if ids.strategy == "callable":
        value = ids.callable(spawner)
        if inspect.isawaitable(value):
            value = await value
        uid, gid = identity.parse_ids(value, ids.gid, "TFSpawner.uid_callable")
    else:
        uid, gid = identity.resolve(
            ids.strategy,
            username=user.name,
            hub_user_id=user.id,
            base=ids.base,
            default_gid=ids.gid,
            static_map=ids.uid_map,
            passwd_lookup=_passwd_ids,
            passwd_min_uid=ids.passwd_min_uid,
        )
    identity.container_user(uid, gid)
    uid = UidRegistry(ids.registry_file).claim(
        user.name, uid, movable=ids.strategy == "stable", seen=volume_uids
    )
    return uid, gid


def passwd_members(
    texts: dict[str, str], *, name: str, uid: int, gid: int, home: str
) -> list[archive.Member]:
    """The image's /etc/passwd and /etc/group with this user added, so `whoami` names them."""
    passwd, group = identity.with_user(
        texts["/etc/passwd"], texts["/etc/group"], name=name, uid=uid, gid=gid, home=home
    )
    return [archive.text_file("etc/passwd", passwd), archive.text_file("etc/group", group)]


def _passwd_ids(username: str) -> tuple[int, int]:
    entry = pwd.getpwnam(username)
    return entry.pw_uid, entry.pw_gid
