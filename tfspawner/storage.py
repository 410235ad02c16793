"""A user's notebook storage at the edges of a start, through the engine seam.

Made theirs on first use (and refused, untouched, when it belongs to another
uid), handed over with the passwd entry in one archive, and deleted only when
the admin asked for it. ``volumes`` holds the storage kinds; this module holds
the order of the calls and what a student is told when one fails.
"""

from __future__ import annotations

import logging

from . import accounts, containerspec, imageref, messages, volumes
from .gpupool import Owner
from .spawnplan import SpawnPlan


async def prepare(engine, plan: SpawnPlan, owner: Owner, *, hub: str, log: logging.Logger) -> bool:
    """Make the owner's storage theirs on first use; True when it is new and empty."""
    labels = containerspec.labels(hub=hub, user=owner.user, server=owner.server, image=plan.image)
    try:
        return await plan.storage.prepare(
            engine,
            uid=plan.uid,
            gid=plan.gid,
            image=plan.image,
            labels=labels,
            helper_labels=helper_labels(hub, owner),
        )
    except volumes.OwnedByAnotherUid as e:
        log.error(
            "Not starting %s: its notebook storage %s belongs to uid %s, not to its uid %s. "
            "Check TFSpawner.uid_registry_file, or move the storage aside.",
            owner,
            e.where,
            e.owner,
            plan.uid,
        )
        raise messages.storage_of_another_uid() from None
    except volumes.PreparationFailed as e:
        log.error("Volume set-up for %s failed: %s", owner, e)
        raise messages.storage_not_prepared() from None


def helper_labels(hub: str, owner: Owner) -> dict:
    return containerspec.helper_labels(hub=hub, user=owner.user, server=owner.server)


async def write_first_files(
    engine,
    container_id: str,
    plan: SpawnPlan,
    owner: Owner,
    *,
    hub: str,
    passwd_name: str,
    seed: bool,
) -> None:
    """The passwd entry and, for a new volume, its hand-over: one archive, one engine call."""
    pinned = imageref.parse(plan.image).pinned
    texts = await engine.read_text_files(
        container_id,
        ["/etc/passwd", "/etc/group"],
        shared_by=("accounts", plan.image) if pinned else None,
    )
    members = accounts.passwd_members(
        texts, name=passwd_name, uid=plan.uid, gid=plan.gid, home=plan.notebook_dir
    )
    if seed:
        # Written through the user's container before it starts, with the
        # owner in each tar entry: no root container is needed.
        image_files = await engine.image_files(
            plan.image, plan.notebook_dir, helper_labels(hub, owner)
        )
        members += volumes.seed_members(image_files, plan.notebook_dir, plan.uid, plan.gid)
    await engine.put_files(container_id, members)


async def delete_forever(engine, storage, owner: Owner, *, hub: str, log: logging.Logger) -> None:
    """Remove a deleted user's volume if the admin asked for that; keep it otherwise."""
    where = volumes.storage_of(
        hub, owner.user, owner.server, per_server=storage.per_server, host_root=storage.host_root
    )
    if not (where.deletable and storage.remove_on_user_delete):
        log.info("Keeping the notebooks of %s in %s", owner, where.source)
    # A named server's shared volume belongs to the user, not this server.
    elif (not owner.server or storage.per_server) and await where.delete(engine):
        log.info("Removed volume %s of deleted %s", where.source, owner)


async def discard_unused(engine, plan: SpawnPlan, *, log: logging.Logger) -> None:
    """Remove a volume this start made and never handed over: it is empty, nothing is lost."""
    if plan.storage.deletable:
        try:
            await plan.storage.delete(engine)
        except Exception:
            log.exception("Could not remove the unused new volume %s", plan.storage)
