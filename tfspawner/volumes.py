"""Where a user's notebooks live, and how a new volume becomes theirs."""

from __future__ import annotations

import posixpath
import shlex

from . import naming

VOLUME_PREFIX = "tfspawner"


class UnsafePath(ValueError):
    pass


def volume_name(hub: str, user: str, server: str, *, per_server: bool) -> str:
    """The user's volume; named servers share it unless ``per_server``."""
    return naming.volume_name(VOLUME_PREFIX, hub, user, server if per_server and server else None)


def host_path(root: str, name: str) -> str:
    """``root/name`` for the bind-mount variant; refuses anything that leaves ``root``."""
    if not root.startswith("/"):
        raise UnsafePath(f"TFSpawner.volume_host_root must be an absolute path, not {root!r}")
    root = posixpath.normpath(root)
    path = posixpath.normpath(posixpath.join(root, name))
    if posixpath.dirname(path) != root or name in ("", ".", ".."):
        raise UnsafePath(f"{name!r} would leave {root}")
    return path


def init_script(target: str, uid: int, gid: int) -> str:
    """Shell run as root once on a new volume: hand it, and what the image put there, to the user."""
    quoted = shlex.quote(target)
    return f"mkdir -p {quoted} && chown -R {uid}:{gid} {quoted} && chmod 0700 {quoted}"


def bind_init_script(root_mount: str, name: str, uid: int, gid: int) -> str:
    """Like init_script for a host directory, but only the first time it is used."""
    path = shlex.quote(posixpath.join(root_mount, name))
    return f"[ -d {path} ] || {{ mkdir {path} && chown {uid}:{gid} {path} && chmod 0700 {path}; }}"
