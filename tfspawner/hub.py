"""Wiring into the running hub: start-up checks and the admin GPU endpoint.

JupyterHub has no start-up hook for spawners, so when the hub imports
TFSpawner while loading its config, this module wraps the hub's
``init_spawners``: the config is checked and the GPU pool is rebuilt from the
engine before any saved server is loaded. A bad config raises there, and the
hub stops with the message.
"""

from __future__ import annotations

import datetime
import json

from tornado import web

_probe = None


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
        """GET /hub/api/tfspawner/gpus: the pool, for admins (scope admin:servers)."""

        async def get(self):
            if "admin:servers" not in self.expanded_scopes:
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

    probe = spawner_class(config=app.config, hub=app.hub, log=app.log)
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


def install() -> None:
    """Hook into the hub that is loading its config, if there is one."""
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        return
    if not JupyterHub.initialized():
        return
    app = JupyterHub.instance()
    if getattr(app, "_tfspawner_installed", False):
        return
    app._tfspawner_installed = True
    app.extra_handlers.append((r"/api/tfspawner/gpus", _make_api_handler()))
    original_init_spawners = app.init_spawners

    async def init_spawners():
        from .spawner import TFSpawner

        if isinstance(app.spawner_class, type) and issubclass(app.spawner_class, TFSpawner):
            await startup(app, app.spawner_class)
        return await original_init_spawners()

    app.init_spawners = init_spawners
