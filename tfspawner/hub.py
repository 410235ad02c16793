"""Wiring into the running hub: start-up checks and the admin GPU endpoint.

JupyterHub has no start-up hook for spawners, so importing TFSpawner wraps
the hub's ``init_spawners``: the config is checked and the GPU pool is
rebuilt from the engine before any saved server is loaded. A bad config
raises there, and the hub stops with the message.
"""

from __future__ import annotations

import datetime
import functools
import json

from tornado import web

_probe = None


class _NoUser:
    """The start-up check's spawner serves nobody; DockerSpawner still renders names."""

    name = ""
    id = 0
    admin = False
    groups = ()
    url = "/"


def gpu_pool_view(pool) -> dict:
    """The pool as JSON for admins: each GPU, free or held, by whom and since when."""
    gpus = []
    for gpu in pool.gpus:
        holding = pool.holder(gpu.id)
        gpus.append(
            {
                "id": gpu.id,
                "name": gpu.name,
                "memory": gpu.memory,
                "uuid": gpu.uuid,
                "held_by": None
                if holding is None
                else {
                    "user": holding.owner.user,
                    "server": holding.owner.server,
                    "profile": holding.profile,
                    "since": datetime.datetime.fromtimestamp(
                        holding.since, datetime.timezone.utc
                    ).isoformat(),
                },
            }
        )
    return {"total": pool.total, "free": len(pool.free()), "gpus": gpus}


def _make_api_handler():
    from jupyterhub.apihandlers.base import APIHandler

    class GPUPoolAPIHandler(APIHandler):
        """GET /hub/api/tfspawner/gpus: the pool, for those who may read every server."""

        async def get(self):
            if "read:servers" not in self.expanded_scopes:
                raise web.HTTPError(403, "Only admins may see the GPU pool.")
            if _probe is None:
                raise web.HTTPError(503, "The GPU pool is not ready yet.")
            context = await _probe.hub_context()
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(gpu_pool_view(context.pool)))

    return GPUPoolAPIHandler


async def startup(app, spawner_class) -> None:
    """Check the config and rebuild the pool; raise to stop the hub on a bad config."""
    global _probe
    from .spawner import ConfigError

    probe = spawner_class(config=app.config, hub=app.hub, log=app.log, user=_NoUser())
    try:
        refs, profiles = probe.check_config()
        gpus = probe.configured_gpus()
    except ConfigError as e:
        app.log.critical("TFSpawner configuration error: %s", e)
        raise
    if probe.allow_unpinned_images:
        unpinned = [alias for alias, ref in refs.items() if not ref.pinned]
        if unpinned:
            app.log.warning(
                "TFSpawner.allow_unpinned_images is on and %s %s not pinned by digest: "
                "these tags can change under running classes",
                ", ".join(unpinned),
                "is" if len(unpinned) == 1 else "are",
            )
    app.log.info(
        "TFSpawner: %d profile(s), %d GPU(s) in the pool: %s",
        len(profiles),
        len(gpus),
        ", ".join(gpu.describe() for gpu in gpus) or "none",
    )
    _probe = probe
    try:
        await probe.hub_context()
    except Exception as e:
        # Spawns will retry; the pool is rebuilt before any GPU is handed out.
        app.log.error("TFSpawner: could not read containers from the engine yet: %s", e)


def running_servers(app) -> set:
    """Servers the hub's database says are running, after its own start-up checks."""
    from jupyterhub import orm

    from .gpupool import Owner

    query = app.db.query(orm.Spawner).filter(orm.Spawner.server != None)  # noqa: E711
    return {Owner(spawner.user.name, spawner.name) for spawner in query}


async def remove_orphans(app) -> None:
    """Containers whose spawn never finished (the hub died mid-spawn) hold GPUs; remove them."""
    if _probe is None:
        return
    try:
        await _probe.remove_orphans(running_servers(app))
    except Exception as e:
        app.log.error("TFSpawner: could not check for orphaned containers: %s", e)


def _uses_tfspawner(app) -> bool:
    from .spawner import TFSpawner

    return isinstance(app.spawner_class, type) and issubclass(app.spawner_class, TFSpawner)


def install() -> None:
    """Wrap the hub's init_handlers and init_spawners; no-ops unless the spawner is TFSpawner.

    The hub imports every spawner entry point while it is being constructed,
    before its instance exists, so the wrapping is on the class.
    """
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        return
    if getattr(JupyterHub, "_tfspawner_installed", False):
        return
    JupyterHub._tfspawner_installed = True
    original_init_handlers = JupyterHub.init_handlers
    original_init_spawners = JupyterHub.init_spawners

    @functools.wraps(original_init_handlers)
    def init_handlers(self):
        if _uses_tfspawner(self):
            self.extra_handlers.append((r"/api/tfspawner/gpus", _make_api_handler()))
        return original_init_handlers(self)

    @functools.wraps(original_init_spawners)
    async def init_spawners(self):
        if not _uses_tfspawner(self):
            return await original_init_spawners(self)
        await startup(self, self.spawner_class)
        result = await original_init_spawners(self)
        await remove_orphans(self)
        return result

    JupyterHub.init_handlers = init_handlers
    JupyterHub.init_spawners = init_spawners
