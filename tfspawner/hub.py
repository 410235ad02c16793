"""Wiring into the running hub: start-up checks and the admin GPU endpoint.

JupyterHub has no start-up hook for spawners, so importing the ``tfspawner``
package (the spawner entry point) wraps the hub's ``init_spawners``: the
config is checked and the GPU pool is rebuilt from the engine before any
saved server is loaded. A bad config raises there, and the hub stops with
the message.
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid

from tornado import httpclient, web

from . import adminview, naming
from .containerspec import LABEL_PREFIX
from .errors import ConfigError
from .gpupool import Owner
from .spawner import TFSpawner

_probe = None
# This hub process, as told to another hub that finds its lease on the engine.
INSTANCE = uuid.uuid4().hex
LABEL_LEASE = LABEL_PREFIX + "lease"
LABEL_LEASE_INSTANCE = LABEL_PREFIX + "lease.instance"
LABEL_LEASE_URL = LABEL_PREFIX + "lease.url"


class NoUser:
    """The start-up check's spawner serves nobody; DockerSpawner still renders names."""

    name = ""
    id = 0
    admin = False
    groups = ()
    url = "/"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _held_by(pool, gpu_id: str, hub_name: str) -> dict | None:
    holding = pool.holder(gpu_id)
    if holding is not None:
        return {
            "user": holding.owner.user,
            "server": holding.owner.server,
            "profile": holding.profile,
            "since": _iso(holding.since),
            "hub": hub_name,
            "known_to_hub": True,
        }
    engine = pool.external().get(gpu_id)
    if engine is None:
        return None
    owner = engine.owner or Owner("")
    return {
        "user": owner.user,
        "server": owner.server,
        "profile": engine.profile,
        "since": _iso(engine.since),
        "hub": engine.hub,
        "container": engine.container,
        "known_to_hub": False,
    }


def gpu_pool_view(
    pool, hub_name: str = "", unknown: list | None = None, stale: list | None = None
) -> dict:
    """The pool as JSON for admins: each GPU, free or held, by whom and since when.

    A GPU can be held by a server of this hub, by a running container this
    hub does not know (``known_to_hub`` false: another hub's, one started by
    hand, or this hub's after a database loss), and ``not_known_to_hub`` lists
    this hub's running servers that its database has lost. ``stale_images``
    lists running servers whose image is not their alias's current pin (they
    get it when they restart).
    """
    gpus = [
        {
            "id": gpu.id,
            "name": gpu.name,
            "memory": gpu.memory,
            "uuid": gpu.uuid,
            "held_by": _held_by(pool, gpu.id, hub_name),
        }
        for gpu in pool.gpus
    ]
    return {
        "total": pool.total,
        "free": len(pool.free()),
        "gpus": gpus,
        "not_known_to_hub": list(unknown or []),
        "stale_images": [
            {
                k: server[k]
                for k in ("user", "server", "profile", "alias", "image", "current", "since")
            }
            for server in stale or []
        ],
    }


def _make_api_handler():
    from jupyterhub.apihandlers.base import APIHandler

    class GPUPoolAPIHandler(APIHandler):
        """GET /hub/api/tfspawner/gpus: the pool, for those who may read every server."""

        async def get(self):
            if "read:servers" not in self.expanded_scopes:
                raise web.HTTPError(403, "Only admins may see the GPU pool.")
            view = await adminview.admin_view(self.db)
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(view))

    return GPUPoolAPIHandler


class InstanceHandler(web.RequestHandler):
    """GET /hub/api/tfspawner/instance: which hub process answers here.

    Another hub that finds this hub's name taken on the engine asks, to tell a
    live hub from a lease left by a dead one. Carries nothing secret.
    """

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"instance": INSTANCE}))


async def _answers_as(url: str, instance: str) -> bool:
    try:
        response = await httpclient.AsyncHTTPClient().fetch(
            url.rstrip("/") + "/api/tfspawner/instance", request_timeout=3, connect_timeout=3
        )
        return json.loads(response.body).get("instance") == instance
    except Exception:
        return False


