"""TFSpawner's settings as traits: what an admin sets in ``jupyterhub_config.py``.

Only declarations and their help text live here; ``settings.py`` checks them
and turns them into one immutable object, and ``spawner.py`` does the work.
"""

from __future__ import annotations

from traitlets import Any, Bool, Dict, HasTraits, Int, List, Unicode, Union, default, validate

from . import imageref, naming
from .errors import ConfigError


class TFSpawnerConfig(HasTraits):
    """The ``TFSpawner`` options, as a mixin: only ``c.TFSpawner.*`` configures them."""

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
        - ``datasets``: course material mounted read-only, a list of
          ``{"source": VOLUME_OR_HOST_PATH, "target": "/data/x"}``.
        - ``extra_env``: variables for every server of this profile, e.g.
          ``{"COURSE_DATA_URL": "https://data.example.edu/ml101"}``. Names the hub
          sets itself (``JUPYTERHUB_*``, ``JPY_*``, ``NVIDIA_*``,
          ``CUDA_VISIBLE_DEVICES``, ``HOME``) are refused; never put secrets
          here, since every user of the profile can read them.

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

    boot_slots = Int(
        0,
        config=True,
        help="""
        How many servers may boot at once; the others wait in line, first come
        first served across all users and servers, and see their place and an
        estimate on the spawn page ("You are 12th in line, about 40 s").

        A server holds its slot while its container is made and started, until
        it answers HTTP, fails, is stopped or times out. Servers that boot
        together share the CPU, so letting fewer boot at once gets the first
        students in sooner, and none later. 0 (the default) is two slots per CPU
        of the engine (``docker info``): part of a boot is spent waiting on the
        engine. Measured with 50 users on 2 CPUs, one slot per CPU left CPUs
        idle and the last server was ready a quarter later than with two; four
        per CPU only added contention (docs/benchmarks.md).
        The queue also lends a slot while a boot has taken more than twice the
        recent median (it is mostly waiting, on a pull or a slow disk, not
        computing), up to twice the slots, so CPUs are not left idle.

        Example: ``c.TFSpawner.boot_slots = 4`` on a host whose servers need a
        whole core each to boot.

        Time in line does not count against ``Spawner.start_timeout``; the boot
        itself still does. GPUs are assigned before the wait, so a student who
        cannot get one is told at once. ``JupyterHub.concurrent_spawn_limit``
        counts waiting servers too (and answers 429 above it): raise it to the
        size of the largest class that logs in at once.
        """,
    )

    boot_priority = Bool(
        True,
        config=True,
        help="""
        Let the oldest of the servers booting at once go first.

        Containers share the CPU equally, so servers that boot together finish
        together, each as late as the last of them. With this on, a booting
        container runs at half the CPU weight (cgroup ``cpu.shares``) of the one
        that began booting before it; the oldest keeps its normal weight. The
        younger ones still take any CPU the older ones leave idle, so no CPU
        waits. Each server gets its normal weight back the moment it answers,
        and a running server is never weighted down. A container records its
        normal weight in a label, so if the hub stops while servers boot, the
        next hub start gives each its weight back (and logs it).

        The normal weight is Docker's default (1024), or ``cpu_shares`` in
        ``extra_host_config``. It takes one engine call per weight change (about
        two per start). Docker engines only: a Swarm service cannot change a
        running task's weight, so TFSwarmSpawner boots in order without it.

        Example: ``c.TFSpawner.boot_priority = False`` to give every booting
        server the same share of the CPU.
        """,
    )

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

    # --- defaults of the base spawners' traits ------------------------------------

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

    @default("client_kwargs")
    def _default_client_kwargs(self):
        # urllib3 keeps 10 connections per pool by default; more threads than
        # that would open and throw away a connection per call.
        return {"max_pool_size": max(10, self.engine_threads)}

    def _object_name_default(self):
        # Hub, user and server escaped injectively: two hubs on one engine, or
        # two users whose names escape alike, never get the same container.
        parts = [self.hub_name, self.user.name] + ([self.name] if self.name else [])
        return f"{self.prefix}-{naming.join(*parts)}"

    @validate("image")
    def _validate_image(self, proposal):
        # Syntax only: whether pins are required depends on another trait,
        # which may be loaded later. Settings enforce the pin.
        try:
            imageref.parse(proposal.value)
        except imageref.InvalidImageReference as e:
            raise ConfigError(f"TFSpawner.image: {e}") from None
        return proposal.value
