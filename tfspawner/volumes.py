"""Where a user's notebooks live, and how a new volume becomes theirs."""

from __future__ import annotations

import io
import posixpath
import shlex
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from . import archive, containerspec, naming

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


def seed_members(
    image_archive: bytes | None, notebook_dir: str, uid: int, gid: int
) -> list[archive.Member]:
    """Archive entries that make a new volume the user's, named relative to ``/``.

    Put into the user's container before it first starts, where the volume is
    mounted at ``notebook_dir``: the first entry becomes the volume's root,
    owned by the user with mode 0700, followed by what the image had there
    (``image_archive``, as the engine's archive API returns it), owned by the
    user too. The engine applies a tar entry's owner, so no container has to
    run as root. Set-id bits are dropped, as ``chown`` would; device files and
    fifos are left out.
    """
    path = posixpath.normpath(notebook_dir).lstrip("/")
    top = posixpath.basename(path)
    if not notebook_dir.startswith("/") or top in ("", ".", ".."):
        raise UnsafePath(f"the notebook directory must be an absolute path, not {notebook_dir!r}")
    parent = posixpath.dirname(path)
    members: list[archive.Member] = []
    if image_archive:
        with tarfile.open(fileobj=io.BytesIO(image_archive)) as source:
            for info in source:
                # The engine names the archive's top entry after the directory it read.
                inside = info.name.startswith(top + "/")
                if info.islnk():
                    inside = inside and info.linkname.startswith(top + "/")
                    info.linkname = posixpath.join(parent, info.linkname)
                if not inside or not (info.isdir() or info.isreg() or info.issym() or info.islnk()):
                    continue
                data = source.extractfile(info).read() if info.isreg() else None
                info.name = posixpath.join(parent, info.name)
                members.append((info, data))
    root = tarfile.TarInfo(path)
    root.type = tarfile.DIRTYPE
    for info, _ in [(root, None), *members]:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        info.mode = 0o700 if info is root else info.mode & 0o1777
    return [(root, None), *members]


# The exit status of the bind init script when the directory belongs to another uid.
OWNED_BY_ANOTHER_UID = 3


def bind_init_script(root_mount: str, name: str, uid: int, gid: int) -> str:
    """Shell run as root once for the bind variant: a host directory only the user can use.

    A directory that exists but belongs to another uid is left alone, and the
    script exits with ``OWNED_BY_ANOTHER_UID``.
    """
    path = shlex.quote(posixpath.join(root_mount, name))
    return (
        f'if [ -d {path} ]; then [ "$(stat -c %u {path})" = "{uid}" ] || exit '
        f"{OWNED_BY_ANOTHER_UID}; else mkdir {path} && chown {uid}:{gid} {path} && "
        f"chmod 0700 {path}; fi"
    )


class OwnedByAnotherUid(RuntimeError):
    """The storage exists and belongs to another uid; it was not touched."""

    def __init__(self, where: str, owner: str):
        super().__init__(f"{where} belongs to uid {owner}")
        self.where, self.owner = where, owner


class PreparationFailed(RuntimeError):
    """The root helper that prepares a host directory failed; the message is its log."""


# Mounted where the helper container sees volume_host_root.
_HELPER_MOUNT = "/mnt/tfspawner-root"


@dataclass(frozen=True)
class NamedVolume:
    """An engine volume per user (the default): made on first use and labelled with its uid."""

    name: str
    # nocopy: the image's files are handed over when the volume is made;
    # copying again into an empty volume would reset its owner to root.
    mode = "rw,nocopy"
    # Deleted with the user when the admin asks for it.
    deletable = True

    @property
    def source(self) -> str:
        return self.name

    async def prepare(
        self, engine, *, uid: int, gid: int, image: str, labels: Mapping, helper_labels: Mapping
    ) -> bool:
        """Make the volume unless it exists; True when this call made it (it is empty)."""
        volume = await engine.volume(self.name)
        if volume is not None:
            owner = (volume.get("Labels") or {}).get(containerspec.LABEL_UID)
            if owner is not None and owner != str(uid):
                raise OwnedByAnotherUid(self.name, owner)
            return False
        await engine.create_volume(self.name, {**labels, containerspec.LABEL_UID: str(uid)})
        return True

    async def delete(self, engine) -> bool:
        return await engine.remove_volume(self.name)


@dataclass(frozen=True)
class HostDirectory:
    """A directory under ``volume_host_root``, made by a root helper that can only chown."""

    root: str
    name: str
    mode = "rw"
    # Host directories are the admin's to delete: never removed by the hub.
    deletable = False

    @property
    def source(self) -> str:
        return host_path(self.root, self.name)

    async def prepare(
        self, engine, *, uid: int, gid: int, image: str, labels: Mapping, helper_labels: Mapping
    ) -> bool:
        status, logs = await engine.run_helper(
            image,
            bind_init_script(_HELPER_MOUNT, self.name, uid, gid),
            binds={self.root: {"bind": _HELPER_MOUNT, "mode": "rw"}},
            labels=helper_labels,
            cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"],
        )
        if status == OWNED_BY_ANOTHER_UID:
            raise OwnedByAnotherUid(self.source, "another uid")
        if status != 0:
            raise PreparationFailed(logs)
        return False

    async def delete(self, engine) -> bool:
        return False


def storage_of(
    hub: str, user: str, server: str, *, per_server: bool, host_root: str | None
) -> NamedVolume | HostDirectory:
    name = volume_name(hub, user, server, per_server=per_server)
    return HostDirectory(host_root, name) if host_root else NamedVolume(name)
