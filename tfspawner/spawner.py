"""TFSpawner: DockerSpawner for TensorFlow 2.9 Jupyter images.

The spawner only gathers config, calls the pure modules and talks to the
engine through DockerSpawner's ``docker()`` seam, so that a Swarm variant can
reuse everything but the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import os
import pwd
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from docker.errors import APIError, ImageNotFound, NotFound
from dockerspawner import DockerSpawner
from sqlalchemy.orm import object_session
from traitlets import Any, Bool, Dict, Int, List, Unicode, Union, default, validate

from . import (
    allowlist,
    archive,
    catalogue,
    containerspec,
    form,
    gpupool,
    identity,
    imageref,
    limits,
    metrics,
    naming,
    nvml,
    profiles,
    registryauth,
    volumes,
)
from .errors import ConfigError, spawn_refused
from .gpupool import EngineHolding, GPUPool, Owner
from .pullprogress import PullFailed, PullProgress
from .uidregistry import UidRegistry, UidTaken

IMPLICIT_PROFILE = "default"
# Different images pulled at the same time; pulls of one image are shared.
PULL_THREADS = 4


@dataclass
class HubContext:
    """State shared by every spawner of one hub process: the GPU pool."""

    pool: GPUPool
    lock: asyncio.Lock
    reconciled: bool = False


# One context per hub_name, so every spawner in the process shares one pool.
_contexts: dict[str, HubContext] = {}
# Files read from pinned images, which never change: one read per image,
# shared by every spawn that needs it while the read is running.
_image_reads: dict[tuple, asyncio.Future] = {}
# Thread pools for engine calls, shared by every TFSpawner in the process.
_executors: dict[str, ThreadPoolExecutor] = {}


def _shared_executor(purpose: str, threads: int) -> ThreadPoolExecutor:
    if purpose not in _executors:
        _executors[purpose] = ThreadPoolExecutor(threads, thread_name_prefix=f"tfspawner-{purpose}")
    return _executors[purpose]


@dataclass
class _ImageLookup:
    """One look for a pinned image (and its pull, if absent), shared by concurrent spawns."""

    task: asyncio.Future | None = None
    progress: PullProgress = field(default_factory=PullProgress)
    pulling: bool = False


# Image lookups in flight, by pinned reference, shared by every spawner in the process.
_image_lookups: dict[str, _ImageLookup] = {}

# The uid a notebook volume was made for; the registry falls back on it.
LABEL_UID = containerspec.LABEL_PREFIX + "uid"
# user -> uid from notebook volume labels, per hub_name, read once per process.
_volume_uids: dict[str, dict[str, int]] = {}

# Containers that may hold GPUs: running ones, and new ones that are about to start.
_LIVE_STATES = ["created", "running", "restarting", "paused"]
# A container created this long ago and never started is a dead spawn, not a GPU holder.
CREATED_GRACE_S = 300
# What decides which GPUs a container holds, by container id: inspected once,
# since none of it changes while the container exists.
_gpu_facts: dict[str, dict] = {}
# The engine read in flight, shared by callers that need no read newer than it.
_engine_read: asyncio.Future | None = None


def _facts(info: dict) -> dict:
    """The parts of an inspected container that say which GPUs it holds; no secrets kept."""
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    return {
        "Id": info["Id"],
        "Name": (info.get("Name") or "").lstrip("/"),
        "Created": info.get("Created") or "1970-01-01T00:00:00Z",
        "HostConfig": {
            "DeviceRequests": host.get("DeviceRequests"),
            "Runtime": host.get("Runtime"),
        },
        "Config": {
            "Env": [e for e in config.get("Env") or [] if e.startswith("NVIDIA_VISIBLE_DEVICES=")],
            "Labels": config.get("Labels") or {},
        },
    }


class TFSpawner(DockerSpawner):
    """Start each user's server from a TensorFlow 2.9 Jupyter image, pinned by digest."""

    hub_name = Unicode(
        "jupyterhub",
        config=True,
        help="""
        Name of this hub, written to the ``tfspawner.hub`` label of every container.

        Containers are found and reconciled by this label, so two hubs that share
        one Docker engine must use different names.

        Example: ``c.TFSpawner.hub_name = "physics-101"``
        """,
    )

    images = Dict(
        value_trait=Unicode(),
        config=True,
        help="""
        The image catalogue: alias -> image reference pinned by digest.

        Profiles name an alias. Every reference must be ``name@sha256:<digest>``
        or ``name:tag@sha256:<digest>``; the hub refuses to start otherwise
        (see ``allow_unpinned_images``). ``tfspawner images pin REF`` prints the
        pinned form of a tag.

        Example::

            c.TFSpawner.images = {
                "tf-gpu": "registry.example.edu/tf/2.9-gpu-jupyter@sha256:...",
                "tf-cpu": "registry.example.edu/tf/2.9-jupyter@sha256:...",
            }

        When empty, ``image`` is the only image, under the alias ``default``.
        """,
    )

    image_catalogue_file = Unicode(
        "",
        config=True,
        help="""
        A JSON image catalogue that ``tfspawner images rebuild`` and ``rollback``
        write: each alias's current pin overrides or extends ``images``.

        Read at each spawn, so a new pin reaches the next start without a hub
        restart, while running servers keep the image they started from
        (``tfspawner images status`` lists them). An absent file counts as
        empty, so the hub may be set up before the first rebuild; a malformed
        one refuses spawns with a message naming the file.

        Example: ``c.TFSpawner.image_catalogue_file = "/srv/jupyterhub/image-catalogue.json"``

        Every pin in it must be pinned by digest, whatever
        ``allow_unpinned_images`` says. Profiles may name its aliases.
        """,
    )

    profiles = List(
        Dict(),
        config=True,
        help="""
        What users can start. A list of dicts with the keys:

        - ``slug`` (required): lowercase letters, digits and ``-``; stored in
          ``user_options["profile"]``.
        - ``display_name`` (required) and ``description``.
        - ``image`` (required): an alias in ``images``.
        - ``gpus``: how many GPUs from ``gpu_pool``; 0 (the default) is a CPU profile.
        - ``cpu_limit``, ``mem_limit`` (``"4G"``), ``shm_size`` (``"2G"``):
          override the global limits.
        - ``groups``: only members of these hub groups may choose it; admins always may.
        - ``default``: preselected, and used when a spawn names no profile.

        Checked when the hub starts; a bad profile stops it with a message that
        names the profile and the key. When empty, one CPU profile runs the first
        image of ``images``, or ``image``.
        """,
    )

    gpu_pool = Union(
        [Unicode(), List(Union([Unicode(), Dict()]))],
        default_value=[],
        config=True,
        help="""
        GPUs that servers can be given, each to one server at a time.

        Either a list of device ids, indexes (``"0"``), UUIDs (``"GPU-..."``) or
        MIG ids (``"MIG-..."``), optionally as dicts with metadata shown to users
        (``{"id": "0", "name": "NVIDIA A100", "memory": "80GB"}``), or ``"auto"``
        to discover every GPU through NVML when the hub starts
        (``pip install tfspawner[nvml]``; the hub stops if NVML is missing).

        Assignments are written to container labels and spawner state, and are
        rebuilt from the running containers when the hub restarts.
        """,
    )

    gpu_limit_per_user = Int(
        None,
        allow_none=True,
        config=True,
        help="""
        Most GPUs one user may hold at once, across all their servers (named
        servers count). ``None`` means no cap beyond the pool's size.
        """,
    )

    gpu_limit_per_group = Dict(
        value_trait=Int(),
        config=True,
        help="""
        GPU caps per hub group, e.g. ``{"lab": 4, "students": 1}``.

        A user in several capped groups gets the largest of their caps; a user in
        none gets ``gpu_limit_per_user``.
        """,
    )

    allow_unpinned_images = Bool(
        False,
        config=True,
        help="""
        Allow image references that are not pinned by digest.

        By default every image must be pinned, because whoever controls a tag can
        move it during a term. Meant for development only; a warning is logged
        at start-up and for every unpinned spawn.
        """,
    )

    shm_size = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""
        Size of /dev/shm, e.g. ``"1G"``. Docker's default of 64M breaks PyTorch and
        TensorFlow data loaders. A profile's ``shm_size`` overrides it.
        """,
    )

    pids_limit = Int(
        1024,
        config=True,
        help="""
        Maximum number of processes and threads in a user container.

        Stops a fork bomb in one notebook from starving the whole host. TensorFlow
        starts many threads per core, so keep this well above a few hundred.
        """,
    )

    engine_threads = Int(
        1,
        min=1,
        config=True,
        help="""
        How many calls to the Docker engine may run at the same time.

        Like DockerSpawner, TFSpawner makes the engine calls of all servers on
        one thread by default, so container starts happen one after another in
        the order the spawns arrived. When a whole class logs in and the host's
        CPUs are the limit, that is the fastest choice: on a 2-CPU host with
        8 threads, the median student of a class of 50 waited 12-20% longer
        than with DockerSpawner, because servers that boot all at once share
        the CPUs until the last is done (docs/benchmarks.md). Image pulls do
        not use these threads: a long pull never holds up other users'
        spawns, stops and polls.

        Example: ``c.TFSpawner.engine_threads = 4`` on a host with many idle
        cores per spawning user.

        Read when the hub makes its first engine call; changing it needs a hub
        restart. The Docker client keeps as many connections open.
        """,
    )

    @property
    def executor(self):
        return _shared_executor("engine", self.engine_threads)

    @default("client_kwargs")
    def _default_client_kwargs(self):
        # urllib3 keeps 10 connections per pool by default; more threads than
        # that would open and throw away a connection per call.
        return {"max_pool_size": max(10, self.engine_threads)}

    cap_add = List(
        Unicode(),
        config=True,
        help="""
        Linux capabilities added back after all are dropped.

        User containers run with ``--cap-drop ALL``; the single-user server needs
        none. Example: ``["SYS_PTRACE"]`` to let users run debuggers.
        """,
    )

    allow_unsafe_container_settings = List(
        Unicode(),
        config=True,
        help="""
        Settings that may reach user containers although tfspawner refuses them.

        ``extra_host_config`` and ``extra_create_kwargs`` may use only the keywords
        on tfspawner's allowlist (limits, DNS, logging, a few harmless capabilities
        such as ``SYS_PTRACE``, namespaced ``net.*`` sysctls...), each with a check
        of its value; ``cap_add`` and ``network_name`` get the same checks; and no
        bind source in ``volumes``, ``read_only_volumes``, ``mounts``, ``binds`` or
        a profile's ``datasets`` may be, contain or lie inside the host's system
        directories (``/etc``, ``/proc``, ``/dev``, ``/run``, ``/var/lib/docker``...).
        Otherwise the hub refuses to start, naming the setting and the key.

        Each entry lifts one refusal: a keyword, which may then take any value
        (``"devices"``, ``"security_opt"``, ``"entrypoint"``), or an absolute
        host path that may then be bound, exactly as named. Example::

            c.TFSpawner.allow_unsafe_container_settings = ["devices", "/etc/localtime"]

        A warning is logged at every hub start and every spawn that uses an entry.
        Some things stay refused whatever this says, because they hand the user
        the host: privileged containers; the host's network, PID, IPC, UTS, user
        or cgroup namespace; the Docker socket and every directory above it (``/``,
        ``/var``, ``/run``); and an ``extra_create_kwargs`` that sets the image,
        the user, the container name or the host config. Symlinks on the Docker
        host are not followed: bind only directories you control.
        """,
    )

    uid_strategy = Unicode(
        "stable",
        config=True,
        help="""
        How a user's container uid (and gid) is chosen:

        - ``"stable"``: ``uid_base`` + the hub's user id, with gid ``gid``;
          a user whose uid was already given to someone else (a reused hub
          id) gets the next unused one (see ``uid_registry_file``).
        - ``"static"``: looked up in ``uid_map``.
        - ``"passwd"``: the host's passwd/NSS database (``pwd.getpwnam``), for
          university hosts that use LDAP, so files on shared storage keep the
          owner they have everywhere else.
        - ``"callable"``: ``uid_callable(spawner)``, sync or async, returning a
          uid, ``"uid:gid"`` or ``(uid, gid)``.

        A uid or gid of 0 is refused at spawn: user containers never run as root.
        Once given, a uid is never given to another user (``uid_registry_file``).
        """,
    )

    uid_registry_file = Unicode(
        "tfspawner-uids.json",
        config=True,
        help="""
        File that records every uid given to a user, so that no uid is ever
        given to another user.

        Hub user ids are not enough on their own: SQLite gives a deleted user's
        id to the next user created, and a database restored from a backup
        forgets users created since. With ``uid_strategy = "stable"`` a user
        whose ``uid_base`` + id was already given gets the next unused uid
        instead; with the other strategies such a spawn is refused with a
        message for the admin. The file only grows. A relative path is relative
        to the hub's working directory (where the SQLite database lives by
        default).

        Keep it with the hub's state, but do not restore it from an older
        backup than the newest copy you have: uids given since would be lost.
        If it is lost, the uids recorded on the hub's notebook volumes are used.

        Example: ``c.TFSpawner.uid_registry_file = "/srv/jupyterhub/tfspawner-uids.json"``
        """,
    )

    passwd_min_uid = Int(
        1000,
        config=True,
        help="""
        With ``uid_strategy = "passwd"``, the lowest uid a user may run as.

        Accounts below it are the host's system accounts (``daemon``,
        ``www-data``); a hub user with such a name must not get their files.
        """,
    )

    uid_base = Int(
        100000,
        config=True,
        help="""
        With ``uid_strategy = "stable"``, a user's uid is ``uid_base`` + their hub
        user id. Pick a base above the uids used on the host.
        """,
    )

    gid = Int(
        100,
        config=True,
        help="""
        Container gid when a strategy gives only a uid. 100 is ``users`` on
        Debian and Ubuntu. 0 is refused.
        """,
    )

    uid_map = Dict(
        config=True,
        help="""
        With ``uid_strategy = "static"``: username -> uid, ``"uid:gid"`` or
        ``(uid, gid)``. Users not in the map cannot start a server.
        """,
    )

    uid_callable = Any(
        None,
        allow_none=True,
        config=True,
        help="""
        With ``uid_strategy = "callable"``: ``f(spawner)`` returning a uid,
        ``"uid:gid"`` or ``(uid, gid)``; may be async.
        """,
    )

    volume_per_server = Bool(
        False,
        config=True,
        help="""
        Give each named server its own notebook volume. By default a user's
        named servers share the volume of their default server.
        """,
    )

    volume_host_root = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""
        Keep notebooks in directories under this host path instead of named
        volumes, e.g. ``"/srv/jupyter-homes"`` (which must exist).

        Each user's directory is ``<root>/<escaped volume name>``, created on
        first use and owned by the user's uid. Escaped names contain only
        ``[a-z0-9-]``, so no username can reach outside the root.
        """,
    )

    remove_volumes_on_user_delete = Bool(
        False,
        config=True,
        help="""
        Delete a user's notebook volume when the user (or, with
        ``volume_per_server``, the named server) is deleted from the hub.

        Off by default: stopping or deleting never destroys students' work
        unless an admin asks for it here. Host directories
        (``volume_host_root``) are never deleted.
        """,
    )

    shm_size_per_gpu = Unicode(
        "2G",
        config=True,
        help="""
        /dev/shm per GPU for GPU profiles that set no ``shm_size``. NCCL and
        data loaders exchange tensors through /dev/shm; Docker's 64M default
        makes multi-GPU jobs fail.
        """,
    )

    options_form_template = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""
        Path to a Jinja2 template that replaces the built-in options form.
        It is rendered with autoescape on and gets ``choices`` (each with
        ``profile``, ``available``, ``availability`` and ``resources``),
        ``selected`` (a slug) and ``notice`` (why the last server stopped).
        The submitted form must contain only a ``profile`` field.
        """,
    )

    # Set by _prepare_volume when this start created the volume; cleared once handed over.
    _unseeded_volume: str | None = None

    @default("cmd")
    def _default_cmd(self):
        # The TF images' CMD is `bash -c "... jupyter notebook ..."`, which
        # would swallow the arguments the hub appends.
        return ["jupyterhub-singleuser"]

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return "/tf"

    @default("remove")
    def _default_remove(self):
        # A restarted container would keep its old host config, GPUs included.
        return True

    @default("prefix")
    def _default_prefix(self):
        return "tfspawner"

    def _object_name_default(self):
        # Hub, user and server escaped injectively: two hubs on one engine, or
        # two users whose names escape alike, never get the same container.
        parts = [self.hub_name, self.user.name] + ([self.name] if self.name else [])
        return f"{self.prefix}-{naming.join(*parts)}"

    @validate("image")
    def _validate_image(self, proposal):
        # Syntax only: whether pins are required depends on another trait,
        # which may be loaded later. check_config enforces the pin.
        try:
            imageref.parse(proposal.value)
        except imageref.InvalidImageReference as e:
            raise ConfigError(f"TFSpawner.image: {e}") from None
        return proposal.value

    # --- config --------------------------------------------------------------------

    def check_config(self) -> tuple[dict[str, imageref.ImageRef], list[profiles.Profile]]:
        """Validate the settings that depend on each other; raise ConfigError naming one."""
        try:
            from_file = self.catalogue_pins()
        except catalogue.CatalogueError as e:
            raise ConfigError(f"TFSpawner.image_catalogue_file: {e}") from None
        merged = {**self.images, **from_file}
        entries = merged or {IMPLICIT_PROFILE: self.image}
        setting = "TFSpawner.images" if merged else "TFSpawner.image"
        refs = {}
        for alias, reference in entries.items():
            where = f"{setting}[{alias!r}]" if merged else setting
            if alias in from_file:
                where = f"{self.image_catalogue_file}[{alias!r}]"
            try:
                ref = imageref.parse(reference)
            except imageref.InvalidImageReference as e:
                raise ConfigError(f"{where}: {e}") from None
            if not ref.pinned and not self.allow_unpinned_images:
                raise ConfigError(
                    f"{where}: {reference!r} is not pinned by digest. Use "
                    "'name@sha256:<digest>' (`tfspawner images pin REF` prints it), or set "
                    "TFSpawner.allow_unpinned_images = True for development."
                )
            refs[alias] = ref
        raw_profiles = self.profiles or [
            {"slug": IMPLICIT_PROFILE, "display_name": "Default", "image": next(iter(refs))}
        ]
        try:
            checked = profiles.validate_profiles(raw_profiles, refs)
        except profiles.ProfileError as e:
            raise ConfigError(f"TFSpawner.profiles: {e}") from None
        if self.shm_size is not None:
            try:
                limits.parse_bytes(self.shm_size)
            except ValueError as e:
                raise ConfigError(f"TFSpawner.shm_size: {e}") from None
        if self.uid_strategy not in identity.STRATEGIES:
            raise ConfigError(
                f"TFSpawner.uid_strategy: {self.uid_strategy!r} is not one of "
                f"{', '.join(identity.STRATEGIES)}"
            )
        if self.uid_strategy == "callable" and not callable(self.uid_callable):
            raise ConfigError("TFSpawner.uid_callable: must be set when uid_strategy is 'callable'")
        try:
            limits.parse_bytes(self.shm_size_per_gpu)
        except ValueError as e:
            raise ConfigError(f"TFSpawner.shm_size_per_gpu: {e}") from None
        if self.volume_host_root is not None and not self.volume_host_root.startswith("/"):
            raise ConfigError("TFSpawner.volume_host_root: must be an absolute path")
        if self.options_form_template:
            try:
                form.environment(self.options_form_template).get_template(
                    os.path.basename(self.options_form_template)
                )
            except Exception as e:
                raise ConfigError(f"TFSpawner.options_form_template: {e}") from None
        for name, cap in [("gpu_limit_per_user", self.gpu_limit_per_user)] + [
            (f"gpu_limit_per_group[{g!r}]", c) for g, c in self.gpu_limit_per_group.items()
        ]:
            if cap is not None and cap < 0:
                raise ConfigError(f"TFSpawner.{name}: must be 0 or more, not {cap}")
        try:
            # Callables are checked at each spawn, with the user they depend on.
            unsafe = allowlist.check_admin_settings(
                extra_host_config=self.extra_host_config,
                extra_create_kwargs=self.extra_create_kwargs,
                volumes=self.volumes,
                read_only_volumes=self.read_only_volumes,
                mounts=self.mounts,
                datasets={p.slug: [d.source for d in p.datasets] for p in checked},
                cap_add=self.cap_add,
                network_name=self.network_name,
                allow_unsafe=self.allow_unsafe_container_settings,
            )
        except allowlist.UnsafeContainerConfig as e:
            raise ConfigError(str(e)) from None
        if unsafe:
            self.log.warning(
                "%s lets these unchecked settings into user containers: %s",
                allowlist.ESCAPE_SETTING,
                "; ".join(unsafe),
            )
        return refs, checked

    def catalogue_pins(self) -> dict[str, str]:
        """The current pins of ``image_catalogue_file``, read now; {} when none is set."""
        if not self.image_catalogue_file:
            return {}
        return catalogue.current_pins(catalogue.load(self.image_catalogue_file))

    def configured_gpus(self) -> list[gpupool.GPU]:
        if self.gpu_pool == "auto":
            try:
                return nvml.discover()
            except nvml.GPUDiscoveryError as e:
                raise ConfigError(str(e)) from None
        if isinstance(self.gpu_pool, str):
            raise ConfigError(
                f"TFSpawner.gpu_pool: {self.gpu_pool!r} must be 'auto' or a list of GPU ids"
            )
        try:
            return gpupool.parse_pool(self.gpu_pool)
        except ValueError as e:
            raise ConfigError(f"TFSpawner.gpu_pool: {e}") from None

    # --- the shared pool -----------------------------------------------------------

    @property
    def owner(self) -> Owner:
        return Owner(self.user.name, self.name)

    async def hub_context(self) -> HubContext:
        """The process-wide pool, rebuilt from the engine's labels on first use."""
        context = _contexts.get(self.hub_name)
        if context is None:
            context = _contexts.setdefault(
                self.hub_name, HubContext(GPUPool(self.configured_gpus()), asyncio.Lock())
            )
        if not context.reconciled:
            async with context.lock:
                if not context.reconciled:
                    await self._reconcile(context.pool)
                    context.reconciled = True
                    metrics.update(context.pool)
        return context

    async def _reconcile(self, pool: GPUPool) -> None:
        """Running labelled containers hold their GPUs; ids with no running container are free."""
        containers = await self.docker(
            "containers", filters=containerspec.label_filters(self.hub_name)
        )
        for container in containers:
            labels = container.get("Labels") or {}
            ids = containerspec.gpus_from_labels(labels)
            if not ids:
                continue
            owner = Owner(
                labels.get(containerspec.LABEL_USER, ""),
                labels.get(containerspec.LABEL_SERVER, ""),
            )
            try:
                pool.restore(
                    owner,
                    ids,
                    since=container.get("Created"),
                    profile=labels.get(containerspec.LABEL_PROFILE, ""),
                )
            except gpupool.PoolConflict as e:
                self.log.error("GPU labels of %s conflict: %s", container.get("Names"), e)
                continue
            self.log.info("Restored GPUs %s of %s from container labels", ",".join(ids), owner)

    async def _read_engine(self, *, fresh: bool = False) -> list[dict]:
        """Every live container on the engine, whoever started it, with what holds GPUs.

        Concurrent callers share one read unless ``fresh`` asks for one that
        starts now, after something the caller just did.
        """
        global _engine_read
        if not fresh and _engine_read is not None and not _engine_read.done():
            return await asyncio.shield(_engine_read)
        read = asyncio.ensure_future(self._list_live_containers())
        if not fresh:
            _engine_read = read
        return await asyncio.shield(read)

    async def _list_live_containers(self) -> list[dict]:
        listed = await self.docker("containers", all=True, filters={"status": _LIVE_STATES})
        now = time.time()
        found = []
        for container in listed:
            if container.get("State") == "created" and now - container.get("Created", now) > (
                CREATED_GRACE_S
            ):
                continue
            facts = _gpu_facts.get(container["Id"])
            if facts is None:
                try:
                    info = await self.docker("inspect_container", container["Id"])
                except NotFound:
                    continue
                facts = _gpu_facts[container["Id"]] = _facts(info)
            found.append(facts)
        for gone in set(_gpu_facts) - {container["Id"] for container in listed}:
            _gpu_facts.pop(gone, None)
        return found

    def _engine_holdings(self, pool: GPUPool, containers: list[dict]) -> list[EngineHolding]:
        names = pool.names()
        holdings = []
        for facts in containers:
            labels = facts["Config"]["Labels"]
            owner = containerspec.owner_from_labels(labels)
            ids = containerspec.gpus_in_use(facts, names)
            if owner is not None:
                # A tfspawner container's labels are its record of what it holds.
                labelled = [names[i] for i in containerspec.gpus_from_labels(labels) if i in names]
                ids = tuple(dict.fromkeys([*ids, *labelled]))
            if not ids:
                continue
            hub = labels.get(containerspec.LABEL_HUB, "") if owner else ""
            holdings.append(
                EngineHolding(
                    container=facts["Name"],
                    ids=ids,
                    since=containerspec.created_ns(facts["Created"]) / 1e9,
                    ours=hub == self.hub_name and containerspec.LABEL_INIT not in labels,
                    hub=hub,
                    owner=owner,
                    profile=labels.get(containerspec.LABEL_PROFILE, ""),
                )
            )
        return holdings

    async def observe_engine(self, context: HubContext) -> None:
        """Count every GPU that any live container on the engine holds as taken."""
        containers = await self._read_engine()
        context.pool.observe_engine(self._engine_holdings(context.pool, containers))
        metrics.update(context.pool)

    async def _claim_gpus_on_engine(self, container_id: str) -> None:
        """After creating the container: if another hub's container took the same GPU, yield.

        Two hubs may pick the same free GPU at the same moment. Every claimant
        checks after creating its container, and the container created first
        keeps the GPU, so exactly one of them starts.
        """
        context = await self.hub_context()
        containers = await self._read_engine(fresh=True)
        order = {c["Id"]: (containerspec.created_ns(c["Created"]), c["Id"]) for c in containers}
        mine = order.get(container_id)
        names = context.pool.names()
        for facts in containers:
            if mine is None or order[facts["Id"]] >= mine:
                continue
            taken = set(containerspec.gpus_in_use(facts, names)) & set(self.gpu_ids)
            if taken:
                self.log.warning(
                    "GPU %s of %s was taken at the same moment by container %s; not starting",
                    ",".join(sorted(taken)),
                    self.owner,
                    facts["Name"],
                )
                context.pool.observe_engine(self._engine_holdings(context.pool, containers))
                raise spawn_refused(
                    "The GPU picked for your server was taken by another server at the same "
                    "moment, so yours was not started. Please start it again, or pick a CPU "
                    "profile.",
                    reason="gpu-unavailable",
                    status_code=503,
                )

    async def sweep(self, running: set[Owner]) -> None:
        """Clean up after a hub that died, without ever removing a running container.

        A container that is not running and that no running server owns is a
        spawn the hub never finished (or a helper): it is removed. A running
        container that the hub's database does not know keeps running and keeps
        its GPUs; its user's next start adopts it. Notebook volumes are left alone.
        """
        context = await self.hub_context()
        containers = await self.docker(
            "containers", all=True, filters=containerspec.label_filters(self.hub_name)
        )
        for container in containers:
            labels = container.get("Labels") or {}
            owner = Owner(
                labels.get(containerspec.LABEL_USER, ""),
                labels.get(containerspec.LABEL_SERVER, ""),
            )
            helper = containerspec.LABEL_INIT in labels
            if owner in running and not helper:
                continue
            if container.get("State") in ("running", "paused", "restarting"):
                if not helper:
                    self.log.warning(
                        "Keeping running container %s of %s: the hub does not know this server "
                        "(was its database lost or restored?). It keeps its GPUs %s; its user's "
                        "next start adopts it, or `tfspawner gpus --remove %s` removes it.",
                        container.get("Names"),
                        owner,
                        ",".join(containerspec.gpus_from_labels(labels)) or "(none)",
                        owner,
                    )
                    # Held from now on through the engine's view, as not known to the hub.
                    context.pool.release(owner)
                continue
            self.log.warning(
                "Removing container %s of %s: %s, and no running server owns it",
                container.get("Names"),
                owner,
                container.get("State"),
            )
            await self.docker("remove_container", container["Id"], force=True)
            if owner not in running and context.pool.release(owner):
                self.log.info("Released the GPUs of %s", owner)
        await self.observe_engine(context)

    async def stale_servers(self) -> list[dict]:
        """This hub's running servers on another digest than their alias's current pin."""
        refs, checked = self.check_config()
        containers = await self.docker(
            "containers", filters=containerspec.label_filters(self.hub_name)
        )
        return catalogue.stale_servers(
            containerspec.server_records(containers),
            {p.slug: p.image for p in checked},
            {alias: str(ref) for alias, ref in refs.items()},
        )

    async def unknown_servers(self, known: set[Owner]) -> list[dict]:
        """This hub's running servers that its database does not know, as the engine sees them."""
        containers = await self.docker(
            "containers", filters=containerspec.label_filters(self.hub_name)
        )
        return [
            record
            for record in containerspec.server_records(containers)
            if Owner(record["user"], record["server"]) not in known
        ]

    async def _release_gpus(self, why: str) -> None:
        context = await self.hub_context()
        released = context.pool.release(self.owner)
        self.gpu_ids = []
        if released:
            metrics.update(context.pool)
            self.log.info("Released GPUs %s of %s (%s)", ",".join(released), self.owner, why)

    # --- state ---------------------------------------------------------------------

    gpu_ids = List(Unicode())
    profile_slug = Unicode("")
    # Why the last server stopped on its own; shown on the next visit.
    stop_reason = Unicode("")

    def get_state(self):
        state = super().get_state()
        if self.object_id:
            state["gpu_ids"] = list(self.gpu_ids)
        # Kept after a stop: the next spawn preselects it and explains the stop.
        if self.profile_slug:
            state["profile"] = self.profile_slug
        if self.stop_reason:
            state["stop_reason"] = self.stop_reason
        return state

    def load_state(self, state):
        super().load_state(state)
        self.gpu_ids = state.get("gpu_ids", [])
        self.profile_slug = state.get("profile", "")
        self.stop_reason = state.get("stop_reason", "")

    def clear_state(self):
        # JupyterHub clears state on every stop; the profile and stop reason
        # outlive the server on purpose.
        super().clear_state()
        self.gpu_ids = []

    async def _sync_gpus_with_pool(self) -> None:
        """After a restart the labels win: take this server's ids from the pool."""
        context = await self.hub_context()
        held = context.pool.ids_of(self.owner)
        if held != list(self.gpu_ids):
            if self.gpu_ids:
                self.log.warning(
                    "Hub database says %s holds GPUs %s, container labels say %s; using the labels",
                    self.owner,
                    ",".join(self.gpu_ids) or "none",
                    ",".join(held) or "none",
                )
            self.gpu_ids = held

    # --- identity ------------------------------------------------------------------

    async def resolve_ids(self) -> tuple[int, int]:
        """This user's ``(uid, gid)``; refuse the spawn with a clear message if unsafe."""
        try:
            if self.uid_strategy == "callable":
                value = self.uid_callable(self)
                if inspect.isawaitable(value):
                    value = await value
                uid, gid = identity.parse_ids(value, self.gid, "TFSpawner.uid_callable")
            else:
                uid, gid = identity.resolve(
                    self.uid_strategy,
                    username=self.user.name,
                    hub_user_id=self.user.id,
                    base=self.uid_base,
                    default_gid=self.gid,
                    static_map=self.uid_map,
                    passwd_lookup=_passwd_ids,
                    passwd_min_uid=self.passwd_min_uid,
                )
            identity.container_user(uid, gid)
        except identity.UnsafeIdentity as e:
            raise spawn_refused(
                f"Your server cannot start: {e}. Please tell the hub's administrator.",
                reason="identity",
            ) from None
        try:
            uid = UidRegistry(self.uid_registry_file).claim(
                self.user.name,
                uid,
                movable=self.uid_strategy == "stable",
                seen=await self._volume_uids(),
            )
        except UidTaken as e:
            self.log.error("Not starting %s: %s (TFSpawner.uid_registry_file)", self.owner, e)
            raise spawn_refused(
                "Your server cannot start: the user id it would run as belonged to another "
                "account. Please tell the hub's administrator.",
                reason="identity",
                status_code=500,
            ) from None
        return uid, gid

    async def _volume_uids(self) -> dict[str, int]:
        """user -> uid from this hub's notebook volumes, read once per hub process."""
        seen = _volume_uids.get(self.hub_name)
        if seen is None:
            found = await self.docker(
                "volumes",
                filters={"label": [f"{containerspec.LABEL_HUB}={self.hub_name}", LABEL_UID]},
            )
            seen = {}
            for volume in found.get("Volumes") or []:
                labels = volume.get("Labels") or {}
                with contextlib.suppress(KeyError, ValueError):
                    seen[labels[containerspec.LABEL_USER]] = int(labels[LABEL_UID])
            seen = _volume_uids.setdefault(self.hub_name, seen)
        return seen

    @property
    def passwd_name(self) -> str:
        return identity.passwd_name(self.user.name, "u-" + naming.escape(self.user.name))

    async def _account_files(self, container_id: str) -> list[archive.Member]:
        """The image's passwd and group with this user added, so `whoami` names the hub user."""
        if imageref.parse(self.image).pinned:
            try:
                texts = await _read_once(
                    ("accounts", self.image), partial(self._read_account_files, container_id)
                )
            except Exception:
                # The shared read used another spawn's container, which may be gone.
                texts = await self._read_account_files(container_id)
        else:
            texts = await self._read_account_files(container_id)
        passwd, group = identity.with_user(
            texts["passwd"],
            texts["group"],
            name=self.passwd_name,
            uid=self._ids[0],
            gid=self._ids[1],
            home=self.notebook_dir,
        )
        return [archive.text_file("etc/passwd", passwd), archive.text_file("etc/group", group)]

    async def _read_account_files(self, container_id: str) -> dict[str, str]:
        texts = {}
        for name in ("passwd", "group"):
            stream, _ = await self.docker("get_archive", container_id, f"/etc/{name}")
            texts[name] = archive.read_text(b"".join(stream), name)
        return texts

    # --- volumes -------------------------------------------------------------------

    @property
    def volume_name(self) -> str:
        return volumes.volume_name(
            self.hub_name, self.user.name, self.name, per_server=self.volume_per_server
        )

    def _volume_source(self) -> str:
        if self.volume_host_root:
            return volumes.host_path(self.volume_host_root, self.volume_name)
        return self.volume_name

    async def _prepare_volume(self) -> None:
        """Create the user's volume on first use; it is handed over in ``create_object``."""
        self._unseeded_volume = None
        uid, gid = self._ids
        if self.volume_host_root:
            mount = "/mnt/tfspawner-root"
            script = volumes.bind_init_script(mount, self.volume_name, uid, gid)
            await self._run_init(script, {self.volume_host_root: {"bind": mount, "mode": "rw"}})
            return
        try:
            volume = await self.docker("inspect_volume", self.volume_name)
        except NotFound:
            volume = None
        if volume is not None:
            owner = (volume.get("Labels") or {}).get(LABEL_UID)
            if owner is not None and owner != str(uid):
                self._refuse_storage_of_another_uid(self.volume_name, owner)
            return
        self._report("Creating your notebook volume", 15)
        labels = containerspec.labels(
            hub=self.hub_name, user=self.user.name, server=self.name, image=self.image
        )
        labels[LABEL_UID] = str(uid)
        await self.docker("create_volume", name=self.volume_name, labels=labels)
        (await self._volume_uids()).setdefault(self.user.name, uid)
        self._unseeded_volume = self.volume_name

    def _refuse_storage_of_another_uid(self, where: str, owner: str) -> None:
        self.log.error(
            "Not starting %s: its notebook storage %s belongs to uid %s, not to its uid %s. "
            "Check TFSpawner.uid_registry_file, or move the storage aside.",
            self.owner,
            where,
            owner,
            self._ids[0],
        )
        raise spawn_refused(
            "Your server cannot start: your notebook storage belongs to another user id. "
            "Please tell the hub's administrator; your files have not been touched.",
            reason="volume",
            status_code=500,
        )

    async def _volume_seed(self) -> list[archive.Member]:
        """What hands a new volume, with what the image keeps in the notebook directory, to the user.

        Written through the user's container before it starts, with the owner
        in each tar entry: no root container is needed.
        """
        if imageref.parse(self.image).pinned:
            image_files = await _read_once(
                ("notebook_dir", self.image, self.notebook_dir), self._read_image_notebook_dir
            )
        else:
            image_files = await self._read_image_notebook_dir()
        return volumes.seed_members(image_files, self.notebook_dir, *self._ids)

    async def _read_image_notebook_dir(self) -> bytes | None:
        """The image's files in the notebook directory, from a container that never starts."""
        container = await self.docker(
            "create_container",
            image=self.image,
            network_disabled=True,
            labels=self._helper_labels(),
            environment=containerspec.gpu_environment([]),
            host_config=self.client.create_host_config(**containerspec.helper_host_config()),
        )
        try:
            stream, _ = await self.docker("get_archive", container["Id"], self.notebook_dir)
            return b"".join(stream)
        except NotFound:
            return None
        finally:
            await self.docker("remove_container", container["Id"], force=True)

    def _helper_labels(self) -> dict:
        # Managed, so the start-up sweep finds helpers a dead hub left behind.
        return {
            containerspec.LABEL_MANAGED: "true",
            containerspec.LABEL_HUB: self.hub_name,
            containerspec.LABEL_USER: self.user.name,
            containerspec.LABEL_SERVER: self.name,
            containerspec.LABEL_INIT: "true",
        }

    async def _remove_unseeded_volume(self) -> None:
        # Created by this start and never handed over: it is empty, nothing is lost.
        name, self._unseeded_volume = self._unseeded_volume, None
        if not name:
            return
        try:
            await self.docker("remove_volume", name)
        except Exception:
            self.log.exception("Could not remove the unused new volume %s", name)

    async def _run_init(self, script: str, binds: dict) -> None:
        """Run ``script`` as root in a throwaway container that can only change ownership."""
        host_config = self.client.create_host_config(
            **containerspec.helper_host_config(
                binds=binds, cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"]
            )
        )
        container = await self.docker(
            "create_container",
            image=self.image,
            entrypoint=["/bin/sh", "-c"],
            command=[script],
            user="0:0",
            labels=self._helper_labels(),
            environment=containerspec.gpu_environment([]),
            host_config=host_config,
        )
        try:
            await self.docker("start", container["Id"])
            result = await self.docker("wait", container["Id"], timeout=120)
            if result.get("StatusCode") == volumes.OWNED_BY_ANOTHER_UID:
                self._refuse_storage_of_another_uid(self._volume_source(), "another uid")
            if result.get("StatusCode") != 0:
                logs = (await self.docker("logs", container["Id"])).decode(errors="replace")
                self.log.error("Volume set-up for %s failed: %s", self.owner, logs.strip())
                raise spawn_refused(
                    "Your notebook storage could not be prepared, so your server was not "
                    "started. Please tell the hub's administrator.",
                    reason="volume",
                    status_code=500,
                )
        finally:
            await self.docker("remove_container", container["Id"], force=True)

    async def delete_forever(self):
        if self.volume_host_root or not self.remove_volumes_on_user_delete:
            self.log.info("Keeping the notebooks of %s in %s", self.owner, self._volume_source())
            return
        if self.name and not self.volume_per_server:
            return  # the shared volume belongs to the user, not this named server
        try:
            await self.docker("remove_volume", self.volume_name)
            self.log.info("Removed volume %s of deleted %s", self.volume_name, self.owner)
        except NotFound:
            pass

    # --- options -------------------------------------------------------------------

    def _user_groups(self) -> list[str]:
        return [group.name for group in getattr(self.user, "groups", [])]

    def _allowed(self, available: list[profiles.Profile]) -> list[profiles.Profile]:
        is_admin = bool(getattr(self.user, "admin", False))
        return [p for p in available if p.allowed_for(self._user_groups(), is_admin)]

    def choose_profile(
        self, available: list[profiles.Profile], last: str | None = None
    ) -> profiles.Profile:
        try:
            return profiles.validate_user_options(
                self.user_options or {},
                available,
                groups=self._user_groups(),
                is_admin=bool(getattr(self.user, "admin", False)),
                last=self.profile_slug if last is None else last,
            )
        except profiles.OptionsError as e:
            raise spawn_refused(str(e), reason="options", status_code=400) from None

    async def get_options_form(self):
        """The profile form with live GPU availability; none if there is nothing to choose."""
        _, available = self.check_config()
        allowed = self._allowed(available)
        if len(allowed) <= 1 and not self.stop_reason:
            return ""
        context = await self.hub_context()
        try:
            await self.observe_engine(context)
        except Exception as e:
            # The form still renders; a GPU spawn reads the engine again anyway.
            self.log.warning("Could not read the engine's GPU holders for the form: %s", e)
        pool = context.pool
        choices = form.choices(
            allowed,
            free_gpus=len(pool.free()),
            total_gpus=pool.total,
            default_mem=self.mem_limit,
            default_cpu=self.cpu_limit,
        )
        linked = self._linked_profile()
        last = (
            (linked if linked in {p.slug for p in allowed} else "")
            or (self.user_options or {}).get("profile")
            or self.profile_slug
            or profiles.default_profile(available).slug
        )
        return form.render(
            choices,
            selected=last,
            notice=self.stop_reason,
            template_path=self.options_form_template,
        )

    def options_from_form(self, formdata):
        try:
            return profiles.options_from_form(formdata)
        except profiles.OptionsError as e:
            raise spawn_refused(str(e), reason="options", status_code=400) from None

    def options_from_query(self, query_data):
        """Start from a link only when it carries this session's XSRF token.

        JupyterHub starts a server from ``GET /hub/spawn?profile=...`` with no
        forgery check, so any web page could start GPU servers for whoever
        follows its link. Without the token the form is shown instead, with
        the linked profile preselected.
        """
        handler = self.handler
        token = handler.get_query_argument("_xsrf", None) if handler is not None else None
        if not token or not hmac.compare_digest(token.encode(), handler.xsrf_token):
            raise spawn_refused(
                "Check the server options below and press Start.",
                reason="options",
                status_code=200,
            )
        return self.options_from_form(query_data)

    def _linked_profile(self) -> str:
        """The profile a spawn link asked for, to preselect it in the form."""
        handler = self.handler
        if handler is None or handler.request.method != "GET":
            return ""
        return handler.get_query_argument("profile", "") or handler.get_query_argument(
            "opt-profile", ""
        )

    # --- progress ------------------------------------------------------------------

    def _report(self, message: str, progress: int) -> None:
        self._events.append({"progress": progress, "message": message})

    @property
    def _events(self) -> list[dict]:
        if not hasattr(self, "_event_list"):
            self._event_list = []
        return self._event_list

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not (self._spawn_pending or self._start_pending):
                break
            await asyncio.sleep(0.5)

    # --- image ---------------------------------------------------------------------

    async def _pull_and_verify(self, image):
        ref = imageref.parse(image)
        if not ref.pinned:
            self.log.warning("Starting %s from unpinned image %s", self._log_name, image)
            return await super().pull_image(image)
        self._verify_digest(ref, await self._local_image(ref))

    def _pull_refused(self, login_refused: bool = False):
        if login_refused:
            return spawn_refused(
                "The image for your server could not be downloaded because its registry "
                "did not accept the hub's login, so it was not started. Please tell the "
                "hub's administrator.",
                reason="image-registry-login",
                status_code=503,
            )
        return spawn_refused(
            "The image for your server could not be downloaded right now, so it was "
            "not started. Please try again later or tell the hub's administrator.",
            reason="image-pull",
            status_code=503,
        )

    def _pull_stream(
        self,
        ref: imageref.ImageRef,
        progress: PullProgress,
        credentials: registryauth.Credentials,
    ) -> None:
        """Runs in the executor: follow the engine's pull stream to the end."""
        repository, digest = ref.pull_args()
        # An empty auth_config is an anonymous pull; None would let docker-py
        # fall back on the config it read when the hub started.
        for event in self.client.pull(
            repository,
            tag=digest,
            stream=True,
            decode=True,
            auth_config=credentials.auth_config,
        ):
            progress.update(event)

    async def _local_image(self, ref: imageref.ImageRef) -> dict:
        """The engine's view of a pinned image, pulled by digest first if absent.

        Single-flight: concurrent spawns of one image share one look and at most
        one pull. The look is inside the shared part, so a spawn arriving just
        after a pull finished looks again and finds the image, instead of
        pulling it a second time.
        """
        key = str(ref)
        if key not in _image_lookups:
            lookup = _ImageLookup()
            lookup.task = asyncio.ensure_future(self._inspect_or_pull(ref, lookup))
            _image_lookups[key] = lookup
            lookup.task.add_done_callback(lambda _: _image_lookups.pop(key, None))
        lookup = _image_lookups[key]
        reported = -1
        while not lookup.task.done():
            if lookup.pulling and lookup.progress.percent != reported:
                reported = lookup.progress.percent
                # Map the pull onto 20-80% of the spawn's progress bar.
                self._report(f"Pulling image: {reported}%", 20 + reported * 60 // 100)
            await asyncio.wait([lookup.task], timeout=1)
        info = lookup.task.result()
        if lookup.pulling:
            self._report("Pulling image: 100%", 80)
        return info

    async def _inspect_or_pull(self, ref: imageref.ImageRef, lookup: _ImageLookup) -> dict:
        try:
            return await self.docker("inspect_image", str(ref))
        except (ImageNotFound, NotFound):
            pass
        if self.pull_policy == "never":
            raise spawn_refused(
                f"The image {ref} is not on this host. Please tell the hub's administrator.",
                reason="image",
                status_code=503,
            )
        registry = registryauth.registry_of(ref)
        lookup.pulling = True
        # Not on the engine-call threads, which every spawn, stop and poll needs.
        pulls = _shared_executor("pull", PULL_THREADS)
        credentials = None
        try:
            # A credential helper is a subprocess: off the event loop too.
            credentials = await asyncio.wrap_future(pulls.submit(registryauth.lookup, registry))
            self.log.info("Pulling %s by digest (login: %s)", ref, credentials.source)
            await asyncio.wrap_future(
                pulls.submit(self._pull_stream, ref, lookup.progress, credentials)
            )
        except (APIError, PullFailed, registryauth.CredentialError) as e:
            why = registryauth.redact(registryauth.reason(e), credentials)
            refused = isinstance(e, registryauth.CredentialError) or registryauth.refused(why)
            self.log.error(
                "Pulling %s from registry %s failed%s: %s",
                ref,
                registry,
                f" (the registry refused the login: {credentials.source})"
                if refused and credentials is not None
                else "",
                why,
            )
            raise self._pull_refused(login_refused=refused) from None
        try:
            return await self.docker("inspect_image", str(ref))
        except (ImageNotFound, NotFound):
            raise self._pull_refused() from None

    def _verify_digest(self, ref: imageref.ImageRef, image_info: dict) -> None:
        repo_digests = image_info.get("RepoDigests") or []
        if not any(ref.matches_repo_digest(entry) for entry in repo_digests):
            raise spawn_refused(
                f"The image for your server does not match its pinned digest {ref.digest}; "
                "it was not started. Please tell the hub's administrator.",
                reason="image-digest",
                status_code=500,
            )

    # --- lifecycle -----------------------------------------------------------------

    async def start(self):
        self._event_list = []
        self._pulled = None
        accepted = self.profile_slug
        try:
            return await self._start()
        except BaseException:
            # The hub stored the request's options before calling start; a refused
            # or failed start must not leave them behind for the next Start button.
            self._keep_options(accepted)
            raise

    def _keep_options(self, slug: str) -> None:
        self.profile_slug = slug
        self.user_options = {"profile": slug} if slug else {}
        if self.orm_spawner is not None:
            # JupyterHub 6's admin panel shows this in its Profile column.
            self.orm_spawner.user_options = dict(self.user_options)
            session = object_session(self.orm_spawner)
            if session is not None:
                session.commit()

    async def _start(self):
        try:
            refs, available = self.check_config()
        except ConfigError as e:
            raise spawn_refused(
                f"The hub is misconfigured ({e}). Please tell the hub's administrator.",
                reason="config",
                status_code=500,
            ) from None
        existing = await self.get_object()
        running = existing is not None and existing["State"].get("Running")
        labels = (existing or {}).get("Config", {}).get("Labels") or {}
        # A start that names no profile reconnects to a server the hub lost track of.
        last = (labels.get(containerspec.LABEL_PROFILE, "") if running else "") or self.profile_slug
        profile = self.choose_profile(available, last=last)
        self._profile = profile
        self.image = str(refs[profile.image])
        if profile.cpu_limit is not None:
            self.cpu_limit = profile.cpu_limit
        if profile.mem_limit is not None:
            self.mem_limit = profile.mem_limit
        self._ids = await self.resolve_ids()
        if running:
            address = await self._adopt_or_remove(existing, profile)
            if address is not None:
                self._keep_options(profile.slug)
                return address

        context = await self.hub_context()
        # A new start replaces whatever this server held before.
        context.pool.release(self.owner)
        self.gpu_ids = []
        if profile.gpus:
            # Other hubs' servers and containers no hub started hold GPUs too.
            await self.observe_engine(context)
            cap = gpupool.effective_cap(
                self.gpu_limit_per_user, self.gpu_limit_per_group, self._user_groups()
            )
            try:
                self.gpu_ids = context.pool.allocate(
                    self.owner, profile.gpus, user_cap=cap, profile=profile.slug
                )
            except gpupool.PoolError as e:
                raise spawn_refused(str(e), reason="gpu-unavailable", status_code=503) from None
            metrics.update(context.pool)
            names = ", ".join(context.pool.gpu(i).describe() for i in self.gpu_ids)
            self._report(f"Assigned {names}", 10)
        try:
            await self.pull_image(self.image)
            await self._prepare_volume()
            result = await super().start()
        except BaseException:
            await self._release_gpus("start failed")
            await self._remove_failed_container()
            await self._remove_unseeded_volume()
            raise
        self.stop_reason = ""
        self._keep_options(profile.slug)
        return result

    def _why_not_adopt(self, container: dict, profile: profiles.Profile) -> str | None:
        """Why a running container cannot serve this start as it is; None if it can."""
        labels = container["Config"].get("Labels") or {}
        if labels.get(containerspec.LABEL_IMAGE) != self.image:
            return "from another image"
        if labels.get(containerspec.LABEL_PROFILE) != profile.slug:
            return f"with another profile ({profiles.echo(labels.get(containerspec.LABEL_PROFILE, ''))})"
        if container["Config"].get("User") != identity.container_user(*self._ids):
            return "as another user id"
        if not _api_token(container):
            return "without a token the hub can use"
        return None

    async def _adopt_or_remove(self, container: dict, profile: profiles.Profile):
        """Take over this server's running container, kernels and all, if it fits the request.

        It is running because the hub lost track of it (a lost or restored
        database). Otherwise it is stopped first, and the user is told why.
        Returns the server's address when adopted.
        """
        why = self._why_not_adopt(container, profile)
        labels = container["Config"].get("Labels") or {}
        ids = containerspec.gpus_from_labels(labels)
        context = await self.hub_context()
        if why is None:
            context.pool.release(self.owner)
            try:
                context.pool.restore(
                    self.owner,
                    ids,
                    since=containerspec.created_ns(container["Created"]) / 1e9,
                    profile=profile.slug,
                )
            except gpupool.PoolConflict as e:
                why = f"with a GPU the hub has given to another server ({e})"
        if why is None:
            self.object_id = container["Id"]
            self.gpu_ids = ids
            # The server keeps the token it was started with; the hub stores it again.
            self.api_token = _api_token(container)
            metrics.update(context.pool)
            self.log.info("Adopting running container %s of %s", container["Name"], self.owner)
            self._report("Your server was still running: reconnected, kernels and all", 90)
            return await self.get_ip_and_port()
        self.log.warning(
            "Removing running container %s of %s before a new start: it runs %s",
            container["Name"],
            self.owner,
            why,
        )
        self._report(
            f"Your previous server was still running {why}, so it was stopped to start the one "
            "you asked for. Your saved files are safe.",
            5,
        )
        await self.docker("remove_container", container["Id"], force=True)
        self.object_id = ""
        return None

    async def _remove_failed_container(self) -> None:
        if not self.object_id:
            return
        try:
            await self.remove_object()
        except Exception:
            self.log.exception("Could not remove the container of failed start %s", self.owner)
        self.object_id = ""

    async def poll(self):
        await self._sync_gpus_with_pool()
        container = await self.get_object()
        if container is None:
            status = 0
        elif container["State"]["Running"]:
            return None
        else:
            state = container["State"]
            status = f"ExitCode={state['ExitCode']}, OOMKilled={state.get('OOMKilled')}"
            self.stop_reason = self._explain_exit(state, container["HostConfig"].get("Memory"))
        if not (self._spawn_pending or self._start_pending):
            await self._release_gpus(f"server not running: {status}")
            if container is not None and self.remove:
                # The hub does not call stop() for a server that died; clean up here.
                await self.remove_object()
        return status

    def _explain_exit(self, state: dict, memory: int | None) -> str:
        if state.get("OOMKilled"):
            limit = f" {limits.format_bytes(memory)}" if memory else ""
            return (
                f"Your server was stopped because it used more than its{limit} memory limit. "
                "Your saved files are safe; free memory in your notebooks (or pick a larger "
                "profile) and start it again."
            )
        return (
            f"Your server stopped unexpectedly (exit code {state.get('ExitCode')}). "
            "Your saved files are safe; start it again."
        )

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            await self._release_gpus("stopped")

    async def pull_image(self, image):
        """Pull by digest when absent, then check the local image carries the pin."""
        if getattr(self, "_pulled", None) == image:
            return
        await self._pull_and_verify(image)
        self._pulled = image

    # --- container -----------------------------------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(containerspec.gpu_environment(self.gpu_ids))
        env["HOME"] = self.notebook_dir
        return env

    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    def _shm_size(self, profile: profiles.Profile):
        if profile.shm_size is not None:
            return profile.shm_size
        if profile.gpus:
            return profile.gpus * limits.parse_bytes(self.shm_size_per_gpu)
        return self.shm_size

    def _binds(self, profile: profiles.Profile) -> dict:
        binds = dict(self.volume_binds)
        # nocopy: the image's files were copied in when the volume was made;
        # copying again into an empty volume would reset its owner to root.
        mode = "rw" if self.volume_host_root else "rw,nocopy"
        binds[self._volume_source()] = {"bind": self.notebook_dir, "mode": mode}
        for dataset in profile.datasets:
            binds[dataset.source] = {"bind": dataset.target, "mode": "ro"}
        return binds

    async def create_object(self):
        profile = self._profile
        extra_create = await self._evaluated(self.extra_create_kwargs)
        extra_host = await self._evaluated(self.extra_host_config)
        allowed = self.allow_unsafe_container_settings

        def misconfigured(error):
            return spawn_refused(
                f"The hub is misconfigured ({error}). Please tell the hub's administrator.",
                reason="config",
                status_code=500,
            )

        try:
            # What callables return depends on the user: checked here, at each spawn.
            unsafe = allowlist.check_admin_settings(
                extra_host_config=extra_host if callable(self.extra_host_config) else None,
                extra_create_kwargs=extra_create if callable(self.extra_create_kwargs) else None,
                allow_unsafe=allowed,
            )
        except allowlist.UnsafeContainerConfig as e:
            raise misconfigured(e) from None
        if unsafe:
            self.log.warning(
                "%s lets these unchecked settings into %s's container: %s",
                allowlist.ESCAPE_SETTING,
                self.user.name,
                "; ".join(unsafe),
            )
        host_kwargs = containerspec.host_config(
            extra=extra_host,
            network_mode=self.network_name,
            port_bindings=None if self.use_internal_ip else {self.port: (self.host_ip,)},
            binds=self._binds(profile),
            mounts=self.mount_binds,
            auto_remove=False,
            mem_limit=self.mem_limit,
            cpu_limit=self.cpu_limit,
            pids_limit=self.pids_limit,
            cap_add=self.cap_add,
            gpu_ids=self.gpu_ids,
            shm_size=self._shm_size(profile),
        )
        kwargs = containerspec.create_kwargs(
            image=self.image,
            name=self.container_name,
            command=await self.get_command(),
            environment=self.get_env(),
            labels=containerspec.labels(
                hub=self.hub_name,
                user=self.user.name,
                server=self.name,
                image=self.image,
                gpu_ids=self.gpu_ids,
                profile=profile.slug,
            ),
            user=identity.container_user(*self._ids),
            port=self.port,
            volumes=[],
            extra=extra_create,
        )
        try:
            # The finished call, the spawner's own values included.
            allowlist.check_create_call(host_kwargs, kwargs, allowed)
        except allowlist.UnsafeContainerConfig as e:
            raise misconfigured(e) from None
        kwargs["host_config"] = self.client.create_host_config(**host_kwargs)
        container = await self.docker("create_container", **kwargs)
        self.object_id = container["Id"]
        if self.gpu_ids:
            await self._claim_gpus_on_engine(container["Id"])
        await self._write_first_files(container["Id"])
        return container

    async def _write_first_files(self, container_id: str) -> None:
        """The passwd entry and, for a new volume, its hand-over: one archive, one engine call."""
        members = await self._account_files(container_id)
        if self._unseeded_volume:
            members += await self._volume_seed()
        await self.docker("put_archive", container_id, "/", archive.build(members))
        self._unseeded_volume = None


async def _read_once(key: tuple, read):
    """``await read()``, once per key for as long as it succeeds; callers share it."""
    task = _image_reads.get(key)
    if task is None:
        task = asyncio.ensure_future(read())
        _image_reads[key] = task
        task.add_done_callback(partial(_forget_failed_read, key))
    return await asyncio.shield(task)


def _forget_failed_read(key: tuple, read: asyncio.Future) -> None:
    # A failed read is not cached: the next spawn tries again.
    if read.cancelled() or read.exception() is not None:
        _image_reads.pop(key, None)


def _api_token(container: dict) -> str:
    for entry in container["Config"].get("Env") or []:
        key, _, value = entry.partition("=")
        if key == "JUPYTERHUB_API_TOKEN":
            return value
    return ""


def _passwd_ids(username: str) -> tuple[int, int]:
    entry = pwd.getpwnam(username)
    return entry.pw_uid, entry.pw_gid


def _install_hub_hooks() -> None:
    from . import hub

    hub.install()


_install_hub_hooks()
