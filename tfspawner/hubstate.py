"""What every spawner of one hub shares: the GPU pool and what the engine says about it.

One ``HubState`` per ``hub_name`` in the process. The pool is rebuilt from
the engine's labels on first use; before a GPU is handed out, every live
container on the engine, whoever started it, is counted; after a container
is created, a race with another hub is settled by creation time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from . import bootqueue, bootweights, catalogue, containerspec, metrics
from .engine import Engine
from .gpupool import EngineHolding, GPUPool, Owner, PoolConflict
from .settings import Settings


class GPUTakenMeanwhile(RuntimeError):
    """Another hub's container took the same GPU at the same moment, and was created first."""


@dataclass
class HubState:
    hub_name: str
    pool: GPUPool
    engine: Engine
    log: logging.Logger
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconciled: bool = False
    # user -> uid from notebook volume labels, read once per process.
    _volume_uids: dict[str, int] | None = None
    _queue: bootqueue.BootQueue | None = None
    # A class's first spawns all ask for the queue at once; one asks the engine.
    _queue_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _boot_weights: bootweights.BootWeights | None = None

    async def boot_queue(self, slots: int) -> bootqueue.BootQueue:
        """The hub's one boot queue; ``slots`` 0 means two per CPU of the engine."""
        if self._queue is None:
            async with self._queue_lock:
                if self._queue is None:
                    if not slots:
                        info = await self.engine.call("info")
                        # A boot also waits on the engine (create, start, the
                        # first request), so one per CPU would leave CPUs idle.
                        slots = 2 * max(1, int(info.get("NCPU") or 1))
                    self._queue = bootqueue.BootQueue(slots)
                    self.log.info("TFSpawner: %d server(s) boot at once", slots)
        return self._queue

    @property
    def boot_weights(self) -> bootweights.BootWeights | None:
        """CPU weights of booting containers; None where the engine cannot change them."""
        set_shares = getattr(self.engine, "set_cpu_shares", None)
        if set_shares is not None and self._boot_weights is None:
            self._boot_weights = bootweights.BootWeights(set_shares, self.log)
        return self._boot_weights

    @property
    def queue(self) -> bootqueue.BootQueue | None:
        """The boot queue, once a server has asked for a slot."""
        return self._queue

    def cancel_boot(self, owner: Owner) -> None:
        if self._queue is not None:
            self._queue.cancel(owner)

    async def ready(self) -> HubState:
        """This state, with the pool rebuilt from the engine's labels on first use."""
        if not self.reconciled:
            async with self.lock:
                if not self.reconciled:
                    await self._reconcile()
                    self.reconciled = True
                    metrics.update(self.pool)
        return self

    async def _reconcile(self) -> None:
        """Running labelled containers hold their GPUs; ids with no running container are free."""
        for container in await self.engine.managed(self.hub_name):
            labels = container.get("Labels") or {}
            ids = containerspec.gpus_from_labels(labels)
            if not ids:
                continue
            owner = containerspec.owner_from_labels(labels) or Owner("")
            try:
                self.pool.restore(
                    owner,
                    ids,
                    since=container.get("Created"),
                    profile=labels.get(containerspec.LABEL_PROFILE, ""),
                )
            except PoolConflict as e:
                self.log.error("GPU labels of %s conflict: %s", container.get("Names"), e)
                continue
            self.log.info("Restored GPUs %s of %s from container labels", ",".join(ids), owner)

    def holdings(self, containers: list[dict]) -> list[EngineHolding]:
        """Who holds which of the pool's GPUs, by what the engine says of each container."""
        names = self.pool.names()
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

    async def observe(self) -> None:
        """Count every GPU that any live container on the engine holds as taken."""
        await self.ready()
        self.pool.observe_engine(self.holdings(await self.engine.gpu_holders()))
        metrics.update(self.pool)

    async def settle_race(self, container_id: str, gpu_ids: list[str]) -> None:
        """After creating a container: raise GPUTakenMeanwhile if an older one holds its GPU.

        Two hubs may pick the same free GPU at the same moment. Every claimant
        checks after creating its container, and the container created first
        keeps the GPU, so exactly one of them starts. A CPU server has nothing to settle.
        """
        if not gpu_ids:
            return
        containers = await self.engine.gpu_holders(fresh=True)
        order = {c["Id"]: (containerspec.created_ns(c["Created"]), c["Id"]) for c in containers}
        mine = order.get(container_id)
        names = self.pool.names()
        for facts in containers:
            if mine is None or order[facts["Id"]] >= mine:
                continue
            taken = set(containerspec.gpus_in_use(facts, names)) & set(gpu_ids)
            if taken:
                self.pool.observe_engine(self.holdings(containers))
                raise GPUTakenMeanwhile(f"GPU {','.join(sorted(taken))} by {facts['Name']}")

    def reconcile(self, owner: Owner, stored: list[str]) -> list[str]:
        """The ids the pool (rebuilt from labels) says ``owner`` holds; logs a disagreement."""
        held = self.pool.ids_of(owner)
        if stored and held != stored:
            self.log.warning(
                "Hub database says %s holds GPUs %s, container labels say %s; using the labels",
                owner,
                ",".join(stored),
                ",".join(held) or "none",
            )
        return held

    def release(self, owner: Owner, why: str = "") -> list[str]:
        released = self.pool.release(owner)
        if released:
            metrics.update(self.pool)
            if why:
                self.log.info("Released GPUs %s of %s (%s)", ",".join(released), owner, why)
        return released

    async def take_gpus(self, owner: Owner, count: int, *, cap: int | None, profile: str):
        """``count`` free GPUs for ``owner``, after counting every holder on the engine.

        Raises ``gpupool.PoolError`` with a sentence for the user. The engine is
        read first; nothing is awaited between the pool's check and its record.
        """
        self.release(owner)
        if not count:
            return []
        await self.observe()
        ids = self.pool.allocate(owner, count, user_cap=cap, profile=profile)
        metrics.update(self.pool)
        return ids

    def adopt_gpus(self, owner: Owner, container: dict, profile: str) -> list[str]:
        """Record the GPUs a running container's labels say it holds; PoolConflict if taken."""
        ids = containerspec.gpus_from_labels(container["Config"].get("Labels") or {})
        self.release(owner)
        since = containerspec.created_ns(container["Created"]) / 1e9
        self.pool.restore(owner, ids, since=since, profile=profile)
        metrics.update(self.pool)
        return ids

    def publish(self) -> None:
        """Update the pool's metrics after a change made on ``pool`` directly."""
        metrics.update(self.pool)

    async def sweep(self, running: set[Owner]) -> None:
        """Clean up after a hub that died, without ever removing a running container.

        A container that is not running and that no running server owns is a
        spawn the hub never finished (or a helper): it is removed. A running
        container that the hub's database does not know keeps running and keeps
        its GPUs; its user's next start adopts it. Notebook volumes are left alone.
        """
        await self.ready()
        for container in await self.engine.managed(self.hub_name, stopped=True):
            labels = container.get("Labels") or {}
            owner = containerspec.owner_from_labels(labels) or Owner("")
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
                    self.pool.release(owner)
                continue
            self.log.warning(
                "Removing container %s of %s: %s, and no running server owns it",
                container.get("Names"),
                owner,
                container.get("State"),
            )
            await self.engine.remove(container["Id"])
            if owner not in running and self.pool.release(owner):
                self.log.info("Released the GPUs of %s", owner)
        await self._restore_cpu_weights()
        await self.observe()

    async def _restore_cpu_weights(self) -> None:
        """Give back the normal CPU weight of servers whose boot a dead hub weighted down."""
        if self.boot_weights is None:
            return
        for facts in await self.engine.gpu_holders(fresh=True):
            labels = facts["Config"]["Labels"]
            if labels.get(containerspec.LABEL_HUB) != self.hub_name:
                continue
            normal = containerspec.labelled_cpu_shares(labels)
            if normal is None or containerspec.cpu_shares(facts["HostConfig"]) == normal:
                continue
            self.log.warning(
                "Giving %s its CPU weight %d back: the hub that started it stopped while it booted",
                facts["Name"],
                normal,
            )
            try:
                await self.engine.set_cpu_shares(facts["Id"], normal)
            except Exception as e:
                self.log.error("CPU weight of %s not set: %s", facts["Name"], e)

    async def servers(self) -> list[dict]:
        """This hub's running servers as records, as the engine sees them."""
        return containerspec.server_records(await self.engine.managed(self.hub_name))

    async def unknown_servers(self, known: set[Owner]) -> list[dict]:
        """This hub's running servers that its database does not know."""
        return [r for r in await self.servers() if Owner(r["user"], r["server"]) not in known]

    async def stale_servers(self, settings: Settings) -> list[dict]:
        """This hub's running servers on another digest than their alias's current pin."""
        return catalogue.stale_servers(
            await self.servers(),
            {p.slug: p.image for p in settings.profiles},
            {alias: str(ref) for alias, ref in settings.refs.items()},
        )

    async def volume_uids(self) -> dict[str, int]:
        """user -> uid from this hub's notebook volumes, read once per hub process."""
        if self._volume_uids is None:
            found = await self.engine.volumes(
                [f"{containerspec.LABEL_HUB}={self.hub_name}", containerspec.LABEL_UID]
            )
            seen = {}
            for volume in found:
                labels = volume.get("Labels") or {}
                with contextlib.suppress(KeyError, ValueError):
                    seen[labels[containerspec.LABEL_USER]] = int(labels[containerspec.LABEL_UID])
            if self._volume_uids is None:
                self._volume_uids = seen
        return self._volume_uids


_states: dict[str, HubState] = {}


def register(state: HubState) -> None:
    """Make ``state`` the process's one state for its hub, built by a spawner of its own.

    TFSwarmSpawner builds its pool from the nodes; the admin page and the hub's
    start-up then find that state by name, as they find TFSpawner's.
    """
    _states[state.hub_name] = state


def of(settings: Settings, engine: Engine, log: logging.Logger) -> HubState:
    """The process's one state for ``settings.hub_name``."""
    state = _states.get(settings.hub_name)
    if state is None:
        state = _states[settings.hub_name] = HubState(
            settings.hub_name, GPUPool(list(settings.gpus)), engine, log
        )
    return state
