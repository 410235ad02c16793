"""What admins see of the hub: one dict, for the page /hub/tfspawner and /hub/api/tfspawner/gpus.

Both read ``admin_view``, so the page, its refresh and the API never differ.
``remove_unknown`` is the page's remove action, the same rules as
``tfspawner gpus --remove``.
"""

from __future__ import annotations

import datetime

from tornado import web

from . import catalogue, imageref
from .errors import ConfigError
from .gpupool import Owner


class RemoveRefused(Exception):
    """The server may not be removed from here; the message says why."""


def _hub():
    # hub imports this module for its API handler: import it late.
    from . import hub

    return hub


def _probe():
    probe = _hub()._probe
    if probe is None:
        raise web.HTTPError(503, "The GPU pool is not ready yet.", reason="Service Unavailable")
    return probe


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def images_view(refs, stale: list[dict], catalogue_file: str | None) -> dict:
    """Each alias's current pin and digest, its stale servers, and when the catalogue was rebuilt.

    ``built`` is the current pin's build time when the catalogue file pins the
    alias, else None (the pin comes from ``TFSpawner.images``).
    """
    data = catalogue.empty()
    error = ""
    if catalogue_file:
        try:
            data = catalogue.load(catalogue_file)
        except catalogue.CatalogueError as e:
            error = str(e)
    entries = data["images"]
    built_at = [pin.get("built") for entry in entries.values() for pin in entry.get("pins") or []]
    aliases = []
    for alias, ref in sorted(refs.items()):
        entry = entries.get(alias) or {}
        pins = entry.get("pins") or []
        current = pins[entry.get("current", len(pins) - 1)] if pins else None
        parsed = ref if isinstance(ref, imageref.ImageRef) else imageref.parse(str(ref))
        aliases.append(
            {
                "alias": alias,
                "image": str(parsed),
                "repository": parsed.name + (f":{parsed.tag}" if parsed.tag else ""),
                "digest": parsed.digest or "",
                "source": "catalogue" if current else "config",
                "built": current.get("built") if current else None,
                "pins_kept": len(pins),
                "stale": sum(1 for server in stale if server.get("alias") == alias),
            }
        )
    return {
        "aliases": aliases,
        "catalogue_file": catalogue_file or "",
        "last_rebuilt": max((b for b in built_at if b), default=None),
        "error": error,
    }


async def admin_view(db) -> dict:
    """The GPU pool, servers the hub does not know, stale servers and images, as JSON data.

    The pool part is ``hub.gpu_pool_view``. Raises HTTPError 503 while the
    hub is starting. A config error leaves out what depends on the images.
    """
    hub = _hub()
    probe = _probe()
    state = await probe.hub_state()
    await state.observe()
    unknown = await state.unknown_servers(hub.running_servers(db))
    try:
        settings = probe.settings
        stale = await state.stale_servers(settings)
        images = images_view(settings.refs, stale, probe.image_catalogue_file)
    except ConfigError as e:
        probe.log.warning("Cannot tell which servers run an older image: %s", e)
        stale = []
        images = {"aliases": [], "catalogue_file": "", "last_rebuilt": None, "error": str(e)}
    view = hub.gpu_pool_view(state.pool, probe.hub_name, unknown, stale)
    if state.queue is not None:
        view["boot_queue"] = state.queue.snapshot()
    view["hub_name"] = probe.hub_name
    view["images"] = images
    view["generated"] = _now()
    return view


async def remove_unknown(db, owner: Owner, active: bool) -> list[dict]:
    """Stop and remove the running containers of ``owner``, a server the hub does not know.

    ``active``: the hub has this server starting or running in memory (its
    database may not say so yet), so it is refused like a server the database
    knows. The notebook volume stays; the GPUs are free again. Returns the
    removed records.
    """
    hub = _hub()
    probe = _probe()
    if active or owner in hub.running_servers(db):
        raise RemoveRefused(
            f"The hub knows the server {owner}; stop it from the hub's admin panel instead."
        )
    state = await probe.hub_state()
    mine = [
        record
        for record in await state.unknown_servers(hub.running_servers(db))
        if Owner(record["user"], record["server"]) == owner
    ]
    if not mine:
        raise RemoveRefused(f"No running container of {owner} is left to remove.")
    for record in mine:
        await probe.engine.remove(record["id"])
        probe.log.warning(
            "Removed container %s of %s, not known to the hub, from the admin page; "
            "GPUs %s are free again, its volume stays",
            record["container"],
            owner,
            ",".join(record["gpus"]) or "(none)",
        )
    state.release(owner)
    await state.observe()
    return mine
