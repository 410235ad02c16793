"""TFSpawner: DockerSpawner for TensorFlow 2.9 Jupyter images.

The spawner only gathers config, calls the pure modules and talks to the
engine through DockerSpawner's ``docker()`` seam, so that a Swarm variant can
reuse everything but the I/O.
"""

from __future__ import annotations

import inspect

from docker.errors import ImageNotFound, NotFound
from dockerspawner import DockerSpawner
from traitlets import Bool, Int, List, Unicode, default, validate

from . import containerspec, identity, imageref
from .errors import spawn_refused


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

    allow_unpinned_images = Bool(
        False,
        config=True,
        help="""
        Allow image references that are not pinned by digest.

        By default every image must be ``name@sha256:<digest>`` (or
        ``name:tag@sha256:<digest>``), because whoever controls a tag can move it
        during a term. Turning this on is meant for development only; a warning
        is logged for every unpinned spawn.
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

    cap_add = List(
        Unicode(),
        config=True,
        help="""
        Linux capabilities added back after all are dropped.

        User containers run with ``--cap-drop ALL``; the single-user server needs
        none. Example: ``["SYS_PTRACE"]`` to let users run debuggers.
        """,
    )

    uid_base = Int(
        100000,
        config=True,
        help="""
        Container uid of a user is ``uid_base`` plus the hub's user id.

        Hub user ids are never reused, so every user gets a uid of their own, and
        it stays the same across spawns so files on the user's volume keep their
        owner. Pick a base above the uids used on the host.
        """,
    )

    gid = Int(
        100,
        config=True,
        help="""
        Container gid of every user. 100 is ``users`` on Debian and Ubuntu. 0 is refused.
        """,
    )

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

    @validate("image")
    def _validate_image(self, proposal):
        # Syntax only: whether pins are required depends on another trait,
        # which may be loaded later. pull_image enforces the pin.
        try:
            imageref.parse(proposal.value)
        except imageref.InvalidImageReference as e:
            raise ValueError(f"TFSpawner.image: {e}") from None
        return proposal.value

    def _parse_image(self, reference: str, *, setting: str) -> imageref.ImageRef:
        try:
            ref = imageref.parse(reference)
        except imageref.InvalidImageReference as e:
            raise ValueError(f"{setting}: {e}") from None
        if not ref.pinned and not self.allow_unpinned_images:
            raise ValueError(
                f"{setting}: {reference!r} is not pinned by digest. Use "
                "'name@sha256:<digest>' (see `tfspawner images pin`), or set "
                "TFSpawner.allow_unpinned_images = True for development."
            )
        return ref

    # --- identity ----------------------------------------------------------------

    def container_user(self) -> str:
        uid = identity.stable_uid(self.uid_base, self.user.id)
        try:
            return identity.container_user(uid, self.gid)
        except identity.UnsafeIdentity as e:
            raise spawn_refused(
                f"Your server cannot start: {e}. Please tell the hub's administrator.",
                reason="identity",
            ) from None

    # --- image -------------------------------------------------------------------

    async def pull_image(self, image):
        """Pull by digest when absent, then check the local image carries the pin."""
        ref = self._parse_image(image, setting="TFSpawner.image")
        if not ref.pinned:
            self.log.warning("Starting %s from unpinned image %s", self._log_name, image)
            return await super().pull_image(image)
        try:
            info = await self.docker("inspect_image", str(ref))
        except (ImageNotFound, NotFound):
            if self.pull_policy == "never":
                raise spawn_refused(
                    f"The image {image} is not on this host. Please tell the hub's administrator.",
                    reason="image",
                    status_code=503,
                ) from None
            self.log.info("Pulling %s by digest", ref)
            repository, digest = ref.pull_args()
            await self.docker("pull", repository, tag=digest)
            info = await self.docker("inspect_image", str(ref))
        self._verify_digest(ref, info)

    def _verify_digest(self, ref: imageref.ImageRef, image_info: dict) -> None:
        repo_digests = image_info.get("RepoDigests") or []
        if not any(ref.matches_repo_digest(entry) for entry in repo_digests):
            raise spawn_refused(
                f"The image for your server does not match its pinned digest {ref.digest}; "
                "it was not started. Please tell the hub's administrator.",
                reason="image-digest",
                status_code=500,
            )

    # --- container ---------------------------------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(containerspec.gpu_environment(self.gpu_ids))
        return env

    @property
    def gpu_ids(self) -> list[str]:
        return []

    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    async def create_object(self):
        extra_create = await self._evaluated(self.extra_create_kwargs)
        extra_host = await self._evaluated(self.extra_host_config)
        host_kwargs = containerspec.host_config(
            extra=extra_host,
            network_mode=self.network_name,
            port_bindings=None if self.use_internal_ip else {self.port: (self.host_ip,)},
            binds=self.volume_binds,
            mounts=self.mount_binds,
            auto_remove=self.remove,
            mem_limit=self.mem_limit,
            cpu_limit=self.cpu_limit,
            pids_limit=self.pids_limit,
            cap_add=self.cap_add,
            gpu_ids=self.gpu_ids,
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
            ),
            user=self.container_user(),
            port=self.port,
            volumes=self.volume_mount_points,
            extra=extra_create,
        )
        kwargs["host_config"] = self.client.create_host_config(**host_kwargs)
        return await self.docker("create_container", **kwargs)