async def claim_hub_name(app, probe) -> None:
    """Refuse to start while another live hub uses this hub_name on this engine.

    The name is held by a labelled volume, the lease, that records the hub
    process holding it and where it answers. A lease whose hub does not answer
    as that process was left by a dead hub (this hub's own previous life, most
    often), and is taken over.
    """
    name = f"{probe.prefix}-lease-{naming.join(probe.hub_name)}"
    url = app.hub.url
    engine = probe.engine
    lease = await engine.volume(name)
    if lease is not None:
        labels = lease.get("Labels") or {}
        holder, holder_url = labels.get(LABEL_LEASE_INSTANCE, ""), labels.get(LABEL_LEASE_URL, "")
        if holder != INSTANCE:
            if await _answers_as(holder_url, holder):
                raise ConfigError(
                    f"TFSpawner.hub_name: another hub named {probe.hub_name!r} is running on "
                    f"this Docker engine (it answers at {holder_url}). Two hubs on one engine "
                    "need different names; this hub did not start and changed nothing."
                )
            app.log.info(
                "TFSpawner: taking over the name %r from a hub that is gone", probe.hub_name
            )
            await engine.remove_volume(name, force=True)
    labels = {
        LABEL_LEASE: probe.hub_name,
        LABEL_LEASE_INSTANCE: INSTANCE,
        LABEL_LEASE_URL: url,
    }
    await engine.create_volume(name, labels)
    lease = await engine.volume(name) or {}
    if (lease.get("Labels") or {}).get(LABEL_LEASE_INSTANCE) != INSTANCE:
        raise ConfigError(
            f"TFSpawner.hub_name: another hub named {probe.hub_name!r} started on this Docker "
            "engine at the same moment; give each hub its own name."
        )


async def startup(app, spawner_class) -> None:
    """Check the config and rebuild the pool; raise to stop the hub on a bad config."""
    global _probe

    probe = spawner_class(config=app.config, hub=app.hub, log=app.log, user=NoUser())
    try:
        settings = probe.settings
        refs, profiles, gpus = settings.refs, settings.profiles, settings.gpus
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
    try:
        await claim_hub_name(app, probe)
    except ConfigError as e:
        app.log.critical("TFSpawner configuration error: %s", e)
        raise
    _probe = probe
    try:
        await probe.hub_state()
    except Exception as e:
        # Spawns will retry; the pool is rebuilt before any GPU is handed out.
        app.log.error("TFSpawner: could not read containers from the engine yet: %s", e)


def running_servers(db) -> set:
    """Servers the hub's database says are running or starting."""
    from jupyterhub import orm

    query = db.query(orm.Spawner).filter(orm.Spawner.server != None)  # noqa: E711
    return {Owner(spawner.user.name, spawner.name) for spawner in query}


async def sweep(app) -> None:
    """Remove what a dead hub left half-made; keep every running container."""
    if _probe is None:
        return
    try:
        await (await _probe.hub_state()).sweep(running_servers(app.db))
    except Exception as e:
        app.log.error("TFSpawner: could not check the engine's containers: %s", e)


def _is_tfspawner(spawner_class) -> bool:
    return isinstance(spawner_class, type) and issubclass(spawner_class, TFSpawner)


def _uses_tfspawner(app) -> bool:
    return _is_tfspawner(app.spawner_class)


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
            from . import adminpage

            # The hub made its jinja environments just before (init_tornado_settings).
            adminpage.install_templates(self.tornado_settings)
            self.extra_handlers.extend(adminpage.HANDLERS)
            self.extra_handlers.append((r"/api/tfspawner/gpus", _make_api_handler()))
            self.extra_handlers.append((r"/api/tfspawner/instance", InstanceHandler))
        return original_init_handlers(self)

    @functools.wraps(original_init_spawners)
    async def init_spawners(self):
        if not _uses_tfspawner(self):
            return await original_init_spawners(self)
        await startup(self, self.spawner_class)
        result = await original_init_spawners(self)
        await sweep(self)
        return result

    JupyterHub.init_handlers = init_handlers
    JupyterHub.init_spawners = init_spawners
    _limit_option_bodies()


# The hub stores a spawn request's options before the spawner sees them.
MAX_OPTIONS_BYTES = 64 * 1024


def _limit_option_bodies() -> None:
    """Refuse a REST spawn body too large to be options, before the hub stores it."""
    from jupyterhub.apihandlers.users import UserServerAPIHandler

    original_post = UserServerAPIHandler.post

    @functools.wraps(original_post)
    async def post(self, *args, **kwargs):
        spawner_class = self.settings.get("spawner_class")
        size = len(self.request.body or b"")
        if _is_tfspawner(spawner_class) and size > MAX_OPTIONS_BYTES:
            raise web.HTTPError(
                413,
                f"These server options are too large ({size // 1024} KiB; at most "
                f"{MAX_OPTIONS_BYTES // 1024} KiB), so nothing was started or saved.",
            )
        return await original_post(self, *args, **kwargs)

    UserServerAPIHandler.post = post
