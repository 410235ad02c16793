"""TFSpawner: DockerSpawner for TensorFlow 2.9 Jupyter images.

The spawner gathers config (``config.py``, frozen by ``settings.py``), makes
a ``spawnplan`` from it and does the I/O through the engine seam
(``engine/``). The pure modules decide; nothing here talks to Docker directly.
"""

from __future__ import annotations

import inspect

from dockerspawner import DockerSpawner
from jupyterhub.utils import url_path_join
from traitlets import List, Unicode

from . import (
    accounts,
    adoption,
    allowlist,
    bootqueue,
    containerspec,
    gpupool,
    hubstate,
    identity,
    imageref,
    messages,
    naming,
    options,
    profiles,
    readiness,
    settings,
    spawnplan,
    storage,
)
from .config import TFSpawnerConfig
from .engine import DockerEngine, ImageAbsent, PullRefused, carries_pin, shared_executor
from .errors import ConfigError
from .gpupool import Owner
from .progress import ProgressEvents
from .uidregistry import UidTaken


class TFSpawner(ProgressEvents, TFSpawnerConfig, DockerSpawner):
    """Start each user's server from a TensorFlow 2.9 Jupyter image, pinned by digest."""

    # --- the seams -----------------------------------------------------------------

    @property
    def settings(self) -> settings.Settings:
        """The checked config; raises ConfigError naming the bad setting."""
        return settings.of(self, self.log)

    @property
    def engine(self) -> DockerEngine:
        return DockerEngine.shared(self.client, self.engine_threads, self.log)

    @property
    def executor(self):
        return shared_executor("engine", self.engine_threads)

    def docker(self, method, *args, **kwargs):
        # DockerSpawner's own create/start/stop/inspect go through the engine too.
        return self.engine.call(method, *args, **kwargs)

    async def hub_state(self) -> hubstate.HubState:
        """The process-wide GPU pool, rebuilt from the engine's labels on first use."""
        return await hubstate.of(self.settings, self.engine, self.log).ready()

    @property
    def owner(self) -> Owner:
        return Owner(self.user.name, self.name)

    # --- state ---------------------------------------------------------------------

    gpu_ids = List(Unicode())
    profile_slug = Unicode("")
    # Why the last server stopped on its own; shown on the next visit.
    stop_reason = Unicode("")
    # The current start's decisions; None between starts.
    _plan: spawnplan.SpawnPlan | None = None

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
        self.gpu_ids = (await self.hub_state()).reconcile(self.owner, list(self.gpu_ids))

    async def _release_gpus(self, why: str) -> None:
        (await self.hub_state()).release(self.owner, why=why)
        self.gpu_ids = []

    # --- identity ------------------------------------------------------------------

    async def resolve_ids(self) -> tuple[int, int]:
        """This user's ``(uid, gid)``; refuse the spawn with a clear message if unsafe."""
        volume_uids = await (await self.hub_state()).volume_uids()
        try:
            return await accounts.resolve(self.settings.identity, self, volume_uids)
        except identity.UnsafeIdentity as e:
            raise messages.unsafe_identity(e) from None
        except UidTaken as e:
            self.log.error("Not starting %s: %s (TFSpawner.uid_registry_file)", self.owner, e)
            raise messages.uid_taken() from None

    @property
    def passwd_name(self) -> str:
        return identity.passwd_name(self.user.name, "u-" + naming.escape(self.user.name))

    # --- storage -------------------------------------------------------------------

    async def _prepare_storage(self, plan: spawnplan.SpawnPlan) -> bool:
        """Make the user's storage theirs on first use; True when it is new and empty."""
        created = await storage.prepare(
            self.engine, plan, self.owner, hub=self.hub_name, log=self.log
        )
        if created:
            self._report("Created your notebook volume", 15)
            (await (await self.hub_state()).volume_uids()).setdefault(self.user.name, plan.uid)
        return created

    async def _write_first_files(self, plan: spawnplan.SpawnPlan, seed_storage: bool) -> None:
        await storage.write_first_files(
            self.engine,
            self.object_id,
            plan,
            self.owner,
            hub=self.hub_name,
            passwd_name=self.passwd_name,
            seed=seed_storage,
        )

    async def delete_forever(self):
        await storage.delete_forever(
            self.engine, self.settings.storage, self.owner, hub=self.hub_name, log=self.log
        )

    # --- options -------------------------------------------------------------------

    def _user_groups(self) -> list[str]:
        return [group.name for group in getattr(self.user, "groups", [])]

    def _is_admin(self) -> bool:
        return bool(getattr(self.user, "admin", False))

    def choose_profile(self, last: str | None = None) -> profiles.Profile:
        return options.choose(
            self.user_options,
            self.settings.profiles,
            groups=self._user_groups(),
            is_admin=self._is_admin(),
            last=self.profile_slug if last is None else last,
        )

    async def get_options_form(self):
        """The profile form with live GPU availability; none if there is nothing to choose."""
        groups, is_admin = self._user_groups(), self._is_admin()
        allowed = [p for p in self.settings.profiles if p.allowed_for(groups, is_admin)]
        if len(allowed) <= 1 and not self.stop_reason:
            return ""
        state = await self.hub_state()
        try:
            await state.observe()
        except Exception as e:
            # The form still renders; a GPU spawn reads the engine again anyway.
            self.log.warning("Could not read the engine's GPU holders for the form: %s", e)
        return options.render_form(
            self.settings,
            allowed,
            state.pool,
            handler=self.handler,
            asked=(self.user_options or {}).get("profile"),
            last=self.profile_slug,
            notice=self.stop_reason,
            default_mem=self.mem_limit,
            default_cpu=self.cpu_limit,
        )

    def options_from_form(self, formdata):
        return options.from_form(formdata)

    def options_from_query(self, query_data):
        return options.from_link(self.handler, query_data)

    # --- image ---------------------------------------------------------------------

    async def pull_image(self, image):
        """Pull by digest when absent, then check the local image carries the pin."""
        ref = imageref.parse(image)
        if not ref.pinned:
            self.log.warning("Starting %s from unpinned image %s", self._log_name, image)
            return await super().pull_image(image)
        try:
            info = await self.engine.image(
                image,
                may_pull=self.pull_policy != "never",
                # Map the pull onto 20-80% of the spawn's progress bar.
                on_progress=lambda p: self._report(f"Pulling image: {p}%", 20 + p * 60 // 100),
            )
        except ImageAbsent:
            raise messages.image_absent(ref) from None
        except PullRefused as e:
            raise messages.pull_refused(e.login_refused) from None
        if not carries_pin(ref, info):
            raise messages.digest_mismatch(ref.digest)

    # --- lifecycle -----------------------------------------------------------------

    # A start has two phases. ``_decide`` runs in the hub's pre-spawn hook, which
    # start_timeout does not cover: it picks the profile, uid and GPUs (so a
    # refusal is immediate), then waits in the boot queue. ``_launch`` runs in
    # start(): image, storage, container, and the wait until the server answers.
    _decided = False
    _accepted = ""
    _adopted: tuple | None = None
    _ticket = None

    async def run_pre_spawn_hook(self):
        # The admin's own hook first; it may be sync or async.
        hooked = super().run_pre_spawn_hook()
        if inspect.isawaitable(hooked):
            await hooked
        await self._decide(queue=True)

    async def start(self):
        try:
            if not self._decided:
                await self._decide(queue=False)
            return await self._launch()
        except BaseException:
            # The hub stored the request's options before calling start; a refused
            # or failed start must not leave them behind for the next Start button.
            self._keep_options(self._accepted)
            raise
        finally:
            self._leave_queue("failed")
            self._decided, self._plan, self._adopted = False, None, None

    def _keep_options(self, slug: str) -> None:
        self.profile_slug = slug
        self.user_options = options.store(self.orm_spawner, slug)

    async def _decide(self, queue: bool) -> None:
        self._event_list = []
        self._accepted = self.profile_slug
        self._decided = True
        try:
            await self._plan_start()
            if queue and self._plan is not None:
                await self._wait_for_boot_slot()
        except BaseException:
            if self._plan is not None:
                await self._release_gpus("start refused or cancelled")
            self._keep_options(self._accepted)
            self._leave_queue("cancelled")
            self._decided, self._plan = False, None
            raise

    async def _plan_start(self) -> None:
        try:
            config = self.settings
        except ConfigError as e:
            raise messages.misconfigured(e) from None
        existing = await self.get_object()
        running = existing is not None and existing["State"].get("Running")
        labels = (existing or {}).get("Config", {}).get("Labels") or {}
        # A start that names no profile reconnects to a server the hub lost track of.
        last = (labels.get(containerspec.LABEL_PROFILE, "") if running else "") or self.profile_slug
        profile = self.choose_profile(last=last)
        self.image = config.image_of(profile)
        uid, gid = await self.resolve_ids()
        if running:
            address = await self._adopt_or_remove(existing, profile, uid, gid)
            if address is not None:
                self._adopted = (address, profile.slug)
                return
        elif existing is not None:
            # Left by a start that never finished; its GPUs were never handed out.
            await self.remove_object()
        gpu_ids = await self._take_gpus(profile)
        self._plan = spawnplan.make(
            config,
            owner=self.owner,
            profile=profile,
            uid=uid,
            gid=gid,
            gpu_ids=gpu_ids,
            notebook_dir=self.notebook_dir,
            admin_binds=self.volume_binds,
            mem_limit=self.mem_limit,
            cpu_limit=self.cpu_limit,
        )
        # Spawner.get_env reports these to the server as MEM_LIMIT and CPU_LIMIT.
        self.mem_limit, self.cpu_limit = self._plan.mem_limit, self._plan.cpu_limit

    async def _launch(self):
        if self._adopted is not None:
            address, slug = self._adopted
            self._keep_options(slug)
            return address
        plan = self._plan
        new_storage = False
        try:
            await self.pull_image(plan.image)
            new_storage = await self._prepare_storage(plan)
            await self.create_object(seed_storage=new_storage)
            await self.start_object()
            await self._weigh_boot(began=True)
            if self.post_start_cmd:
                await self.post_start_exec()
            address = await self.get_ip_and_port()
            await self._wait_until_it_answers(*address)
        except BaseException:
            await self._weigh_boot(began=False, running=False)
            await self._undo(plan, new_storage)
            raise
        # The slot first: the next in line need not wait on the weight's engine call.
        self._leave_queue("ready")
        await self._weigh_boot(began=False, running=True)
        self.stop_reason = ""
        self._keep_options(plan.profile.slug)
        return address

    # --- the boot queue ------------------------------------------------------------

    async def _wait_for_boot_slot(self) -> None:
        queue = await (await self.hub_state()).boot_queue(self.boot_slots)
        label = f"{self.user.name}/{self.name}" if self.name else self.user.name
        self._ticket = queue.enter(self.owner, label)

        def tell(place: int, estimate: float | None) -> None:
            self._report(bootqueue.describe_place(place, estimate), 2)

        await self._ticket.wait(on_place=tell)

    _cpu_shares = containerspec.DEFAULT_CPU_SHARES

    async def _weigh_boot(self, began: bool, running: bool = True) -> None:
        weights = (await self.hub_state()).boot_weights if self.boot_priority else None
        if weights is None:
            return
        if began:
            await weights.started(self.owner, self.object_id, self._cpu_shares)
        else:
            await weights.ended(self.owner, running=running)

    def _leave_queue(self, outcome: str) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.done(outcome)

    async def _wait_until_it_answers(self, ip: str, port: int) -> None:
        """Hold the boot slot until the server answers HTTP; fail at once if it dies."""
        if self.server is None:
            return
        url = f"http://{ip}:{port}{url_path_join(self.server.base_url, 'api')}"
        try:
            await readiness.until_answers(url, readiness.while_running(self.get_object))
        except RuntimeError as e:
            raise messages.failed_to_boot(str(e)) from None

    async def _take_gpus(self, profile: profiles.Profile) -> list[str]:
        state = await self.hub_state()
        cap = self.settings.gpu_cap(self._user_groups())
        self.gpu_ids = []
        try:
            self.gpu_ids = await state.take_gpus(
                self.owner, profile.gpus, cap=cap, profile=profile.slug
            )
        except gpupool.PoolError as e:
            raise messages.gpu_unavailable(str(e)) from None
        if self.gpu_ids:
            self._report(f"Assigned {state.pool.describe(self.gpu_ids)}", 10)
        return list(self.gpu_ids)

    async def _undo(self, plan: spawnplan.SpawnPlan, new_storage: bool) -> None:
        """The one rollback of a start: GPUs back, container gone, a new empty volume gone."""
        await self._release_gpus("start failed")
        if self.object_id:
            try:
                # Forced: the container may be running already.
                await self.engine.remove(self.object_id)
            except Exception:
                self.log.exception("Could not remove the container of failed start %s", self.owner)
            self.object_id = ""
        if new_storage:
            await storage.discard_unused(self.engine, plan, log=self.log)

    async def _adopt_or_remove(self, container: dict, profile, uid: int, gid: int):
        """Take over this server's running container, kernels and all, if it fits the request.

        It is running because the hub lost track of it (a lost or restored
        database). Otherwise it is stopped first, and the user is told why.
        Returns the server's address when adopted.
        """
        user = identity.container_user(uid, gid)
        state = await self.hub_state()
        ids, why = adoption.judge(
            container, state, self.owner, image=self.image, profile=profile.slug, user=user
        )
        if why is None:
            self.object_id, self.gpu_ids = container["Id"], ids
            # The server keeps the token it was started with; the hub stores it again.
            self.api_token = adoption.api_token(container)
            self.log.info("Adopting running container %s of %s", container["Name"], self.owner)
            self._report(messages.adopted(), 90)
            return await self.get_ip_and_port()
        self.log.warning(
            "Removing running container %s of %s before a new start: it runs %s",
            container["Name"],
            self.owner,
            why,
        )
        self._report(messages.replaced(why), 5)
        await self.engine.remove(container["Id"])
        self.object_id = ""
        return None

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
            self.stop_reason = messages.exit_reason(state, container["HostConfig"].get("Memory"))
        if not (self._spawn_pending or self._start_pending):
            await self._release_gpus(f"server not running: {status}")
            if container is not None and self.remove:
                # The hub does not call stop() for a server that died; clean up here.
                await self.remove_object()
        return status

    async def stop(self, now=False):
        # A stop while waiting in line leaves the line at once.
        (await self.hub_state()).cancel_boot(self.owner)
        try:
            await super().stop(now=now)
        finally:
            await self._release_gpus("stopped")

    # --- container -----------------------------------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(self._plan.env)
        return env

    async def _evaluated(self, value):
        value = self._eval_if_callable(value)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value)

    async def create_object(self, seed_storage: bool = False):
        """Create the container the plan describes, and write its first files into it."""
        plan = self._plan
        extra_create = await self._evaluated(self.extra_create_kwargs)
        extra_host = await self._evaluated(self.extra_host_config)
        allowed = self.allow_unsafe_container_settings
        try:
            # What callables return depends on the user: checked here, at each spawn.
            unchecked = allowlist.check_admin_settings(
                extra_host_config=extra_host if callable(self.extra_host_config) else None,
                extra_create_kwargs=extra_create if callable(self.extra_create_kwargs) else None,
                allow_unsafe=allowed,
            )
            kwargs, host_kwargs = spawnplan.container_call(
                plan,
                name=self.container_name,
                command=await self.get_command(),
                environment=self.get_env(),
                port=self.port,
                network_mode=self.network_name,
                port_bindings=None if self.use_internal_ip else {self.port: (self.host_ip,)},
                mounts=self.mount_binds,
                pids_limit=self.pids_limit,
                cap_add=self.cap_add,
                extra_host=extra_host,
                extra_create=extra_create,
                allow_unsafe=allowed,
            )
        except allowlist.UnsafeContainerConfig as e:
            raise messages.misconfigured(e) from None
        allowlist.warn_unchecked(self.log, unchecked, into=f"{self.user.name}'s container")
        # Its normal CPU weight, which a boot's priority hands back.
        self._cpu_shares = containerspec.cpu_shares(host_kwargs)
        self.object_id = await self.engine.create(kwargs, host_kwargs)
        try:
            await (await self.hub_state()).settle_race(self.object_id, list(plan.gpu_ids))
        except hubstate.GPUTakenMeanwhile as e:
            self.log.warning("%s of %s was taken at the same moment; not starting", e, self.owner)
            raise messages.gpu_taken_meanwhile() from None
        await self._write_first_files(plan, seed_storage)
        return {"Id": self.object_id}
